"""Named defaults and limits of core, each with its unit in the name.

Exports: the constants below. Settings (stemscribe.settings) may override the
limits per deployment; core functions take them as arguments.
"""

#: Sample rate every stage receives unless it resamples itself.
ANALYSIS_SAMPLE_RATE_HZ = 22050
#: Longest recording accepted by default (solo, piano, multitrack).
MAX_DURATION_S = 600.0
#: Longest recording accepted for stem separation by default.
MAX_DURATION_STEMS_S = 600.0
#: Largest input file accepted by default.
MAX_INPUT_BYTES = 100 * 1024 * 1024
#: Shortest recording worth transcribing.
MIN_DURATION_S = 0.5
#: A recording whose peak stays under this (dBFS) is treated as silent.
SILENCE_PEAK_DBFS = -60.0
#: Most input files in one multitrack job.
MAX_MULTITRACK_FILES = 8
#: Wall-clock limit for one LilyPond run.
LILYPOND_TIMEOUT_S = 120.0
#: Address-space limit for LilyPond (bytes).
LILYPOND_MEMORY_BYTES = 2 * 1024 ** 3
#: Resolution of the preview pictures (preview.png, preview-2.png, ...).
PREVIEW_DPI = 150
#: Most pages given a preview picture; a longer score's later pages are in the PDF only.
MAX_PREVIEW_PAGES = 10
#: Wall-clock limit for rendering all the preview pages with pdftoppm.
PREVIEW_TIMEOUT_S = 60.0
#: Most pages engraved in the PDF before we stop and warn.
MAX_SCORE_PAGES = 40
#: Default tempo used when beat tracking finds nothing usable.
FALLBACK_TEMPO_BPM = 100.0
#: Wall-clock limit for reading a file's header with ffprobe.
FFMPEG_PROBE_TIMEOUT_S = 20.0
#: Wall-clock limit for decoding (or encoding) one file with ffmpeg.
FFMPEG_DECODE_TIMEOUT_S = 180.0
#: Length of the pieces a long recording is separated in (bounds memory; seconds).
SEPARATION_CHUNK_S = 40.0
#: Overlap of neighbouring separation pieces, cross-faded so joins cannot click (seconds).
SEPARATION_CROSSFADE_S = 2.0
#: A stem this far (dB) below the mix's energy is treated as silent and dropped.
STEM_SILENT_DB = -40.0
