"""Writing a Notation to MusicXML and to a quantized score MIDI file.

Exports: write_musicxml, write_midi.
"""

from __future__ import annotations

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
    return path


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
