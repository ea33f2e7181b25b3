"""Key detection and key-aware pitch spelling.

Exports: detect_key, parse_key_name, key_name, Speller.

Keys are found by correlating a duration- and metre-weighted pitch-class
profile with rotated Krumhansl-Kessler major/minor key profiles, with a bonus
when the lowest note of the final chord is the candidate tonic (more when the
chord is the tonic triad): cadences say more about the key than mid-phrase;
a bass-weighted profile and leading-tone bonuses did not help (see CLOSING_BASS_BONUS).
The winner is then checked against its neighbours a fifth up and down, which
the profiles confuse, by the scale degree they differ on (OUT_OF_SCALE_PENALTY).
"""

from __future__ import annotations

import re

import numpy as np

from .quantize import QNote

#: Extra weight of notes that start on a beat.
ON_BEAT_WEIGHT = 1.3
#: Correlation bonus when the last sonority's lowest note is the tonic (x1.5 on the tonic triad).
#: Larger bonuses, a bass-weighted profile and a leading-tone bonus for minor keys were
#: tried and lost clips on the dev set (excerpts that end on IV, overtone-ridden organ notes).
CLOSING_BASS_BONUS = 0.04
#: Between the best key and its same-mode neighbours a fifth away, the score is the
#: correlation minus this times the share of weight outside the key's scale (major: the
#: seven diatonic notes; minor: natural minor plus the leading tone). The dev set gets the
#: same keys for any value from 3 to 10 (05: C# minor -> F# minor); parallel and relative
#: keys are never compared this way, because blues thirds and modal sevenths look "outside".
OUT_OF_SCALE_PENALTY = 4.0

_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)

_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Tonic names as written in key signatures: the conventional spelling per pitch class.
_MAJOR_TONICS = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
_MINOR_TONICS = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_LETTERS = "CDEFGAB"


def _profile(major: bool) -> np.ndarray:
    # Krumhansl-Kessler alone scored best on the dev set (Kostka-Payne blends
    # mistook a minor chorale for its relative major).
    return _KK_MAJOR if major else _KK_MINOR


def key_name(tonic_pc: int, mode: str) -> str:
    """'Eb major' / 'F# minor' for a tonic pitch class and mode."""
    names = _MAJOR_TONICS if mode == "major" else _MINOR_TONICS
    return f"{names[tonic_pc % 12]} {mode}"


def parse_key_name(text: str) -> tuple[int, str, str]:
    """'Bb major' -> (10, 'major', 'Bb'). Accepts '#', 'b', '-' accidentals."""
    m = re.match(r"^\s*([A-Ga-g])([#b\-]*)\s*(major|minor)?", text)
    if not m:
        raise ValueError(f"not a key: {text!r}")
    letter = m.group(1).upper()
    acc = m.group(2).replace("-", "b")
    pc = (_LETTER_PC[letter] + acc.count("#") - acc.count("b")) % 12
    mode = (m.group(3) or "major").lower()
    return pc, mode, letter + acc


def detect_key(notes: list[QNote], *, beat_quarters: float = 1.0) -> tuple[int, str, float]:
    """Most likely key of quantized notes.

    The pitch-class profile weighs each note by its length and metrical
    position. Each key's correlation with its Krumhansl-Kessler profile then
    gets a bonus for what a musician checks first: does the music close on the
    tonic (lowest note of the last sonority; more when that sonority is the
    tonic triad, a Picardy third included)? Last, the winner and its same-mode
    neighbours a fifth away are compared on how much weight falls outside each scale.

    Args:
        notes: pitched notes of every part.
        beat_quarters: length of the notated beat, so that notes on beats weigh more.

    Returns:
        (tonic pitch class, "major" | "minor", confidence 0..1 as correlation).
    """
    if not notes:
        return 0, "major", 0.0
    raw = _weighted_histogram(notes, beat_quarters)
    hist = (raw - raw.mean()) / (raw.std() + 1e-9)
    last_on = max(n.onset for n in notes)
    last = sorted(n.pitch for n in notes if n.end > last_on - 1e-9 or n.onset == last_on)
    last_pcs = {p % 12 for p in last}
    scores: dict[tuple[int, str], float] = {}
    for mode in ("major", "minor"):
        prof = _profile(mode == "major")
        third = 4 if mode == "major" else 3
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(prof, tonic))[0, 1])
            # A minor piece may close on the major tonic triad (Picardy third).
            triad = {tonic, (tonic + third) % 12, (tonic + 4) % 12, (tonic + 7) % 12}
            if last[0] % 12 == tonic:
                r += CLOSING_BASS_BONUS * (1.5 if last_pcs <= triad else 1.0)
            scores[(tonic, mode)] = r
    best_key = max(scores, key=scores.__getitem__)
    tonic, mode = best_key
    # Fifth-related keys share six scale degrees and Krumhansl-Kessler's tonic and
    # dominant weights blur them; the degree they differ on decides.
    rivals = [best_key, ((tonic + 7) % 12, mode), ((tonic + 5) % 12, mode)]
    chosen = max(rivals, key=lambda k: scores[k] - OUT_OF_SCALE_PENALTY * _outside_share(raw, *k))
    return chosen[0], chosen[1], max(0.0, min(1.0, scores[chosen]))


