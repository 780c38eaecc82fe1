"""PCM16 mono audio: conversions, levels, durations, and WAV files.

The Realtime wire format is 16-bit signed little-endian PCM, mono, 24 kHz (``audio/pcm``):
24 samples and 48 bytes per millisecond. Everything here is pure (no devices, no clock); WAV
reading and writing take paths or bytes and use only the standard library's ``wave``.
"""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "BYTES_PER_SAMPLE",
    "WIRE_SAMPLE_RATE_HZ",
    "bytes_to_samples",
    "float_to_pcm16",
    "ms_to_samples",
    "pcm16_to_float",
    "pcm16_to_int16",
    "read_wav",
    "rms_dbfs",
    "samples_to_ms",
    "silence",
    "wav_bytes",
    "write_wav",
]

WIRE_SAMPLE_RATE_HZ = 24_000
BYTES_PER_SAMPLE = 2
_INT16_SCALE = 32768.0
# Level reported for digital silence: -inf is honest but breaks meters and JSON.
SILENCE_DBFS = -120.0


def samples_to_ms(samples: int, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ) -> int:
    """Whole milliseconds covered by ``samples`` (floor: never claims audio that is not there)."""
    return (samples * 1000) // sample_rate_hz


def ms_to_samples(ms: float, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ) -> int:
    return round(ms * sample_rate_hz / 1000)


def bytes_to_samples(byte_count: int) -> int:
    return byte_count // BYTES_PER_SAMPLE


def pcm16_to_int16(pcm: bytes) -> npt.NDArray[np.int16]:
    """View PCM16 bytes as int16 samples (an odd trailing byte is ignored)."""
    usable = len(pcm) - (len(pcm) % BYTES_PER_SAMPLE)
    return np.frombuffer(pcm[:usable], dtype="<i2")


def pcm16_to_float(pcm: bytes) -> npt.NDArray[np.float32]:
    """PCM16 bytes to float32 in [-1, 1)."""
    return pcm16_to_int16(pcm).astype(np.float32) / np.float32(_INT16_SCALE)


def float_to_pcm16(samples: npt.NDArray[np.floating] | list[float]) -> bytes:
    """Float samples in [-1, 1] to PCM16 bytes, clipped rather than wrapped."""
    arr = np.asarray(samples, dtype=np.float64) * _INT16_SCALE
    return np.clip(np.round(arr), -32768, 32767).astype("<i2").tobytes()


def rms_dbfs(pcm: bytes | npt.NDArray[np.int16]) -> float:
    """Root-mean-square level in dBFS (0 dBFS = full-scale square wave); silence is -120."""
    ints = pcm16_to_int16(pcm) if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    if ints.size == 0:
        return SILENCE_DBFS
    mean_square = float(np.mean(np.square(ints.astype(np.float64)))) / (_INT16_SCALE * _INT16_SCALE)
    if mean_square <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square))


def silence(ms: float, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ) -> bytes:
    return bytes(ms_to_samples(ms, sample_rate_hz) * BYTES_PER_SAMPLE)


def read_wav(source: str | Path | bytes) -> tuple[bytes, int, int]:
    """Read a 16-bit PCM WAV: returns (pcm bytes, sample rate in Hz, channels).

    Raises ``ValueError`` naming the problem for anything that is not 16-bit PCM.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with handle, wave.open(handle, "rb") as wav:
        if wav.getsampwidth() != BYTES_PER_SAMPLE or wav.getcomptype() != "NONE":
            raise ValueError(
                f"{source if not isinstance(source, bytes) else 'WAV data'}: only 16-bit PCM WAV files are "
                f"supported (this one has {8 * wav.getsampwidth()}-bit {wav.getcomptype()}); convert it with "
                "`sox in.wav -b 16 -e signed-integer out.wav`"
            )
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()


def wav_bytes(pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm)
    return buffer.getvalue()


def write_wav(
    path: str | Path, pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, channels: int = 1
) -> None:
    Path(path).write_bytes(wav_bytes(pcm, sample_rate_hz, channels))
