"""Guitar and bass tablature (core.notation.tab): fingerings a player would use, the tab staff
in MusicXML and LilyPond, and the options.

Passages are hand-written (sounding MIDI pitches, times in quarters). Shapes are written the
way guitarists write them: one character per string from the lowest, "x" for a string not played.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from fractions import Fraction as F
from pathlib import Path

import pytest

from stemscribe.core.errors import OptionsError
from stemscribe.core.notation import notate, tab, write_musicxml
from stemscribe.core.notation.arrange import VoiceEvent
from stemscribe.core.notes import Note, Track
from stemscribe.core.options import Options, parse_options

STANDARD = tab.TUNINGS["standard"]
DEVSET = Path(__file__).resolve().parents[1].parent / "shared" / "devset"
GUITAR_CLIP = DEVSET / "09-what-brought-the-blood-guitar-voice-note" / "audio.ogg"

# Open chords as played (lowest string first) and their sounding pitches.
OPEN_CHORDS = {
    "C": ("x32010", [48, 52, 55, 60, 64]),      # C3 E3 G3 C4 E4
    "G": ("320003", [43, 47, 50, 55, 59, 67]),  # G2 B2 D3 G3 B3 G4
    "D": ("xx0232", [50, 57, 62, 66]),          # D3 A3 D4 F#4
    "Em": ("022000", [40, 47, 52, 55, 59, 64]),  # E2 B2 E3 G3 B3 E4
}


def line(pitches, *, step=F(1, 2)) -> list[VoiceEvent]:
    """One voice: each item a pitch or a chord (tuple), `step` quarters apart, held until the next."""
    return [VoiceEvent(i * step, (i + 1) * step, sorted(p) if isinstance(p, tuple) else [p])
            for i, p in enumerate(pitches)]


def fingered(voices, tuning=STANDARD) -> list[list[tuple[int, int]]]:
    """(string number, fret) per note of each event of the first tab voice."""
    return [ev.frets for ev in tab.tab_voices(voices, tuning).voices[0]]


def shape(frets: list[tuple[int, int]], tuning=STANDARD) -> str:
    """Guitarist's chord spelling of (string number, fret) pairs, lowest string first."""
    by_string = dict(frets)
    return "".join(str(by_string[n]) if n in by_string else "x" for n in range(tuning.strings, 0, -1))


def as_positions(frets, tuning=STANDARD) -> list[tuple[int, int]]:
    return [(tuning.string_index(s), f) for s, f in frets]


def assert_sounds(events: list[list[tuple[int, int]]], pitches, tuning=STANDARD) -> None:
    """Each fret on its string sounds the written pitch (open string + capo + fret)."""
    for frets, wanted in zip(events, pitches):
        wanted = sorted(wanted) if isinstance(wanted, tuple) else [wanted]
        got = sorted(tuning.sounding_open[tuning.string_index(s)] + f for s, f in frets)
        assert got == wanted


# ---------------------------------------------------------------- fingering


@pytest.mark.parametrize("name", OPEN_CHORDS)
def test_open_chords_come_out_as_the_open_shapes(name):
    expected, pitches = OPEN_CHORDS[name]
    [frets] = fingered([line([tuple(pitches)], step=F(2))])
    assert shape(frets) == expected
    assert tab.check_shape(as_positions(frets), STANDARD) == []


def test_a_chord_progression_keeps_the_open_shapes():
    # C G D Em C as whole-bar chords: moving between them does not pull any chord up the neck.
    order = ["C", "G", "D", "Em", "C"]
    events = fingered([line([tuple(OPEN_CHORDS[n][1]) for n in order], step=F(4))])
    assert [shape(f) for f in events] == [OPEN_CHORDS[n][0] for n in order]


def test_c_major_scale_stays_in_first_position():
    up = [48, 50, 52, 53, 55, 57, 59, 60, 62, 64, 65, 67]  # C3 .. G4 in eighths
    events = fingered([line(up + up[::-1][1:])])
    assert_sounds(events, up + up[::-1][1:])
    frets = [f for [(_, f)] in events]
    assert max(frets) <= 4, frets          # first position: index finger at fret 1, open strings
    # Not one note on a string where another string in first position has it:
    # D3 is the open D string (not the A string's 5th fret), B3 the open B string.
    by_pitch = {p: ev[0] for p, ev in zip(up, events)}
    assert by_pitch[48] == (5, 3)
    assert by_pitch[50] == (4, 0)
    assert by_pitch[59] == (2, 0)
    assert by_pitch[64] == (1, 0)