def _outside_share(raw: np.ndarray, tonic: int, mode: str) -> float:
    """Share of the pitch-class weight that lies outside the key's scale."""
    scale = _MAJOR_SCALE if mode == "major" else _MINOR_SCALE
    inside = sum(raw[(tonic + d) % 12] for d in scale)
    return float(1.0 - inside / (raw.sum() + 1e-9))


def _weighted_histogram(notes: list[QNote], beat_quarters: float) -> np.ndarray:
    """Pitch-class weights by length and on-beat position."""
    hist = np.zeros(12)
    for n in notes:
        on_beat = float(n.onset) % beat_quarters == 0
        hist[n.pitch % 12] += (0.5 + min(float(n.length), 4.0)) * (ON_BEAT_WEIGHT if on_beat else 1.0)
    return hist


class Speller:
    """Spell MIDI pitches as note names that follow a key.

    Diatonic notes take the key's letters; in minor the raised sixth and seventh
    are spelled as raised degrees (G# in A minor); other chromatic notes use
    sharps in sharp keys and flats in flat keys.
    """

    def __init__(self, tonic_pc: int, mode: str, tonic_name: str | None = None) -> None:
        self.tonic_pc = tonic_pc % 12
        self.mode = mode
        name = tonic_name or (_MAJOR_TONICS if mode == "major" else _MINOR_TONICS)[self.tonic_pc]
        self.tonic_name = name
        self.names = self._table(name, mode)

    @staticmethod
    def _table(tonic: str, mode: str) -> list[str]:
        steps = [0, 2, 4, 5, 7, 9, 11] if mode == "major" else [0, 2, 3, 5, 7, 8, 10]
        letter_idx = _LETTERS.index(tonic[0])
        tonic_pc = (_LETTER_PC[tonic[0]] + tonic.count("#") - tonic.count("b")) % 12
        names: list[str | None] = [None] * 12

        def spell(pc: int, letter: str) -> str:
            diff = (pc - _LETTER_PC[letter] + 6) % 12 - 6
            return letter + ("#" * diff if diff > 0 else "b" * -diff)

        for degree, step in enumerate(steps):
            pc = (tonic_pc + step) % 12
            names[pc] = spell(pc, _LETTERS[(letter_idx + degree) % 7])
        if mode == "minor":
            for degree, step in ((5, 9), (6, 11)):
                pc = (tonic_pc + step) % 12
                if names[pc] is None:
                    names[pc] = spell(pc, _LETTERS[(letter_idx + degree) % 7])
        fifths = _fifths(tonic_pc, mode)
        for pc in range(12):
            if names[pc] is not None:
                continue
            natural = [letter for letter, lpc in _LETTER_PC.items() if lpc == pc]
            if natural:
                names[pc] = natural[0]
            elif fifths == 0:
                names[pc] = {1: "C#", 3: "Eb", 6: "F#", 8: "G#", 10: "Bb"}[pc]
            elif fifths > 0:
                names[pc] = spell(pc, _nearest_letter(pc, up=False))
            else:
                names[pc] = spell(pc, _nearest_letter(pc, up=True))
        return [n or "C" for n in names]

    def name(self, midi: int) -> str:
        """Pitch name with octave in music21 form ('B-3', 'F#5')."""
        base = self.names[midi % 12]
        letter, acc = base[0], base[1:]
        alter = acc.count("#") - acc.count("b")
        octave = (midi - alter - _LETTER_PC[letter]) // 12 - 1
        return letter + acc.replace("b", "-") + str(octave)

    @property
    def fifths(self) -> int:
        """Number of sharps (positive) or flats (negative) in the key signature."""
        return _fifths_from_name(self.tonic_name, self.mode)


def _nearest_letter(pc: int, *, up: bool) -> str:
    for d in (1, 2):
        cand = (pc + d) % 12 if up else (pc - d) % 12
        for letter, lpc in _LETTER_PC.items():
            if lpc == cand:
                return letter
    return "C"


def _fifths(tonic_pc: int, mode: str) -> int:
    major_pc = tonic_pc if mode == "major" else (tonic_pc + 3) % 12
    return {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 5: -1, 10: -2, 3: -3, 8: -4, 1: -5}[major_pc]


def _fifths_from_name(tonic: str, mode: str) -> int:
    order = "FCGDAEB"
    idx = order.index(tonic[0]) - 1 + 7 * (tonic.count("#") - tonic.count("b"))
    return idx - 3 if mode == "minor" else idx
