"""Corrections: transposition, re-notation from kept material, the correction job, and the chat's buttons.

No model runs here: the tracks are written by hand (a tune in C major at 120 bpm),
as a transcription would have kept them.
"""

from __future__ import annotations

import json
import time

import pytest
from music21 import key as m21key
from music21 import note as m21note
from rq import SimpleWorker
from rq.job import Job, JobStatus

from stemscribe.bots import corrections as bot_fix
from stemscribe.core.errors import CorrectionBusyError, JobNotFoundError, OptionsError
from stemscribe.core.notation import notate
from stemscribe.core.notation.transpose import parse_transposition, transpose_notation
from stemscribe.core.notes import Note, Track
from stemscribe.core.options import Options, parse_options
from stemscribe.core.revise import load_kept_material, revise, version_label, write_kept_material
from stemscribe.worker import corrections as worker_fix
from stemscribe.worker.client import JobClient, Requester
from stemscribe.worker.runtime import WorkerRuntime, install_runtime

from helpers.worker_fakes import worker_settings

BEAT_S = 0.5  # 120 bpm
#: A C major tune, one pitch per beat, four bars of 4/4 (the tonic on every downbeat).
TUNE = [60, 64, 67, 64, 65, 69, 67, 65, 64, 67, 72, 67, 62, 65, 71, 60]


def tune_track() -> Track:
    notes = [Note(i * BEAT_S, i * BEAT_S + 0.45 * 2 * BEAT_S / 2, p, 100 if i % 4 == 0 else 70)
             for i, p in enumerate(TUNE)]
    return Track(name="Flute", instrument="flute", notes=notes)


def written_pitches(notation) -> list[int]:
    return [n.pitch.midi for n in notation.score.recurse().getElementsByClass(m21note.Note)]


def key_sharps(notation) -> int:
    return notation.score.recurse().getElementsByClass(m21key.KeySignature).first().sharps


def solo(options: Options = Options()):
    return notate([tune_track()], layout="solo", options=options, audio_mono=None, sample_rate=22050, title="Tune")


# ---------------------------------------------------------------- transposition

@pytest.mark.parametrize("text, interval, instrument", [
    ("+2", "M2", None), ("-m3", "-m3", None), ("P5", "P5", None), ("-7", "-P5", None), ("+14", "M9", None),
    ("Bb", "M2", "Clarinet in B\u266d"), ("Bb-trumpet", "M2", "Trumpet in B\u266d"),
    ("Eb alto-sax", "M6", "Alto Saxophone in E\u266d"), ("alto-sax", "M6", "Alto Saxophone in E\u266d"),
    ("F horn", "P5", "Horn in F"), ("tenor-sax", "M9", "Tenor Saxophone in B\u266d"),
])
def test_parse_transposition(text, interval, instrument):
    moved = parse_transposition(text)
    assert (moved.interval, moved.instrument) == (interval, instrument)


@pytest.mark.parametrize("text", ["banjo", "+30", "P3", "M5", ""])
def test_bad_transpositions_are_refused_with_a_hint(text):
    with pytest.raises(OptionsError) as info:
        parse_transposition(text)
    assert info.value.hint


def test_transpose_is_an_option():
    assert parse_options("transpose:Bb-clarinet").transpose == "Bb-clarinet"
    assert parse_options('transpose:"F horn"').transpose == "F horn"
    assert parse_options("transpose:concert").transpose is None
    assert Options.from_dict(parse_options("transpose:-m3").to_dict()).transpose == "-m3"
    with pytest.raises(OptionsError):
        parse_options("transpose:kazoo")


def test_instrument_transposition_writes_the_instruments_pitch_and_key_but_midi_stays_concert():
    concert = solo()
    assert concert.key == "C major"
    before, midi_before = written_pitches(concert), [q.pitch for q in concert.midi_parts[0].notes]
    clarinet = transpose_notation(solo(), parse_transposition("Bb"))
    assert clarinet.key == "D major" and key_sharps(clarinet) == 2
    assert written_pitches(clarinet) == [p + 2 for p in before]
    assert [q.pitch for q in clarinet.midi_parts[0].notes] == midi_before
    assert clarinet.score.parts[0].partName == "Clarinet in B\u266d"
    horn = transpose_notation(solo(), parse_transposition("F"))
    assert horn.key == "G major" and written_pitches(horn) == [p + 7 for p in before]


