"""Guitar and bass tablature: tunings, capo, and a string/fret for every note that a player would use.

Exports: Tuning, TUNINGS, TabEvent, TabResult, tuning_for, wants_tab, check_shape, finger,
tab_voices, header_text.

Strings are numbered the way tab and MusicXML number them: string 1 is the highest.
Frets are written relative to the capo (capo 2 and the C shape is "x32010" sounding D).

Fingering is a shortest-path search (Viterbi) over the passage. Notes that start
together form one group (a chord, or one note of a line); each group has candidate
hand states: a shape (one string per note, every shape passing check_shape: fretted
notes within MAX_SHAPE_SPAN_FRETS frets, at most four fingers with a barre at the
lowest fret) and a hand position (the fret under the index finger). A state costs
what the shape asks of the hand (height on the neck, high frets on thick strings,
stretch, fingers, muted strings inside a strummed chord), less a little for open
strings in low positions. Moving between states costs a shift (fixed part plus per
fret), much less at a phrase boundary (a rest or a long note before) or while an
open string rings. A chord that no hand can hold drops its least important note
(inner notes before the bass and the top) and says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import defaults
from .arrange import VoiceEvent


@dataclass(frozen=True)
class Tuning:
    """A stringed instrument's open strings and capo.

    key: option word ("drop-d"); name: for the header ("Drop D");
    open_pitches: MIDI pitches of the open strings, lowest string first;
    max_fret: highest fret on the neck; capo: fret of the capo (0 for none);
    bass: a bass tuning (four or five strings).
    """

    key: str
    name: str
    open_pitches: tuple[int, ...]
    max_fret: int
    capo: int = 0
    bass: bool = False

    @property
    def strings(self) -> int:
        return len(self.open_pitches)

    @property
    def sounding_open(self) -> tuple[int, ...]:
        """Open strings as they sound with the capo on, lowest first."""
        return tuple(p + self.capo for p in self.open_pitches)

    @property
    def top_fret(self) -> int:
        """Highest fret number that can be written (relative to the capo)."""
        return self.max_fret - self.capo

    def string_number(self, index: int) -> int:
        """Tab string number (1 = highest) of a string index (0 = lowest)."""
        return self.strings - index

    def string_index(self, number: int) -> int:
        """Inverse of string_number."""
        return self.strings - number


def _t(key: str, name: str, pitches: tuple[int, ...], *, bass: bool = False) -> Tuning:
    return Tuning(key, name, pitches, defaults.BASS_MAX_FRET if bass else defaults.GUITAR_MAX_FRET, bass=bass)


#: The tunings of strings:WORD, by option word (open strings low to high, MIDI).
TUNINGS: dict[str, Tuning] = {t.key: t for t in (
    _t("standard", "Standard tuning", (40, 45, 50, 55, 59, 64)),
    _t("drop-d", "Drop D tuning", (38, 45, 50, 55, 59, 64)),
    _t("dadgad", "DADGAD tuning", (38, 45, 50, 55, 57, 62)),
    _t("open-g", "Open G tuning", (38, 43, 50, 55, 59, 62)),
    _t("half-step-down", "Half step down", (39, 44, 49, 54, 58, 63)),
    _t("bass4", "4-string bass", (28, 33, 38, 43), bass=True),
    _t("bass5", "5-string bass", (23, 28, 33, 38, 43), bass=True),
)}

_NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def tuning_for(family: str, strings: str | None, capo: int) -> Tuning:
    """The tuning a part of this instrument family is tabbed in.

    A guitar tuning word applies to guitar parts, a bass word (bass4, bass5) to bass
    parts; the other family keeps its standard tuning. The capo goes on guitars only.

    Args:
        family: the instrument family ("guitar", "bass", or another for tab:yes on any part).
        strings: the strings: option word, or None for standard.
        capo: capo fret from capo:N.
    """
    chosen = TUNINGS.get(strings or "")
    if family == "bass":
        tuning = chosen if chosen is not None and chosen.bass else TUNINGS["bass4"]
        return tuning
    tuning = chosen if chosen is not None and not chosen.bass else TUNINGS["standard"]
    return Tuning(tuning.key, tuning.name, tuning.open_pitches, tuning.max_fret, capo=capo)


def wants_tab(family: str, tab: bool | None) -> bool:
    """Whether a part of this family gets a tab staff: tab:auto tabs guitars and basses."""
    if tab is None:
        return family in ("guitar", "bass")
    return tab


def header_text(tuning: Tuning) -> str | None:
    """The header line naming the tuning and capo, or None for standard tuning without a capo.

    e.g. "Drop D tuning (D A D G B E), capo 2".
    """
    bits = []
    if tuning.key not in ("standard", "bass4"):
        names = " ".join(_NOTE_NAMES[p % 12] for p in tuning.open_pitches)
        bits.append(f"{tuning.name} ({names})")
    if tuning.capo:
        bits.append(f"capo {tuning.capo}" if bits else f"Capo {tuning.capo}")
    return ", ".join(bits) if bits else None


# ---------------------------------------------------------------- playability


def check_shape(positions: list[tuple[int, int]], tuning: Tuning) -> list[str]:
    """What makes a shape unplayable for one hand; empty when it can be held.

    Rules: one note per string; frets on the neck; fretted notes within
    defaults.TAB_SHAPE_SPAN_FRETS frets; at most four fretting fingers, where the
    notes at the lowest fret may share one finger as a barre unless an open string
    lies between them (a barre would stop it).

    Args:
        positions: (string index, 0 = lowest; fret relative to the capo) per note.
        tuning: the instrument.
    """
    problems = []
    strings = [s for s, _ in positions]
    if len(set(strings)) != len(strings):
        problems.append("two notes on one string")
    if any(not 0 <= s < tuning.strings for s in strings):
        problems.append("a string the instrument does not have")
    if any(not 0 <= f <= tuning.top_fret for _, f in positions):
        problems.append("a fret off the neck")
    fretted = [(s, f) for s, f in positions if f > 0]
    if not fretted:
        return problems
    low, high = min(f for _, f in fretted), max(f for _, f in fretted)
    if high - low >= defaults.TAB_SHAPE_SPAN_FRETS:
        problems.append(f"a stretch from fret {low} to fret {high}")
    at_low = [s for s, f in fretted if f == low]
    opens = [s for s, f in positions if f == 0]
    barre = len(at_low) > 1 and not any(min(at_low) < s < max(at_low) for s in opens)
    fingers = len(fretted) - (len(at_low) - 1 if barre else 0)
    if fingers > defaults.TAB_FINGERS:
        problems.append(f"{fingers} fingers")
    return problems


# ---------------------------------------------------------------- the search


@dataclass
class TabEvent(VoiceEvent):
    """A VoiceEvent of a tab staff: frets holds (string number, fret) per pitch, low to high."""

    frets: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class TabResult:
    """Fingering of one staff: the tab staff's voices, the tuning and what the user should know."""

    voices: list[list[TabEvent]]
    tuning: Tuning
    dropped_out_of_range: int = 0
    dropped_from_chords: int = 0

    def warnings(self, part: str) -> list[str]:
        out = []
        if self.dropped_out_of_range:
            out.append(f"{part} tab: {self.dropped_out_of_range} note(s) outside the "
                       f"{self.tuning.name.lower()}'s range are left out of the tab.")
        if self.dropped_from_chords:
            out.append(f"{part} tab: {self.dropped_from_chords} chord note(s) no hand can hold together "
                       f"with the rest of the chord are left out of the tab.")
        return out


