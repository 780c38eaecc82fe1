"""G.711 must be bit-identical to the reference codec over every possible input."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from realtalk.audio import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def _reference():  # type: ignore[no-untyped-def]
    # audioop is the reference implementation: stdlib until 3.12, audioop-lts from 3.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if sys.version_info >= (3, 13):
            return pytest.importorskip("audioop")
        import audioop

        return audioop


def test_ulaw_encoding_matches_the_reference_for_all_65536_samples() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == _reference().lin2ulaw(ALL_SAMPLES, 2)


def test_alaw_encoding_matches_the_reference_for_all_65536_samples() -> None:
    assert g711.alaw_encode(ALL_SAMPLES) == _reference().lin2alaw(ALL_SAMPLES, 2)


def test_ulaw_decoding_matches_the_reference_for_all_256_codes() -> None:
    assert g711.ulaw_decode(ALL_CODES) == _reference().ulaw2lin(ALL_CODES, 2)


def test_alaw_decoding_matches_the_reference_for_all_256_codes() -> None:
    assert g711.alaw_decode(ALL_CODES) == _reference().alaw2lin(ALL_CODES, 2)


def test_encoding_makes_one_byte_per_sample_and_round_trips_within_quantisation() -> None:
    ramp = np.linspace(-20000, 20000, 8000).astype("<i2")
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        coded = encode(ramp.tobytes())
        assert len(coded) == ramp.size
        back = np.frombuffer(decode(coded), dtype="<i2").astype(np.int32)
        # Logarithmic quantisation: the error grows with the magnitude, at most about 1/16 of it.
        assert np.all(np.abs(back - ramp) <= np.abs(ramp) / 16 + 16)
