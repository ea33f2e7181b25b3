"""Corrections on Discord, end to end: the real client, the fake Discord, a real Redis and a real worker.

A 4 s flute clip is transcribed once; the result message carries correction
buttons. Ann's click on a meter button brings version 2 in that meter, her
/fix with a transposition brings version 3, Bob's click (no Manage Messages)
is refused, and once the job's files are gone a click gets the expiry message.
"""

from __future__ import annotations

import asyncio
import json

from helpers.discord_fake import FakeDiscord, snowflake
from helpers.discord_harness import bot_settings, make_clip, restore_discord_endpoints, running_bot

from stemscribe.worker.client import JobClient

from test_discord_e2e import JOB_TIMEOUT_S, SLUG, TITLE, _transcribe_payload, worker  # noqa: F401 - fixture

#: Discord permission bits: view channel + send messages (no Manage Messages).
MEMBER = 0x400 | 0x800


def _click(fake: FakeDiscord, user: dict, custom_id: str, message: dict, *, permissions: int = MEMBER) -> dict:
    payload = fake._interaction_base(user, channel_id=None, permissions=permissions,  # noqa: SLF001 - test helper
                                     app_permissions=MEMBER | 0x4000 | 0x8000,
                                     attachment_size_limit=10 * 1024 * 1024)
    payload.update(type=3, data={"custom_id": custom_id, "component_type": 2}, message=message)
    return payload


def _message_with(fake: FakeDiscord, components: list) -> dict:
    return {"id": snowflake(), "channel_id": fake.channel_id, "author": fake.bot_user, "content": "",
            "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": False, "type": 0, "flags": 0, "components": components}


def _custom_ids(components: list) -> list[str]:
    return [b["custom_id"] for row in components for b in row.get("components", [])]


def _callback_text(fake: FakeDiscord, payload: dict) -> str:
    calls = [c for c in fake.interaction_calls(payload) if c.path.endswith("/callback")]
    return ((calls[0].json or {}).get("data") or {}).get("content") or "" if calls else ""


def test_buttons_fix_refusal_and_expiry(worker, redis_url, tmp_path):  # noqa: F811
    clip = make_clip(tmp_path / "banks.ogg", start_s=1.0, duration_s=4.0).read_bytes()

    async def version_message(fake: FakeDiscord, payload: dict):
        return await fake.wait_for(lambda c: c.method == "PATCH" and payload["token"] in c.path and c.files,
                                   timeout=90)

    async def scenario():
        async with FakeDiscord() as fake:
            settings = bot_settings(fake, redis_url)
            client = JobClient(settings)
            async with running_bot(fake, settings, client):
                ann, bob = fake.user_payload("ann"), fake.user_payload("bob")
                first = _transcribe_payload(fake, ann, clip, limit=10 * 1024 * 1024)
                await fake.dispatch("INTERACTION_CREATE", first)
                final = await fake.wait_for(lambda c: c.method == "PATCH" and first["token"] in c.path and c.files,
                                            timeout=JOB_TIMEOUT_S)
                components = final.json["components"]
                ids = _custom_ids(components)
                meters = [i for i in ids if ":time=" in i]
                assert meters and any(":tempo=" in i for i in ids) and any(":key=" in i for i in ids)
                assert any(i.endswith(":transpose=Bb") for i in ids) and any(i.startswith("fxm:") for i in ids)
                meter = meters[0].rsplit("=", 1)[1]
                job_id = meters[0].split(":")[1]
                score = _message_with(fake, components)

                # Bob may not correct Ann's score.
                refused = _click(fake, bob, meters[0], score)
                await fake.dispatch("INTERACTION_CREATE", refused)
                await fake.wait_for(lambda c: refused["token"] in c.path)
                await asyncio.sleep(0.2)
                assert "Only the person" in _callback_text(fake, refused)

                # Ann's click: version 2 in the chosen meter, as a new message with its own files and buttons.
                tap = _click(fake, ann, meters[0], score)
                await fake.dispatch("INTERACTION_CREATE", tap)
                v2 = await version_message(fake, tap)
                assert _callback_text(fake, tap).startswith("Writing version 2")
                assert v2.json["content"].startswith(f"Version 2: {meter}"), v2.json["content"]
                assert f"{SLUG}-v2.pdf" in v2.filenames and f"{SLUG}-v2-preview.png" in v2.filenames
                assert v2.json["embeds"][0]["title"] == f"{TITLE} \u2014 version 2: {meter}"
                assert _custom_ids(v2.json["components"])

                # /fix with a transposition: version 3, for a B-flat clarinet, still in the chosen meter.
                fix = fake.slash("fix", ann, [{"name": "job", "type": 3, "value": job_id},
                                              {"name": "transpose", "type": 3, "value": "Bb-clarinet"}])
                await fake.dispatch("INTERACTION_CREATE", fix)
                v3 = await version_message(fake, fix)
                assert v3.json["content"].startswith("Version 3: for Clarinet in B"), v3.json["content"]
                xml = next(f.data for f in v3.files if f.filename == f"{SLUG}-v3.musicxml")
                assert b"Clarinet in B" in xml
                summary = json.loads(client.fetch_artifact(job_id, "v3/result.json"))
                assert summary["time_signature"] == meter

                # "Other fix…" opens a form; what is typed there makes version 4.
                other = next(i for i in ids if i.startswith("fxm:"))
                opened = _click(fake, ann, other, score)
                await fake.dispatch("INTERACTION_CREATE", opened)
                callback = await fake.wait_for(lambda c: opened["token"] in c.path and c.path.endswith("/callback"))
                assert callback.json["type"] == 9 and callback.json["data"]["custom_id"] == other
                form = fake._interaction_base(ann, channel_id=None, permissions=MEMBER,  # noqa: SLF001
                                              app_permissions=MEMBER | 0x4000 | 0x8000,
                                              attachment_size_limit=10 * 1024 * 1024)
                field_id = callback.json["data"]["components"][0]["components"][0]["custom_id"]
                form.update(type=5, data={"custom_id": other, "components": [{"type": 1, "components": [
                    {"type": 4, "custom_id": field_id, "value": 'key:"E minor"'}]}]})
                await fake.dispatch("INTERACTION_CREATE", form)
                v4 = await version_message(fake, form)
                assert v4.json["content"].startswith("Version 4: E minor"), v4.json["content"]

                # After expiry, a click says so and how to send it again.
                client.store.delete(job_id)
                late = _click(fake, ann, meters[0], score)
                await fake.dispatch("INTERACTION_CREATE", late)
                await fake.wait_for(lambda c: late["token"] in c.path)
                await asyncio.sleep(0.2)
                text = _callback_text(fake, late)
                assert "expired" in text and "again" in text, text
    with restore_discord_endpoints():
        asyncio.run(scenario())