def test_a_melody_above_the_twelfth_fret_is_not_on_the_low_strings():
    high = [76, 78, 79, 81, 83, 81, 79, 78, 76, 74]  # E5 F#5 G5 A5 B5 ... D5
    events = fingered([line(high)])
    assert_sounds(events, high)
    assert {s for [(s, _)] in events} <= {1, 2}
    assert max(f for [(_, f)] in events) >= 12
    # G4..C5 also lie on the D string at frets 17..22; a player takes them on the top strings.
    upper = [67, 69, 71, 72, 71, 69, 67]
    events = fingered([line(upper)])
    assert all(s <= 3 for [(s, _)] in events), events


def test_low_material_is_played_in_low_position():
    low = [40, 43, 45, 47, 48, 45, 43, 40]  # E2 G2 A2 B2 C3 on the bottom strings
    events = fingered([line(low)])
    assert all(f <= 3 for [(_, f)] in events)
    assert {s for [(s, _)] in events} <= {5, 6}


def test_drop_d_riff_uses_the_open_sixth_string():
    drop_d = tab.tuning_for("guitar", "drop-d", 0)
    riff = [38, 38, 41, 38, 43, 38, (38, 45, 50), (41, 48, 53), (43, 50, 55)]
    events = fingered([line(riff)], drop_d)
    assert_sounds(events, riff, drop_d)
    assert events[0] == [(6, 0)] and events[3] == [(6, 0)]
    # One-finger power chords: D5 all open, F5 and G5 one barre across the bottom three strings.
    assert shape(events[6], drop_d) == "000xxx"
    assert shape(events[7], drop_d) == "333xxx"
    assert shape(events[8], drop_d) == "555xxx"
    for frets in events:
        assert tab.check_shape(as_positions(frets, drop_d), drop_d) == []


def test_capo_two_shifts_every_fret_number():
    capo = tab.tuning_for("guitar", None, 2)
    passage = [tuple(OPEN_CHORDS["C"][1]), tuple(OPEN_CHORDS["G"][1]), 55, 57, 59, 60, 62, 64]
    up_two = [tuple(p + 2 for p in x) if isinstance(x, tuple) else x + 2 for x in passage]
    without = fingered([line(passage)])
    with_capo = fingered([line(up_two)], capo)
    # The same shapes and frets, now relative to the capo, sounding a whole tone higher.
    assert with_capo == without
    assert_sounds(with_capo, up_two, capo)
    assert shape(with_capo[0], capo) == "x32010"
    assert tab.header_text(capo) == "Capo 2"


def test_a_chord_no_hand_can_hold_drops_an_inner_note_and_says_so():
    # E2 E3 E4 E5 at once: no four-fret shape holds all four; the bass and the top stay.
    result = tab.tab_voices([line([(40, 52, 64, 76)], step=F(2))], STANDARD)
    [event] = result.voices[0]
    assert event.pitches[0] == 40 and event.pitches[-1] == 76 and len(event.pitches) == 3
    assert tab.check_shape(as_positions(event.frets), STANDARD) == []
    assert result.dropped_from_chords == 1
    assert any("chord note" in w for w in result.warnings("Guitar"))


def test_notes_out_of_range_are_left_out_of_the_tab():
    result = tab.tab_voices([line([36, 40, 100])], STANDARD)  # C2 below the low E, E7 off the neck
    assert [ev.pitches for ev in result.voices[0]] == [[40]]
    assert result.dropped_out_of_range == 2
    assert result.warnings("Guitar")


def test_a_held_note_keeps_its_string_while_the_melody_moves():
    # An open-A bass (A2) held for a bar under a melody: no melody note may take the A string.
    bass = [VoiceEvent(F(0), F(4), [45])]
    melody = [VoiceEvent(F(i, 2), F(i + 1, 2), [p]) for i, p in enumerate([57, 59, 60, 62, 64, 62, 60, 59])]
    result = tab.tab_voices([melody, bass], STANDARD)
    strings = {s for ev in result.voices[0] for s, _ in ev.frets}
    [held] = result.voices[1]
    assert held.frets == [(5, 0)]
    assert 5 not in strings


def test_bass_tunings():
    bass = tab.tuning_for("bass", None, 3)  # capo is for guitars; the bass keeps its open strings
    assert bass.key == "bass4" and bass.strings == 4 and bass.capo == 0
    line_ = [28, 31, 33, 35, 36, 38, 40]  # E1 G1 A1 B1 C2 D2 E2
    events = fingered([line(line_)], bass)
    assert_sounds(events, line_, bass)
    assert max(f for [(_, f)] in events) <= 4
    five = tab.tuning_for("bass", "bass5", 0)
    assert five.strings == 5
    [[low_b]] = fingered([line([23])], five)
    assert low_b == (5, 0)


