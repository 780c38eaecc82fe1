"""The optional echo canceller (WebRTC AEC3 via livekit) on a synthetic room echo of real fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from realtalk.audio.aec import EchoCanceller, HalfBandResampler
from realtalk.audio.pcm import pcm16_to_int16, read_wav
from realtalk.errors import ConfigError

Signal = npt.NDArray[np.float64]
RATE = 24_000
BLOCK = 480


def level_db(signal: Signal) -> float:
    return float(10 * np.log10(np.mean(np.square(signal)) + 1e-9))


def load(fixtures_dir: Path, name: str) -> Signal:
    return pcm16_to_int16(read_wav(fixtures_dir / f"{name}.wav")[0]).astype(np.float64)


def to_pcm(signal: Signal) -> bytes:
    return np.clip(np.round(signal), -32768, 32767).astype("<i2").tobytes()


def test_the_half_band_resampler_round_trip_is_the_input_delayed_by_the_filter() -> None:
    t = np.arange(RATE) / RATE
    chirp = np.round(12_000 * np.sin(2 * np.pi * (200 * t + 4_000 * t * t)))  # up to 8.2 kHz
    resampler = HalfBandResampler()
    up = [resampler.up(to_pcm(chirp[i : i + 300])) for i in range(0, RATE, 300)]  # odd block size
    assert [len(u) for u in up] == [1_200] * (RATE // 300)
    down = pcm16_to_int16(resampler.down(b"".join(up))).astype(np.float64)
    delay = 95  # 95 samples at 48 kHz in each filter: 190 at 48 kHz, 95 at 24 kHz
    error = down[delay:] - chirp[: RATE - delay]
    assert level_db(chirp) - level_db(error) > 40


def test_without_livekit_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)  # makes `import livekit.rtc` fail
    with pytest.raises(ConfigError, match=r"pip install livekit.*echo gate"):
        EchoCanceller()


def room_echo(reply: Signal, delay_ms: int, gain_db: float) -> Signal:
    """The reply as the microphone hears it: a direct path after the delay, then a 250 ms reverb tail."""
    rng = np.random.default_rng(1)
    t = np.arange(int(0.3 * RATE)) / RATE
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / 0.25) * 0.15
    response[0] = 1.0
    response = np.concatenate([np.zeros(delay_ms * RATE // 1000), response])
    echo = np.convolve(reply, response)[: len(reply)]
    return echo * 10 ** ((level_db(reply) + gain_db - level_db(echo)) / 20)


def frames_kept(clean: Signal, processed: Signal, delay: int = 95) -> float:
    """Share of the user's active 10 ms frames that come out no more than 10 dB below their level.

    Waveforms are not comparable (AEC3's suppressor applies gains per band and per frame), so the
    test is whether the syllables are there. ``delay``: the two half-band filters, 95 samples.
    """

    def levels(signal: Signal) -> Signal:
        frames = signal[: len(signal) // 240 * 240].reshape(-1, 240)
        result: Signal = 10 * np.log10(np.mean(np.square(frames), axis=1) + 1e-3)
        return result

    want = levels(clean[: len(clean) - delay])
    got = levels(processed[delay:])
    active = want > want.max() - 20
    return float(np.mean(got[active] - want[active] > -10))


def cancel(canceller: EchoCanceller, mic: Signal, played: Signal) -> Signal:
    out = [
        canceller.process(to_pcm(mic[i : i + BLOCK]), to_pcm(played[i : i + BLOCK]))
        for i in range(0, len(played) // BLOCK * BLOCK, BLOCK)
    ]
    return pcm16_to_int16(b"".join(out)).astype(np.float64)


def test_aec3_removes_a_room_echo_and_keeps_the_users_voice(fixtures_dir: Path) -> None:
    pytest.importorskip("livekit.rtc", reason="optional: pip install livekit")
    reply = load(fixtures_dir, "long_turn")
    user = load(fixtures_dir, "stop")
    echo = room_echo(reply, delay_ms=50, gain_db=-6)
    user_track = np.zeros(len(reply))
    at = 10 * RATE  # the user talks over the reply at 10 s, as loud as the reply
    user_track[at : at + len(user)] = user * 10 ** ((level_db(reply) - level_db(user)) / 20)
    mic = echo + user_track
    out = cancel(EchoCanceller(), mic, reply)

    converged = slice(4 * RATE, at)  # echo only, after 4 s of learning
    erle_db = level_db(mic[converged]) - level_db(out[converged])
    assert erle_db > 25  # measured: about 40 dB

    speaking = slice(at + 1 * RATE, at + int(2.74 * RATE))  # "stop please wait" over the echo
    assert abs(level_db(out[speaking]) - level_db(user_track[speaking])) < 4  # measured: -2.1 dB
    # AEC3's suppressor still clips word onsets in double talk (same synthetic voice on both
    # sides is its worst case): measured 0.64 of the frames kept; 0.95 with no echo present.
    assert frames_kept(user_track[speaking], out[speaking]) > 0.5


def test_aec3_returns_exactly_as_many_samples_as_it_was_given(fixtures_dir: Path) -> None:
    pytest.importorskip("livekit.rtc", reason="optional: pip install livekit")
    canceller = EchoCanceller()
    speech = to_pcm(load(fixtures_dir, "question")[: 3 * RATE])
    sizes = [300, 480, 7, 1_000, 0, 480]
    out_sizes = [len(canceller.process(speech[: 2 * n], speech[: 2 * n])) for n in sizes]
    assert out_sizes == [2 * n for n in sizes]
