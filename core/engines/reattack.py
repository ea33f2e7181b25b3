"""Repeated notes of one pitch: split re-attacks a decoder merged, merge fragments it split.

Exports: RepeatParams, HarmonicSpectrum, refine_repeats.

basic-pitch's decoder keeps a pitch sounding while its frame activation stays
high, so a melody instrument playing the same pitch twice, detached, comes out
as one long note; the opposite error, one held note cut in two where the onset
activation wobbles over its threshold, happens too. Both are decided here from
the audio at that pitch only (so the evidence survives in a mix):

* the note's harmonic envelope: the summed STFT magnitude at its first few
  harmonics, in dB. A re-attack dips and rises again.
* the note's complex-domain novelty (Bello et al. 2004) at those harmonics:
  how far each bin's complex value strays from the one predicted by steady
  magnitude and phase advance, relative to its magnitude. A new attack restarts
  the tone with an unrelated phase; vibrato and tremolo (which dip the envelope
  too, periodically) keep the phase track and barely move it. Measured over
  the dev set's candidate dips, this separates re-attacks from other dips best
  of the features tried (ROC area 0.87 on single instruments, the envelope
  dip alone 0.81).
* the model's onset activation at that pitch.

One STFT serves every note; each note reads only its own frames and bins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..notes import Note


@dataclass(frozen=True, slots=True)
class RepeatParams:
    """Thresholds for refine_repeats; defaults measured on the dev set.

    Dev-set note F1 (mir_eval, 50 ms onsets; tests/helpers/engines_eval.py) over
    17 single-instrument parts / 7 full mixes, basic-pitch alone 0.876 / 0.707:
    merging alone +0.003 / +0.022, splitting alone +0.016 / +0.009, both +0.023 /
    +0.033; no part loses more than 0.008, piano and guitar parts are unchanged.
    The defaults sit on a plateau: split novelty 3..3.5, split dip 2.5..4 dB,
    merge onset 0.8..0.9 and merge dip 1.5..3 dB all score within 0.003 of them
    (novelty 2.5 starts splitting a flute's tremolo: -0.03 on that part).

    n_harmonics: harmonics summed per note (3..6 measure alike; 8 reaches into
        the noise of high notes).
    split_dip_db: the envelope must dip at least this much below the lower of its
        maxima within ``window_s`` on either side.
    split_novelty: the complex-domain novelty near the dip must reach this many
        times its median over the note.
    split_onset_rise: the onset activation near the dip must exceed its median
        over the note by this much (it does at re-attacks, if weakly).
    split_lead_s: the new note starts this long before the dip's lowest frame
        (the true onsets sit a median 20 ms before it).
    edge_s: dips closer than this to a note's ends are its own attack and release.
    min_piece_s: shortest note a split may leave.
    merge_gap_s: a note starting within this of the end of the previous note of
        its pitch (and not within this of its start) is a candidate for merging.
    merge_dip_db / merge_onset: merge when the envelope dips less than this at
        the join and the onset activation there stays below this (decoded notes
        need 0.6..0.7 to start; spurious fragments barely pass it).
    window_s: how far either side of a dip its maxima are looked for.
    """

    n_harmonics: int = 5
    split_dip_db: float = 3.0
    split_novelty: float = 3.0
    split_onset_rise: float = 0.05
    split_lead_s: float = 0.023
    edge_s: float = 0.046
    min_piece_s: float = 0.058
    merge_gap_s: float = 0.03
    merge_dip_db: float = 2.0
    merge_onset: float = 0.8
    window_s: float = 0.07


#: Frames per block of the STFT (bounds its working memory to ~35 MB at n_fft 1024).
_STFT_BLOCK_FRAMES = 4096


class HarmonicSpectrum:
    """One complex STFT of a recording, read per note at its harmonics.

    Frame i is centred at ``i * hop / sample_rate`` seconds, the same grid as
    basic-pitch's activations when built at its rate and hop.

    Args:
        samples: float32 mono audio.
        sample_rate: its rate in Hz.
        hop: samples between frames.
        n_fft: window length in samples (1024 at 22.05 kHz resolves the
            harmonics of a cello's low C and follows re-attacks 10-30 ms apart).
    """

    def __init__(self, samples: np.ndarray, sample_rate: int, *, hop: int = 256, n_fft: int = 1024) -> None:
        import scipy.fft  # local import, as numpy's own FFT is several times slower here

        x = np.asarray(samples, dtype=np.float32)
        self.sample_rate = int(sample_rate)
        self.hop = int(hop)
        self.n_fft = int(n_fft)
        self.n_frames = int(np.ceil(len(x) / hop)) if len(x) else 0
        padded = np.zeros(self.n_fft + self.n_frames * hop, dtype=np.float32)
        padded[self.n_fft // 2:self.n_fft // 2 + len(x)] = x
        self.spec = np.zeros((self.n_frames, self.n_fft // 2 + 1), dtype=np.complex64)
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[::hop][:self.n_frames]
        window = np.hanning(self.n_fft).astype(np.float32)
        # In blocks, so that a 10-minute recording needs the spectrum (~210 MB) and
        # little more, not a windowed copy of every frame besides.
        for b in range(0, self.n_frames, _STFT_BLOCK_FRAMES):
            self.spec[b:b + _STFT_BLOCK_FRAMES] = scipy.fft.rfft(frames[b:b + _STFT_BLOCK_FRAMES] * window, axis=1)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop

    def harmonic_bins(self, pitch: int, n_harmonics: int) -> np.ndarray:
        """STFT bins nearest to the first ``n_harmonics`` harmonics of ``pitch`` below Nyquist."""
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        bins = np.rint(f0 * np.arange(1, n_harmonics + 1) * self.n_fft / self.sample_rate).astype(int)
        return bins[(bins >= 1) & (bins < self.n_fft // 2 - 1)]

    def evidence(self, pitch: int, start: int, stop: int, n_harmonics: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Harmonic envelope (dB) and complex-domain novelty of ``pitch`` over frames [start, stop).

        The envelope takes each harmonic's largest magnitude among its bin and
        the two beside it (so vibrato does not walk the partial out of view);
        the novelty compares each harmonic bin with its prediction from the two
        frames before and is relative to the summed magnitude.

        Returns:
            (envelope_db, novelty), each of length stop - start, or None when no
            harmonic of ``pitch`` lies below Nyquist.
        """
        bins = self.harmonic_bins(pitch, n_harmonics)
        if not bins.size:
            return None
        lo = max(0, start - 2)
        x = self.spec[lo:stop][:, bins].T                                   # (harmonics, frames)
        mag = np.abs(x)
        near = np.abs(self.spec[lo:stop][:, np.concatenate([bins - 1, bins, bins + 1])])
        peak = near.reshape(len(near), 3, len(bins)).max(axis=1).sum(axis=1)
        env = 20 * np.log10(peak + 1e-6)
        phase = np.angle(x)
        pred = np.zeros_like(x)
        pred[:, 2:] = mag[:, 1:-1] * np.exp(1j * (2 * phase[:, 1:-1] - phase[:, :-2]))
        dev = np.abs(x - pred)
        dev[:, :2] = 0.0
        novelty = dev.sum(axis=0) / (mag.sum(axis=0) + 1e-9)
        cut = start - lo
        return env[cut:].astype(np.float32), novelty[cut:].astype(np.float32)


def refine_repeats(notes: list[Note], spectrum: HarmonicSpectrum, onsets: np.ndarray, *,
                   lowest_pitch: int = 21, params: RepeatParams | None = None) -> list[Note]:
    """Merge same-pitch fragments with no re-attack between them, then split re-attacked notes.

    Args:
        notes: decoded notes, sorted by start, times on ``spectrum``'s frame grid.
        spectrum: the recording's HarmonicSpectrum.
        onsets: onset activations, shape (frames, pitches), on the same grid.
        lowest_pitch: MIDI pitch of column 0 of ``onsets``.
        params: thresholds (RepeatParams() by default).

    Returns:
        Notes sorted by start, then pitch, then end.
    """
    p = params or RepeatParams()
    if not notes or spectrum.n_frames < 8:
        return list(notes)
    merged = _merge_fragments(notes, spectrum, onsets, lowest_pitch, p)
    out: list[Note] = []
    for n in merged:
        out.extend(_split_note(n, spectrum, onsets, lowest_pitch, p))
    return sorted(out, key=lambda n: (n.start_s, n.pitch, n.end_s))


def _onset_track(onsets: np.ndarray, pitch: int, lowest_pitch: int) -> np.ndarray | None:
    """Column of ``onsets`` for ``pitch``, or None outside the model's range."""
    col = pitch - lowest_pitch
    return onsets[:, col] if 0 <= col < onsets.shape[1] else None


def _merge_fragments(notes: list[Note], spectrum: HarmonicSpectrum, onsets: np.ndarray, lowest_pitch: int,
                     p: RepeatParams) -> list[Note]:
    """Join each note to the previous one of its pitch when the join shows no re-attack.

    A join is a re-attack when the onset activation there reaches
    ``merge_onset`` or the harmonic envelope dips by ``merge_dip_db`` or more.
    """
    fps = spectrum.frame_rate
    win = max(2, int(round(p.window_s * fps)))
    n_frames = min(spectrum.n_frames, onsets.shape[0])
    last: dict[int, int] = {}          # pitch -> index in out of its latest note
    out: list[Note] = []
    for n in notes:
        i = last.get(n.pitch)
        prev = out[i] if i is not None else None
        if (prev is not None and n.start_s - prev.end_s < p.merge_gap_s
                and n.start_s - prev.start_s > p.merge_gap_s):
            if not _is_reattack_join(prev, n, spectrum, onsets, lowest_pitch, p, fps, win, n_frames):
                out[i] = replace(prev, end_s=max(prev.end_s, n.end_s), velocity=max(prev.velocity, n.velocity))
                continue
        last[n.pitch] = len(out)
        out.append(n)
    return out


def _is_reattack_join(a: Note, b: Note, spectrum: HarmonicSpectrum, onsets: np.ndarray, lowest_pitch: int,
                      p: RepeatParams, fps: float, win: int, n_frames: int) -> bool:
    """Whether same-pitch note ``b`` (starting where ``a`` ends) is a new attack."""
    track = _onset_track(onsets, a.pitch, lowest_pitch)
    s, j, e = int(round(a.start_s * fps)), int(round(b.start_s * fps)), min(n_frames, int(round(b.end_s * fps)))
    lo, hi = max(s, j - win), min(e, j + win + 4)
    w0, w1 = max(s, j - 2), min(e, j + 5)
    if track is None or lo >= w0 or hi <= w1 or w1 <= w0 + 1:
        return True                     # too little context to judge: keep the decoder's call
    if float(track[max(0, j - 3):j + 4].max()) >= p.merge_onset:
        return True
    ev = spectrum.evidence(a.pitch, lo, hi, p.n_harmonics)
    if ev is None:
        return True
    env = ev[0]
    t = w0 - lo + int(np.argmin(env[w0 - lo:w1 - lo]))
    dip = min(env[:t].max(), env[t + 1:].max()) - env[t]
    return bool(dip >= p.merge_dip_db)


def _split_note(n: Note, spectrum: HarmonicSpectrum, onsets: np.ndarray, lowest_pitch: int,
                p: RepeatParams) -> list[Note]:
    """``n`` cut at each re-attack found inside it (``[n]`` when there is none)."""
    fps = spectrum.frame_rate
    edge = max(2, int(round(p.edge_s * fps)))
    min_piece = max(1, int(round(p.min_piece_s * fps)))
    s = int(round(n.start_s * fps))
    e = min(int(round(n.end_s * fps)), spectrum.n_frames, onsets.shape[0])
    track = _onset_track(onsets, n.pitch, lowest_pitch)
    if track is None or e - s < 2 * max(edge, min_piece) + 1:
        return [n]
    ev = spectrum.evidence(n.pitch, s, e, p.n_harmonics)
    if ev is None:
        return [n]
    env, novelty = ev
    on = track[s:e]
    win = max(2, int(round(p.window_s * fps)))
    lead = int(round(p.split_lead_s * fps))
    nov_base = float(np.median(novelty)) + 1e-9
    on_base = float(np.median(on))
    found: list[tuple[float, int]] = []
    for t in range(edge, e - s - edge):
        if env[t] > env[t - 1] or env[t] > env[t + 1]:
            continue
        dip = min(env[max(0, t - win):t].max(), env[t + 1:t + win + 1].max()) - env[t]
        if dip < p.split_dip_db:
            continue
        nov = float(novelty[max(0, t - 4):t + 2].max()) / nov_base
        if nov < p.split_novelty or float(on[max(0, t - 3):t + 4].max()) - on_base < p.split_onset_rise:
            continue
        found.append((nov, t - lead))
    cuts: list[int] = []
    for _, t in sorted(found, reverse=True):        # strongest first; each keeps its neighbours apart
        if t >= min_piece and e - s - t >= min_piece and all(abs(t - u) >= min_piece for u in cuts):
            cuts.append(t)
    if not cuts:
        return [n]
    bounds = [n.start_s] + [(s + t) / fps for t in sorted(cuts)] + [n.end_s]
    return [replace(n, start_s=a, end_s=b) for a, b in zip(bounds, bounds[1:])]
