"""What a process loads once and the caps it applies to every job.

Exports: Toolkit; re-exports Limits (core.plan).

A worker (or the CLI) makes one Toolkit at start-up and passes it to every
pipeline run, so transcription engines and separation models are loaded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines.registry import ModelCache
from .plan import Limits

log = logging.getLogger(__name__)


@dataclass
class Toolkit:
    """Everything heavy a process loads once and reuses across jobs.

    engines: transcription engines (ModelCache).
    models_dir: where demucs weights live (None: separation unavailable).
    threads: CPU threads for torch/onnxruntime (0 = library default).
    """

    engines: ModelCache = field(default_factory=ModelCache)
    models_dir: Path | None = None
    threads: int = 0
    _separators: dict[str, Any] = field(default_factory=dict)
    _model_registry: Any = None

    def _registry(self) -> Any:
        from .models import ModelRegistry

        if self._model_registry is None:
            self._model_registry = ModelRegistry(self.models_dir or _default_models_dir())
        return self._model_registry

    def separator(self, name: str) -> Any:
        """A Separator for demucs model ``name``, loaded on first use and kept.

        Raises:
            ModelMissingError: the weights are not installed; the hint names the fix.
        """
        if name not in self._separators:
            from .separate import Separator

            self._separators[name] = Separator(self._registry().load(name), threads=self.threads)
        return self._separators[name]

    def require_separation(self, name: str) -> None:
        """Cheap check (reads no weights) that model ``name`` is installed.

        Raises:
            ModelMissingError: not installed; the message names `stemscribe models fetch NAME`.
        """
        from .errors import ModelMissingError

        if name in self._separators:
            return
        if not self._registry().status(name).present:
            try:
                self._registry().load(name)  # raises the registry's own, precise error
            except ModelMissingError:
                raise
            raise ModelMissingError(f"The separation model '{name}' could not be found.")  # pragma: no cover

    def separation_available(self, name: str = "htdemucs") -> bool:
        """True when the weights for ``name`` are installed (cheap; loads nothing)."""
        return name in self._separators or self._registry().status(name).present


def _default_models_dir() -> Path:
    return Path.home() / ".cache" / "stemscribe" / "models"


__all__ = ["Limits", "Toolkit"]
