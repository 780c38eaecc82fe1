"""The client-event allowlist and the redaction of session events (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from realtalk.gateway.policy import ClientEventPolicy, Refusal, error_event, redact_session_event

POLICY = ClientEventPolicy(frozenset({"voice", "turn_detection"}))
USER_TEXT = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}

ALLOWED: list[dict[str, Any]] = [
    {"type": "input_audio_buffer.append", "audio": "AAAA", "event_id": "e"},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "conversation.item.create", "item": USER_TEXT, "previous_item_id": "root"},
    {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "c", "output": "{}"},
    },
    {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 10},
    {"type": "response.create"},
    {"type": "response.create", "response": {"conversation": "none", "metadata": {"a": "b"}}},
    {"type": "response.create", "response": {"audio": {"output": {"voice": "ash"}}}},
    {"type": "response.cancel", "response_id": "r"},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}},
]


@pytest.mark.parametrize("event", ALLOWED, ids=[e["type"] + str(i) for i, e in enumerate(ALLOWED)])
def test_allowlisted_events_pass(event: dict[str, Any]) -> None:
    assert POLICY.check(event) is None


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        (
            {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}},
            "field_not_allowed",
            "session.instructions",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime", "model": "gpt-4o"}},
            "field_not_allowed",
            "session.model",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"speed": 1.2}}}},
            "field_not_allowed",
            "session.audio.output.speed",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"nope": 1}}}},
            "field_not_allowed",
            "session.audio.input.nope",
        ),
        (
            {"type": "session.update", "session": {"type": "realtime", "tracing": "auto"}},
            "field_not_allowed",
            "session.tracing",
        ),
        ({"type": "session.update", "session": {"type": "transcription"}}, "invalid_value", "session.type"),
        ({"type": "session.update", "session": "x"}, "invalid_value", "session"),
        (
            {"type": "response.create", "response": {"prompt": {"id": "p"}}},
            "field_not_allowed",
            "response.prompt",
        ),
        (
            {"type": "response.create", "response": {"max_output_tokens": 5}},
            "field_not_allowed",
            "response.max_output_tokens",
        ),
        (
            {
                "type": "response.create",
                "response": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}},
            },
            "field_not_allowed",
            "response.audio.output.format",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {**USER_TEXT, "content": [{"type": "output_text", "text": "x"}]},
            },
            "item_not_allowed",
            "item.content[0].type",
        ),
        (
            {"type": "conversation.item.create", "item": {**USER_TEXT, "extra": 1}},
            "field_not_allowed",
            "item.extra",
        ),
        ({"type": "conversation.item.create"}, "invalid_value", "item"),
        ({"type": "input_audio_buffer.append", "audio": 5}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.append", "audio": "AAAA", "event_id": 7}, "invalid_event", "event_id"),
        ({"type": 3}, "invalid_event", "type"),
    ],
)
def test_forbidden_events_are_refused_naming_the_param(event: dict[str, Any], code: str, param: str) -> None:
    refusal = POLICY.check(event)
    assert refusal is not None and (refusal.code, refusal.param) == (code, param)


def test_a_refusal_message_names_the_rule_and_what_is_adjustable() -> None:
    refusal = POLICY.check({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}})
    assert refusal is not None
    assert "Rule 'client-adjustable settings'" in refusal.message
    assert "Client-adjustable: turn_detection, voice." in refusal.message


def test_the_error_event_echoes_the_clients_event_id() -> None:
    import json

    event = json.loads(error_event(Refusal("event_not_allowed", "no", "type"), "evt_7"))
    assert event["type"] == "error" and event["event_id"].startswith("event_")
    assert event["error"] == {
        "type": "invalid_request_error",
        "code": "event_not_allowed",
        "message": "no",
        "param": "type",
        "event_id": "evt_7",
    }


def test_session_events_lose_instructions_prompt_and_tool_definitions() -> None:
    event = {
        "type": "session.updated",
        "event_id": "event_1",
        "session": {
            "id": "sess_1",
            "instructions": "secret",
            "prompt": {"id": "pmpt_1"},
            "voice": "x",
            "tools": [
                {
                    "type": "function",
                    "name": "lookup",
                    "description": "secret",
                    "parameters": {"type": "object"},
                },
                {
                    "type": "mcp",
                    "server_label": "crm",
                    "server_url": "https://secret.example",
                    "headers": {"a": "b"},
                },
            ],
        },
    }
    redacted = redact_session_event(event)
    assert redacted["session"] == {
        "id": "sess_1",
        "voice": "x",
        "tools": [{"type": "function", "name": "lookup"}, {"type": "mcp", "server_label": "crm"}],
    }
    assert event["session"]["instructions"] == "secret"  # the input is not changed


@pytest.mark.parametrize("part_type", [{"a": 1}, ["input_text"], None, 3])
def test_a_content_part_whose_type_is_not_a_string_is_refused_not_a_crash(part_type: object) -> None:
    # Found by the long fuzz run: a dict or list here raised TypeError (unhashable), a 1011.
    event = {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": part_type, "text": "x"}]},
    }
    refusal = POLICY.check(event)
    assert refusal is not None and (refusal.code, refusal.param) == (
        "item_not_allowed",
        "item.content[0].type",
    )