@dataclass
class _Group:
    """Notes that start together: pitches low to high, when they start and end."""

    onset: Fraction
    end: Fraction
    pitches: list[int]
    gap_before: Fraction = Fraction(0)
    held_from_previous: list[int] = field(default_factory=list)


@dataclass
class _State:
    positions: tuple[tuple[int, int], ...]   # (string index, fret) per kept pitch
    kept: tuple[int, ...]                     # pitches kept, low to high
    window: int                               # fret under the index finger
    cost: float


def _places(pitch: int, tuning: Tuning) -> list[tuple[int, int]]:
    return [(s, pitch - open_) for s, open_ in enumerate(tuning.sounding_open)
            if 0 <= pitch - open_ <= tuning.top_fret]


def _shapes(pitches: list[int], tuning: Tuning) -> list[tuple[tuple[int, int], ...]]:
    """Every playable assignment of the pitches to distinct strings (depth-first, pruned by span)."""
    places = [_places(p, tuning) for p in pitches]
    out: list[tuple[tuple[int, int], ...]] = []

    def extend(chosen: list[tuple[int, int]]) -> None:
        if len(chosen) == len(places):
            if not check_shape(chosen, tuning):
                out.append(tuple(chosen))
            return
        used = {s for s, _ in chosen}
        fretted = [f for _, f in chosen if f > 0]
        for s, f in places[len(chosen)]:
            if s in used:
                continue
            if f > 0 and fretted and max(fretted + [f]) - min(fretted + [f]) >= defaults.TAB_SHAPE_SPAN_FRETS:
                continue
            extend(chosen + [(s, f)])

    extend([])
    return out


