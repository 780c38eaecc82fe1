"""The conversation state machine, driven by the event orders of §2.5."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest

from realtalk.errors import LocalProtocolError
from realtalk.protocol.conversation import (
    Conversation,
    ResponseState,
    ResponseView,
    TranscriptLine,
    heard_prefix,
)
from realtalk.protocol.events import parse_server_event


def feed(conversation: Conversation, frames: Iterable[str]) -> None:
    for frame in frames:
        conversation.apply(parse_server_event(frame))


def voice_turn(
    wire: Any,
    *,
    user: str = "item_U",
    assistant: str = "item_A",
    response: str = "resp_1",
    previous: str | None = None,
    transcript: str = "Loud and clear!",
) -> list[str]:
    """§2.5 B in full, without audio deltas (their samples are counted by the client)."""
    return [
        *wire.user_turn(user, previous, start_ms=11956, end_ms=14720),
        wire.response_created(response),
        wire.rate_limits(),
        *wire.assistant_start(response, assistant, user),
        wire.transcript_delta(response, assistant, transcript[:4]),
        wire.transcript_delta(response, assistant, transcript[4:]),
        *wire.assistant_finish(response, assistant, user, transcript),
        wire.response_done(
            response, output=[wire.assistant_item(assistant, status="completed", transcript=transcript)]
        ),
    ]


def test_a_normal_voice_turn_gives_user_then_assistant_and_an_idle_response(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    assert [(item.item_id, item.role, item.status) for item in conversation.items()] == [
        ("item_U", "user", "completed"),
        ("item_A", "assistant", "completed"),
    ]
    assert conversation.transcript_lines() == (
        TranscriptLine("item_U", "user", "", final=False),
        TranscriptLine("item_A", "assistant", "Loud and clear!", final=True),
    )
    assert conversation.response_state is ResponseState.IDLE
    assert conversation.item("item_A") is not None
    assert conversation.item("item_A").response_id == "resp_1"  # type: ignore[union-attr]


def test_the_response_is_active_between_created_and_done(wire: Any) -> None:
    conversation = Conversation()
    frames = voice_turn(wire)
    feed(conversation, frames[:6])  # up to response.created
    assert conversation.active_response is not None
    assert conversation.active_response == ResponseView("resp_1", ResponseState.ACTIVE, "in_progress")
    feed(conversation, frames[6:])
    assert conversation.active_response is None


def test_a_late_user_transcript_is_placed_before_the_reply_it_caused(wire: Any) -> None:
    conversation = Conversation()
    frames = voice_turn(wire)
    # Transcription is asynchronous (§2.5 B): here it completes after the whole response.
    feed(
        conversation,
        [
            *frames,
            wire.transcription_delta("item_U", "Can you "),
            wire.transcription_completed("item_U", "Can you hear me?"),
        ],
    )
    assert [(line.role, line.text, line.final) for line in conversation.transcript_lines()] == [
        ("user", "Can you hear me?", True),
        ("assistant", "Loud and clear!", True),
    ]


def test_a_transcript_that_arrives_before_its_item_is_kept_for_it(wire: Any) -> None:
    conversation = Conversation()
    feed(
        conversation,
        [
            wire.transcription_completed("item_U", "Hello?"),
            wire.item_added(wire.user_audio_item("item_U"), None),
        ],
    )
    assert conversation.transcript_lines() == (TranscriptLine("item_U", "user", "Hello?", final=True),)


def test_second_turn_items_follow_the_first_by_previous_item_id(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    feed(
        conversation,
        voice_turn(
            wire,
            user="item_U2",
            assistant="item_A2",
            response="resp_2",
            previous="item_A",
            transcript="Again.",
        ),
    )
    assert [item.item_id for item in conversation.items()] == ["item_U", "item_A", "item_U2", "item_A2"]


def test_beta_item_created_is_a_synonym_of_added(wire: Any) -> None:
    conversation = Conversation()
    feed(
        conversation,
        [
            wire.item_added(wire.user_audio_item("item_1"), None, name="created"),
            wire.item_added(
                {
                    "id": "item_0",
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Be brief."}],
                },
                None,
                name="created",
            ),
            wire.item_added(wire.user_audio_item("item_2"), "item_1", name="created"),
        ],
    )
    # item_2 links to item_1, so it goes right after it, ahead of the system note appended earlier.
    assert [item.item_id for item in conversation.items()] == ["item_1", "item_2", "item_0"]


def test_an_item_is_moved_after_its_previous_item_when_added_late(wire: Any) -> None:
    conversation = Conversation()
    # response.output_item.added (no previous_item_id) before the user item's own added event.
    feed(
        conversation,
        [
            *wire.assistant_start("resp_1", "item_A", "item_U")[:1],
            wire.item_added(wire.user_audio_item("item_U"), None),
            wire.item_added(wire.assistant_item("item_A"), "item_U"),
        ],
    )
    assert [item.item_id for item in conversation.items()] == ["item_U", "item_A"]


def test_a_deleted_item_leaves_the_transcript(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    feed(conversation, [wire.frame("conversation.item.deleted", item_id="item_A")])
    assert [line.item_id for line in conversation.transcript_lines()] == ["item_U"]


def test_barge_in_cuts_the_assistant_transcript_to_what_was_heard(wire: Any) -> None:
    conversation = Conversation()
    text = "The weather in Oslo is seven degrees and cloudy"
    feed(conversation, voice_turn(wire, transcript=text))
    conversation.audio_received("item_A", 96_000, sample_rate_hz=24000)
    conversation.set_played_samples("item_A", 48_000)  # half was heard
    view = conversation.cut("item_A")
    assert view.cut and view.heard_text == "The weather in Oslo is"  # 23 of 47 characters
    assert conversation.transcript_lines()[1] == TranscriptLine(
        "item_A", "assistant", "The weather in Oslo is", final=True, cut=True
    )


def test_server_dropping_a_truncated_transcript_does_not_erase_what_was_heard(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire, transcript="One two three four"))
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000)
    conversation.set_played_samples("item_A", 2400)
    conversation.cut("item_A")
    feed(
        conversation,
        [
            wire.truncated("item_A", 100),
            wire.item_done(wire.assistant_item("item_A", status="incomplete", transcript=""), "item_U"),
        ],
    )
    assert conversation.transcript_lines()[1].text == "One two"


def test_a_truncation_by_another_client_cuts_the_item_too(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire, transcript="One two three four"))
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000)
    feed(conversation, [wire.truncated("item_A", 100)])
    item = conversation.item("item_A")
    assert item is not None and item.cut and item.audio_played_samples == 2400


def test_nothing_heard_means_an_empty_cut_line(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000)
    assert conversation.cut("item_A").heard_text == ""


@pytest.mark.parametrize(
    ("text", "played", "received", "heard"),
    [
        ("Hello there friend", 0, 100, ""),
        ("Hello there friend", 100, 100, "Hello there friend"),
        ("Hello there friend", 50, 100, "Hello"),  # 9 chars lands inside "there": back to the word boundary
        ("Hello there friend", 66, 100, "Hello there"),  # 11 chars ends exactly after "there"
        ("Supercalifragilistic", 50, 100, ""),
        ("abc", 10, 0, ""),
    ],
)
def test_heard_prefix_is_proportional_and_ends_on_a_word(
    text: str, played: int, received: int, heard: str
) -> None:
    assert heard_prefix(text, played, received) == heard


def test_last_unheard_audio_item_is_the_latest_assistant_audio_still_playing(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000)
    target = conversation.last_unheard_audio_item()
    assert target is not None and target.item_id == "item_A"
    conversation.audio_played("item_A", 4800)
    assert conversation.last_unheard_audio_item() is None  # audio done and all of it played


def test_an_older_item_is_never_the_barge_in_target(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, voice_turn(wire))
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000)
    conversation.audio_played("item_A", 4700)  # the player under-reported a little
    feed(
        conversation,
        voice_turn(wire, user="item_U2", assistant="item_A2", response="resp_2", previous="item_A"),
    )
    conversation.audio_received("item_A2", 4800, sample_rate_hz=24000)
    conversation.audio_played("item_A2", 4800)
    assert conversation.last_unheard_audio_item() is None


def test_played_samples_are_clamped_to_the_audio_received(wire: Any) -> None:
    conversation = Conversation()
    conversation.audio_received("item_A", 100, sample_rate_hz=24000)
    assert conversation.audio_played("item_A", 250) == 100
    assert conversation.set_played_samples("item_A", 1000) == 100


def test_played_samples_for_an_unknown_item_are_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match="unknown item"):
        Conversation().audio_played("item_nope", 10)


def test_sending_a_second_create_while_one_is_active_is_a_local_protocol_error(wire: Any) -> None:
    conversation = Conversation()
    conversation.response_create_sent()
    assert conversation.response_state is ResponseState.REQUESTED
    with pytest.raises(LocalProtocolError, match="while the response is requested"):
        conversation.response_create_sent()
    feed(conversation, [wire.response_created("resp_1")])
    with pytest.raises(LocalProtocolError, match="while the response is active"):
        conversation.response_create_sent()


def test_cancelling_with_nothing_active_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match="cancel sent while the response is idle"):
        Conversation().response_cancel_sent()


def test_cancel_then_done_returns_to_idle(wire: Any) -> None:
    conversation = Conversation()
    conversation.response_create_sent()
    conversation.response_cancel_sent()
    feed(conversation, [wire.response_created("resp_1")])
    assert conversation.response_state is ResponseState.CANCELLING
    feed(conversation, [wire.response_done("resp_1", status="cancelled", reason="client_cancelled")])
    assert conversation.response_state is ResponseState.IDLE


def test_a_rejected_create_returns_to_idle() -> None:
    conversation = Conversation()
    conversation.response_create_sent()
    conversation.response_create_rejected()
    assert conversation.response_state is ResponseState.IDLE


def test_an_unexpected_server_event_is_followed_and_logged(
    wire: Any, caplog: pytest.LogCaptureFixture
) -> None:
    conversation = Conversation()
    with caplog.at_level(logging.WARNING):
        feed(conversation, [wire.response_created("resp_1"), wire.response_created("resp_2")])
    assert conversation.active_response is not None and conversation.active_response.response_id == "resp_2"
    assert "following the server" in caplog.text


def test_an_out_of_band_response_does_not_take_the_active_slot(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, [wire.response_created("resp_oob", conversation_id=None)])
    assert conversation.response_state is ResponseState.IDLE
    feed(conversation, [wire.response_created("resp_1"), wire.response_done("resp_oob")])
    assert conversation.response_state is ResponseState.ACTIVE


def test_response_done_marks_its_audio_complete_even_when_cancelled(wire: Any) -> None:
    conversation = Conversation()
    feed(conversation, [wire.response_created("resp_1"), *wire.assistant_start("resp_1", "item_A", None)])
    conversation.audio_received("item_A", 4800, sample_rate_hz=24000, response_id="resp_1")
    feed(conversation, [wire.response_done("resp_1", status="cancelled", reason="turn_detected")])
    item = conversation.item("item_A")
    assert item is not None and item.audio_done


def test_function_call_items_carry_call_id_name_and_arguments(wire: Any) -> None:
    conversation = Conversation()
    feed(
        conversation,
        [
            wire.response_created("resp_1"),
            *wire.function_call("resp_1", "item_F", "call_X", "get_weather", '{"city":"Oslo"}', None),
        ],
    )
    item = conversation.item("item_F")
    assert item is not None
    assert (item.type, item.call_id, item.name, item.arguments) == (
        "function_call",
        "call_X",
        "get_weather",
        '{"city":"Oslo"}',
    )
    assert conversation.transcript_lines() == ()


def test_the_oldest_items_are_dropped_beyond_max_items(wire: Any) -> None:
    conversation = Conversation(max_items=2)
    feed(conversation, [wire.item_added(wire.user_audio_item(f"item_{n}"), None) for n in range(4)])
    assert [item.item_id for item in conversation.items()] == ["item_2", "item_3"]