def test_the_musicxml_of_a_transposed_part_says_how_it_sounds(tmp_path):
    """A notation program reading the file plays a B-flat clarinet part a major second below what is written."""
    import re

    from stemscribe.core.notation import write_musicxml

    path = write_musicxml(transpose_notation(solo(), parse_transposition("Bb-clarinet")), tmp_path / "score.musicxml")
    found = re.findall(r"<transpose>\s*<diatonic>(-?\d+)</diatonic>\s*<chromatic>(-?\d+)</chromatic>", path.read_text())
    assert found == [("-1", "-2")]
    # A plain interval moves the music itself: nothing to declare.
    moved = write_musicxml(transpose_notation(solo(), parse_transposition("-m3")), tmp_path / "moved.musicxml")
    assert "<transpose>" not in moved.read_text()


def test_the_cli_takes_a_transposition():
    from stemscribe.cli import build_parser, options_from_args

    args = build_parser().parse_args(["transcribe", "tune.ogg", "--out", "o", "--transpose", "alto-sax"])
    assert options_from_args(args, "").transpose == "alto-sax"


def test_interval_moves_the_midi_and_a_key_of_seven_sharps_is_respelled():
    down = transpose_notation(solo(), parse_transposition("-m3"))
    assert down.key == "A major" and [q.pitch for q in down.midi_parts[0].notes] == [p - 3 for p in TUNE]
    up = transpose_notation(solo(), parse_transposition("+1"))  # C# major would need 7 sharps
    assert up.key == "Db major" and key_sharps(up) == -5
    assert written_pitches(up) == [p + 1 for p in written_pitches(solo())]


# ---------------------------------------------------------------- kept material and revise

def test_kept_material_round_trips(tmp_path):
    track = tune_track()
    names = write_kept_material(tmp_path, [track], layout="solo", title="Tune", composer=None, audio_mono=None,
                                sample_rate=44100, beats_s=[0.0, 0.5])
    assert names == ["performance.json"]
    kept = load_kept_material(tmp_path)
    assert kept.layout == "solo" and kept.title == "Tune" and kept.beats_s == [0.0, 0.5]
    assert [(n.pitch, n.start_s) for n in kept.tracks[0].notes] == [(n.pitch, n.start_s) for n in track.notes]
    with pytest.raises(JobNotFoundError):
        load_kept_material(tmp_path / "gone")


def _kept_job(folder, options: Options = Options(instrument="flute")) -> dict:
    """Kept material plus the result.json a finished job would have, in folder."""
    write_kept_material(folder, [tune_track()], layout="solo", title="Tune", composer=None, audio_mono=None,
                        sample_rate=44100)
    first = solo(options)
    summary = {"mode": "solo", "layout": "solo", "title": "Tune", "options": options.to_dict(),
               "time_signature": first.time_signature, "key": first.key, "tempo_bpm": first.tempo_bpm,
               "bars": first.bars, "files": ["score.pdf"]}
    (folder / "result.json").write_text(json.dumps(summary))
    return summary


def test_revise_rewrites_the_meter_then_builds_on_it(tmp_path):
    summary = _kept_job(tmp_path)
    assert summary["time_signature"] == "4/4"
    v2 = revise(tmp_path, tmp_path / "v2", summary, {"time": "3/4"}, version=2)
    assert v2["time_signature"] == "3/4" and v2["version"] == 2 and v2["version_label"] == "version 2: 3/4"
    assert v2["key"] == "C major" and v2["bars"] > summary["bars"]
    for name in v2["files"]:
        assert (tmp_path / "v2" / name).is_file(), name
    assert (tmp_path / "v2" / "score.pdf").read_bytes().startswith(b"%PDF")
    assert b"<beats>3</beats>" in (tmp_path / "v2" / "score.musicxml").read_bytes()
    v3 = revise(tmp_path, tmp_path / "v3", v2, {"transpose": "Bb"}, version=3)
    assert v3["time_signature"] == "3/4" and v3["key"] == "D major" and v3["transposed_for"] == "Clarinet in B\u266d"
    assert v3["version_label"] == "version 3: for Clarinet in B\u266d"
    with pytest.raises(OptionsError):
        revise(tmp_path, tmp_path / "v4", v3, {"mode": "piano"}, version=4)