def _importance(index: int, count: int) -> float:
    """What giving up a chord note costs, in drops: inner notes 1, the bass 2, the top (the tune) 3."""
    if count > 1 and index == count - 1:
        return 3.0
    if count > 2 and index == 0:
        return 2.0
    return 1.0


def _shape_cost(positions: tuple[tuple[int, int], ...], pitches: tuple[int, ...], window: int,
                tuning: Tuning) -> float:
    cost = defaults.TAB_POSITION_COST * (window - 1)
    top = max(1, tuning.strings - 1)
    for s, f in positions:
        if f == 0:
            cost -= defaults.TAB_OPEN_LOW_BONUS if window <= defaults.TAB_OPEN_POSITION_MAX else 0.0
        thickness = 1.0 - s / top
        cost += defaults.TAB_THICK_HIGH_COST * thickness * max(0, f - defaults.TAB_THICK_HIGH_FRET)
    fretted = [f for _, f in positions if f > 0]
    if len(positions) > 1:
        if fretted:
            cost += defaults.TAB_SPAN_COST * (max(fretted) - min(fretted))
        cost += defaults.TAB_FINGER_COST * len(fretted)
        strings = [s for s, _ in positions]
        # A lower note on a higher string than a higher note: a crossed voicing.
        cost += defaults.TAB_CROSSING_COST * sum(1 for a, b in zip(strings, strings[1:]) if b < a)
        if len(positions) >= 3:
            muted = (max(strings) - min(strings) + 1) - len(strings)
            cost += defaults.TAB_MUTED_INNER_COST * muted
    return cost


def _states(group: _Group, tuning: Tuning) -> tuple[list[_State], int]:
    """Candidate hand states of a group, and how many of its notes are out of the instrument's range.

    When no shape holds every note, the fewest notes are given up, the least
    important first (see _importance), each costing defaults.TAB_DROP_COST.
    """
    playable = [p for p in group.pitches if _places(p, tuning)]
    shapes: list[tuple[tuple[tuple[int, int], ...], tuple[int, ...], float]] = []
    for drops in range(len(playable)):
        for gone in itertools.combinations(range(len(playable)), drops):
            kept = tuple(p for i, p in enumerate(playable) if i not in gone)
            extra = defaults.TAB_DROP_COST * sum(_importance(i, len(playable)) for i in gone)
            shapes += [(shape, kept, extra) for shape in _shapes(list(kept), tuning)]
        if shapes:
            break
    states: list[_State] = []
    window_top = max(1, tuning.top_fret - defaults.TAB_SHAPE_SPAN_FRETS + 1)
    for shape, kept, extra in shapes:
        fretted = [f for _, f in shape if f > 0]
        if fretted:
            windows = range(max(1, max(fretted) - defaults.TAB_SHAPE_SPAN_FRETS + 1), min(fretted) + 1)
        else:
            windows = range(1, window_top + 1)
        for w in windows:
            states.append(_State(shape, kept, w, _shape_cost(shape, kept, w, tuning) + extra))
    states.sort(key=lambda st: st.cost)
    return states[: defaults.TAB_MAX_STATES], len(group.pitches) - len(playable)


