"""Sample-rate conversion of PCM16 mono audio with soxr.

``resample`` converts a whole clip; ``StreamingResampler`` converts a stream chunk by chunk with
state carried across chunks (no clicks at chunk edges), for devices that do not offer 24 kHz and
for telephony's 8 kHz.
"""

from __future__ import annotations

import numpy as np
import soxr

from realtalk.audio.pcm import pcm16_to_int16

__all__ = ["StreamingResampler", "resample"]


def resample(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    """Resample a complete PCM16 mono clip."""
    if from_hz == to_hz or not pcm:
        return bytes(pcm)
    ints = pcm16_to_int16(pcm)
    out = soxr.resample(ints, from_hz, to_hz, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


class StreamingResampler:
    """Resample a PCM16 mono stream chunk by chunk.

    Output lags input by the filter's delay; call ``flush()`` at the end of the stream to get the tail.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz = from_hz
        self.to_hz = to_hz
        self._stream = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16")

    def process(self, pcm: bytes) -> bytes:
        if self._stream is None:
            return bytes(pcm)
        out = self._stream.resample_chunk(pcm16_to_int16(pcm), last=False)
        return np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return np.asarray(out, dtype="<i2").tobytes()
