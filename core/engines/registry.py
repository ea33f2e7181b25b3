"""Loading engines once per process, and picking the right engine for a part.

Exports: ModelCache, choose_engine, optional_engine, ENGINE_NAMES.

Models are heavy (transkun's checkpoint, the basic-pitch ONNX session); a worker
keeps one ModelCache for its lifetime and passes it to every job, so nothing is
reloaded per job (STYLE.md: "Models are loaded once per worker process"). The
"fusion" and "organ" engines load no model of their own: they run the cache's
basic-pitch and transkun instances, so preloading those two warms them.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Callable, Iterable

from ..errors import OptionsError
from ..instruments import Instrument
from .base import TranscriptionEngine

log = logging.getLogger(__name__)

#: Engine names accepted by ModelCache.get. The ``engine:`` option takes "auto",
#: "basic-pitch" and "transkun"; "fusion" (both merged) is auto's choice for piano
#: reductions of mixes, "organ" (transkun's notes held as long as basic-pitch hears
#: them) for held-tone keyboards, "drums" for drum parts, "mono" (a pitch tracker) for voices.
ENGINE_NAMES: tuple[str, ...] = ("basic-pitch", "transkun", "fusion", "organ", "drums", "mono")


def _load_basic_pitch(cache: ModelCache) -> TranscriptionEngine:
    from .basic_pitch import BasicPitchEngine

    return BasicPitchEngine(threads=cache.threads)


def _load_transkun(cache: ModelCache) -> TranscriptionEngine:
    from .transkun import TranskunEngine

    return TranskunEngine(threads=cache.threads)


def _two_model(module: str, class_name: str) -> Callable[[ModelCache], TranscriptionEngine]:
    """Loader of an engine made of the cache's basic-pitch and transkun (fusion.TwoModelEngine)."""

    def load(cache: ModelCache) -> TranscriptionEngine:
        engine_class = getattr(importlib.import_module(f".{module}", __package__), class_name)
        return engine_class(cache.get("basic-pitch"), cache.get("transkun"))

    return load


def _load_drums(cache: ModelCache) -> TranscriptionEngine:
    from .drums import DrumEngine

    return DrumEngine()


def _load_mono(cache: ModelCache) -> TranscriptionEngine:
    from .mono import MonoEngine

    return MonoEngine(threads=cache.threads)


_LOADERS: dict[str, Callable[[ModelCache], TranscriptionEngine]] = {
    "basic-pitch": _load_basic_pitch,
    "transkun": _load_transkun,
    "fusion": _two_model("fusion", "FusionEngine"),
    "organ": _two_model("held", "HeldToneEngine"),
    "drums": _load_drums,
    "mono": _load_mono,
}


class ModelCache:
    """Engines by name, each loaded on first use and then reused.

    Thread-safe: concurrent ``get`` calls for the same name load it once; loads of
    different engines do not wait for each other.

    Args:
        threads: CPU threads each engine may use (0 = the library default).
    """

    def __init__(self, *, threads: int = 0) -> None:
        self.threads = max(0, int(threads))
        self._engines: dict[str, TranscriptionEngine] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in _LOADERS}
        self.load_counts: dict[str, int] = {name: 0 for name in _LOADERS}

    def get(self, name: str) -> TranscriptionEngine:
        """The engine called ``name``, loading it on first use.

        Args:
            name: one of ENGINE_NAMES.

        Returns:
            The shared engine instance.

        Raises:
            KeyError: unknown engine name (a bug: option parsing validates names).
        """
        engine = self._engines.get(name)
        if engine is not None:
            return engine
        if name not in _LOADERS:
            raise KeyError(f"unknown transcription engine {name!r}; known: {', '.join(ENGINE_NAMES)}")
        with self._locks[name]:
            engine = self._engines.get(name)
            if engine is None:
                engine = _LOADERS[name](self)
                self.load_counts[name] += 1
                self._engines[name] = engine
        return engine

    def preload(self, names: Iterable[str]) -> None:
        """Load the named engines now (a worker calls this at start-up).

        Args:
            names: engine names; "auto" is ignored.

        Raises:
            KeyError: an unknown engine name.
        """
        for name in names:
            if name != "auto":
                self.get(name)

    def loaded(self) -> list[str]:
        """Names of the engines loaded so far."""
        return sorted(self._engines)


def optional_engine(models: object, name: str) -> TranscriptionEngine | None:
    """``models.get(name)``, or None when that engine's package is not installed (the pitch tracker's torchcrepe).

    Callers fall back to basic-pitch and `stemscribe doctor` reports what is missing.
    """
    try:
        return models.get(name)  # type: ignore[attr-defined]
    except ImportError as exc:
        log.warning("%s engine unavailable (%s); basic-pitch stands in", name, exc)
        return None


def choose_engine(engine_option: str, instrument: Instrument | None, *,
                  polyphonic_piano_like: bool = False, mix_reduction: bool = False) -> str:
    """Pick the engine for one part.

    Args:
        engine_option: the user's ``engine:`` value: "auto", "basic-pitch" or "transkun".
        instrument: the part's instrument, when known.
        polyphonic_piano_like: the caller judged the material to be piano-like
            (e.g. a solo keyboard recording).
        mix_reduction: the part is a whole mix of several instruments reduced to
            piano; auto then merges basic-pitch and transkun ("fusion").

    Returns:
        An engine name from ENGINE_NAMES. Drums always get "drums", whatever was asked.

    Raises:
        OptionsError: an engine word that does not exist.
    """
    option = (engine_option or "auto").strip().lower()
    if instrument is not None and instrument.family == "drums":
        return "drums"
    if option in ("basic-pitch", "transkun"):
        return option
    if option != "auto":
        raise OptionsError(f"I don't know the transcription engine '{engine_option}'.",
                           hint="Use engine:auto, engine:basic-pitch or engine:transkun.")
    if mix_reduction:
        return "fusion"
    if instrument is not None and instrument.family == "voice":
        return "mono"
    if instrument is not None and instrument.held_tone:
        return "organ"
    if polyphonic_piano_like or (instrument is not None and instrument.family == "keyboard"):
        return "transkun"
    return "basic-pitch"
