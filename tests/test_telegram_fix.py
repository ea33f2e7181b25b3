"""Corrections on Telegram, end to end: the real bot, the fake Bot API, a real Redis and a real worker.

A 4 s flute clip is transcribed once; its preview carries correction buttons.
Alice's tap on a meter button brings version 2 in that meter, her typed /fix
with a transposition (as a reply to the score) brings version 3 for a B-flat
clarinet, Bob's tap on her score is refused, and once her job's files are gone
a tap is answered with the expiry message. No model runs for a correction.
"""

from __future__ import annotations


from helpers.telegram_fake import DEVSET_FLUTE, callback_update, cut_clip, make_user, message_update
from stemscribe.settings import load_settings
from stemscribe.worker.client import JobClient, Requester

from test_telegram_e2e import JOB_TIMEOUT_S, bot, final_text, worker  # noqa: F401 - fixtures

ALICE, BOB = make_user(411, "Alice"), make_user(422, "Bob")
DEVSET = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "devset"


def _photos(api, chat_id: int) -> list:
    return [c for c in api.calls_of("sendPhoto", chat_id=chat_id) if c.status == 200]


def _answers(api) -> list[str]:
    return [c.params.get("text") or "" for c in api.calls_of("answerCallbackQuery")]


def _documents(api, chat_id: int) -> set[str]:
    return {c.upload("document")[0] for c in api.calls_of("sendDocument", chat_id=chat_id) if c.status == 200}


def test_buttons_fix_refusal_and_expiry(worker, bot, tmp_path, redis_url):  # noqa: F811
    api = bot.api
    clip = cut_clip(str(DEVSET / DEVSET_FLUTE), str(tmp_path / "a.ogg"), seconds=4)
    file_id, size = api.add_file(clip)
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], caption='title:"Banks" mode:solo instrument:flute',
                                   voice={"file_id": file_id, "file_unique_id": "ua", "duration": 4,
                                          "mime_type": "audio/ogg", "file_size": size}))
    done = api.wait_for(final_text(ALICE["id"]), timeout_s=JOB_TIMEOUT_S)
    assert done.startswith("Done: Solo"), done

    # The score's picture carries the corrections: runner-up meters, tempo readings, relative key, instruments.
    (photo,) = _photos(api, ALICE["id"])
    keyboard = photo.params["reply_markup"]["inline_keyboard"]
    data = [b["callback_data"] for row in keyboard for b in row]
    assert all(len(d.encode()) <= 64 for d in data)
    meters = [d for d in data if ":time=" in d]
    assert meters and any(":tempo=" in d for d in data) and any(":key=" in d for d in data)
    assert any(d.endswith(":transpose=Bb") for d in data) and any(d.endswith(":transpose=F") for d in data)
    meter = meters[0].rsplit("=", 1)[1]
    score_message = {**photo.result, "reply_markup": photo.params["reply_markup"]}

    # Bob may not correct Alice's score.
    api.push_update(callback_update(user=BOB, message=score_message, data=meters[0]))
    api.wait_for(lambda a: any("Only the person" in t for t in _answers(a)))

    # Alice's tap: version 2 in the chosen meter, files named -v2, without clobbering version 1.
    api.push_update(callback_update(user=ALICE, message=score_message, data=meters[0]))
    api.wait_for(lambda a: len(_photos(a, ALICE["id"])) >= 2, timeout_s=60)
    v2 = _photos(api, ALICE["id"])[1]
    assert v2.params["caption"].startswith(f"Version 2: {meter}"), v2.params["caption"]
    assert f" {meter} " in v2.params["caption"]
    assert v2.upload("photo")[0] == "Banks-v2-preview.png"
    assert v2.params["reply_markup"]["inline_keyboard"]
    api.wait_for(lambda a: {"Banks-v2.pdf", "Banks-v2.musicxml", "Banks-v2.mid"} <= _documents(a, ALICE["id"]))
    assert any(t.startswith("Writing version 2") for t in _answers(api))

    # A typed /fix with a transposition, as a reply to the score: version 3 for a B-flat clarinet.
    api.push_update(message_update(user=ALICE, chat_id=ALICE["id"], text="/fix transpose:Bb-clarinet",
                                   reply_to=score_message))
    api.wait_for(lambda a: len(_photos(a, ALICE["id"])) >= 3, timeout_s=60)
    v3 = _photos(api, ALICE["id"])[2]
    assert v3.params["caption"].startswith("Version 3: for Clarinet in B"), v3.params["caption"]
    api.wait_for(lambda a: "Banks-v3.musicxml" in _documents(a, ALICE["id"]))
    xml = next(c.upload("document")[1] for c in api.calls_of("sendDocument", chat_id=ALICE["id"])
               if c.upload("document")[0] == "Banks-v3.musicxml")
    assert b"Clarinet in B" in xml
    client = JobClient(load_settings(env={}, redis_url=redis_url))
    (job,) = client.jobs_for(Requester("telegram", str(ALICE["id"]), str(ALICE["id"])))
    v1_key = client.result(job.job_id).summary["key"]
    import json

    v3_summary = json.loads(client.fetch_artifact(job.job_id, "v3/result.json"))
    assert v3_summary["time_signature"] == meter  # the correction builds on version 2
    assert v3_summary["key"] != v1_key  # written a tone higher, with its key signature
    assert client.fetch_artifact(job.job_id, "score.pdf").startswith(b"%PDF")  # version 1 is still there

    # Once the job's files have expired, a tap says so and how to send it again.
    client.store.delete(job.job_id)
    api.push_update(callback_update(user=ALICE, message=score_message, data=meters[0]))
    api.wait_for(lambda a: any("expired" in t and "again" in t for t in _answers(a)))
    assert len(_photos(api, ALICE["id"])) == 3
