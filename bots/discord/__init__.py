"""stemscribe's Discord front end: slash commands, a message menu, progress and delivery.

Exports: StemscribeBot, Timings, main.

Modules: bot (client, intents, error handler), cog (commands), watch (progress
and token expiry), delivery (upload limits and routes), main (startup).
"""

from .bot import StemscribeBot
from .main import main
from .watch import Timings

__all__ = ["StemscribeBot", "Timings", "main"]
