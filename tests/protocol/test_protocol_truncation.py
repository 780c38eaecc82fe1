"""The barge-in truncation rule (§2.5 E): samples played → audio_end_ms, or no truncate at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.protocol.truncation import samples_to_ms, truncate_audio_end_ms

RATES_HZ = st.sampled_from([24000, 8000])
SAMPLES = st.integers(min_value=0, max_value=24000 * 600)


def _end_ms(played: int, received: int, rate_hz: int = 24000, finished: bool = False) -> int | None:
    return truncate_audio_end_ms(
        played_samples=played, received_samples=received, sample_rate_hz=rate_hz, playback_finished=finished
    )


def test_two_seconds_played_at_24_khz_truncates_at_2000_ms() -> None:
    assert _end_ms(48000, 96000) == 2000


def test_milliseconds_are_floored_never_rounded_up() -> None:
    assert _end_ms(47, 96000) == 1  # 1.958 ms heard
    assert _end_ms(23999, 96000) == 999


def test_g711_at_8_khz_counts_8_samples_per_ms() -> None:
    assert _end_ms(800, 8000, rate_hz=8000) == 100


def test_truncate_is_clamped_to_the_audio_received() -> None:
    # The player reported more than arrived (e.g. padding): the server would reject a longer value.
    assert _end_ms(10_000, 4_800) == 200


def test_truncate_is_skipped_when_nothing_was_played() -> None:
    assert _end_ms(0, 96000) is None


def test_truncate_is_skipped_when_less_than_one_millisecond_was_played() -> None:
    assert _end_ms(23, 96000) is None


def test_truncate_is_skipped_when_playback_had_finished() -> None:
    assert _end_ms(96000, 96000, finished=True) is None


def test_negative_counts_and_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        _end_ms(-1, 10)
    with pytest.raises(ValueError):
        samples_to_ms(10, 0)


@given(played=SAMPLES, received=SAMPLES, rate_hz=RATES_HZ, finished=st.booleans())
def test_audio_end_ms_is_never_above_the_audio_received(
    played: int, received: int, rate_hz: int, finished: bool
) -> None:
    end_ms = _end_ms(played, received, rate_hz, finished)
    if end_ms is not None:
        assert end_ms * rate_hz <= received * 1000  # the truncated audio fits inside what arrived
        assert end_ms * rate_hz <= played * 1000  # and inside what was heard


@given(played=SAMPLES, received=SAMPLES, rate_hz=RATES_HZ)
def test_a_zero_ms_truncate_is_never_produced(played: int, received: int, rate_hz: int) -> None:
    assert _end_ms(played, received, rate_hz) != 0


@given(played=SAMPLES, received=SAMPLES, rate_hz=RATES_HZ)
def test_nothing_is_truncated_after_playback_ended(played: int, received: int, rate_hz: int) -> None:
    assert _end_ms(played, received, rate_hz, finished=True) is None


@given(played=SAMPLES, received=SAMPLES, rate_hz=RATES_HZ)
def test_audio_end_ms_is_the_floor_of_the_heard_duration(played: int, received: int, rate_hz: int) -> None:
    heard_ms = min(played, received) * 1000 // rate_hz
    assert _end_ms(played, received, rate_hz) == (heard_ms or None)


@given(played=SAMPLES, more=st.integers(min_value=0, max_value=24000), received=SAMPLES)
def test_playing_more_never_truncates_earlier(played: int, more: int, received: int) -> None:
    assert (_end_ms(played + more, received) or 0) >= (_end_ms(played, received) or 0)
