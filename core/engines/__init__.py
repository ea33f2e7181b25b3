"""Transcription engines behind one interface, loaded once per process.

Exports: TranscriptionEngine, ModelCache, choose_engine, ENGINE_NAMES.

Engines (each module imports its heavy libraries only when loaded):
  basic_pitch.BasicPitchEngine  any pitched instrument (onnxruntime, nmp.onnx)
  transkun.TranskunEngine       piano and other keyboards (torch, no torchaudio)
  fusion.FusionEngine           a full mix for a piano reduction: the two above, merged
  held.HeldToneEngine           organ: transkun's notes, held while basic-pitch hears them
  drums.DrumEngine              drum kit -> General MIDI percussion keys
Get them through registry.ModelCache, which loads each once and reuses it.
"""

from .base import TranscriptionEngine
from .registry import ENGINE_NAMES, ModelCache, choose_engine

__all__ = ["ENGINE_NAMES", "ModelCache", "TranscriptionEngine", "choose_engine"]