def _transition(prev: list[_State], cur: list[_State], group: _Group, tuning: Tuning) -> np.ndarray:
    """Cost of moving from each previous state (rows) to each current one (columns)."""
    wa = np.array([s.window for s in prev], dtype=float)[:, None]
    wb = np.array([s.window for s in cur], dtype=float)[None, :]
    shift = np.abs(wa - wb)
    cost = defaults.TAB_SHIFT_COST * (shift > 0) + defaults.TAB_SHIFT_PER_FRET_COST * shift
    if group.gap_before >= defaults.TAB_PHRASE_REST_Q:
        cost *= defaults.TAB_PHRASE_SHIFT_FACTOR
    open_prev = np.array([all(f == 0 for _, f in s.positions) for s in prev])[:, None]
    cost = cost * np.where(open_prev, defaults.TAB_OPEN_SHIFT_FACTOR, 1.0)
    where_a = [dict(zip(s.kept, s.positions)) for s in prev]
    where_b = [dict(zip(s.kept, s.positions)) for s in cur]
    for p in set(group.pitches) & {p for s in prev for p in s.kept}:
        code_a = np.array([w[p][0] * 100 + w[p][1] if p in w else -1 for w in where_a])[:, None]
        code_b = np.array([w[p][0] * 100 + w[p][1] if p in w else -2 for w in where_b])[None, :]
        moved = (code_a != code_b) & (code_a >= 0) & (code_b >= 0)
        cost += defaults.TAB_REPEAT_MOVE_COST * moved
    if group.held_from_previous:
        checked: dict[tuple, float] = {}
        for i, wa_ in enumerate(where_a):
            held = tuple(wa_[p] for p in group.held_from_previous if p in wa_)
            if not held:
                continue
            for j, b in enumerate(cur):
                key = (held, b.positions)
                if key not in checked:
                    if {s for s, _ in held} & {s for s, _ in b.positions}:
                        checked[key] = defaults.TAB_HELD_CLASH_COST
                    elif check_shape(list(held) + list(b.positions), tuning):
                        checked[key] = defaults.TAB_HELD_STRETCH_COST
                    else:
                        checked[key] = 0.0
                cost[i, j] += checked[key]
    return cost


def _groups(voices: list[list[VoiceEvent]]) -> list[_Group]:
    """Onset groups of a staff in time order, with what rings on from the group before."""
    events = sorted((e for v in voices for e in v), key=lambda e: e.onset)
    groups: list[_Group] = []
    ends: list[dict[int, Fraction]] = []
    for onset, members in itertools.groupby(events, key=lambda e: e.onset):
        members = list(members)
        pitch_end: dict[int, Fraction] = {}
        for e in members:
            for p in e.pitches:
                pitch_end[p] = max(pitch_end.get(p, e.end), e.end)
        groups.append(_Group(onset, max(pitch_end.values()), sorted(pitch_end)))
        ends.append(pitch_end)
    for k in range(1, len(groups)):
        prev, cur = groups[k - 1], groups[k]
        last_end = min(ends[k - 1].values())
        cur.gap_before = max(Fraction(0), cur.onset - prev.end)
        if last_end - prev.onset >= defaults.TAB_PHRASE_LONG_NOTE_Q:
            cur.gap_before = max(cur.gap_before, Fraction(defaults.TAB_PHRASE_REST_Q))
        cur.held_from_previous = [p for p, end in ends[k - 1].items() if end > cur.onset and p not in cur.pitches]
    return groups


