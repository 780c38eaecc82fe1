"""session.created defaults, session.update merging, and refused updates (§2.2)."""

from __future__ import annotations

import json
import time

import pytest

from realtalk.emulator import EmulatorConfig


async def test_session_created_carries_the_ga_defaults_and_expires_at(emulator, session) -> None:
    async with emulator(session_limit_s=600) as emu, session(emu) as stream:
        created = stream.events[0]["session"]
        assert created["id"].startswith("sess_") and created["object"] == "realtime.session"
        assert abs(created["expires_at"] - (time.time() + 600)) < 5
        assert created["output_modalities"] == ["audio"]
        assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert created["audio"]["input"]["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 200,
            "idle_timeout_ms": None,
            "create_response": True,
            "interrupt_response": True,
        }
        assert created["audio"]["input"]["transcription"] is None
        assert created["audio"]["output"] == {
            "format": {"type": "audio/pcm", "rate": 24000},
            "voice": "marin",
            "speed": 1.0,
        }
        assert (created["tools"], created["tool_choice"], created["max_output_tokens"]) == ([], "auto", "inf")


async def test_the_default_session_limit_is_thirty_minutes() -> None:
    assert EmulatorConfig().session_limit_s == 1800


async def test_an_update_is_merged_and_answered_with_the_full_session(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "event_id": "evt_1",
                "session": {
                    "type": "realtime",
                    "instructions": "Speak like a pirate.",
                    "audio": {
                        "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}}
                    },
                },
            }
        )
        updated = (await stream.until("session.updated"))["session"]
        assert updated["instructions"] == "Speak like a pirate."
        detection = updated["audio"]["input"]["turn_detection"]
        assert detection["silence_duration_ms"] == 700 and detection["threshold"] == 0.5
        assert updated["audio"]["output"]["voice"] == "marin"  # untouched keys stay
        assert updated["id"] == stream.events[0]["session"]["id"]
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
            }
        )
        cleared = (await stream.until("session.updated"))["session"]
        assert cleared["audio"]["input"]["turn_detection"] is None
        assert cleared["instructions"] == "Speak like a pirate."


REFUSED = [
    pytest.param(
        {"instructions": "no type"},
        "missing_required_parameter",
        "session.type",
        "Missing required parameter: 'session.type'.",
        id="missing-type",
    ),
    pytest.param(
        {"type": "realtime", "temperature": 0.7},
        "unknown_parameter",
        "session.temperature",
        "Unknown parameter: 'session.temperature'.",
        id="beta-temperature",
    ),
    pytest.param(
        {"type": "realtime", "voice": "alloy", "instructions": "changed"},
        "unknown_parameter",
        "session.voice",
        None,
        id="beta-flat-voice",
    ),
    pytest.param(
        {"type": "realtime", "modalities": ["text"]},
        "unknown_parameter",
        "session.modalities",
        None,
        id="beta-modalities",
    ),
    pytest.param(
        {"type": "realtime", "input_audio_format": "pcm16"},
        "unknown_parameter",
        "session.input_audio_format",
        None,
        id="beta-format",
    ),
    pytest.param(
        {"type": "realtime", "output_modalities": ["video"]},
        "invalid_value",
        "session.output_modalities[0]",
        "Invalid value: 'video'. Supported values are: 'text' and 'audio'.",
        id="bad-modality",
    ),
    pytest.param(
        {"type": "realtime", "output_modalities": ["audio", "text"]},
        "invalid_value",
        "session.output_modalities",
        None,
        id="both-modalities",
    ),
    pytest.param(
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}},
        },
        "invalid_type",
        "session.audio.input.turn_detection.threshold",
        None,
        id="threshold-type",
    ),
    pytest.param(
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}},
        },
        "decimal_above_max_value",
        "session.audio.input.turn_detection.threshold",
        None,
        id="threshold-range",
    ),
    pytest.param(
        {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "magic_vad"}}}},
        "invalid_value",
        "session.audio.input.turn_detection.type",
        "Invalid value: 'magic_vad'. Supported values are: 'server_vad' and 'semantic_vad'.",
        id="vad-type",
    ),
    pytest.param(
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "idle_timeout_ms": 6000}}},
        },
        "unknown_parameter",
        "session.audio.input.turn_detection.idle_timeout_ms",
        None,
        id="semantic-idle-timeout",
    ),
    pytest.param(
        {"type": "realtime", "audio": {"output": {"voice": "robot"}}},
        "invalid_value",
        "session.audio.output.voice",
        None,
        id="voice-name",
    ),
    pytest.param(
        {"type": "realtime", "audio": {"output": {"speed": 3.0}}},
        "decimal_above_max_value",
        "session.audio.output.speed",
        None,
        id="speed-range",
    ),
    pytest.param(
        {"type": "realtime", "max_output_tokens": 0},
        "integer_below_min_value",
        "session.max_output_tokens",
        None,
        id="max-tokens",
    ),
    pytest.param(
        {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
        "invalid_value",
        "session.audio.input.format.rate",
        None,
        id="pcm-rate",
    ),
    pytest.param(
        {"type": "realtime", "model": "gpt-realtime-mini"},
        "invalid_value",
        "session.model",
        None,
        id="model-change",
    ),
]


@pytest.mark.parametrize(("update", "code", "param", "message"), REFUSED)
async def test_a_refused_update_gets_the_real_error_and_changes_nothing(
    emulator, session, update, code, param, message
) -> None:
    async with emulator() as emu, session(emu) as stream:
        before = stream.events[0]["session"]
        await stream.send_raw(
            json.dumps({"type": "session.update", "event_id": "evt_bad", "session": update})
        )
        error = await stream.error()
        assert (error["type"], error["code"], error["param"], error["event_id"]) == (
            "invalid_request_error",
            code,
            param,
            "evt_bad",
        )
        if message is not None:
            assert error["message"] == message
        await stream.send({"type": "session.update", "session": {"type": "realtime"}})
        after = (await stream.until("session.updated"))["session"]
        assert after == before


async def test_the_voice_cannot_change_once_the_model_has_spoken(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}},
            }
        )
        assert (await stream.until("session.updated"))["session"]["audio"]["output"]["voice"] == "cedar"
        await stream.send({"type": "response.create"})
        await stream.until("response.done")
        await stream.send(
            {
                "type": "session.update",
                "event_id": "evt_v",
                "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}},
            }
        )
        error = await stream.error()
        assert error["code"] == "cannot_update_voice" and error["event_id"] == "evt_v"
