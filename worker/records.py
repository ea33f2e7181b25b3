"""The data types of the job API: what bots pass in and get back from JobClient.

Exports: InputFile, Requester, Submission, JobStatus, JobOutput, Artifact.

All are frozen dataclasses of plain values, safe to hand across threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stemscribe.core.contract import JobError, JobState


@dataclass(frozen=True)
class InputFile:
    """One uploaded recording: its original file name and bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Requester:
    """Who asked and where to answer. ``reply`` is opaque to the worker (message ids etc.)."""

    platform: str
    user_id: str
    chat_id: str
    reply: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "user_id": str(self.user_id), "chat_id": str(self.chat_id),
                "reply": dict(self.reply)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Requester":
        return cls(str(data.get("platform", "")), str(data.get("user_id", "")), str(data.get("chat_id", "")),
                   dict(data.get("reply") or {}))

    def owns(self, other: "Requester") -> bool:
        """Same platform and user (the chat may differ: a DM may cancel a job sent from a group)."""
        return self.platform == other.platform and str(self.user_id) == str(other.user_id)


@dataclass(frozen=True)
class Submission:
    """A queued job: its id and its 1-based place in line."""

    job_id: str
    position: int


@dataclass(frozen=True)
class JobStatus:
    """What a job is doing now.

    state: a core.contract.JobState (queued, started, finished, failed, cancelled).
    stage: a core.progress.Stage value while started ("queued" while waiting).
    percent: 0..100 over the whole job. position: place in line while queued, else 0.
    error: a core.contract.JobError payload (to_dict) when failed or cancelled; ``job_error`` reads it.
    timings: seconds per stage so far. enqueued_at / started_at / ended_at: Unix times or None.
    """

    job_id: str
    state: JobState
    stage: str
    percent: float
    message: str
    position: int
    error: dict | None
    requester: Requester
    timings: dict = field(default_factory=dict)
    enqueued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def job_error(self) -> JobError | None:
        """The stored error payload, read by the contract's one class (None when there is none)."""
        return JobError.from_dict(self.error) if self.error else None


@dataclass(frozen=True)
class Artifact:
    """One output file: name (e.g. 'score.pdf', 'stems/bass.opus'), kind, size."""

    name: str
    kind: str
    size_bytes: int


@dataclass(frozen=True)
class JobOutput:
    """A finished job: the result.json content and the files to fetch."""

    summary: dict
    artifacts: list[Artifact]
