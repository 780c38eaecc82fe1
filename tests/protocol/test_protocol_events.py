"""Parsing server frames into SDK models, and building client events."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pydantic
import pytest
from openai.types.realtime import (
    ConversationItemCreatedEvent,
    RealtimeClientEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseDoneEvent,
    SessionCreatedEvent,
)

from realtalk.errors import LocalProtocolError, RemoteProtocolError
from realtalk.protocol import events
from realtalk.protocol.events import UnknownServerEvent, parse_server_event

_CLIENT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeClientEvent)


def _all_sample_frames(wire: Any) -> list[str]:
    frames = [wire.session_created(), wire.session_updated(), wire.rate_limits()]
    frames += wire.user_turn("item_U", "item_prev", start_ms=11956, end_ms=14720)
    frames += [wire.response_created("resp_1")]
    frames += wire.assistant_start("resp_1", "item_A", "item_U")
    frames += [
        wire.transcript_delta("resp_1", "item_A", "Loud"),
        wire.audio_delta("resp_1", "item_A", wire.pcm(240)),
    ]
    frames += wire.assistant_finish("resp_1", "item_A", "item_U", "Loud and clear!")
    frames += [
        wire.response_done(
            "resp_1", output=[wire.assistant_item("item_A", status="completed", transcript="Loud and clear!")]
        )
    ]
    frames += wire.function_call("resp_2", "item_F", "call_X", "get_weather", '{"city":"Oslo"}', "item_A")
    frames += [
        wire.transcription_delta("item_U", "Hel"),
        wire.transcription_completed("item_U", "Hello?"),
        wire.truncated("item_A", 1500),
        wire.error(
            "response_cancel_not_active", "Cancellation failed: no active response found", event_id="e1"
        ),
        wire.response_done("resp_3", status="cancelled", reason="turn_detected"),
        wire.item_added(wire.user_audio_item("item_V"), "item_U", name="created"),
    ]
    return frames


def test_every_frame_the_tests_send_validates_against_the_sdk_types(wire: Any) -> None:
    for frame in _all_sample_frames(wire):
        event = parse_server_event(frame)
        assert not isinstance(event, UnknownServerEvent), frame
        assert event.type == json.loads(frame)["type"]


def test_session_created_parses_into_the_sdk_model_with_the_ga_session(wire: Any) -> None:
    event = parse_server_event(wire.session_created())
    assert isinstance(event, SessionCreatedEvent)
    assert event.session.type == "realtime"


def test_response_done_keeps_usage_and_status_details(wire: Any) -> None:
    event = parse_server_event(wire.response_done("resp_1", status="cancelled", reason="turn_detected"))
    assert isinstance(event, ResponseDoneEvent)
    assert event.response.status_details is not None
    assert event.response.status_details.reason == "turn_detected"
    assert event.response.usage is not None
    assert event.response.usage.input_token_details is not None
    assert event.response.usage.input_token_details.cached_tokens == 64


def test_beta_item_created_is_accepted_as_a_known_event(wire: Any) -> None:
    event = parse_server_event(wire.item_added(wire.user_audio_item("item_U"), None, name="created"))
    assert isinstance(event, ConversationItemCreatedEvent)


def test_unknown_event_type_is_returned_not_raised_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="realtalk.protocol.events"):
        event = parse_server_event('{"type":"response.output_video.delta","event_id":"event_9","x":1}')
    assert isinstance(event, UnknownServerEvent)
    assert (event.type, event.event_id) == ("response.output_video.delta", "event_9")
    assert event.data["x"] == 1
    assert "response.output_video.delta" in caplog.text


def test_unknown_fields_are_kept_and_logged_at_debug(wire: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="realtalk.protocol.events"):
        event = parse_server_event(wire.transcript_delta("resp_1", "item_A", "The"))
    assert isinstance(event, ResponseAudioTranscriptDeltaEvent)
    assert event.model_extra == {"obfuscation": "LBqdwEYsSEHbF"}
    assert "response.output_audio_transcript.delta.obfuscation" in caplog.text


def test_known_event_with_a_missing_field_is_a_remote_protocol_error_naming_the_field() -> None:
    frame = json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": "e",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "delta": "AAAA",
        }
    )
    with pytest.raises(RemoteProtocolError, match=r"invalid 'response.output_audio.delta'.*content_index"):
        parse_server_event(frame)


def test_known_event_with_a_wrong_type_is_a_remote_protocol_error() -> None:
    frame = (
        '{"type":"input_audio_buffer.speech_started","event_id":"e","item_id":"i","audio_start_ms":"soon"}'
    )
    with pytest.raises(RemoteProtocolError, match="audio_start_ms"):
        parse_server_event(frame)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "not JSON"),
        ("[1,2]", "not an object"),
        ('{"event_id":"e"}', "without a string 'type'"),
        (b"\xff\xfe", "not JSON"),
        ('{"type": ' + "9" * 5000 + "}", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_frames_that_are_not_events_are_remote_protocol_errors(frame: str | bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse_server_event(frame)


def test_known_types_cover_the_ga_audio_event_names_and_not_the_beta_ones() -> None:
    assert "response.output_audio.delta" in events.KNOWN_SERVER_EVENT_TYPES
    assert "conversation.item.added" in events.KNOWN_SERVER_EVENT_TYPES
    assert "response.audio.delta" not in events.KNOWN_SERVER_EVENT_TYPES


def test_client_events_serialise_compactly() -> None:
    text = events.serialize_client_event(events.input_audio_buffer_commit(event_id="evt_1"))
    assert text == '{"type":"input_audio_buffer.commit","event_id":"evt_1"}'


def test_every_client_event_builder_produces_a_valid_sdk_client_event() -> None:
    built = [
        events.session_update({"type": "realtime", "instructions": "Be brief."}, event_id="evt_1"),
        events.input_audio_buffer_append(b"\x00\x01" * 10),
        events.input_audio_buffer_commit(),
        events.input_audio_buffer_clear(),
        events.conversation_item_create(events.user_text_item("hi"), previous_item_id="root"),
        events.conversation_item_create(events.function_call_output_item("call_X", '{"temp_c":7}')),
        events.conversation_item_truncate("item_A", audio_end_ms=1500),
        events.conversation_item_delete("item_A"),
        events.response_create({"instructions": "Answer the tool result."}),
        events.response_create(),
        events.response_cancel(),
        events.response_cancel("resp_1", event_id="evt_2"),
    ]
    for event in built:
        parsed = _CLIENT_EVENT.validate_json(events.serialize_client_event(event))
        assert parsed.type == event["type"]


def test_append_carries_base64_audio() -> None:
    event = events.input_audio_buffer_append(b"\x01\x02\x03\x04")
    assert base64.b64decode(event["audio"]) == b"\x01\x02\x03\x04"


def test_append_refuses_more_than_15_mib_of_base64() -> None:
    with pytest.raises(LocalProtocolError, match="15 MiB"):
        events.input_audio_buffer_append(b"\x00" * (12 * 1024 * 1024))


def test_session_update_refuses_a_session_without_type_realtime() -> None:
    with pytest.raises(LocalProtocolError, match="realtime"):
        events.session_update({"instructions": "x"})  # type: ignore[typeddict-item]


def test_truncate_refuses_negative_milliseconds() -> None:
    with pytest.raises(LocalProtocolError, match=">= 0"):
        events.conversation_item_truncate("item_A", audio_end_ms=-11)


def test_response_create_without_overrides_has_no_response_field() -> None:
    assert events.response_create({}) == {"type": "response.create"}
