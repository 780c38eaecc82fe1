"""The input audio buffer: the stream clock, segments, bounds, G.711 decoding."""

from __future__ import annotations

from realtalk.audio.g711 import ulaw_encode
from realtalk.audio.pcm import silence
from realtalk.emulator.audio_input import InputAudio
from realtalk.emulator.vad import VadSettings, make_vad

from .conftest import MANIFEST, fixture_pcm


def test_the_stream_clock_survives_commits_clears_and_format_changes() -> None:
    audio = InputAudio()
    audio.append(silence(500))
    assert audio.take().duration_ms == 500
    audio.append(silence(250))
    audio.clear()
    assert (audio.stream_ms, audio.buffered_ms) == (750, 0)
    audio.set_format("audio/pcmu")
    audio.append(bytes(800))  # 100 ms of 8 kHz G.711
    assert audio.stream_ms == 850
    segment = audio.take()
    assert (segment.start_ms, segment.end_ms, len(segment.raw)) == (750, 850, 800)
    assert abs(len(segment.pcm24) // 48 - 100) <= 10  # decoded and resampled (the resampler lags a little)


def test_a_segment_is_cut_by_stream_milliseconds_and_the_rest_stays() -> None:
    audio = InputAudio()
    audio.append(bytes(range(256)) * 375)  # 2 s
    segment = audio.take(500, 1500)
    assert (segment.start_ms, segment.end_ms, len(segment.raw)) == (500, 1500, 48_000)
    assert audio.buffered_ms == 500


def test_vad_events_are_on_the_sessions_clock() -> None:
    audio = InputAudio()
    audio.append(silence(2000))
    audio.set_vad(make_vad(VadSettings(silence_duration_ms=200), "energy"))
    events = audio.append(fixture_pcm("stop"))
    truth = MANIFEST["stop"]
    assert [e.kind for e in events] == ["start", "stop"]
    assert abs(events[0].stream_ms - (2000 + truth["speech_start_ms"] - 300)) <= 100
    assert abs(events[1].stream_ms - (2000 + truth["speech_end_ms"])) <= 100


def test_while_nobody_speaks_the_buffer_keeps_only_a_short_tail() -> None:
    audio = InputAudio()
    audio.set_vad(make_vad(VadSettings(), "energy"), prefix_padding_ms=300)
    for _ in range(100):
        audio.append(silence(100))
    assert audio.buffered_ms <= 1300 + 100


def test_without_vad_the_buffer_is_capped() -> None:
    audio = InputAudio(max_buffer_ms=1000)
    audio.append(silence(3000))
    assert audio.buffered_ms == 1000 and audio.stream_ms == 3000


def test_g711_input_reaches_the_vad_decoded() -> None:
    from realtalk.audio.resample import resample

    audio = InputAudio("audio/pcmu")
    audio.set_vad(make_vad(VadSettings(silence_duration_ms=500), "energy"))
    events = audio.append(ulaw_encode(resample(fixture_pcm("stop"), 24_000, 8_000)))
    assert [e.kind for e in events] == ["start", "stop"]
