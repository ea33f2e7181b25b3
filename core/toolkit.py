"""What a process loads once and the caps it applies to every job.

Exports: Limits, Toolkit.

A worker (or the CLI) makes one Toolkit at start-up and passes it to every
pipeline run, so transcription engines and separation models are loaded once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults
from .engines.registry import ModelCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Caps a deployment puts on one job. Defaults are core.defaults."""

    max_duration_s: float = defaults.MAX_DURATION_S
    max_duration_stems_s: float = defaults.MAX_DURATION_STEMS_S
    max_input_bytes: int = defaults.MAX_INPUT_BYTES
    max_files: int = defaults.MAX_MULTITRACK_FILES
    lilypond_timeout_s: float = defaults.LILYPOND_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        """Limits from a stemscribe.settings.Settings (duck-typed to keep core free of it)."""
        return cls(
            max_duration_s=float(settings.max_duration_s),
            max_duration_stems_s=float(settings.max_duration_stems_s),
            max_input_bytes=int(settings.max_input_bytes),
            lilypond_timeout_s=float(settings.lilypond_timeout_s),
        )


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