def test_shape_checker_rules():
    check = tab.check_shape

    def positions(spelling: str) -> list[tuple[int, int]]:
        return [(i, int(c)) for i, c in enumerate(spelling) if c != "x"]

    assert check(positions("133211"), STANDARD) == []           # F barre chord
    assert check(positions("x02220"), STANDARD) == []           # A major, three fingers on fret 2
    assert check(positions("x35553"), STANDARD) == []           # C barre, A shape
    assert any("stretch" in p for p in check(positions("x1xxx6"), STANDARD))
    assert any("fingers" in p for p in check(positions("x23456"), STANDARD))
    # Barre at fret 2 over an open string is impossible: five fingers would be needed.
    assert any("fingers" in p for p in check(positions("222022"), STANDARD))
    assert check([(0, 3), (0, 5)], STANDARD) == ["two notes on one string"]
    assert any("off the neck" in p for p in check([(0, 30)], STANDARD))


# ---------------------------------------------------------------- options


def test_tab_options_parse():
    opts = parse_options("tab:yes strings:Drop-D capo:2")
    assert (opts.tab, opts.strings, opts.capo) == (True, "drop-d", 2)
    assert parse_options("tab:no").tab is False
    assert parse_options("tab:auto").tab is None
    assert parse_options("strings:bass5").strings == "bass5"
    assert Options.from_dict(opts.to_dict()) == opts
    with pytest.raises(OptionsError):
        parse_options("strings:banjo")
    with pytest.raises(OptionsError):
        parse_options("capo:15")
    with pytest.raises(OptionsError):
        parse_options("capo:high")


# ---------------------------------------------------------------- score, MusicXML, LilyPond

QUARTER_S = 0.6  # 100 bpm


def guitar_track(instrument: str = "guitar") -> Track:
    """Two bars of open chords, a scale bar, then a note tied over the bar line."""
    notes = []
    t = 0.0
    for name in ("C", "G", "D", "Em"):
        notes += [Note(t, t + 2 * QUARTER_S - 0.05, p, 80) for p in OPEN_CHORDS[name][1]]
        t += 2 * QUARTER_S
    for p in (48, 50, 52, 53, 55, 57, 59, 60):
        notes.append(Note(t, t + QUARTER_S / 2 - 0.02, p, 80))
        t += QUARTER_S / 2
    notes.append(Note(t, t + 3 * QUARTER_S - 0.05, 64, 80))  # half of it spills over the bar
    t += 3 * QUARTER_S
    notes.append(Note(t, t + QUARTER_S - 0.05, 62, 80))
    return Track(instrument.title(), instrument, notes, "mix", "test")


def score_of(track: Track, text: str = "") -> "object":
    options = parse_options(text).with_changes(tempo_bpm=100.0, time_signature="4/4", key="C major")
    return notate([track], layout="solo", options=options, audio_mono=None, sample_rate=44100, title="Tab")


def tab_notes(musicxml: Path) -> list[list[tuple[int, int, int, bool]]]:
    """Notes of the tab parts grouped by when they start, across voices, in time order:
    (midi pitch, string, fret, is a tie continuation) per note."""
    root = ET.parse(musicxml).getroot()
    steps = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    at: dict[tuple[int, int, int], list[tuple[int, int, int, bool]]] = {}
    for p, part in enumerate(root.iter("part")):
        if part.findtext("measure/attributes/clef/sign") != "TAB":
            continue
        for m, measure in enumerate(part.iter("measure")):
            position = onset = 0
            for child in measure:
                duration = int(child.findtext("duration") or 0)
                if child.tag == "backup":
                    position -= duration
                elif child.tag == "forward":
                    position += duration
                elif child.tag == "note":
                    if child.find("chord") is None:
                        onset = position
                        position += duration
                    if child.find("pitch") is None:
                        continue
                    midi = (12 * (int(child.findtext("pitch/octave")) + 1) + steps[child.findtext("pitch/step")]
                            + int(float(child.findtext("pitch/alter") or 0)))
                    tied = any(t.get("type") == "stop" for t in child.findall("tie"))
                    at.setdefault((p, m, onset), []).append(
                        (midi, int(child.findtext("notations/technical/string")),
                         int(child.findtext("notations/technical/fret")), tied))
    return [sorted(at[k]) for k in sorted(at)]


def tab_tuning(musicxml: Path) -> list[int]:
    root = ET.parse(musicxml).getroot()
    steps = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    return [12 * (int(t.findtext("tuning-octave")) + 1) + steps[t.findtext("tuning-step")]
            + int(t.findtext("tuning-alter") or 0) for t in root.iter("staff-tuning")]


