"""Malformed client events get the API's error event and the connection stays open."""

from __future__ import annotations

import base64
import json

import pytest

MALFORMED = [
    pytest.param("{not json", "invalid_json", None, id="invalid-json"),
    pytest.param("[1, 2]", "invalid_event", None, id="not-an-object"),
    # Past Python's 4,300-digit int conversion limit: a bare ValueError that once dropped the client.
    pytest.param('{"type": ' + "9" * 5000 + "}", "invalid_json", None, id="integer-over-4300-digits"),
    pytest.param("[" * 100_000 + "]" * 100_000, "invalid_json", None, id="nesting-past-recursion-limit"),
    pytest.param('{"event_id": "evt_x"}', "invalid_event", None, id="missing-type"),
    pytest.param('{"type": 42}', "invalid_type", "type", id="type-not-a-string"),
    pytest.param('{"type": "response.audio.delta"}', "invalid_value", "type", id="unknown-type"),
    pytest.param(
        '{"type": "input_audio_buffer.append"}', "missing_required_parameter", "audio", id="missing-field"
    ),
    pytest.param(
        '{"type": "input_audio_buffer.append", "audio": 7}', "invalid_type", "audio", id="wrong-type"
    ),
    pytest.param(
        '{"type": "input_audio_buffer.append", "audio": "@@@"}', "invalid_value", "audio", id="bad-base64"
    ),
    pytest.param(
        '{"type": "conversation.item.create", "item": {"type": "message", "role": "robot", "content": []}}',
        "invalid_value",
        "item.role",
        id="bad-role",
    ),
    pytest.param(
        '{"type": "conversation.item.truncate", "item_id": "x", "content_index": 0, "audio_end_ms": "1"}',
        "invalid_type",
        "audio_end_ms",
        id="truncate-type",
    ),
    pytest.param(
        '{"type": "response.create", "response": {"conversation": "elsewhere"}}',
        "invalid_value",
        "response.conversation",
        id="conversation-value",
    ),
    pytest.param(
        '{"type": "response.create", "response": {"temperature": 0.8}}',
        "unknown_parameter",
        "response.temperature",
        id="response-beta-field",
    ),
    pytest.param('{"type": "output_audio_buffer.clear"}', "invalid_value", "type", id="webrtc-only-event"),
]


@pytest.mark.parametrize(("frame", "code", "param"), MALFORMED)
async def test_a_malformed_event_gets_an_error_and_the_connection_stays_open(
    emulator, session, frame, code, param
) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send_raw(frame)
        error = await stream.error()
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
        try:
            sent = json.loads(frame)
        except (ValueError, RecursionError):
            sent = None
        event_id = sent.get("event_id") if isinstance(sent, dict) else None
        assert error["event_id"] == event_id
        await stream.send({"type": "session.update", "session": {"type": "realtime"}})
        await stream.until("session.updated")


async def test_an_unknown_event_type_lists_the_supported_ones(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send_raw('{"type": "session.create", "event_id": "evt_u"}')
        error = await stream.error()
        assert error["message"].startswith(
            "Invalid value: 'session.create'. Supported values are: 'session.update', "
        )
        assert error["event_id"] == "evt_u"


async def test_an_oversized_event_gets_an_error_and_the_connection_stays_open(emulator, session) -> None:
    async with emulator(max_event_bytes=64 * 1024) as emu, session(emu) as stream:
        audio = base64.b64encode(bytes(100_000)).decode()
        await stream.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        error = await stream.error()
        assert error["code"] == "invalid_event" and "too large" in error["message"]
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")
        assert emu.stats.sessions[0].client_events[0]["oversized_bytes"] > 64 * 1024


async def test_a_binary_frame_gets_an_error(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send_raw(b"\x00\x01")
        assert (await stream.error())["code"] == "invalid_event"
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")


async def test_the_stats_record_each_client_event_without_its_audio(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(bytes(4800)).decode(),
                "event_id": "evt_a",
            }
        )
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")
        record = emu.stats.sessions[0]
        assert record.client_event_types == ["input_audio_buffer.append", "input_audio_buffer.clear"]
        assert record.client_events[0] == {
            "type": "input_audio_buffer.append",
            "audio": "<4800 bytes>",
            "event_id": "evt_a",
        }
        assert "input_audio_buffer.cleared" in record.server_events
        assert emu.stats.events_received("response.create") == []
