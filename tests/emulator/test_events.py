"""Every event builder produces an event the SDK's union accepts strictly, with no unknown field."""

from __future__ import annotations

import json

import pytest

from realtalk.emulator import events
from realtalk.emulator.errors import server_error
from realtalk.emulator.session_config import default_session
from realtalk.emulator.usage import Segment, response_usage

from .conftest import validate_server_event

ITEM = {
    "id": "item_1",
    "type": "message",
    "status": "completed",
    "role": "user",
    "content": [{"type": "input_text", "text": "hi"}],
}
RESPONSE = {
    "object": "realtime.response",
    "id": "resp_1",
    "status": "completed",
    "status_details": None,
    "output": [],
    "conversation_id": "conv_1",
    "output_modalities": ["audio"],
    "max_output_tokens": "inf",
    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
    "usage": response_usage([Segment("i", 10)], (0, 0), output_text_tokens=1, output_audio_tokens=2),
    "metadata": None,
}
BUILT = [
    events.session_created(default_session("sess_1", "gpt-realtime-1.5", 1)),
    events.session_updated(default_session("sess_1", "gpt-realtime-1.5", 1)),
    events.error(server_error().to_object("evt_1")),
    events.rate_limits_updated([{"name": "tokens", "limit": 1, "remaining": 0, "reset_seconds": 1.5}]),
    events.speech_started(1, "item_1"),
    events.speech_stopped(2, "item_1"),
    events.committed("item_1", None),
    events.cleared(),
    events.timeout_triggered(1, 2, "item_1"),
    events.item_added(ITEM, None),
    events.item_done(ITEM, "item_0"),
    events.item_retrieved(ITEM),
    events.item_truncated("item_1", 0, 100),
    events.item_deleted("item_1"),
    events.transcription_delta("item_1", "hi"),
    events.transcription_completed("item_1", "hi", {"type": "duration", "seconds": 1.0}),
    events.transcription_failed("item_1", "audio_unintelligible", "nothing heard"),
    events.response_created({**RESPONSE, "status": "in_progress", "usage": None}),
    events.response_done(RESPONSE),
    events.output_item_added("resp_1", 0, {**ITEM, "object": "realtime.item"}),
    events.output_item_done("resp_1", 0, ITEM),
    events.content_part_added("resp_1", "item_1", 0, {"type": "audio", "transcript": ""}),
    events.content_part_done("resp_1", "item_1", 0, {"type": "text", "text": "x"}),
    events.audio_delta("resp_1", "item_1", 0, "AAAA"),
    events.audio_done("resp_1", "item_1", 0),
    events.audio_transcript_delta("resp_1", "item_1", 0, "x"),
    events.audio_transcript_done("resp_1", "item_1", 0, "x"),
    events.text_delta("resp_1", "item_1", 0, "x"),
    events.text_done("resp_1", "item_1", 0, "x"),
    events.function_arguments_delta("resp_1", "item_1", 0, "call_1", "{"),
    events.function_arguments_done("resp_1", "item_1", 0, "call_1", "f", "{}"),
]


@pytest.mark.parametrize("event", BUILT, ids=[e["type"] for e in BUILT])
def test_each_built_event_validates_strictly_against_the_sdk(event) -> None:
    assert validate_server_event(json.dumps(event))["type"] == event["type"]


def test_ids_have_the_observed_shape() -> None:
    assert events.new_id("event").startswith("event_") and len(events.new_id("event")) == len("event_") + 21
