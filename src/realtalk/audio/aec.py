"""Acoustic echo cancellation (optional): WebRTC's AEC3, through the ``livekit`` package.

Theory of operation. The echo gate (``echo.py``) mutes the microphone while the agent speaks, so a
user can interrupt only by talking louder than the echo. An echo *canceller* subtracts the echo
instead: it learns the path from the speaker to the microphone (delay, room, loudspeaker) from the
reference (what was played) and removes its estimate from the microphone signal, so the user can be
heard at any level while the agent talks. ``EchoCanceller.process`` has the gate's signature and can
stand in for it.

The canceller is WebRTC's AudioProcessingModule (AEC3, optionally noise suppression and a high-pass
filter), which the ``livekit`` wheel ships compiled (``livekit.rtc.AudioProcessingModule``); it runs
offline, with no server. It takes 10 ms frames. It is fed at 48 kHz: measured on this project's
fixtures, at 24 kHz it also cancels but costs the user's voice 1.5 dB and much of its envelope
(correlation 0.82), at 48 kHz 0.3 dB (0.98). The 2x conversions are linear-phase FIR filters (2 ms
of delay each way), not soxr, whose streaming mode holds back 20-40 ms at a time.

``livekit`` is imported when an ``EchoCanceller`` is made; without it the error says what to install.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ, pcm16_to_int16
from realtalk.errors import ConfigError

__all__ = ["EchoCanceller", "HalfBandResampler"]

_PROCESSING_RATE_HZ = 2 * WIRE_SAMPLE_RATE_HZ
_FRAME_SAMPLES = _PROCESSING_RATE_HZ // 100  # AEC3 works on 10 ms frames


def _half_band_taps(count: int = 191) -> npt.NDArray[np.float64]:
    """Low-pass at 11 kHz for 48 kHz audio: Kaiser-windowed sinc, unity gain at DC.

    191 taps, not fewer: with 95 the images of the 24 kHz signal above 12 kHz were weak enough for
    a round trip but not for AEC3, whose suppressor then took 1.7 dB off the user's voice (0.7 dB
    with 191 taps; soxr's offline resampling, 0.5 dB).
    """
    n = np.arange(count) - (count - 1) / 2
    taps = np.sinc(2 * 11_000 / _PROCESSING_RATE_HZ * n) * np.kaiser(count, 10.0)
    result: npt.NDArray[np.float64] = taps / taps.sum()
    return result


class HalfBandResampler:
    """Streaming 24 kHz <-> 48 kHz conversion by one FIR filter, with its history carried over.

    ``up`` returns exactly twice the samples given, ``down`` exactly half (``down`` needs an even
    count); the signal is delayed by the filter's half length (95 samples at 48 kHz, 2 ms).
    """

    def __init__(self) -> None:
        taps = _half_band_taps()
        # Polyphase: the even and odd output samples of zero-stuffing then filtering are the input
        # filtered by the even and the odd taps; decimating keeps only every other output.
        self._taps = taps
        self._even_taps = 2 * taps[0::2]  # x2: zero-stuffing halves the level
        self._odd_taps = 2 * taps[1::2]
        self._up_history = np.zeros(len(self._even_taps) - 1)
        self._down_history = np.zeros(len(taps) - 1)

    def up(self, pcm: bytes) -> bytes:
        samples = pcm16_to_int16(pcm).astype(np.float64)
        extended = np.concatenate([self._up_history, samples])
        self._up_history = extended[len(samples) :]
        out = np.empty(2 * len(samples))
        out[0::2] = np.convolve(extended, self._even_taps, mode="valid")
        out[1::2] = np.convolve(extended[1:], self._odd_taps, mode="valid") if len(samples) else []
        return _to_pcm16(out)

    def down(self, pcm: bytes) -> bytes:
        samples = pcm16_to_int16(pcm).astype(np.float64)
        if len(samples) % 2:
            raise ValueError("down() needs an even number of 48 kHz samples")
        extended = np.concatenate([self._down_history, samples])
        self._down_history = extended[len(samples) :]
        windows = np.lib.stride_tricks.sliding_window_view(extended, len(self._taps))[::2]
        out: npt.NDArray[np.float64] = windows @ self._taps[::-1]
        return _to_pcm16(out)


def _to_pcm16(samples: npt.NDArray[np.float64]) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def _import_livekit_rtc() -> Any:
    try:
        return importlib.import_module("livekit.rtc")
    except ImportError as exc:
        raise ConfigError(
            f"Echo cancellation needs the optional package livekit ({exc}). Install it with "
            "`pip install livekit`, or use the default echo gate (or --headphones).",
            variable="--aec",
        ) from None


class EchoCanceller:
    """Remove the agent's echo from the microphone with WebRTC AEC3 (needs ``pip install livekit``).

    ``process(mic_pcm, played_pcm)``: both PCM16 mono at 24 kHz, from the same device period (either
    may be empty). Returns exactly ``len(mic_pcm)`` bytes. ``stream_delay_ms`` is a hint of the
    speaker-to-microphone delay beyond what the device blocks already align; AEC3 estimates the
    rest itself (0 works in the measurements).
    """

    def __init__(
        self,
        *,
        noise_suppression: bool = False,
        high_pass_filter: bool = True,
        stream_delay_ms: int = 0,
    ) -> None:
        rtc = _import_livekit_rtc()
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter,
            auto_gain_control=False,
        )
        self.stream_delay_ms = stream_delay_ms
        self._mic_resampler = HalfBandResampler()
        self._ref_resampler = HalfBandResampler()
        self._out_resampler = HalfBandResampler()
        self._mic_fifo = bytearray()  # 48 kHz, waiting for a whole 10 ms frame
        self._ref_fifo = bytearray()
        self._out_fifo = bytearray()  # 24 kHz, processed, waiting to be returned
        self.frames_processed = 0

    def process(self, mic_pcm: bytes, played_pcm: bytes) -> bytes:
        frame_bytes = _FRAME_SAMPLES * BYTES_PER_SAMPLE
        if played_pcm:
            self._ref_fifo += self._ref_resampler.up(played_pcm)
            while len(self._ref_fifo) >= frame_bytes:
                # The reference goes in first: AEC3 must know what was played before it hears it back.
                self._apm.process_reverse_stream(self._frame(self._ref_fifo[:frame_bytes]))
                del self._ref_fifo[:frame_bytes]
        if not mic_pcm:
            return mic_pcm
        self._mic_fifo += self._mic_resampler.up(mic_pcm)
        while len(self._mic_fifo) >= frame_bytes:
            frame = self._frame(self._mic_fifo[:frame_bytes])
            del self._mic_fifo[:frame_bytes]
            self._apm.set_stream_delay_ms(self.stream_delay_ms)  # required before every frame
            self._apm.process_stream(frame)
            self._out_fifo += self._out_resampler.down(np.asarray(frame.data, dtype=np.int16).tobytes())
            self.frames_processed += 1
        want = len(mic_pcm) - len(mic_pcm) % BYTES_PER_SAMPLE
        short = want - len(self._out_fifo)
        if short > 0:
            # Blocks that are not whole 10 ms frames: the rest waits for the next block, and the
            # stream is delayed by silence once, at the start (the server's timeline stays exact).
            self._out_fifo[0:0] = bytes(short)
        out = bytes(self._out_fifo[:want])
        del self._out_fifo[:want]
        return out

    def _frame(self, pcm: bytes | bytearray) -> Any:
        return self._rtc.AudioFrame(bytearray(pcm), _PROCESSING_RATE_HZ, 1, _FRAME_SAMPLES)
