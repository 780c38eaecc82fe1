from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from realtalk.audio.pcm import pcm16_to_int16, read_wav, write_wav
from realtalk.audio.sources import (
    AudioSink,
    AudioSource,
    MemorySink,
    MemorySource,
    SilenceSource,
    StereoRecorder,
    WavSink,
    WavSource,
)


def ramp(n: int, start: int = 1) -> bytes:
    return (np.arange(start, start + n, dtype=np.int64) % 30_000).astype("<i2").tobytes()


def read_all(source: AudioSource, blocks: int, frames: int = 480) -> bytes:
    return b"".join(source.read(frames) for _ in range(blocks))


def test_memory_source_hands_out_its_audio_then_silence_in_blocks_of_exactly_the_requested_length() -> None:
    source = MemorySource(ramp(1000))
    blocks = [source.read(480) for _ in range(4)]
    assert [len(b) for b in blocks] == [960, 960, 960, 960]
    joined = b"".join(blocks)
    assert joined[:2000] == ramp(1000)
    assert joined[2000:] == bytes(len(joined) - 2000)


def test_memory_source_is_exhausted_only_once_its_last_sample_was_read() -> None:
    source = MemorySource(ramp(960))
    source.read(480)
    assert not source.exhausted
    source.read(480)
    assert source.exhausted
    assert source.read(10) == bytes(20)


def test_memory_source_rejects_an_odd_number_of_bytes() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        MemorySource(b"\x01\x02\x03")


def test_silence_source_gives_only_zeros_and_is_never_exhausted() -> None:
    source: AudioSource = SilenceSource()
    assert source.read(480) == bytes(960)
    assert not source.exhausted


def test_wav_source_at_24khz_gives_the_files_samples_unchanged(fixtures_dir: Path) -> None:
    pcm, rate, channels = read_wav(fixtures_dir / "stop.wav")
    assert (rate, channels) == (24_000, 1)
    source = WavSource(fixtures_dir / "stop.wav")
    got = read_all(source, len(pcm) // 960 + 2)
    assert got[: len(pcm)] == pcm
    assert got[len(pcm) :] == bytes(len(got) - len(pcm))
    assert source.exhausted


def test_wav_source_resamples_a_48khz_file_to_24khz(tmp_path: Path) -> None:
    t = np.arange(48_000) / 48_000
    tone = np.round(10_000 * np.sin(2 * np.pi * 1_000 * t)).astype("<i2")
    write_wav(tmp_path / "tone48k.wav", tone.tobytes(), sample_rate_hz=48_000)
    source = WavSource(tmp_path / "tone48k.wav")
    assert source.total_samples == 24_000
    got = pcm16_to_int16(source.read(24_000)).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(got[2_000:22_000]))
    peak_hz = np.argmax(spectrum) * 24_000 / 20_000
    assert peak_hz == pytest.approx(1_000, abs=2)


def test_wav_source_mixes_a_stereo_file_down_to_mono(tmp_path: Path) -> None:
    left = np.full(100, 1_000, dtype="<i2")
    right = np.full(100, 3_000, dtype="<i2")
    interleaved = np.stack([left, right], axis=1).tobytes()
    write_wav(tmp_path / "stereo.wav", interleaved, channels=2)
    source = WavSource(tmp_path / "stereo.wav")
    assert source.source_channels == 2
    assert source.read(100) == np.full(100, 2_000, dtype="<i2").tobytes()


def test_wav_source_rejects_a_file_that_is_not_a_wav_with_a_value_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples")
    with pytest.raises(ValueError, match=r"notes\.wav.*not a readable WAV file.*sox"):
        WavSource(path)


def test_wav_source_rejects_an_8_bit_wav_with_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "eight.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8_000)
        wav.writeframes(bytes(range(200)))
    with pytest.raises(ValueError, match="16-bit PCM"):
        WavSource(path)