def assert_playable(chords, open_pitches, tuning) -> None:
    """Every tab chord sounds its pitches on its strings and passes the playability checker."""
    for chord in chords:
        for midi, string, fret, _ in chord:
            assert open_pitches[tuning.string_index(string)] + fret == midi, chord
        problems = tab.check_shape([(tuning.string_index(s), f) for _, s, f, _ in chord], tuning)
        assert problems == [], (chord, problems)


def test_guitar_gets_a_tab_by_default_and_tab_no_turns_it_off(tmp_path):
    notation = score_of(guitar_track())
    assert len(notation.score.parts) == 2
    assert [p["tab"] for p in notation.parts] == ["standard"]
    assert notation.tab_header is None
    plain = score_of(guitar_track(), "tab:no")
    assert len(plain.score.parts) == 1 and "tab" not in plain.parts[0]
    piano = score_of(guitar_track("piano"))
    assert piano.tabs == []
    bass = score_of(Track("Bass", "bass", [Note(i * 0.6, i * 0.6 + 0.55, p, 80) for i, p in
                                           enumerate([28, 33, 35, 36, 38, 40, 43, 45])], "mix", "test"))
    assert [t.key for t in bass.tabs] == ["bass4"]
    path = write_musicxml(bass, tmp_path / "bass.musicxml")
    assert tab_tuning(path) == [28, 33, 38, 43]


def test_musicxml_carries_string_fret_and_tuning(tmp_path):
    notation = score_of(guitar_track())
    path = write_musicxml(notation, tmp_path / "score.musicxml")
    text = path.read_text(encoding="utf-8")
    assert "<!DOCTYPE score-partwise" in text and "tab-s" not in text
    assert tab_tuning(path) == list(STANDARD.open_pitches)
    chords = tab_notes(path)
    assert_playable(chords, STANDARD.open_pitches, STANDARD)
    firsts = [c for c in chords if not c[0][3]]
    assert [shape([(s, f) for _, s, f, _ in c]) for c in firsts[:4]] == [OPEN_CHORDS[n][0]
                                                                        for n in ("C", "G", "D", "Em")]
    # The E4 tied over the bar line: its continuation keeps its string and fret (not re-fingered).
    [start] = [c for c in chords if c[0][0] == 64 and len(c) == 1 and not c[0][3]]
    [cont] = [c for c in chords if c[0][3]]
    assert start[0][1:3] == cont[0][1:3]


def test_tab_engraves_without_warnings(tmp_path):
    from stemscribe.core.engrave import engrave

    notation = score_of(guitar_track(), "strings:drop-d capo:2")
    assert notation.tab_header == "Drop D tuning (D A D G B E), capo 2"
    xml = write_musicxml(notation, tmp_path / "score.musicxml")
    capo_tuning = tab.tuning_for("guitar", "drop-d", 2)
    assert tab_tuning(xml) == list(capo_tuning.sounding_open)  # frets read relative to the capo
    assert_playable(tab_notes(xml), capo_tuning.sounding_open, capo_tuning)
    result = engrave(xml, tmp_path, title="Tab", subtitle=notation.tab_header)
    ly = result.ly_path.read_text(encoding="utf-8")
    log = result.log_path.read_text(encoding="utf-8")
    assert "warning" not in log.split("== lilypond")[-1].lower(), log
    assert "\\new TabStaff" in ly
    # Drop D with a capo at 2: E A E A C# F# (the open strings as they sound).
    assert "\\stringTuning <e, b, e a cis' fis'>" in ly
    assert 'subtitle = "Drop D tuning (D A D G B E), capo 2"' in ly
    # Chord string numbers sit inside the chord, where the TabStaff reads them.
    assert re.search(r"<[a-g][a-z',]*\\[1-6] ", ly)
    assert not re.search(r">\d+\.?\s*\\[1-6]", ly)


@pytest.mark.slow
@pytest.mark.skipif(not GUITAR_CLIP.exists(), reason="../shared/devset not present")
def test_devset_guitar_voice_note_tab_is_playable(tmp_path):
    from stemscribe.core.engines.registry import ModelCache
    from stemscribe.core.pipeline import run
    from stemscribe.core.toolkit import Toolkit

    result = run([GUITAR_CLIP], tmp_path, parse_options("instrument:guitar"),
                 toolkit=Toolkit(engines=ModelCache(threads=0)))
    assert result["parts"][0]["tab"] == "standard"
    log = (tmp_path / "lilypond.log").read_text(encoding="utf-8")
    assert "warning" not in log.split("== lilypond")[-1].lower(), log
    assert "\\new TabStaff" in (tmp_path / "score.ly").read_text(encoding="utf-8")
    chords = tab_notes(tmp_path / "score.musicxml")
    assert len(chords) >= 40
    assert_playable(chords, STANDARD.open_pitches, STANDARD)
