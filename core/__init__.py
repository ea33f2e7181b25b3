"""stemscribe.core: the audio-to-score pipeline as a plain library.

No Redis, no chat, no environment variables, no printing, no process exits.
Modules: audio (decode), separate (demucs), engines (transcription engines),
rhythm / keys / quantize (analysis), arrange (parts and staves), score (music21),
engrave (LilyPond), pipeline (composition), options, instruments, notes, errors,
progress, defaults.
"""