def test_version_labels():
    assert version_label(2, {"time": "6/8"}) == "version 2: 6/8"
    assert version_label(3, {"transpose": "+2"}) == "version 3: transposed up a major second"
    assert version_label(4, {"key": "E minor", "tempo": "140"}) == "version 4: E minor, \u2669 = 140"


# ---------------------------------------------------------------- the chat's suggestions

def test_suggestions_offer_runner_up_meters_tempo_readings_relative_key_level_and_instruments():
    summary = {"time_signature": "3/4", "tempo_bpm": 90.0, "key": "E minor", "layout": "piano",
               "options": {"level": "full"}}
    found = {s.label: s.changes for s in bot_fix.suggestions(summary)}
    assert found["6/8"] == {"time": "6/8"}
    assert {"tempo": "180"} in found.values() and {"tempo": "45"} in found.values()
    assert found["G major"] == {"key": "G major"}
    assert found["easy"] == {"level": "easy"}
    assert {"transpose": "Bb"} in found.values() and {"transpose": "Eb"} in found.values()
    assert {"transpose": "F"} in found.values()
    # Ranked alternatives from the notation come first; a solo score gets no level button.
    ranked = {**summary, "layout": "solo", "alternatives": {"meter": [
        {"time_signature": "3/4", "score": 0.9}, {"time_signature": "3/8", "score": 0.4}]}}
    labels = [s.label for s in bot_fix.suggestions(ranked)]
    assert labels[0] == "3/8" and "easy" not in labels
    transposed = {**summary, "options": {"transpose": "Bb"}}
    assert not any("transpose" in s.changes for s in bot_fix.suggestions(transposed))


def test_the_last_meter_button_is_the_written_meters_usual_confusion_not_the_rankings_fourth():
    # 4/4 written; the ranking's runners-up are all outside the 4/4 - 2/4 - 2/2 bar-length family.
    ranked = [{"time_signature": ts} for ts in ("4/4", "3/4", "6/8", "12/8", "9/8", "3/8")]
    meters = bot_fix.ranked_meters({"time_signature": "4/4", "alternatives": {"meter": ranked}})
    assert meters == ["3/4", "6/8", "12/8", bot_fix.METER_FAMILY["4/4"][0]]
    # When the ranking already names the family's first, the next ranked meter keeps its place.
    ranked = [{"time_signature": ts} for ts in ("4/4", "2/4", "3/4", "6/8", "2/2")]
    assert bot_fix.ranked_meters({"time_signature": "4/4", "alternatives": {"meter": ranked}}) == [
        "2/4", "3/4", "6/8", "2/2"]


def test_button_data_round_trips_within_telegrams_limit():
    job_id = "A" * 24
    for s in bot_fix.suggestions({"time_signature": "6/8", "tempo_bpm": 133.3, "key": "F# minor",
                                  "layout": "piano", "options": {}}):
        data = bot_fix.button_data(job_id, s.changes)
        assert len(data.encode()) <= 64
        assert bot_fix.parse_button_data(data) == (job_id, s.changes)
    assert bot_fix.parse_button_data("cfg:1:mode:piano") is None
    assert bot_fix.parse_button_data(f"fx:{job_id}:mode=piano") is None


def test_parse_fix_text():
    job_id = "b" * 24
    assert bot_fix.parse_fix_text('/fix time:6/8 tempo:140 key:"E minor" transpose:Bb') == (
        None, {"time": "6/8", "tempo": "140", "key": "E minor", "transpose": "Bb"})
    assert bot_fix.parse_fix_text(f"/fix@stemscribe_bot {job_id} transpose:Bb") == (job_id, {"transpose": "Bb"})
    with pytest.raises(OptionsError):
        bot_fix.parse_fix_text("/fix")
    with pytest.raises(OptionsError):
        bot_fix.parse_fix_text("/fix stems:yes")
    assert bot_fix.version_file_name("Reel", "v2/score.pdf") == "Reel-v2.pdf"
    assert bot_fix.version_file_name("Reel", "v3/preview-2.png") == "Reel-v3-preview-2.png"


