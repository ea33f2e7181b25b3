"""What one worker process loads once and every job reuses, and its shutdown state.

Exports: WorkerRuntime, ShutdownState, Pipeline, install_runtime, current_runtime.

``stemscribe worker`` builds one WorkerRuntime (models loaded before the first
job) and installs it; the RQ entry function in worker.jobs reads it with
current_runtime(). A plain ``rq worker`` (not recommended) gets one built from
the environment on the first job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from redis import Redis

from stemscribe.core.errors import StemscribeError

from .artifacts import ArtifactStore, open_store
from .limits import Admission
from .queues import connect, make_queues

log = logging.getLogger(__name__)

#: The per-job function: core.pipeline.run or a stand-in with its signature.
Pipeline = Callable[..., dict]


class ShutdownState:
    """Set by the worker on SIGTERM; tells the running job when to give up and be requeued.

    Args:
        grace_s: how long a running job may go on after the request.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = float(grace_s)
        self._requested_at: float | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        """Record a warm-shutdown request (the first one counts)."""
        with self._lock:
            if self._requested_at is None:
                self._requested_at = time.monotonic()

    @property
    def requested(self) -> bool:
        return self._requested_at is not None

    def requeue_due(self) -> bool:
        """True once a shutdown was requested and the grace period has run out."""
        at = self._requested_at
        return at is not None and time.monotonic() - at >= self.grace_s


@dataclass
class WorkerRuntime:
    """What one worker process loads once and every job reuses.

    settings: stemscribe Settings. redis: connection. store: artifact store.
    toolkit: core.pipeline.Toolkit with the loaded models (None for a custom pipeline).
    limits: core.pipeline.Limits. pipeline: the function run per job (core.pipeline.run).
    shutdown: the worker's shutdown state. admission: gives back user/chat slots.
    """

    settings: Any
    redis: Redis
    store: ArtifactStore
    pipeline: Pipeline
    toolkit: Any = None
    limits: Any = None
    shutdown: ShutdownState = field(default_factory=lambda: ShutdownState(0.0))
    admission: Admission | None = None

    @classmethod
    def create(cls, settings, redis: Redis | None = None, *, pipeline: Pipeline | None = None,
               toolkit: Any = None) -> "WorkerRuntime":
        """Build the runtime from settings; models are not loaded here (see preload).

        Args:
            settings: stemscribe Settings.
            redis: connection; default from settings.redis_url.
            pipeline: the per-job function; default core.pipeline.run.
            toolkit: loaded models; default a fresh core.pipeline.Toolkit when pipeline is the default.
        """
        redis = redis if redis is not None else connect(settings)
        from stemscribe.core import pipeline as core_pipeline

        if pipeline is None:
            pipeline = core_pipeline.run
            if toolkit is None:
                from stemscribe.core.engines.registry import ModelCache

                toolkit = core_pipeline.Toolkit(engines=ModelCache(threads=settings.torch_threads),
                                                models_dir=settings.models_path, threads=settings.torch_threads)
        return cls(settings=settings, redis=redis, store=open_store(settings, redis), pipeline=pipeline,
                   toolkit=toolkit, limits=core_pipeline.Limits.from_settings(settings),
                   shutdown=ShutdownState(settings.worker_shutdown_grace_s),
                   admission=Admission(redis, settings, [q.key for q in make_queues(settings, redis)]))

    def preload(self) -> list[str]:
        """Load the models named in settings.preload_models now, before any job.

        Engine names go to the engine cache; other names are demucs models. A
        separation model whose weights are missing is logged, not fatal: stems jobs
        then fail with ModelMissingError, which names the fix.

        Returns:
            The names loaded.
        """
        if self.toolkit is None:
            return []
        from stemscribe.core.engines.registry import ENGINE_NAMES

        loaded = []
        for name in (n.strip() for n in self.settings.preload_models.split(",")):
            if not name or name == "auto":
                continue
            started = time.perf_counter()
            try:
                if name in ENGINE_NAMES:
                    self.toolkit.engines.preload([name])
                else:
                    self.toolkit.separator(name)
            except StemscribeError as exc:
                log.warning("model %s not loaded: %s", name, exc)
                continue
            loaded.append(name)
            log.info("model %s loaded in %.1f s", name, time.perf_counter() - started)
        return loaded


_runtime: WorkerRuntime | None = None


def install_runtime(runtime: WorkerRuntime | None) -> None:
    """Make runtime the one jobs in this process use (the worker does this before work)."""
    global _runtime
    _runtime = runtime


def current_runtime() -> WorkerRuntime:
    """The installed runtime, or one built from the environment (a plain `rq worker`)."""
    global _runtime
    if _runtime is None:
        from stemscribe.settings import load_settings

        _runtime = WorkerRuntime.create(load_settings())
        _runtime.preload()
    return _runtime
