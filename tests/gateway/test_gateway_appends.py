"""Audio appends the service would refuse are refused at the gateway, with the client's event_id
(issue 13, defect 10): base64 whose length is not a multiple of 4, half a PCM16 sample; and the
event_id of an event too large or over the rate limit is echoed when it can be read.

Each runs three ways (direct with the compiled path, compiled path off, plain ASGI: conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import b64

APPEND = "input_audio_buffer.append"
# The two shapes the fast path recognises (browser UI: compact; the SDK: json.dumps defaults).
COMPACT = '{{"type":"input_audio_buffer.append","audio":"{audio}","event_id":"{event_id}"}}'
SPACED = '{{"type": "input_audio_buffer.append", "audio": "{audio}", "event_id": "{event_id}"}}'


async def _appends_forwarded(emu) -> list[str | None]:
    """The event_ids of the appends the emulator received."""
    return [e.get("event_id") for e in emu.stats.events_received("input_audio_buffer.append")]


@pytest.mark.parametrize("shape", [COMPACT, SPACED], ids=["compact", "spaced"])
@pytest.mark.parametrize(
    ("audio", "rule"),
    [
        ("AAAAAA", "audio is base64"),  # 6 characters: not a multiple of 4
        ("AAAA", "whole samples"),  # 3 bytes of PCM16: a sample and a half
        (b64(bytes(4801)), "whole samples"),  # an odd chunk as a client's off-by-one sends it
    ],
    ids=["base64-length", "three-bytes", "odd-chunk"],
)
async def test_an_append_the_service_would_refuse_is_refused_with_its_event_id_and_not_forwarded(
    emulator, gateway, client, shape: str, audio: str, rule: str
) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw) as c:
        await c.until("session.updated")
        await c.send(shape.format(audio=audio, event_id="evt_bad"))
        error = await c.error()
        good = b64(bytes(4800))
        await c.send(shape.format(audio=good, event_id="evt_good"))
        await c.send({"type": "input_audio_buffer.clear", "event_id": "evt_probe"})
        await c.until("input_audio_buffer.cleared")
        forwarded = await _appends_forwarded(emu)
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "audio", "evt_bad")
    assert f"Rule '{rule}'" in error["message"]
    assert forwarded == ["evt_good"]


async def test_an_odd_number_of_bytes_is_whole_samples_of_g711_and_is_forwarded(
    emulator, gateway, client, tmp_path: Path
) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('input_format = "pcmu"\n')
    async with emulator() as emu, gateway(emu, gateway_profile=profile) as gw, client(gw) as c:
        await c.until("session.updated")
        await c.send(COMPACT.format(audio="AAAA", event_id="evt_ulaw"))  # 3 bytes: 3 samples
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
        assert "error" not in c.types()
        assert await _appends_forwarded(emu) == ["evt_ulaw"]


async def test_an_event_too_large_gets_its_event_id_back_when_it_can_be_read(
    emulator, gateway, client
) -> None:
    async with emulator() as emu, gateway(emu, gateway_max_message_bytes=64 * 1024) as gw, client(gw) as c:
        await c.until("session.updated")
        big = b64(bytes(96 * 1024))
        for event_id, text in [
            ("evt_first", json.dumps({"type": APPEND, "event_id": "evt_first", "audio": big})),
            ("evt_last", json.dumps({"type": APPEND, "audio": big, "event_id": "evt_last"})),
            # An event_id inside a string is text, not the event's id.
            (None, json.dumps({"type": "conversation.item.create", "item": {"content": [
                {"type": "input_text", "text": '"event_id": "evt_fake" ' + "x" * 70_000}]}})),
        ]:  # fmt: skip
            await c.send(text)
            error = await c.error()
            assert (error["code"], error["event_id"]) == ("message_too_large", event_id)


async def test_an_event_over_the_rate_limit_gets_its_event_id_back(emulator, gateway, client) -> None:
    limits = {"gateway_max_events_per_s": 1.0, "gateway_event_burst": 1}
    async with emulator() as emu, gateway(emu, **limits) as gw, client(gw) as c:
        await c.until("session.updated")
        await c.send(COMPACT.format(audio=b64(bytes(4800)), event_id="evt_in_time"))
        await c.send(COMPACT.format(audio=b64(bytes(4800)), event_id="evt_too_soon"))  # the fast path
        await c.send({"type": "input_audio_buffer.clear", "event_id": "evt_clear_too_soon"})  # parsed
        first, second = await c.error(), await c.error()
    assert (first["code"], first["event_id"]) == ("rate_limit_exceeded", "evt_too_soon")
    assert (second["code"], second["event_id"]) == ("rate_limit_exceeded", "evt_clear_too_soon")
