"""G.711 µ-law and A-law (ITU-T G.711), the telephony formats ``audio/pcmu`` and ``audio/pcma``.

Numpy lookup tables: encoding indexes a 65,536-entry table by the 16-bit sample, decoding a
256-entry table by the code byte. Bit-identical to the standard library's former ``audioop``
(``lin2ulaw``/``ulaw2lin``, ``lin2alaw``/``alaw2lin``); the tests check all 65,536 inputs.
G.711 runs at 8 kHz: resample 24 kHz PCM16 to 8 kHz before encoding.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from realtalk.audio.pcm import pcm16_to_int16

__all__ = ["G711_SAMPLE_RATE_HZ", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

G711_SAMPLE_RATE_HZ = 8_000

_ULAW_BIAS = 0x84
_ULAW_CLIP_14BIT = 8159
# Upper bound of each of the 8 segments: µ-law on 14-bit, A-law on 13-bit magnitudes.
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def _ulaw_encode_one(sample: int) -> int:
    # G.711 µ-law works on 14-bit magnitudes: drop the two low bits, bias, find the segment.
    sample >>= 2
    if sample < 0:
        sample, mask = -sample, 0x7F
    else:
        mask = 0xFF
    sample = min(sample, _ULAW_CLIP_14BIT) + (_ULAW_BIAS >> 2)
    seg = _segment(sample, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((sample >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_decode_one(code: int) -> int:
    code = ~code & 0xFF
    magnitude = ((code & 0x0F) << 3) + _ULAW_BIAS
    magnitude <<= (code & 0x70) >> 4
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _alaw_encode_one(sample: int) -> int:
    # G.711 A-law works on 13-bit magnitudes: drop the three low bits.
    sample >>= 3
    if sample >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        sample = -sample - 1
    seg = _segment(sample, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (sample >> 1) & 0x0F if seg < 2 else (sample >> seg) & 0x0F
    return aval ^ mask


def _alaw_decode_one(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        magnitude += 8
    elif seg == 1:
        magnitude += 0x108
    else:
        magnitude = (magnitude + 0x108) << (seg - 1)
    return magnitude if code & 0x80 else -magnitude


_Tables = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8], npt.NDArray[np.int16]]


@cache
def _tables() -> _Tables:
    """Built on first use (about 0.2 s), so importing realtalk.audio stays cheap."""
    all_samples = range(-32768, 32768)
    ulaw_enc = np.array([_ulaw_encode_one(s) for s in all_samples], dtype=np.uint8)
    alaw_enc = np.array([_alaw_encode_one(s) for s in all_samples], dtype=np.uint8)
    ulaw_dec = np.array([_ulaw_decode_one(c) for c in range(256)], dtype=np.int16)
    # Encode tables are indexed by sample + 32768, decode tables by the code byte.
    alaw_dec = np.array([_alaw_decode_one(c) for c in range(256)], dtype=np.int16)
    return ulaw_enc, ulaw_dec, alaw_enc, alaw_dec


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 (8 kHz) → µ-law bytes, one per sample."""
    return _tables()[0][pcm16_to_int16(pcm).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """µ-law bytes → PCM16 (8 kHz)."""
    return _tables()[1][np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 (8 kHz) → A-law bytes, one per sample."""
    return _tables()[2][pcm16_to_int16(pcm).astype(np.int32) + 32768].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes → PCM16 (8 kHz)."""
    return _tables()[3][np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()
