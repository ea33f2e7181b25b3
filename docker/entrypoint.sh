#!/bin/sh
# Container entry point: turns *_FILE secrets into variables, then runs stemscribe.
#
#   docker run IMAGE worker | telegram | discord | doctor | status | models ... | <any command>
#
# A variable STEMSCRIBE_X_FILE=/run/secrets/x sets STEMSCRIBE_X to that file's
# content (compose/swarm secrets), so tokens need not sit in the container's
# environment listing. Values are never printed.
set -eu

for name in $(env | sed -n 's/^\(STEMSCRIBE_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "secret_file=\${${name}_FILE}"
    if [ ! -r "$secret_file" ]; then
        echo "entrypoint: ${name}_FILE points to $secret_file, which is missing or unreadable" >&2
        exit 64
    fi
    value=$(cat "$secret_file")
    export "$name=$value"
    unset "${name}_FILE"
done
unset secret_file value name

if [ "$#" -eq 0 ]; then
    set -- worker
fi

case "$1" in
    worker|telegram|discord|doctor|status|models|submit|result|transcribe|-*)
        exec stemscribe "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
