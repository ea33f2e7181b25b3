"""Writing a Notation to MusicXML and to a quantized score MIDI file.

Exports: write_musicxml, write_midi.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import mido

if TYPE_CHECKING:
    from . import Notation

#: Ticks per quarter note in score.mid.
MIDI_TICKS_PER_QUARTER = 480


def write_musicxml(notation: "Notation", path: str | Path) -> Path:
    """Write the score as uncompressed MusicXML.

    Args:
        notation: from notate().
        path: destination file (".musicxml").

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    notation.score.write("musicxml", fp=str(path), makeNotation=False)
    if getattr(notation, "tabs", None):
        _write_tab_technicals(path, notation.tabs)
    return path


_TAB_MARK_RE = re.compile(r"tab-s(\d+)-f(\d+)")
#: Pitch class -> (MusicXML step, alter) for string tunings.
_TUNING_STEPS = [("C", 0), ("C", 1), ("D", 0), ("E", -1), ("E", 0), ("F", 0), ("F", 1), ("G", 0), ("A", -1),
                 ("A", 0), ("B", -1), ("B", 0)]


def _write_tab_technicals(path: Path, tunings: list) -> None:
    """Give the tab parts their string tunings and every tab note its <string> and <fret>.

    Tab parts are the parts whose first clef is TAB, in the order of tunings. The build
    marks tab notes with a fingering text (build.TAB_MARK) that becomes <string> and <fret>
    here. The tuning written is the open strings with the capo on, so that fret numbers,
    which are relative to the capo, read true in MuseScore and LilyPond alike.
    """
    text = path.read_text(encoding="utf-8")
    prolog = text[: text.find("<score-partwise")]  # the XML declaration and music21's DOCTYPE
    root = ET.fromstring(text)
    tab_parts = [part for part in root.iter("part") if part.findtext("measure/attributes/clef/sign") == "TAB"]
    for part, tuning in zip(tab_parts, tunings):
        details = part.find("measure/attributes/staff-details")
        if details is not None:
            for line, pitch in enumerate(tuning.sounding_open, start=1):
                step, alter = _TUNING_STEPS[pitch % 12]
                element = ET.SubElement(details, "staff-tuning", line=str(line))
                ET.SubElement(element, "tuning-step").text = step
                if alter:
                    ET.SubElement(element, "tuning-alter").text = str(alter)
                ET.SubElement(element, "tuning-octave").text = str(pitch // 12 - 1)
        for technical in part.iter("technical"):
            for fingering in technical.findall("fingering"):
                match = _TAB_MARK_RE.fullmatch((fingering.text or "").strip())
                if match is None:
                    continue
                index = list(technical).index(fingering)
                technical.remove(fingering)
                string = ET.Element("string")
                string.text = match.group(1)
                fret = ET.Element("fret")
                fret.text = match.group(2)
                technical.insert(index, fret)
                technical.insert(index, string)
    ET.indent(root, space="  ")
    path.write_text(prolog + ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")


def write_midi(notation: "Notation", path: str | Path) -> Path:
    """Write the quantized score as a type-1 MIDI file with the tempo map and meter.

    Note times are the score's (quarters), so the file plays the notation, not the
    performance; notes.mid (performance time) is the pipeline's job.

    Args:
        notation: from notate().
        path: destination file (".mid").

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    midi = mido.MidiFile(type=1, ticks_per_beat=MIDI_TICKS_PER_QUARTER)
    conductor = mido.MidiTrack()
    midi.tracks.append(conductor)
    num, den = (int(x) for x in notation.time_signature.split("/"))
    meta = [(0, mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))]
    try:
        meta.append((0, mido.MetaMessage("key_signature", key=_mido_key(notation.key), time=0)))
    except (KeyError, ValueError):  # a key MIDI cannot name (e.g. "A# major"): leave it out
        pass
    for offset_q, bpm in notation.tempo_map:
        tick = int(round(offset_q * MIDI_TICKS_PER_QUARTER))
        meta.append((tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)))
    _emit(conductor, meta)
    channel_pool = [c for c in range(16) if c != 9]
    for index, part in enumerate(notation.midi_parts):
        track = mido.MidiTrack()
        midi.tracks.append(track)
        channel = 9 if part.is_drum else channel_pool[index % len(channel_pool)]
        events = [(0, mido.MetaMessage("track_name", name=part.name[:60], time=0))]
        if not part.is_drum:
            events.append((0, mido.Message("program_change", program=part.program, channel=channel, time=0)))
        for q in part.notes:
            on = int(round(q.onset * MIDI_TICKS_PER_QUARTER))
            off = max(on + 1, int(round(q.end * MIDI_TICKS_PER_QUARTER)))
            vel = max(1, min(127, int(q.velocity)))
            events.append((on, mido.Message("note_on", note=q.pitch, velocity=vel, channel=channel, time=0)))
            events.append((off, mido.Message("note_off", note=q.pitch, velocity=0, channel=channel, time=0)))
        _emit(track, events)
    midi.save(str(path))
    return path


def _emit(track: mido.MidiTrack, events: list) -> None:
    # note_off before note_on at the same tick, so repeated notes re-strike.
    events.sort(key=lambda e: (e[0], 0 if e[1].type in ("note_off",) else 1))
    now = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))


def _mido_key(name: str) -> str:
    tonic, mode = name.split()
    return tonic + ("m" if mode == "minor" else "")
