"""Error types of stemscribe, one family shared by core, worker and both bots.

Exports: StemscribeError, UserError, OptionsError, AudioError, DecodeError,
EmptyAudioError, SilentAudioError, AudioTooLongError, AudioTooLargeError,
UnsupportedFormatError, NoNotesError, UnavailableError, ModelMissingError,
LimitError, RateLimitedError, QueueFullError, TooManyJobsError, JobNotFoundError,
TransientError, CancelledError, EngraveError.

Hierarchy (catch in this order; the first match decides what the user sees)::

    StemscribeError
     +-- UserError              the user can fix it; .message and .hint are safe to show
     |    +-- OptionsError      an unknown option word or a bad value
     |    +-- AudioError        the input itself
     |    |    +-- UnsupportedFormatError, DecodeError, EmptyAudioError,
     |    |        SilentAudioError, AudioTooLongError, AudioTooLargeError
     |    +-- NoNotesError      decoded fine but nothing pitched was found
     |    +-- UnavailableError  this server cannot do that (yet)
     |    |    +-- ModelMissingError   weights not installed; hint names the fix
     |    +-- LimitError        fairness caps
     |    |    +-- RateLimitedError, QueueFullError, TooManyJobsError
     |    +-- JobNotFoundError  unknown, expired or someone else's job id
     +-- TransientError         Redis, downloads, chat API hiccups: retry, then "try later"
     +-- CancelledError         the user (or an operator) cancelled the job
     +-- EngraveError           LilyPond rejected our own output: a bug, log kept

Anything that is not a StemscribeError is a bug: log it with the traceback and
tell the user something went wrong, quoting the job id.
"""

from __future__ import annotations


class StemscribeError(Exception):
    """Base of every error stemscribe raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"

    def to_dict(self) -> dict:
        """Plain data for job results and logs (type name, message, hint)."""
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint}


class UserError(StemscribeError):
    """Something the user can fix; message and hint are written for a musician."""


class OptionsError(UserError):
    """An option word the parser does not know, or a value it cannot use."""


class AudioError(UserError):
    """The input audio cannot be used."""


class UnsupportedFormatError(AudioError):
    """The file is not audio (or video with sound) that we can read."""


class DecodeError(AudioError):
    """The file looks like audio but the decoder failed (truncated, corrupt)."""


class EmptyAudioError(AudioError):
    """The file holds no audio samples at all (zero bytes or zero length)."""


class SilentAudioError(AudioError):
    """The audio decodes but is silent (or nearly) from start to end."""


class AudioTooLongError(AudioError):
    """The recording is longer than this server accepts for that mode."""


class AudioTooLargeError(AudioError):
    """The file is larger than this server (or the chat platform) accepts."""


class NoNotesError(UserError):
    """Transcription found no pitched notes to write down."""


class UnavailableError(UserError):
    """This server cannot do what was asked (feature off, model not installed)."""


class ModelMissingError(UnavailableError):
    """Model weights are not installed; the hint names the command that fetches them."""


class LimitError(UserError):
    """A fairness cap: rate, concurrency or queue length."""


class RateLimitedError(LimitError):
    """Too many requests from this user or chat in the current window."""


class QueueFullError(LimitError):
    """The global queue is full; try again later."""


class TooManyJobsError(LimitError):
    """This user or chat already has the maximum number of jobs running."""


class JobNotFoundError(UserError):
    """No such job for this requester: the id is unknown, its files expired, or it is not theirs."""


class CorrectionBusyError(LimitError):
    """A version of this score is being written already; a second correction waits for it."""


class TransientError(StemscribeError):
    """A passing failure of something we depend on; retried a bounded number of times."""


class CancelledError(StemscribeError):
    """The job was cancelled on request. Not a KeyboardInterrupt."""


class EngraveError(StemscribeError):
    """LilyPond failed on input we generated. A bug; .log_path keeps LilyPond's log."""

    def __init__(self, message: str, *, log_path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_path = log_path
