"""ClientProtocol end to end, sans I/O: frames in, frames and app events out (§2.5 A, B, C, D, E)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from openai.types.realtime import RealtimeClientEvent

from realtalk.errors import LocalProtocolError
from realtalk.protocol import (
    AgentProfile,
    AudioChunk,
    AudioCut,
    ClientProtocol,
    FlushPlayback,
    LatencyMeasured,
    ProtocolViolation,
    RawServerEvent,
    ResponseFinished,
    ResponseStarted,
    ServerErrorEvent,
    ServerVad,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    TranscriptUpdated,
    UnknownServerEvent,
    prices_for,
    turn_cost,
)
from realtalk.protocol.conversation import ResponseState, TranscriptLine

_CLIENT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeClientEvent)


class Harness:
    """A ClientProtocol plus the frames it sent and the events it emitted, checked on the way out."""

    def __init__(self, wire: Any, **kwargs: Any) -> None:
        self.wire = wire
        self.proto = ClientProtocol(**kwargs)
        self.sent: list[dict[str, Any]] = []
        self.events: list[Any] = []

    def feed(self, *frames: str, now_s: float = 0.0) -> None:
        for frame in frames:
            self.proto.receive_message(frame, now_s)
        self.drain()

    def drain(self) -> None:
        for message in self.proto.messages_to_send():
            _CLIENT_EVENT.validate_json(message)  # every frame we send is a valid GA client event
            self.sent.append(json.loads(message))
        self.events += self.proto.events_received()

    def take_sent(self, *, skip_appends: bool = True) -> list[dict[str, Any]]:
        self.drain()
        sent = [m for m in self.sent if not (skip_appends and m["type"] == "input_audio_buffer.append")]
        self.sent = []
        return sent

    def take_events(self, kind: type | None = None) -> list[Any]:
        self.drain()
        events, self.events = self.events, []
        return [event for event in events if kind is None or isinstance(event, kind)]

    def start(self, **session: Any) -> None:
        self.feed(self.wire.session_created(**session), self.wire.session_updated(**session))
        self.take_sent()
        self.take_events()

    def assistant_speaking(
        self,
        *,
        response: str = "resp_1",
        item: str = "item_A",
        user: str = "item_U",
        chunks: int = 4,
        transcript: str = "The weather in Oslo is seven degrees",
        now_s: float = 0.0,
    ) -> None:
        """§2.5 B up to the audio deltas: a response is active and its audio has arrived."""
        self.feed(
            self.wire.response_created(response),
            *self.wire.assistant_start(response, item, user),
            self.wire.transcript_delta(response, item, transcript),
            now_s=now_s,
        )
        for _ in range(chunks):
            self.feed(self.wire.audio_delta(response, item, self.wire.pcm(2400)), now_s=now_s)


def _types(messages: list[dict[str, Any]]) -> list[str]:
    return [message["type"] for message in messages]


# -- §2.5 A: session start --------------------------------------------------------------------------


def test_session_update_is_sent_on_session_created_and_ready_follows_session_updated(wire: Any) -> None:
    profile = AgentProfile(instructions="Be brief.", voice="cedar")
    h = Harness(wire, profile=profile)
    h.feed(wire.session_created())
    sent = h.take_sent()
    assert _types(sent) == ["session.update"]
    assert sent[0]["session"] == json.loads(json.dumps(profile.to_session()))
    assert h.take_events(SessionReady) == []
    h.feed(wire.session_updated())
    assert h.take_events(SessionReady) == [SessionReady("sess_C9xYz", "gpt-realtime-1.5", 1767225600)]
    assert h.proto.session_id == "sess_C9xYz"


def test_without_a_profile_the_session_is_ready_on_session_created(wire: Any) -> None:
    h = Harness(wire)
    h.feed(wire.session_created())
    assert h.take_sent() == []
    assert len(h.take_events(SessionReady)) == 1


# -- §2.5 B: a normal voice turn ---------------------------------------------------------------------


def test_a_voice_turn_plays_audio_shows_transcripts_prices_the_turn_and_measures_latency(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    for k in range(1, 151):  # 15 s of microphone audio in 100 ms chunks, chunk k sent at k/10 s
        h.proto.append_audio(wire.pcm(2400), now_s=k / 10)
    assert (
        len([m for m in h.take_sent(skip_appends=False) if m["type"] == "input_audio_buffer.append"]) == 150
    )
    # speech ends at 14720 ms: inside the chunk sent at 14.8 s, 80 ms before its end → 14.72 s.
    h.feed(*wire.user_turn("item_U", None, start_ms=11956, end_ms=14720), now_s=15.0)
    h.feed(
        wire.response_created("resp_1"),
        wire.rate_limits(),
        *wire.assistant_start("resp_1", "item_A", "item_U"),
        wire.transcript_delta("resp_1", "item_A", "Loud "),
        now_s=15.1,
    )
    h.feed(wire.audio_delta("resp_1", "item_A", wire.pcm(2400)), now_s=15.2)
    h.feed(
        wire.transcript_delta("resp_1", "item_A", "and clear!"),
        wire.audio_delta("resp_1", "item_A", wire.pcm(2400)),
        now_s=15.25,
    )
    h.feed(
        *wire.assistant_finish("resp_1", "item_A", "item_U", "Loud and clear!"),
        wire.response_done(
            "resp_1", output=[wire.assistant_item("item_A", status="completed", transcript="Loud and clear!")]
        ),
        now_s=15.3,
    )
    events = h.take_events()
    assert [type(e) for e in events if isinstance(e, SpeechStarted | SpeechStopped | ResponseStarted)] == [
        SpeechStarted,
        SpeechStopped,
        ResponseStarted,
    ]
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert [(c.item_id, c.response_id, c.samples, c.sample_rate_hz, len(c.pcm)) for c in chunks] == [
        ("item_A", "resp_1", 2400, 24000, 4800)
    ] * 2
    transcripts = [e for e in events if isinstance(e, TranscriptUpdated)]
    assert transcripts[-1].lines == (
        TranscriptLine("item_U", "user", "", False),
        TranscriptLine("item_A", "assistant", "Loud and clear!", True),
    )
    finished = [e for e in events if isinstance(e, ResponseFinished)]
    assert len(finished) == 1 and finished[0].status == "completed" and finished[0].turn_cost is not None
    expected_usd = turn_cost(wire.EXAMPLE_USAGE, prices_for("gpt-realtime-1.5")).total_usd
    assert finished[0].turn_cost.cost_usd == expected_usd == h.proto.total_cost_usd
    assert h.take_sent() == []  # the server's VAD created the response; we sent nothing

    h.proto.audio_played("item_A", 1200, now_s=15.5)
    h.proto.audio_played("item_A", 1200, now_s=15.55)
    latency = h.take_events(LatencyMeasured)
    assert len(latency) == 1
    assert latency[0].response_id == "resp_1"
    assert latency[0].voice_to_voice_ms == pytest.approx(780.0)
    assert latency[0].first_audio_received_ms == pytest.approx(480.0)


def test_manual_turn_commits_and_measures_latency_from_the_last_audio_sent(wire: Any) -> None:
    # §2.5 C: push-to-talk; commit does not create a response, the client asks for one.
    h = Harness(wire, profile=AgentProfile(turn_detection=None))
    h.start(turn_detection=None)
    h.proto.append_audio(wire.pcm(2400), now_s=1.0)
    h.proto.append_audio(wire.pcm(2400), now_s=1.1)
    h.proto.commit_audio()
    h.proto.create_response()
    assert _types(h.take_sent()) == ["input_audio_buffer.commit", "response.create"]
    h.feed(
        wire.committed("item_U", None),
        wire.item_added(wire.user_audio_item("item_U"), None),
        wire.response_created("resp_1"),
        *wire.assistant_start("resp_1", "item_A", "item_U"),
        wire.audio_delta("resp_1", "item_A", wire.pcm(2400)),
        now_s=1.4,
    )
    h.proto.audio_played("item_A", 2400, now_s=1.6)
    assert [e.voice_to_voice_ms for e in h.take_events(LatencyMeasured)] == [pytest.approx(500.0)]


# -- §2.5 E: barge-in -----------------------------------------------------------------------------


def test_barge_in_flushes_playback_truncates_to_what_was_played_and_cuts_the_transcript(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=4)  # 400 ms received
    h.proto.audio_played("item_A", 3600, now_s=1.0)  # 150 ms heard
    h.take_events()
    h.feed(wire.speech_started("item_U2", 20000))
    assert h.take_events() == [SpeechStarted("item_U2", 20000), FlushPlayback("item_A")]
    assert h.take_sent() == []  # interrupt_response true: the server cancels by itself
    # In-flight audio of the interrupted response must not reach the speaker.
    h.feed(wire.audio_delta("resp_1", "item_A", wire.pcm(2400)))
    assert h.take_events(AudioChunk) == []
    h.feed(
        *wire.assistant_finish(
            "resp_1", "item_A", "item_U", "The weather in Oslo is seven degrees", status="incomplete"
        ),
        wire.response_done("resp_1", status="cancelled", reason="turn_detected"),
    )
    finished = h.take_events(ResponseFinished)
    assert [(f.status, f.reason) for f in finished] == [("cancelled", "turn_detected")]
    assert (
        finished[0].turn_cost is not None and finished[0].turn_cost.cost_usd > 0
    )  # cancelled turns are billed

    h.proto.playback_flushed("item_A", played_samples_total=3600)
    assert h.take_sent() == [
        {
            "type": "conversation.item.truncate",
            "event_id": "evt_rt_1",
            "item_id": "item_A",
            "content_index": 0,
            "audio_end_ms": 150,
        }
    ]
    lines = h.take_events(TranscriptUpdated)[-1].lines
    # 3600 of 12000 samples heard → 10 of 36 characters, backed off to a word boundary.
    assert lines[-1] == TranscriptLine("item_A", "assistant", "The", final=True, cut=True)
    audio_out_usd = Decimal(91) * Decimal(64) / 1_000_000
    assert h.proto.costs.unheard_audio_usd == audio_out_usd * Decimal(8400) / Decimal(12000)


def test_truncate_is_skipped_when_nothing_was_played(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=2)
    h.feed(wire.speech_started("item_U2", 20000))
    assert h.take_events(FlushPlayback) == [FlushPlayback("item_A")]
    h.proto.playback_flushed("item_A", played_samples_total=0)
    assert h.take_sent() == []
    assert h.take_events(TranscriptUpdated)[-1].lines[-1] == TranscriptLine(
        "item_A", "assistant", "", final=False, cut=True
    )


def test_nothing_is_flushed_or_truncated_when_playback_had_finished(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=2)
    h.feed(*wire.assistant_finish("resp_1", "item_A", "item_U", "Hi."), wire.response_done("resp_1"))
    h.proto.audio_played("item_A", 4800, now_s=1.0)
    h.take_events()
    h.feed(wire.speech_started("item_U2", 20000))
    assert h.take_events(FlushPlayback) == []
    h.proto.playback_flushed("item_A", played_samples_total=4800)
    assert h.take_sent() == []
    item = h.proto.conversation.item("item_A")
    assert item is not None and not item.cut


def test_a_finished_response_still_playing_is_truncated(wire: Any) -> None:
    # §2.5 E: response.done arrived earlier but playback continues: no cancel, but still a truncate.
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=2)
    h.feed(*wire.assistant_finish("resp_1", "item_A", "item_U", "Hi there."), wire.response_done("resp_1"))
    h.proto.audio_played("item_A", 2400, now_s=1.0)
    h.feed(wire.speech_started("item_U2", 20000))
    assert h.take_events(FlushPlayback) == [FlushPlayback("item_A")]
    h.proto.playback_flushed("item_A", played_samples_total=2400)
    assert [(m["type"], m["audio_end_ms"]) for m in h.take_sent()] == [("conversation.item.truncate", 100)]


def test_a_cut_after_response_done_prices_the_unheard_audio_and_says_so(wire: Any) -> None:
    # The usual VAD barge-in: the reply was billed already; what was not heard is priced now.
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=4)  # 4 x 2400 samples at 24 kHz: 400 ms generated
    h.feed(*wire.assistant_finish("resp_1", "item_A", "item_U", "Hi there."), wire.response_done("resp_1"))
    [finished] = h.take_events(ResponseFinished)
    assert finished.turn_cost is not None and finished.turn_cost.unheard_audio_usd == 0
    h.proto.audio_played("item_A", 2400, now_s=1.0)
    h.feed(wire.speech_started("item_U2", 20000))
    h.proto.playback_flushed("item_A", played_samples_total=2400)
    h.drain()

    [cut] = h.take_events(AudioCut)
    assert (cut.response_id, cut.item_id, cut.heard_ms, cut.generated_ms) == ("resp_1", "item_A", 100, 400)
    assert cut.turn_cost is not None
    audio_out_usd = finished.turn_cost.cost.audio_out_usd
    assert cut.turn_cost.unheard_audio_usd == audio_out_usd * Decimal(3) / Decimal(4)
    assert h.proto.costs.unheard_audio_usd == cut.turn_cost.unheard_audio_usd
    # The server's confirmation of our own truncate is not a second cut.
    h.feed(wire.truncated("item_A", 100))
    assert h.take_events(AudioCut) == []


def test_a_cut_before_response_done_is_priced_when_the_response_is_billed(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=4)
    h.proto.audio_played("item_A", 4800, now_s=1.0)
    h.proto.interrupt()
    h.proto.playback_flushed("item_A", played_samples_total=4800)
    h.drain()
    [cut] = h.take_events(AudioCut)
    assert (cut.heard_ms, cut.generated_ms, cut.turn_cost) == (200, 400, None)
    h.feed(wire.response_done("resp_1", status="cancelled"))
    [finished] = h.take_events(ResponseFinished)
    assert finished.turn_cost is not None
    assert finished.turn_cost.unheard_audio_usd == finished.turn_cost.cost.audio_out_usd / 2


def test_a_truncate_by_another_client_is_a_cut_priced_at_what_the_server_says_was_heard(wire: Any) -> None:
    # A gateway's core: its client sends the truncate itself; the core sees only the server's answer.
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=4)
    h.feed(*wire.assistant_finish("resp_1", "item_A", "item_U", "Hi there."), wire.response_done("resp_1"))
    [finished] = h.take_events(ResponseFinished)
    assert finished.turn_cost is not None

    h.feed(wire.truncated("item_A", 300))

    [cut] = h.take_events(AudioCut)
    assert (cut.heard_ms, cut.generated_ms) == (300, 400)
    assert cut.turn_cost is not None
    assert cut.turn_cost.unheard_audio_usd == finished.turn_cost.cost.audio_out_usd / 4
    assert h.take_sent() == []  # nothing to send: the truncate was someone else's
    h.feed(wire.truncated("item_A", 300))  # a repeat changes nothing
    assert h.take_events(AudioCut) == []


def test_with_interrupt_response_false_barge_in_sends_response_cancel(wire: Any) -> None:
    detection = {"type": "server_vad", "create_response": True, "interrupt_response": False}
    h = Harness(wire)
    h.start(turn_detection=detection)
    h.assistant_speaking(chunks=1)
    h.feed(wire.speech_started("item_U2", 20000))
    assert _types(h.take_sent()) == ["response.cancel"]
    assert h.proto.conversation.response_state is ResponseState.CANCELLING


def test_interrupt_flushes_and_cancels_the_active_response(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(chunks=2)
    h.take_events()
    h.proto.interrupt()
    assert h.take_events() == [FlushPlayback("item_A")]
    assert _types(h.take_sent()) == ["response.cancel"]
    # The response had just finished on the server: its "not active" error is expected and harmless.
    h.feed(
        wire.error(
            "response_cancel_not_active", "Cancellation failed: no active response found", event_id="evt_rt_1"
        )
    )
    errors = h.take_events(ServerErrorEvent)
    assert [(e.error.code, e.harmless) for e in errors] == [("response_cancel_not_active", True)]


def test_interrupt_with_nothing_playing_and_nothing_active_does_nothing(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.interrupt()
    assert h.take_sent() == [] and h.take_events() == []


def test_interrupt_before_response_created_cancels_and_silences_the_response(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.create_response()
    h.proto.interrupt()
    assert _types(h.take_sent()) == ["response.create", "response.cancel"]
    h.feed(
        wire.response_created("resp_1"),
        *wire.assistant_start("resp_1", "item_A", None),
        wire.audio_delta("resp_1", "item_A", wire.pcm(2400)),
    )
    assert h.take_events(AudioChunk) == []


# -- response ownership ---------------------------------------------------------------------------


def test_cancel_response_with_nothing_active_sends_nothing(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.cancel_response()
    assert h.take_sent() == []


def test_create_while_a_response_is_active_is_deferred_and_folded_into_one(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(wire.response_created("resp_1"))
    h.proto.create_response(instructions="First.")
    h.proto.create_response(max_output_tokens=200)
    assert h.take_sent() == []
    h.feed(wire.response_done("resp_1"))
    assert h.take_sent() == [
        {
            "type": "response.create",
            "event_id": "evt_rt_1",
            "response": {"instructions": "First.", "max_output_tokens": 200},
        }
    ]
    assert h.proto.conversation.response_state is ResponseState.REQUESTED


def test_a_create_that_lost_a_race_with_a_server_response_is_retried_after_it(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.create_response()
    assert _types(h.take_sent()) == ["response.create"]
    # The server's own VAD response won: ours is refused (§3.4).
    h.feed(
        wire.response_created("resp_vad"),
        wire.error(
            "conversation_already_has_active_response",
            "Conversation already has an active response in progress: resp_vad.",
            event_id="evt_rt_1",
        ),
    )
    assert [e.harmless for e in h.take_events(ServerErrorEvent)] == [True]
    assert h.take_sent() == []
    h.feed(wire.response_done("resp_vad"))
    assert _types(h.take_sent()) == ["response.create"]


def test_a_deferred_create_waits_while_the_user_is_speaking(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(wire.speech_started("item_U", 1000))
    h.proto.create_response()
    h.feed(wire.speech_stopped("item_U", 2000))
    assert h.take_sent() == []  # the server answers this turn itself (create_response: true)
    h.feed(wire.response_created("resp_1"), wire.response_done("resp_1"))
    assert _types(h.take_sent()) == ["response.create"]


def test_without_server_created_responses_a_deferred_create_goes_when_speech_stops(wire: Any) -> None:
    detection = {"type": "server_vad", "create_response": False, "interrupt_response": True}
    h = Harness(wire)
    h.start(turn_detection=detection)
    h.feed(wire.speech_started("item_U", 1000))
    h.proto.create_response()
    assert h.take_sent() == []
    h.feed(wire.speech_stopped("item_U", 2000))
    assert _types(h.take_sent()) == ["response.create"]


def test_an_out_of_band_response_is_sent_at_once_even_while_one_is_active(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(wire.response_created("resp_1"))
    h.proto.create_response(conversation="none", output_modalities=["text"], metadata={"purpose": "classify"})
    assert [m["response"]["conversation"] for m in h.take_sent()] == ["none"]


def test_send_text_adds_a_user_message_and_asks_for_a_reply(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.send_text("What time is it?")
    sent = h.take_sent()
    assert _types(sent) == ["conversation.item.create", "response.create"]
    assert sent[0]["item"] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "What time is it?"}],
    }


# -- §2.5 D: tool calls -----------------------------------------------------------------------------


def _two_calls(h: Harness, wire: Any) -> None:
    h.feed(
        wire.response_created("resp_1"),
        *wire.function_call("resp_1", "item_F1", "call_1", "get_weather", '{"city":"Oslo"}', "item_U", 0),
        *wire.function_call("resp_1", "item_F2", "call_2", "get_time", '{"tz":"CET"}', "item_F1", 1),
    )


def _done_with_calls(wire: Any) -> str:
    return wire.response_done(
        "resp_1",
        output=[
            {
                "id": "item_F1",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {
                "id": "item_F2",
                "type": "function_call",
                "status": "completed",
                "call_id": "call_2",
                "name": "get_time",
                "arguments": '{"tz":"CET"}',
            },
        ],
    )


def test_two_tool_outputs_for_one_response_give_one_follow_up_response_create(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _two_calls(h, wire)
    assert h.take_events(ToolCallRequested) == [
        ToolCallRequested("call_1", "get_weather", '{"city":"Oslo"}', "item_F1", "resp_1"),
        ToolCallRequested("call_2", "get_time", '{"tz":"CET"}', "item_F2", "resp_1"),
    ]
    h.feed(_done_with_calls(wire))
    h.proto.submit_tool_output("call_1", '{"temp_c":7}')
    sent = h.take_sent()
    assert _types(sent) == ["conversation.item.create"]
    assert sent[0]["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c":7}'}
    h.proto.submit_tool_output("call_2", '{"time":"12:00"}')
    assert _types(h.take_sent()) == ["conversation.item.create", "response.create"]
    h.feed(
        wire.item_added(wire.function_call_output_item("item_O1", "call_1", '{"temp_c":7}'), "item_F2"),
        wire.response_created("resp_2"),
    )
    assert h.take_sent() == []


def test_tool_outputs_submitted_before_response_done_wait_for_it(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _two_calls(h, wire)
    h.proto.submit_tool_output("call_1", "a")
    h.proto.submit_tool_output("call_2", "b")
    assert _types(h.take_sent()) == ["conversation.item.create", "conversation.item.create"]
    h.feed(_done_with_calls(wire))
    assert _types(h.take_sent()) == ["response.create"]


def test_tool_output_for_an_unknown_or_answered_call_is_a_local_protocol_error(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    with pytest.raises(LocalProtocolError, match="no function call 'call_9'"):
        h.proto.submit_tool_output("call_9", "x")
    _two_calls(h, wire)
    h.proto.submit_tool_output("call_1", "x")
    with pytest.raises(LocalProtocolError, match="already has an output"):
        h.proto.submit_tool_output("call_1", "y")


# -- formats, robustness, misuse -------------------------------------------------------------------


def test_g711_output_counts_one_byte_per_sample_at_8_khz(wire: Any) -> None:
    h = Harness(wire, profile=AgentProfile(output_format="pcmu"))
    h.start(output_format={"type": "audio/pcmu"})
    h.feed(
        wire.response_created("resp_1"),
        *wire.assistant_start("resp_1", "item_A", None),
        wire.audio_delta("resp_1", "item_A", wire.pcm(800, bytes_per_sample=1)),
    )
    chunk = h.take_events(AudioChunk)[0]
    assert (chunk.samples, chunk.sample_rate_hz) == (800, 8000)
    h.proto.audio_played("item_A", 400, now_s=1.0)
    h.feed(wire.speech_started("item_U2", 5000))
    h.proto.playback_flushed("item_A", played_samples_total=400)
    assert [m["audio_end_ms"] for m in h.take_sent()] == [50]


def test_an_invalid_frame_is_reported_and_the_session_goes_on(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed('{"type":"input_audio_buffer.speech_started","event_id":"e"}', "garbage")
    violations = h.take_events(ProtocolViolation)
    assert len(violations) == 2 and "speech_started" in str(violations[0].error)
    h.feed(wire.speech_started("item_U", 10))
    assert h.take_events(SpeechStarted) == [SpeechStarted("item_U", 10)]


def test_audio_that_is_not_base64_is_a_protocol_violation(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(
        wire.frame(
            "response.output_audio.delta",
            response_id="r",
            item_id="i",
            output_index=0,
            content_index=0,
            delta="***",
        )
    )
    assert len(h.take_events(ProtocolViolation)) == 1


def test_unknown_events_are_passed_on_as_raw_events_when_asked(wire: Any) -> None:
    h = Harness(wire, include_raw_events=True)
    h.feed('{"type":"response.output_video.delta","event_id":"e"}')
    raw = h.take_events(RawServerEvent)
    assert len(raw) == 1 and isinstance(raw[0].event, UnknownServerEvent)
    assert h.take_events(ProtocolViolation) == []


def test_other_server_errors_are_surfaced_as_failures(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(wire.error("session_expired", "Your session hit the maximum duration of 60 minutes."))
    errors = h.take_events(ServerErrorEvent)
    assert [(e.error.code, e.harmless) for e in errors] == [("session_expired", False)]


def test_a_rejected_create_frees_the_response_slot(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.proto.create_response(instructions="x")
    h.take_sent()
    h.feed(wire.error("invalid_value", "Invalid value", event_id="evt_rt_1"))
    assert h.proto.conversation.response_state is ResponseState.IDLE
    assert [e.harmless for e in h.take_events(ServerErrorEvent)] == [False]


def test_the_voice_cannot_change_after_the_model_has_spoken(wire: Any) -> None:
    h = Harness(wire, profile=AgentProfile(voice="marin"))
    h.start()
    h.proto.update_session(AgentProfile(voice="cedar"))  # no audio yet: allowed
    assert _types(h.take_sent()) == ["session.update"]
    h.assistant_speaking(chunks=1)
    with pytest.raises(LocalProtocolError, match="voice cannot change"):
        h.proto.update_session(AgentProfile(voice="marin"))
    h.proto.update_session(AgentProfile(voice="cedar", turn_detection=ServerVad(silence_duration_ms=800)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.append_audio(b"\x00\x00\x00", now_s=0.0), "2 bytes per sample"),
        (lambda p: p.create_response(temperature=0.7), "does not take temperature"),
    ],
)
def test_misuse_is_a_local_protocol_error(wire: Any, call: Any, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        call(ClientProtocol())


def test_playback_reports_of_an_item_this_core_does_not_hold_are_dropped_not_raised(wire: Any) -> None:
    # After a reconnect the player still drains the previous connection's items; their reports
    # reach a new core that never saw them.
    h = Harness(wire)
    h.start()
    h.proto.audio_played("item_of_the_old_session", 480, now_s=1.0)
    h.proto.playback_flushed("item_of_the_old_session", 960)
    assert h.proto.stale_playback_reports == 2
    assert h.take_sent() == []  # no truncate for an item the server of this connection never had


def test_the_profile_formats_hold_before_the_server_confirms_them(wire: Any) -> None:
    h = Harness(wire, profile=AgentProfile(input_format="pcmu", output_format="pcmu"))
    h.feed(wire.session_created())  # the server's defaults say PCM16; our update says G.711
    h.proto.append_audio(wire.pcm(801, bytes_per_sample=1), now_s=0.1)  # 801 bytes: fine for G.711
    assert _types(h.take_sent(skip_appends=False)) == ["session.update", "input_audio_buffer.append"]


def test_a_failed_response_reports_its_error_code_as_the_reason(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    response = wire.response("resp_1", status="failed", usage=None)
    response["status_details"] = {
        "type": "failed",
        "error": {"type": "invalid_request_error", "code": "insufficient_quota"},
    }
    h.feed(wire.response_created("resp_1"), wire.frame("response.done", response=response))
    finished = h.take_events(ResponseFinished)
    assert [(f.status, f.reason) for f in finished] == [("failed", "insufficient_quota")]
    assert finished[0].turn_cost is not None and finished[0].turn_cost.cost_usd == 0