def test_wav_sink_keeps_exactly_the_samples_it_was_given_silence_included(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    speech, _, _ = read_wav(fixtures_dir / "stop.wav")
    lead_silence = bytes(2 * 12_345)  # an odd number of samples: no rounding to blocks
    sink: AudioSink
    with WavSink(tmp_path / "out.wav") as sink:
        sink.write(lead_silence)
        for offset in range(0, len(speech), 958):  # chunks that do not divide the file
            sink.write(speech[offset : offset + 958])
        sink.write(bytes(2))
    pcm, rate, channels = read_wav(tmp_path / "out.wav")
    assert (rate, channels) == (24_000, 1)
    assert pcm == lead_silence + speech + bytes(2)
    assert sink.frames_written == (len(lead_silence) + len(speech) + 2) // 2


def test_wav_sink_streams_to_disk_instead_of_holding_the_audio(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "long.wav")
    for _ in range(500):  # 10 s of 20 ms blocks
        sink.write(ramp(480))
    on_disk_before_close = (tmp_path / "long.wav").stat().st_size
    sink.close()
    assert on_disk_before_close >= 500 * 960 - 16_384  # at most one small write buffer held back
    assert read_wav(tmp_path / "long.wav")[0] == ramp(480) * 500


def test_wav_sink_writes_two_channel_frames_when_asked(tmp_path: Path) -> None:
    frames = np.array([[1, -1], [2, -2], [3, -3]], dtype="<i2").tobytes()
    with WavSink(tmp_path / "st.wav", sample_rate_hz=16_000, channels=2) as sink:
        sink.write(frames)
    assert read_wav(tmp_path / "st.wav") == (frames, 16_000, 2)


def test_wav_sink_refuses_a_partial_frame_that_would_shift_every_later_sample(tmp_path: Path) -> None:
    with WavSink(tmp_path / "st.wav", channels=2) as sink, pytest.raises(ValueError, match="whole number"):
        sink.write(bytes(6))


def test_wav_sink_refuses_writes_after_close(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "x.wav")
    sink.close()
    sink.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        sink.write(bytes(2))


def test_memory_sink_keeps_everything_written_in_order() -> None:
    sink = MemorySink()
    sink.write(ramp(3))
    sink.write(bytes(4))
    sink.close()
    assert sink.pcm == ramp(3) + bytes(4)
    assert sink.samples_written == 5
    with pytest.raises(ValueError, match="closed"):
        sink.write(b"\x00\x00")


def stereo(pcm: bytes) -> tuple[bytes, bytes]:
    frames = pcm16_to_int16(pcm).reshape(-1, 2)
    return frames[:, 0].astype("<i2").tobytes(), frames[:, 1].astype("<i2").tobytes()


def test_stereo_recorder_puts_the_user_left_and_the_agent_right_sample_for_sample(tmp_path: Path) -> None:
    recorder = StereoRecorder.to_wav(tmp_path / "conversation.wav")
    mic = [ramp(480, 1 + 480 * i) for i in range(5)]
    played = [bytes(960), bytes(960), ramp(480, 20_000), ramp(480, 20_480), bytes(960)]
    for m, p in zip(mic, played, strict=True):
        recorder.write(m, p)
    recorder.close()
    pcm, rate, channels = read_wav(tmp_path / "conversation.wav")
    assert (rate, channels) == (24_000, 2)
    left, right = stereo(pcm)
    assert left == b"".join(mic)
    assert right == b"".join(played)


def test_stereo_recorder_pairs_blocks_of_unequal_length_by_sample_count() -> None:
    sink = MemorySink()
    recorder = StereoRecorder(sink)
    recorder.write(ramp(500), b"")  # separate streams: one side at a time, odd sizes
    recorder.write(b"", ramp(480, 5_000))
    recorder.write(ramp(460, 501), ramp(480, 5_480))
    assert recorder.frames_written == 960
    recorder.close()
    left, right = stereo(sink.pcm)
    assert left == ramp(960)
    assert right == ramp(960, 5_000)
    assert sink.closed


def test_stereo_recorder_pads_the_shorter_side_with_silence_when_closed() -> None:
    sink = MemorySink()
    recorder = StereoRecorder(sink)
    recorder.write(ramp(480), ramp(100))
    recorder.close()
    left, right = stereo(sink.pcm)
    assert left == ramp(480)
    assert right == ramp(100) + bytes(760)


def test_stereo_recorder_holds_back_at_most_max_skew_before_padding_the_silent_side() -> None:
    sink = MemorySink()
    recorder = StereoRecorder(sink, max_skew_ms=100)  # 2,400 samples
    for i in range(10):
        recorder.write(ramp(480, 1 + 480 * i), b"")  # the output side never delivers
    assert recorder.frames_written == 4_800 - 2_400
    left, right = stereo(sink.pcm)
    assert left == ramp(2_400)
    assert right == bytes(4_800)
