"""Voice-to-voice latency from input-audio offsets mapped onto the client clock."""

from __future__ import annotations

import pytest

from realtalk.protocol.latency import LatencySample, TurnLatency


def _sent_in_100_ms_chunks(latency: TurnLatency, chunks: int, *, first_sent_at_s: float = 0.1) -> None:
    for k in range(chunks):
        latency.audio_sent(2400, 24000, now_s=first_sent_at_s + k / 10)


def test_speech_end_inside_a_chunk_maps_to_when_that_sample_was_captured() -> None:
    latency = TurnLatency()
    _sent_in_100_ms_chunks(latency, 10)  # chunk k covers [100k, 100k+100) ms, sent at 0.1 (k+1) s
    latency.speech_ended(450)  # inside the chunk sent at 0.5 s, 50 ms before its end
    latency.response_started("resp_1")
    latency.audio_received("resp_1", now_s=0.7)
    sample = latency.audio_played("resp_1", now_s=0.9)
    assert sample is not None
    assert (sample.voice_to_voice_ms, sample.first_audio_received_ms) == (
        pytest.approx(450.0),
        pytest.approx(250.0),
    )


def test_g711_input_counts_8_samples_per_ms() -> None:
    latency = TurnLatency()
    latency.audio_sent(800, 8000, now_s=1.0)  # 100 ms
    latency.speech_ended(100)
    latency.response_started("resp_1")
    assert latency.audio_played("resp_1", now_s=1.25) == LatencySample("resp_1", pytest.approx(250.0), None)


def test_each_turn_is_measured_once_on_the_first_audio_played() -> None:
    latency = TurnLatency()
    _sent_in_100_ms_chunks(latency, 5)
    latency.speech_ended(500)
    latency.response_started("resp_1")
    assert latency.audio_played("resp_1", now_s=1.0) is not None
    assert latency.audio_played("resp_1", now_s=1.1) is None


def test_a_response_without_a_preceding_turn_end_is_not_measured() -> None:
    latency = TurnLatency()
    latency.response_started("resp_tool_follow_up")
    assert latency.audio_played("resp_tool_follow_up", now_s=1.0) is None


def test_a_manual_commit_ends_the_turn_at_the_last_audio_sent() -> None:
    latency = TurnLatency()
    _sent_in_100_ms_chunks(latency, 3)  # last chunk sent at 0.3 s
    latency.committed_manually()
    latency.response_started("resp_1")
    sample = latency.audio_played("resp_1", now_s=0.8)
    assert sample is not None and sample.voice_to_voice_ms == pytest.approx(500.0)


def test_an_offset_older_than_the_kept_chunks_gives_no_measurement() -> None:
    latency = TurnLatency(max_chunks=2)
    _sent_in_100_ms_chunks(latency, 5)
    latency.speech_ended(50)
    latency.response_started("resp_1")
    assert latency.audio_played("resp_1", now_s=1.0) is None
