"""Beat, downbeat, tempo-map and meter analysis of performed notes (and audio).

Exports: BeatGrid, track_beats, onset_events, polyphony, bass_on_the_beat, SIMPLE_METERS, COMPOUND_METERS.

The notes carry most of the rhythm: an onset envelope is built from note
onsets (weighted by loudness, length and chord size) and, when audio is given,
from librosa's spectral-flux onset strength. A dynamic-programming beat tracker
(in the spirit of Ellis 2007, but with a loose tempo-continuity penalty so that
rubato and ritardandi are followed) finds the pulse; each beat is then pulled
onto the nearest strong note onset. meter.py decides which pulse level is the
notated beat, how beats divide (2 or 3) and group into bars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..notes import Note

#: Frames per second of the onset envelope.
ENVELOPE_FPS = 100
#: Onsets closer than this are one rhythmic event (a strummed chord, a humanized chord).
EVENT_MERGE_S = 0.035
#: Range of beat periods the tracker considers.
MIN_PERIOD_S = 60.0 / 240.0
MAX_PERIOD_S = 60.0 / 30.0
#: Centre of the tempo prior (beats per minute) and its width in octaves.
PRIOR_BPM = 105.0
PRIOR_OCTAVES = 0.9
#: How strongly the tracker keeps consecutive beat periods equal (lower follows rubato).
TEMPO_TIGHTNESS = 100.0
#: Share of the tightness that ties every beat to the global period (against drifting an octave).
GLOBAL_TEMPO_WEIGHT = 0.25

#: The pulse moves half a beat when the pitched bass onsets fall between the tracked beats
#: this many times more (by salience) than on them: the tracker locked onto the chords of a
#: "boom-chick" accompaniment (reels, polkas, marches, stride) instead of its bass.
BASS_OFFBEAT_RATIO = 3.0
#: ... with at least this many bass onsets between the beats ...
BASS_OFFBEAT_MIN_EVENTS = 8
#: ... in a texture with chords (share of onsets that are chords); a single line has no bass.
BASS_MIN_POLYPHONY = 0.3

SIMPLE_METERS = ("2/4", "3/4", "4/4")
COMPOUND_METERS = ("6/8", "9/8", "12/8")


@dataclass
class OnsetEvent:
    """Notes that start together: time (s), salience and lowest pitch."""

    time_s: float
    weight: float
    low_pitch: int
    pitches: list[int] = field(default_factory=list)


@dataclass
class BeatGrid:
    """The notated pulse of a performance.

    beats_s: times (s) of every notated beat from the start of the first bar
        (pickup included) to past the last note, extrapolated at the ends.
    beat_quarters: quarter notes per notated beat (1.0 simple, 1.5 compound).
    beats_per_bar: notated beats per bar (2 in 6/8).
    time_signature: "6/8".
    pickup_beats: beats before the first full bar (0 when the piece starts on a downbeat).
    """

    beats_s: np.ndarray
    beat_quarters: float
    beats_per_bar: int
    time_signature: str
    pickup_beats: int = 0

    @property
    def bar_quarters(self) -> float:
        return self.beat_quarters * self.beats_per_bar

    @property
    def pickup_quarters(self) -> float:
        return self.pickup_beats * self.beat_quarters

    def beat_position(self, times_s: np.ndarray | float) -> np.ndarray:
        """Fractional beat index of each time (0 = the first beat of the grid)."""
        times = np.atleast_1d(np.asarray(times_s, dtype=float))
        beats = self.beats_s
        idx = np.arange(len(beats), dtype=float)
        pos = np.interp(times, beats, idx)
        first_period = beats[1] - beats[0]
        last_period = beats[-1] - beats[-2]
        before = times < beats[0]
        after = times > beats[-1]
        pos[before] = (times[before] - beats[0]) / first_period
        pos[after] = len(beats) - 1 + (times[after] - beats[-1]) / last_period
        return pos

    def tempo_curve_bpm(self) -> np.ndarray:
        """Quarter-note tempo of each beat interval."""
        periods = np.diff(self.beats_s)
        return 60.0 / periods * self.beat_quarters


def onset_events(notes: list[Note]) -> list[OnsetEvent]:
    """Group note onsets into rhythmic events with a salience weight.

    Longer, louder, lower and fuller events weigh more: they are likelier to fall
    on strong beats, which meter detection relies on.
    """
    if not notes:
        return []
    ordered = sorted(notes, key=lambda n: n.start_s)
    groups: list[list[Note]] = [[ordered[0]]]
    for note in ordered[1:]:
        if note.start_s - groups[-1][0].start_s <= EVENT_MERGE_S:
            groups[-1].append(note)
        else:
            groups.append([note])
    events = []
    for group in groups:
        time = float(np.median([n.start_s for n in group]))
        weight = 0.0
        for n in group:
            length = min(max(n.end_s - n.start_s, 0.03), 1.5)
            weight += (n.velocity / 100.0) * (0.4 + length)
        weight = weight ** 0.7
        pitches = sorted(n.pitch for n in group)
        events.append(OnsetEvent(time, weight, pitches[0], pitches))
    return events


def _gauss_kernel(sigma_frames: float) -> np.ndarray:
    radius = int(3 * sigma_frames) + 1
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma_frames) ** 2)
    return k / k.max()


def onset_envelope(events: list[OnsetEvent], audio_mono: np.ndarray | None, sample_rate: int,
                   duration_s: float) -> np.ndarray:
    """Onset strength at ENVELOPE_FPS from note events and (optionally) audio."""
    n_frames = int(np.ceil(duration_s * ENVELOPE_FPS)) + 8
    env = np.zeros(n_frames)
    for ev in events:
        i = int(round(ev.time_s * ENVELOPE_FPS))
        if 0 <= i < n_frames:
            env[i] += ev.weight
    env = np.convolve(env, _gauss_kernel(1.5), mode="same")
    if audio_mono is not None and len(audio_mono) > sample_rate // 4:
        audio_env = _audio_onset_strength(audio_mono, sample_rate, n_frames)
        if env.max() > 0:
            env = env / (env.mean() + 1e-9) + 0.35 * audio_env / (audio_env.mean() + 1e-9)
        else:
            env = audio_env
    return env


def _audio_onset_strength(audio_mono: np.ndarray, sample_rate: int, n_frames: int) -> np.ndarray:
    import librosa

    y = np.asarray(audio_mono, dtype=np.float32)
    target_sr = 22050
    if sample_rate != target_sr:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=target_sr)
    hop = 256
    strength = librosa.onset.onset_strength(y=y, sr=target_sr, hop_length=hop)
    times = np.arange(len(strength)) * hop / target_sr
    grid = np.arange(n_frames) / ENVELOPE_FPS
    return np.interp(grid, times, strength, left=0.0, right=0.0)


def period_candidates(env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat periods (frames) and their autocorrelation-with-prior strengths, best first."""
    centred = env - env.mean()
    ac = np.correlate(centred, centred, mode="full")[len(centred) - 1:]
    ac = ac / (ac[0] + 1e-9)
    lo = int(MIN_PERIOD_S * ENVELOPE_FPS)
    hi = min(int(MAX_PERIOD_S * ENVELOPE_FPS), len(ac) // 2)
    if hi <= lo + 2:
        return np.array([ENVELOPE_FPS * 60.0 / PRIOR_BPM]), np.array([1.0])
    lags = np.arange(lo, hi)
    # A beat period also explains its multiples: reward lags whose 2x and 4x are strong.
    score = ac[lags].copy()
    for mult, w in ((2, 0.5), (3, 0.25), (4, 0.25)):
        idx = lags * mult
        ok = idx < len(ac)
        score[ok] += w * ac[idx[ok]]
    bpm = 60.0 * ENVELOPE_FPS / lags
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    score = np.maximum(score, 0) * prior
    peaks = [i for i in range(1, len(score) - 1) if score[i] >= score[i - 1] and score[i] >= score[i + 1]]
    if not peaks:
        peaks = [int(np.argmax(score))]
    peaks.sort(key=lambda i: -score[i])
    refined = []
    for i in peaks:
        # Parabolic interpolation for a sub-frame period.
        if 0 < i < len(score) - 1:
            a, b, c = score[i - 1], score[i], score[i + 1]
            denom = a - 2 * b + c
            off = 0.5 * (a - c) / denom if denom != 0 else 0.0
        else:
            off = 0.0
        refined.append(lags[i] + float(np.clip(off, -0.5, 0.5)))
    return np.array(refined), score[peaks]


def dp_beats(env: np.ndarray, period: float, tightness: float = TEMPO_TIGHTNESS) -> np.ndarray:
    """Beat frames by dynamic programming: strong envelope, smoothly varying period.

    Unlike a fixed-tempo tracker the penalty compares each interval with the
    previous interval as well as with the global period, so gradual tempo changes
    cost little.
    """
    n = len(env)
    norm = env / (env.std() + 1e-9)
    score = norm.copy()
    back = np.full(n, -1)
    prev_interval = np.full(n, period)
    lo, hi = int(round(period * 0.6)), int(round(period * 1.6)) + 1
    for t in range(lo, n):
        taus = np.arange(max(0, t - hi), t - lo + 1)
        if len(taus) == 0:
            continue
        intervals = t - taus
        glob = np.log(intervals / period) ** 2
        local = np.log(intervals / prev_interval[taus]) ** 2
        cand = score[taus] - tightness * (GLOBAL_TEMPO_WEIGHT * glob + local)
        j = int(np.argmax(cand))
        if cand[j] > 0 or score[taus[j]] > 0:
            score[t] = norm[t] + cand[j]
            back[t] = taus[j]
            prev_interval[t] = intervals[j]
    # End at the best-scoring frame within the last period.
    tail = np.arange(max(0, n - int(period * 1.5)), n)
    t = int(tail[np.argmax(score[tail])])
    path = [t]
    while back[path[-1]] >= 0:
        path.append(int(back[path[-1]]))
    return np.array(path[::-1], dtype=float)


def snap_to_events(beats_s: np.ndarray, events: list[OnsetEvent]) -> np.ndarray:
    """Move each beat onto the strongest nearby note onset, when there is one."""
    if not events or len(beats_s) < 3:
        return beats_s
    times = np.array([e.time_s for e in events])
    weights = np.array([e.weight for e in events])
    out = beats_s.copy()
    periods = np.diff(beats_s)
    for i, b in enumerate(beats_s):
        period = periods[min(i, len(periods) - 1)]
        window = 0.15 * period
        near = np.where(np.abs(times - b) <= window)[0]
        if len(near):
            closeness = 1.0 - np.abs(times[near] - b) / window
            j = near[np.argmax(weights[near] * (0.5 + closeness))]
            out[i] = times[j]
    # Keep beats strictly increasing.
    for i in range(1, len(out)):
        if out[i] <= out[i - 1] + 0.05 * periods[min(i - 1, len(periods) - 1)]:
            out[i] = beats_s[i]
    return out


def polyphony(events: list[OnsetEvent]) -> float:
    """Share of onset events that are chords (0 for a melody, near 1 for a chorale)."""
    if not events:
        return 0.0
    return float(np.mean([len(set(e.pitches)) > 1 for e in events]))


def bass_on_the_beat(beats_s: np.ndarray, pitched_events: list[OnsetEvent]) -> np.ndarray:
    """The beats, moved half a beat when the bass plays between them.

    In a "boom-chick" accompaniment the chords on the off-beats are often the
    loudest, sharpest onsets, and a beat tracker locks onto them; every bass note
    then falls halfway between two beats, the score is written an eighth off and
    the bass line is a chain of syncopations. The bass (events whose lowest note
    is in the lowest 35 % of the piece's) is checked: when its salience halfway
    between the beats is BASS_OFFBEAT_RATIO times that on the beats, the beats
    move to the midpoints. A single line, or too few bass onsets, is left alone.

    Args:
        beats_s: tracked beat times.
        pitched_events: onset events of the pitched notes (no drums).
    """
    if len(beats_s) < 4 or not pitched_events:
        return beats_s
    if polyphony(pitched_events) < BASS_MIN_POLYPHONY:
        return beats_s
    lows = np.array([e.low_pitch for e in pitched_events])
    bass = lows <= np.percentile(lows, 35)
    pos = np.interp([e.time_s for e in pitched_events], beats_s, np.arange(len(beats_s)))
    frac = pos - np.floor(pos)
    weight = np.array([e.weight for e in pitched_events])
    on = bass & ((frac < 0.15) | (frac > 0.85))
    half = bass & (np.abs(frac - 0.5) < 0.15)
    if half.sum() < BASS_OFFBEAT_MIN_EVENTS or weight[half].sum() < BASS_OFFBEAT_RATIO * weight[on].sum():
        return beats_s
    return 0.5 * (beats_s[:-1] + beats_s[1:])


def smooth_beats(beats_s: np.ndarray, passes: int = 1) -> np.ndarray:
    """Light smoothing of beat times (human timing noise), keeping tempo trends."""
    out = beats_s.copy()
    for _ in range(passes):
        if len(out) < 5:
            break
        mid = 0.5 * (out[:-2] + out[2:])
        out[1:-1] = 0.5 * out[1:-1] + 0.5 * mid
    return out


def extend_beats(beats_s: np.ndarray, start_s: float, end_s: float, count_window: int = 4) -> np.ndarray:
    """Extrapolate beats before start_s and after end_s with the local period."""
    beats = list(beats_s)
    head = float(np.median(np.diff(beats_s[:count_window + 1]))) if len(beats_s) > 1 else 0.5
    tail = float(np.median(np.diff(beats_s[-count_window - 1:]))) if len(beats_s) > 1 else 0.5
    while beats[0] > start_s - 1e-6:
        beats.insert(0, beats[0] - head)
    while beats[-1] < end_s + 1e-6:
        beats.append(beats[-1] + tail)
    return np.array(beats)


def track_beats(notes: list[Note], audio_mono: np.ndarray | None, sample_rate: int,
                *, tempo_hint_bpm: float | None = None,
                pitched: list[Note] | None = None) -> tuple[np.ndarray, list[OnsetEvent]]:
    """Beat times (s) of the most plausible pulse, covering every note.

    Args:
        notes: all pitched and drum notes of the recording.
        audio_mono: the recording, or None to use the notes alone.
        sample_rate: of audio_mono.
        tempo_hint_bpm: a known pulse rate (the user's tempo), or None to detect.
        pitched: the pitched notes alone (drums left out), for the bass check
            (bass_on_the_beat); None skips it.

    Returns:
        (beat times in seconds, onset events used).
    """
    events = onset_events(notes)
    end_s = max((n.end_s for n in notes), default=0.0)
    if audio_mono is not None:
        end_s = max(end_s, len(audio_mono) / sample_rate)
    env = onset_envelope(events, audio_mono, sample_rate, end_s)
    if tempo_hint_bpm:
        period = ENVELOPE_FPS * 60.0 / tempo_hint_bpm
    else:
        periods, _ = period_candidates(env)
        period = float(periods[0])
    frames = dp_beats(env, period)
    beats = frames / ENVELOPE_FPS
    first = min((e.time_s for e in events), default=0.0)
    last = max((n.start_s for n in notes), default=end_s)
    # Trim beats in leading/trailing silence, then extrapolate over it.
    keep = (beats >= first - 0.3 * period / ENVELOPE_FPS) & (beats <= last + 0.3 * period / ENVELOPE_FPS)
    beats = beats[keep] if keep.sum() >= 2 else beats
    if len(beats) < 2:
        step = period / ENVELOPE_FPS
        beats = np.arange(first, max(last, first + step) + step, step)
    beats = snap_to_events(beats, events)
    beats = smooth_beats(beats)
    if pitched:
        beats = bass_on_the_beat(beats, onset_events(pitched))
    notes_end = max((n.end_s for n in notes), default=last)
    step = float(np.median(np.diff(beats)))
    beats = extend_beats(beats, first - 2 * step, notes_end + step)
    return beats, events
