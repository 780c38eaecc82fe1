from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio import pcm
from realtalk.audio.resample import StreamingResampler, resample


def test_samples_to_ms_floors_so_it_never_claims_audio_that_is_not_there() -> None:
    assert pcm.samples_to_ms(23) == 0
    assert pcm.samples_to_ms(24) == 1
    assert pcm.samples_to_ms(24_000) == 1000
    assert pcm.samples_to_ms(8_000, 8_000) == 1000


@given(st.integers(min_value=0, max_value=10**9))
def test_ms_to_samples_and_back_is_exact_for_whole_milliseconds(ms: int) -> None:
    assert pcm.samples_to_ms(pcm.ms_to_samples(ms)) == ms


def test_rms_of_full_scale_square_is_zero_dbfs_and_silence_is_the_floor() -> None:
    square = np.array([32767, -32768] * 100, dtype="<i2").tobytes()
    assert pcm.rms_dbfs(square) == pytest.approx(0.0, abs=0.01)
    assert pcm.rms_dbfs(pcm.silence(100)) == pcm.SILENCE_DBFS
    assert pcm.rms_dbfs(b"") == pcm.SILENCE_DBFS


def test_float_conversion_clips_instead_of_wrapping() -> None:
    out = np.frombuffer(pcm.float_to_pcm16([2.0, -2.0, 0.5]), dtype="<i2")
    assert out.tolist() == [32767, -32768, 16384]


def test_wav_round_trip_keeps_samples_rate_and_channels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = np.arange(-100, 100, dtype="<i2").tobytes()
    pcm.write_wav(tmp_path / "a.wav", data, 16_000, 1)
    assert pcm.read_wav(tmp_path / "a.wav") == (data, 16_000, 1)


def test_reading_a_non_16_bit_wav_names_the_problem_and_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import wave

    with wave.open(str(tmp_path / "b.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 80)
    with pytest.raises(ValueError, match="only 16-bit PCM"):
        pcm.read_wav(tmp_path / "b.wav")


def test_fixture_speech_is_24khz_mono(fixtures_dir) -> None:  # type: ignore[no-untyped-def]
    data, rate, channels = pcm.read_wav(fixtures_dir / "question.wav")
    assert (rate, channels) == (24_000, 1)
    assert pcm.rms_dbfs(data) > -40


def test_resampling_keeps_duration_and_a_tone_frequency() -> None:
    rate_in, rate_out = 24_000, 16_000
    t = np.arange(rate_in) / rate_in
    tone = pcm.float_to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t))
    out = pcm.pcm16_to_float(resample(tone, rate_in, rate_out))
    assert abs(out.size - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) * rate_out / out.size == pytest.approx(440, abs=2)


def test_streaming_resampler_matches_duration_across_odd_chunks() -> None:
    rng = np.random.default_rng(1)
    audio = pcm.float_to_pcm16(rng.normal(0, 0.1, 48_000))
    stream = StreamingResampler(24_000, 8_000)
    out = b"".join(stream.process(audio[i : i + 962]) for i in range(0, len(audio), 962)) + stream.flush()
    assert abs(len(out) // 2 - 16_000) <= 2
    assert StreamingResampler(24_000, 24_000).process(audio[:100]) == audio[:100]
