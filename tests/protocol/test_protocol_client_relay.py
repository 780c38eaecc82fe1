"""The relay-facing inputs of ClientProtocol (used by the gateway's fast path), sans I/O.

``receive_audio_delta`` and ``audio_appended`` must leave the core in the same state as the full
path (``receive_message`` with the audio, ``append_audio``), without decoding or emitting audio;
``receive_event`` takes a frame the relay already decoded.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtalk.protocol import AudioChunk, ClientProtocol, FlushPlayback, LatencyMeasured, ProtocolViolation


def _feed(proto: ClientProtocol, *frames: str, now_s: float = 0.0) -> None:
    # What the gateway does: audio deltas by their ids and size, everything else decoded once.
    for frame in frames:
        data = json.loads(frame)
        if data["type"] == "response.output_audio.delta":
            proto.receive_audio_delta(
                data["item_id"], data["response_id"], len(data["delta"]) * 3 // 4, now_s
            )
        else:
            proto.receive_event(data, now_s)


def _start(wire: Any) -> ClientProtocol:
    proto = ClientProtocol()
    _feed(proto, wire.session_created(), wire.session_updated())
    proto.messages_to_send()
    proto.events_received()
    return proto


def test_relay_inputs_measure_the_same_latency_without_emitting_audio(wire: Any) -> None:
    proto = _start(wire)
    for k in range(1, 151):
        proto.audio_appended(4800, now_s=k / 10)  # 100 ms of PCM16 forwarded at k/10 s
    assert proto.messages_to_send() == []  # the relay sent the frames itself
    _feed(proto, *wire.user_turn("item_U", None, start_ms=11956, end_ms=14720), now_s=15.0)
    _feed(
        proto,
        wire.response_created("resp_1"),
        *wire.assistant_start("resp_1", "item_A", "item_U"),
        now_s=15.1,
    )
    _feed(proto, wire.audio_delta("resp_1", "item_A", wire.pcm(2400)), now_s=15.2)
    _feed(proto, wire.audio_delta("resp_1", "item_A", wire.pcm(2400)), now_s=15.25)
    assert not [e for e in proto.events_received() if isinstance(e, AudioChunk)]
    item = proto.conversation.item("item_A")
    assert item is not None and item.audio_received_samples == 4800
    proto.audio_played("item_A", 1200, now_s=15.5)
    latency = [e for e in proto.events_received() if isinstance(e, LatencyMeasured)]
    assert len(latency) == 1
    assert latency[0].voice_to_voice_ms == pytest.approx(780.0)
    assert latency[0].first_audio_received_ms == pytest.approx(480.0)


def test_audio_of_a_flushed_item_is_reported_unheard_and_the_truncate_follows(wire: Any) -> None:
    proto = _start(wire)
    _feed(proto, wire.response_created("resp_1"), *wire.assistant_start("resp_1", "item_A", None))
    assert proto.receive_audio_delta("item_A", "resp_1", 48_000, now_s=1.0) is True  # 1 s of audio
    proto.audio_played("item_A", 12_000, now_s=1.5)
    _feed(proto, wire.speech_started("item_U", 2000), now_s=1.6)
    assert FlushPlayback("item_A") in proto.events_received()
    assert (
        proto.receive_audio_delta("item_A", "resp_1", 4800, now_s=1.7) is False
    )  # in flight, not to be played
    proto.playback_flushed("item_A", 14_400)
    truncate = [json.loads(m) for m in proto.messages_to_send()]
    assert [(m["type"], m["item_id"], m["audio_end_ms"]) for m in truncate] == [
        ("conversation.item.truncate", "item_A", 600)
    ]
    assert proto.receive_audio_delta("item_A", "resp_1", 4800, now_s=1.8) is False  # the item is cut


def test_a_decoded_frame_that_is_not_valid_is_a_violation_not_an_exception(wire: Any) -> None:
    proto = _start(wire)
    proto.receive_event({"type": "response.done", "response": "nope"}, now_s=0.0)
    proto.receive_event({"no": "type"}, now_s=0.0)
    violations = [e for e in proto.events_received() if isinstance(e, ProtocolViolation)]
    assert len(violations) == 2
