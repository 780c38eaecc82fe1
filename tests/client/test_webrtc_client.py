"""``realtalk.client.webrtc``: a ``RealtimeSession`` over WebRTC.

The media pieces on their own (the microphone track's frames and pacing, resampling both ways,
which reply the received audio belongs to), then the session against the emulator's WebRTC door on
127.0.0.1: a spoken WAV gives transcripts and the agent's audio in the sink, a barge-in stops local
playback and the server's truncation arrives, close hangs up, and set-up failures say what to fix.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest
from av import AudioFrame

from realtalk.audio.pcm import pcm16_to_int16
from realtalk.client.webrtc_media import (
    PCM24_FRAME_BYTES,
    TRACK_FRAME_SAMPLES,
    TRACK_RATE_HZ,
    MicrophoneTrack,
    RemoteAudio,
    ReplyAttribution,
    is_silent,
)


def tone(freq_hz: float, ms: int, rate_hz: int = 24_000, amplitude: int = 10_000) -> bytes:
    t = np.arange(rate_hz * ms // 1000) / rate_hz
    return (np.sin(2 * np.pi * freq_hz * t) * amplitude).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate_hz: int) -> float:
    samples = pcm16_to_int16(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


LOUD = tone(300, 20)
QUIET = bytes(PCM24_FRAME_BYTES)


# -- the microphone track ----------------------------------------------------------------------------


async def test_microphone_frames_are_20_ms_of_48_khz_mono_with_running_timestamps() -> None:
    track = MicrophoneTrack()
    frames = [await track.recv() for _ in range(3)]
    for n, frame in enumerate(frames):
        assert isinstance(frame, AudioFrame)
        assert (frame.sample_rate, frame.samples, frame.layout.name, frame.format.name) == (
            TRACK_RATE_HZ,
            TRACK_FRAME_SAMPLES,
            "mono",
            "s16",
        )
        assert frame.pts == n * TRACK_FRAME_SAMPLES
        assert frame.time_base == fractions.Fraction(1, TRACK_RATE_HZ)
    track.stop()


async def test_microphone_sends_silence_when_nothing_is_pushed() -> None:
    track = MicrophoneTrack()
    assert track.next_frame_pcm() == bytes(TRACK_FRAME_SAMPLES * 2)


async def test_microphone_resamples_24_khz_to_48_khz_keeping_the_pitch() -> None:
    track = MicrophoneTrack()
    track.push(tone(440, 500))
    sent = b"".join(track.next_frame_pcm() for _ in range(20))  # 400 ms
    assert abs(dominant_hz(sent[9600:], TRACK_RATE_HZ) - 440) < 5  # past the filter's delay
    # 500 ms at 24 kHz is 500 ms at 48 kHz: what remains queued is the last ~100 ms.
    assert 80 <= track.queued_ms <= 101


async def test_microphone_is_paced_in_real_time() -> None:
    track = MicrophoneTrack()
    track.push(tone(440, 400))
    start = time.monotonic()
    for _ in range(11):  # the first frame goes at once, ten more at 20 ms each
        await track.recv()
    elapsed_s = time.monotonic() - start
    assert 0.19 <= elapsed_s <= 0.30
    track.stop()


async def test_microphone_reports_every_frame_sent_as_24_khz_bytes_silence_included() -> None:
    sent: list[int] = []
    track = MicrophoneTrack(on_frame_sent=sent.append)
    track.push(tone(440, 20))
    for _ in range(3):
        await track.recv()
    assert sent == [PCM24_FRAME_BYTES] * 3
    track.stop()


async def test_microphone_drops_the_oldest_audio_beyond_its_queue_bound() -> None:
    track = MicrophoneTrack(max_queued_s=0.1)
    for _ in range(3):
        track.push(tone(440, 100))
    assert track.queued_ms <= 100
    # About 200 ms at 48 kHz dropped (less the resampler's delay, which is still inside it).
    assert track.dropped_samples >= TRACK_RATE_HZ * 0.15


async def test_a_stopped_microphone_ends_the_track() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = MicrophoneTrack()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


# -- the remote track's audio ---------------------------------------------------------------------


def frame_48k(pcm_mono: bytes, *, layout: str = "stereo", pts: int = 0) -> AudioFrame:
    samples = len(pcm_mono) // 2
    mono = pcm16_to_int16(pcm_mono)
    frame = AudioFrame(format="s16", layout=layout, samples=samples)
    data = np.repeat(mono, 2) if layout == "stereo" else mono
    frame.planes[0].update(data.astype("<i2").tobytes())
    frame.sample_rate = TRACK_RATE_HZ
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, TRACK_RATE_HZ)
    return frame


def test_remote_stereo_48_khz_frames_become_24_khz_mono_at_the_same_pitch() -> None:
    remote = RemoteAudio()
    source = tone(440, 1000, rate_hz=TRACK_RATE_HZ)
    out = b"".join(
        remote.convert(frame_48k(source[i : i + 1920], pts=i // 2)) for i in range(0, len(source), 1920)
    )
    assert abs(len(out) - 24_000 * 2) <= 2 * 64  # one second, give or take the filter's delay
    assert abs(dominant_hz(out[4800:], 24_000) - 440) < 5


def test_remote_mono_frames_are_converted_too() -> None:
    remote = RemoteAudio()
    out = b"".join(
        remote.convert(frame_48k(tone(440, 20, rate_hz=TRACK_RATE_HZ), layout="mono", pts=n * 960))
        for n in range(10)
    )
    assert abs(len(out) - 10 * PCM24_FRAME_BYTES) <= 2 * 64


def test_silence_is_told_from_speech() -> None:
    assert is_silent(QUIET)
    assert is_silent((np.ones(480, dtype="<i2") * 20).tobytes())
    assert not is_silent(LOUD)


# -- which reply the received audio belongs to ----------------------------------------------------------


def test_audio_before_any_reply_is_dropped() -> None:
    attribution = ReplyAttribution()
    assert attribution.classify(LOUD) is None


def test_a_reply_starts_at_its_first_audible_frame_after_response_created() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(QUIET) is None  # the server's silence before the reply
    assert attribution.classify(LOUD) == "resp_1"
    assert attribution.classify(QUIET) == "resp_1"  # a pause inside the reply is the reply


def test_after_stopped_the_jitter_tail_is_kept_until_the_first_silent_frame() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    attribution.started("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.stopped("resp_1")
    assert attribution.classify(LOUD) == "resp_1"  # still in flight when stopped was sent
    assert attribution.classify(QUIET) is None
    assert attribution.classify(LOUD) is None  # not a reply any more
    assert attribution.playing_on_server == set()


def test_speech_started_drops_the_interrupted_reply_at_once() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.interrupted()
    assert attribution.classify(LOUD) is None


def test_cleared_drops_the_reply_and_forgets_it_was_playing() -> None:
    attribution = ReplyAttribution()
    attribution.started("resp_1")
    assert attribution.playing_on_server == {"resp_1"}
    assert attribution.classify(LOUD) == "resp_1"
    attribution.cleared("resp_1")
    assert attribution.classify(LOUD) is None
    assert attribution.playing_on_server == set()


def test_a_reply_created_while_another_plays_takes_over_after_it() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.response_created("resp_2")  # e.g. a tool's follow-up, queued behind resp_1's audio
    assert attribution.classify(LOUD) == "resp_1"
    attribution.stopped("resp_1")
    assert attribution.classify(QUIET) is None
    assert attribution.response_id == "resp_2"
    assert attribution.classify(LOUD) == "resp_2"


def test_started_switches_to_the_reply_the_server_plays() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.started("resp_2")
    assert attribution.classify(LOUD) == "resp_2"


async def test_media_pieces_are_asyncio_friendly() -> None:
    # recv() must yield to the loop while it waits for its deadline (aiortc runs in the same loop).
    track = MicrophoneTrack()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    for _ in range(5):
        await track.recv()
    task.cancel()
    assert ticks >= 10
    track.stop()