def finger(voices: list[list[VoiceEvent]], tuning: Tuning) -> tuple[list[dict[int, tuple[int, int]]], int, int]:
    """String and fret for every note of a staff, as one path through the passage.

    Args:
        voices: the staff's voices (sounding pitches, quarter-note times).
        tuning: the instrument's tuning and capo.

    Returns:
        (per onset group, in time order: pitch -> (string index, fret); notes out of
        range; chord notes given up because no hand holds them with the rest).
    """
    groups = _groups(voices)
    if not groups:
        return [], 0, 0
    lattice: list[list[_State]] = []
    out_of_range = 0
    for g in groups:
        states, dropped = _states(g, tuning)
        out_of_range += dropped
        lattice.append(states or [_State((), (), 1, 0.0)])
    best = np.array([s.cost for s in lattice[0]])
    back: list[np.ndarray] = []
    for k in range(1, len(lattice)):
        total = best[:, None] + _transition(lattice[k - 1], lattice[k], groups[k], tuning)
        back.append(np.argmin(total, axis=0))
        best = total.min(axis=0) + np.array([s.cost for s in lattice[k]])
    path = [int(np.argmin(best))]
    for pointers in reversed(back):
        path.append(int(pointers[path[-1]]))
    path.reverse()
    chosen = [lattice[k][i] for k, i in enumerate(path)]
    from_chords = sum(len([p for p in g.pitches if _places(p, tuning)]) - len(st.kept)
                      for g, st in zip(groups, chosen))
    return [dict(zip(st.kept, st.positions)) for st in chosen], out_of_range, from_chords


def tab_voices(voices: list[list[VoiceEvent]], tuning: Tuning) -> TabResult:
    """The tab staff of a notation staff: the same voices, each note with its string and fret.

    Notes the tab cannot hold (out of range, or given up from a chord) are left out;
    an event left with no note becomes a rest. Ties stay ties: the build writes a
    tied continuation with its note's string and fret, and LilyPond's tab does not
    strike it again.

    Args:
        voices: the notation staff's voices.
        tuning: tuning and capo.

    Returns:
        TabResult with the tab voices.
    """
    fingering, out_of_range, from_chords = finger(voices, tuning)
    onsets = sorted({e.onset for v in voices for e in v})
    by_onset = dict(zip(onsets, fingering))
    tab: list[list[TabEvent]] = []
    for voice in voices:
        events = []
        for ev in voice:
            where = by_onset.get(ev.onset, {})
            kept = [p for p in ev.pitches if p in where]
            if not kept:
                continue
            frets = [(tuning.string_number(where[p][0]), where[p][1]) for p in kept]
            events.append(TabEvent(ev.onset, ev.end, kept, ev.velocity, frets=frets))
        if events:
            tab.append(events)
    return TabResult(tab, tuning, out_of_range, from_chords)


def add_tab_staves(staves: list, options, warnings: list[str]) -> tuple[list, list[tuple[str, Tuning]]]:
    """Put a tab staff under every staff that should have one (see wants_tab).

    Grand staves and drums never get one; tab:yes tabs any other pitched staff on guitar.

    Args:
        staves: the score's build.Staff list, in order.
        options: the job's Options (tab, strings, capo).
        warnings: notes the user gets about the tab are appended here.

    Returns:
        (the staves with the tab staves inserted, [(part name, tuning)] of the tabs).
    """
    from .build import Staff

    out: list = []
    tabs: list[tuple[str, Tuning]] = []
    for st in staves:
        out.append(st)
        family = st.instrument.family
        if st.is_drum or st.group or st.tab is not None or not wants_tab(family, options.tab):
            continue
        tuning = tuning_for(family, options.strings, options.capo)
        result = tab_voices(st.voices, tuning)
        warnings.extend(result.warnings(st.name))
        if not result.voices:
            continue
        out.append(Staff("", st.instrument, "tab", result.voices, source=st.source, engine=st.engine, tab=tuning))
        tabs.append((st.name, tuning))
    return out, tabs


def tabs_header(tunings: list[Tuning]) -> str | None:
    """One header line for the score's tabs: the tunings and capos that are not plain standard."""
    lines = []
    for tuning in tunings:
        text = header_text(tuning)
        if text and text not in lines:
            lines.append(text)
    return "; ".join(lines) or None