# ---------------------------------------------------------------- the correction job

ALICE = Requester("telegram", "7", "7", {})
BOB = Requester("telegram", "8", "8", {})


@pytest.fixture
def finished_job(redis_conn, redis_url, tmp_path):
    """A JobClient and the id of a finished job of ALICE's whose kept material is stored."""
    settings = worker_settings(redis_url)
    client = JobClient(settings, redis=redis_conn)
    job_id = "J" * 24
    job = Job.create("builtins.len", args=([],), id=job_id, connection=redis_conn,
                     meta={"requester": ALICE.to_dict()})
    job.save()
    job.set_status(JobStatus.FINISHED)
    summary = _kept_job(tmp_path)
    for name in ("performance.json", "result.json"):
        client.store.put(job_id, name, (tmp_path / name).read_bytes(), ttl_s=600)
    runtime = WorkerRuntime.create(settings, redis_conn, pipeline=lambda *a, **k: {})
    install_runtime(runtime)
    try:
        yield client, job_id, summary
    finally:
        install_runtime(None)


def test_a_correction_job_writes_a_version_beside_the_job_and_runs_once(finished_job, redis_conn):
    client, job_id, _ = finished_job
    correction = worker_fix.submit_correction(client, job_id, {"time": "3/4"}, ALICE)
    assert (correction.version, correction.correction_id) == (2, f"{job_id}-v2")
    # A second tap while it is being written is refused, never queued twice.
    with pytest.raises(CorrectionBusyError):
        worker_fix.submit_correction(client, job_id, {"time": "3/4"}, ALICE)
    assert len(client.queues["stemscribe:short"]) == 1
    started = time.perf_counter()
    SimpleWorker([client.queues["stemscribe:short"]], connection=redis_conn).work(burst=True)
    assert time.perf_counter() - started < 60
    assert client.status(correction.correction_id).state == "finished"
    output = worker_fix.correction_output(client, correction.correction_id)
    assert output.summary["time_signature"] == "3/4" and output.summary["version"] == 2
    names = {a.name for a in output.artifacts}
    assert {"v2/score.pdf", "v2/preview.png", "v2/score.musicxml", "v2/score.mid", "v2/result.json"} <= names
    assert client.fetch_artifact(job_id, "result.json")  # version 1 untouched
    ttl = redis_conn.ttl(f"stemscribe:artifacts:{job_id}")
    assert 0 < ttl <= 600  # the version expires with the job, not later
    # The lock is gone: the next correction builds on version 2.
    third = worker_fix.submit_correction(client, job_id, {"transpose": "Bb"}, ALICE)
    SimpleWorker([client.queues["stemscribe:short"]], connection=redis_conn).work(burst=True)
    v3 = worker_fix.correction_output(client, third.correction_id).summary
    assert (third.version, v3["time_signature"], v3["key"]) == (3, "3/4", "D major")


def test_only_the_requester_or_a_moderator_may_correct_and_expiry_is_explained(finished_job, redis_conn):
    client, job_id, _ = finished_job
    with pytest.raises(JobNotFoundError, match="Only the person"):
        worker_fix.submit_correction(client, job_id, {"time": "3/4"}, BOB)
    assert worker_fix.submit_correction(client, job_id, {"key": "A minor"}, BOB, moderator=True).version == 2
    with pytest.raises(OptionsError):
        redis_conn.delete(worker_fix.lock_key("stemscribe", job_id))
        worker_fix.submit_correction(client, job_id, {"engine": "transkun"}, ALICE)
    client.store.delete(job_id)
    with pytest.raises(JobNotFoundError) as info:
        worker_fix.submit_correction(client, job_id, {"time": "3/4"}, ALICE)
    assert "expired" in info.value.message and "again" in info.value.hint
    with pytest.raises(JobNotFoundError, match="expired"):
        worker_fix.submit_correction(client, "N" * 24, {"time": "3/4"}, ALICE)
