"""stemscribe: audio to sheet music in chat.

The distribution maps four folders under this one import name:
stemscribe.core (./core), stemscribe.worker (./worker), stemscribe.bots (./bots),
and this package itself (./stemscribe) for settings and the command line.
"""

__version__ = "0.1.0"
