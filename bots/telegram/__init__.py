"""stemscribe.bots.telegram: the Telegram front end (python-telegram-bot v22).

Exports: build_application. Start-up lives in stemscribe.bots.telegram.main
(main, run), kept out of this namespace so ``python -m`` can run that module.

Modules: app (Application wiring and the error handler), handlers (recordings and
commands), settings_menu (/settings keyboard), media (finding and fetching the
recording within Telegram's limits), delivery (progress edits and result
uploads), main (polling or webhook start-up).
"""

from stemscribe.bots.telegram.app import build_application

__all__ = ["build_application"]
