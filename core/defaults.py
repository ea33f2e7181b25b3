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
#: A recording may run this much over a duration cap (containers round their lengths).
DURATION_GRACE_S = 0.5
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
#: One megabyte as sizes are shown to users ("20 MB"), the binary one that chat apps and Telegram's limits use.
MEGABYTE_BYTES = 1024 * 1024
#: Recordings up to this long (and not separated) go to the priority queue.
SHORT_CLIP_S = 60.0
#: Fixed part of every job's timeout: model warm-up, notation, LilyPond (which adds its own limit).
JOB_TIMEOUT_BASE_S = 240.0
#: Job timeout added per second of audio for a score without separation.
JOB_TIMEOUT_PER_AUDIO_S = 4.0
#: Job timeout added per second of audio when demucs may separate stems (CPU speed).
JOB_TIMEOUT_PER_AUDIO_STEMS_S = 15.0
#: No job may run longer than this, whatever its length.
JOB_TIMEOUT_MAX_S = 4 * 3600.0
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

# ---------------------------------------------------------------- tablature (core/notation/tab.py)
#: Highest fret of a guitar neck (frets).
GUITAR_MAX_FRET = 22
#: Highest fret of a bass neck (frets).
BASS_MAX_FRET = 21
#: Most capo position capo:N accepts (frets).
TAB_MAX_CAPO_FRET = 12
#: A chord shape's fretted notes lie within this many frets (index finger to little finger).
TAB_SHAPE_SPAN_FRETS = 4
#: Fretting fingers of one hand (the thumb frets no tab note).
TAB_FINGERS = 4
#: Cost per fret the hand sits above first position (low material in low positions).
TAB_POSITION_COST = 0.12
#: Bonus for an open string while the hand is in a low position (cost units).
TAB_OPEN_LOW_BONUS = 0.4
#: Highest hand position (fret) where open strings get the bonus.
TAB_OPEN_POSITION_MAX = 4
#: Frets above this on the thick strings cost TAB_THICK_HIGH_COST each (scaled by string thickness).
TAB_THICK_HIGH_FRET = 7
#: Cost per fret above TAB_THICK_HIGH_FRET on the lowest string (0 on the highest).
TAB_THICK_HIGH_COST = 0.3
#: Cost per fret of stretch inside a chord shape.
TAB_SPAN_COST = 0.2
#: Cost per fretting finger a chord shape needs.
TAB_FINGER_COST = 0.1
#: Cost per pair of chord notes on crossed strings (the lower note on the higher string).
TAB_CROSSING_COST = 0.6
#: Cost per muted string inside a chord of three or more notes (hard to strum).
TAB_MUTED_INNER_COST = 1.5
#: Cost of giving up one chord note no hand can hold with the rest (times its importance).
TAB_DROP_COST = 8.0
#: Fixed cost of any shift of hand position.
TAB_SHIFT_COST = 1.0
#: Cost per fret of a shift of hand position.
TAB_SHIFT_PER_FRET_COST = 0.25
#: Shifts after a phrase boundary (a rest or a long note) cost this fraction.
TAB_PHRASE_SHIFT_FACTOR = 0.3
#: Shifts while only open strings ring cost this fraction.
TAB_OPEN_SHIFT_FACTOR = 0.5
#: A rest at least this long (quarters) ends a phrase.
TAB_PHRASE_REST_Q = 0.5
#: A note at least this long (quarters) ends a phrase.
TAB_PHRASE_LONG_NOTE_Q = 2.0
#: Cost of playing a repeated pitch at another string and fret than just before.
TAB_REPEAT_MOVE_COST = 0.5
#: Cost of a new note on a string that still rings with a held note.
TAB_HELD_CLASH_COST = 20.0
#: Cost of a new note the hand cannot reach while holding a sustained note.
TAB_HELD_STRETCH_COST = 3.0
#: Most candidate hand states kept per note or chord in the fingering search.
TAB_MAX_STATES = 120

#: Sample rate of the mix a job keeps for corrections (core.revise): the rate beat tracking reads audio at.
KEPT_SAMPLE_RATE_HZ = 22050
#: Most sharps or flats a transposed key signature may have before it is respelled enharmonically.
TRANSPOSE_MAX_KEY_ACCIDENTALS = 6
