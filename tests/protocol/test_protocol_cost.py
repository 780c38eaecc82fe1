"""Usage → cost (§6): the worked example, cached-token subtraction, totals and unheard audio."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.realtime import RealtimeResponseUsage

from realtalk.errors import ConfigError, RemoteProtocolError
from realtalk.protocol.cost import (
    PRICE_TABLE,
    CostTracker,
    Prices,
    TurnCost,
    Usage,
    best_cached_tokens,
    low_cache_reason,
    prices_for,
    turn_cost,
)

PRICES_15 = PRICE_TABLE["gpt-realtime-1.5"]
PRICES_MINI = PRICE_TABLE["gpt-realtime-mini"]

# §6.2 worked example, as a response.done usage block: text in 59, audio in 73 of which 64 cached,
# text out 41, audio out 147.
WORKED_USAGE: dict[str, Any] = {
    "total_tokens": 320,
    "input_tokens": 132,
    "output_tokens": 188,
    "input_token_details": {
        "text_tokens": 59,
        "audio_tokens": 73,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 64, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 41, "audio_tokens": 147},
}


def _reference_cost(u: Usage, p: Prices) -> Decimal:
    # The §6.2 formula, written out independently of cost.py.
    return (
        (u.text_in - u.cached_text_in) * p.text_in
        + u.cached_text_in * p.text_cached
        + (u.audio_in - u.cached_audio_in) * p.audio_in
        + u.cached_audio_in * p.audio_cached
        + (u.image_in - u.cached_image_in) * p.image_in
        + u.cached_image_in * p.image_cached
        + u.text_out * p.text_out
        + u.audio_out * p.audio_out
    ) / 1_000_000


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    counts = {name: draw(st.integers(0, 50_000)) for name in ("text_in", "audio_in", "image_in")}
    cached = {f"cached_{name}": draw(st.integers(0, counts[name])) for name in counts}
    return Usage(
        **counts, **cached, text_out=draw(st.integers(0, 4096)), audio_out=draw(st.integers(0, 4096))
    )


def test_worked_example_costs_exactly_0_0106136_on_gpt_realtime_1_5() -> None:
    cost = turn_cost(WORKED_USAGE, PRICES_15)
    assert cost.total_usd == Decimal("0.0106136")
    assert cost.text_in_usd == Decimal("0.000236")
    assert cost.audio_in_usd == Decimal("0.000288")  # 9 uncached audio tokens
    assert cost.audio_cached_usd == Decimal("0.0000256")
    assert cost.text_out_usd == Decimal("0.000656")
    assert cost.audio_out_usd == Decimal("0.009408")


def test_worked_example_costs_0_003183_on_gpt_realtime_mini() -> None:
    assert turn_cost(WORKED_USAGE, PRICES_MINI).total_usd.quantize(Decimal("0.000001")) == Decimal("0.003183")


def test_usage_reads_the_sdk_model_and_the_plain_dict_the_same() -> None:
    model = RealtimeResponseUsage.model_validate(WORKED_USAGE)
    assert (
        Usage.from_response_usage(model)
        == Usage.from_response_usage(WORKED_USAGE)
        == Usage(text_in=59, audio_in=73, cached_audio_in=64, text_out=41, audio_out=147)
    )


def test_missing_usage_counts_as_zero_tokens() -> None:
    assert Usage.from_response_usage(None) == Usage()
    assert Usage.from_response_usage({"input_token_details": None}) == Usage()


def test_cached_tokens_above_their_modality_are_a_remote_protocol_error() -> None:
    bad = {"input_token_details": {"text_tokens": 10, "cached_tokens_details": {"text_tokens": 11}}}
    with pytest.raises(RemoteProtocolError, match="cached text tokens exceed"):
        Usage.from_response_usage(bad)


def test_prices_for_matches_a_dated_model_version() -> None:
    assert prices_for("gpt-realtime-1.5-2026-02-23") == PRICES_15


def test_unknown_pricing_model_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"REALTALK_PRICING_MODEL=gpt-realtime-1\.5") as caught:
        prices_for("my-deployment")
    assert caught.value.variable == "REALTALK_PRICING_MODEL"


def test_price_overrides_replace_single_prices() -> None:
    prices = prices_for("gpt-realtime-1.5", {"audio_out": "70.40", "text_in": Decimal("4.4")})
    assert (prices.audio_out, prices.text_in, prices.text_out) == (
        Decimal("70.40"),
        Decimal("4.4"),
        Decimal("16.00"),
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"audio_output": "1"}, "unknown price"),
        ({"audio_out": "cheap"}, "not a number"),
        ({"audio_out": "-1"}, ">= 0"),
        ({"audio_out": "NaN"}, ">= 0"),
    ],
)
def test_bad_price_overrides_are_config_errors(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prices_for("gpt-realtime-1.5", overrides)


def test_tracker_sums_turns_tokens_and_cache_hit_ratio() -> None:
    tracker = CostTracker(PRICES_15)
    assert tracker.cache_hit_ratio is None
    first = tracker.add_turn("resp_1", "completed", Usage.from_response_usage(WORKED_USAGE))
    tracker.add_turn("resp_2", "cancelled", Usage(text_in=68, cached_text_in=0, audio_out=10))
    assert first.cost_usd == Decimal("0.0106136")
    assert tracker.total_usd == Decimal("0.0106136") + Decimal("0.000272") + Decimal("0.00064")
    assert tracker.tokens.input_tokens == 132 + 68
    assert tracker.cache_hit_ratio == pytest.approx(64 / 200)
    assert [turn.response_id for turn in tracker.turns] == ["resp_1", "resp_2"]
    assert tracker.last_turn is not None and tracker.last_turn.status == "cancelled"


def test_unheard_audio_costs_the_unplayed_fraction_of_audio_out() -> None:
    tracker = CostTracker(PRICES_15)
    tracker.add_turn("resp_1", "cancelled", Usage(audio_out=100))
    tracker.record_playback("resp_1", played_samples=24000, received_samples=96000)  # a quarter heard
    assert tracker.unheard_audio_usd == Decimal(75) * Decimal(64) / 1_000_000
    assert tracker.turns[0].unheard_audio_usd == tracker.unheard_audio_usd


def test_playback_reported_before_the_turn_is_billed_is_applied_when_it_arrives() -> None:
    tracker = CostTracker(PRICES_15)
    tracker.record_playback("resp_1", played_samples=0, received_samples=48000)
    turn = tracker.add_turn("resp_1", "cancelled", Usage(audio_out=40))
    assert turn.unheard_audio_usd == Decimal(40) * Decimal(64) / 1_000_000
    assert tracker.unheard_audio_usd == turn.unheard_audio_usd


def test_tracker_keeps_a_bounded_number_of_turns_but_exact_totals() -> None:
    tracker = CostTracker(PRICES_15, max_turns_kept=2)
    for n in range(5):
        tracker.add_turn(f"resp_{n}", "completed", Usage(text_out=1_000_000))
    assert len(tracker.turns) == 2
    assert tracker.total_usd == Decimal("80.00")


@given(usages())
def test_cost_is_never_negative_and_matches_the_reference_formula(usage: Usage) -> None:
    cost = turn_cost(usage, PRICES_15)
    assert cost.total_usd >= 0
    assert all(getattr(cost, name) >= 0 for name in cost.__dataclass_fields__)
    assert cost.total_usd == _reference_cost(usage, PRICES_15)


@given(usages(), usages())
def test_cost_is_linear_in_tokens(a: Usage, b: Usage) -> None:
    assert (
        turn_cost(a + b, PRICES_MINI).total_usd
        == turn_cost(a, PRICES_MINI).total_usd + turn_cost(b, PRICES_MINI).total_usd
    )


@given(usages(), st.integers(0, 1000))
def test_cached_tokens_are_subtracted_before_the_uncached_price(usage: Usage, extra_cached: int) -> None:
    # Marking k more of the same audio input tokens as cached changes the cost by k x (cached - uncached).
    k = min(extra_cached, usage.audio_in - usage.cached_audio_in)
    more_cached = Usage(**{**usage.__dict__, "cached_audio_in": usage.cached_audio_in + k})
    delta = turn_cost(more_cached, PRICES_15).total_usd - turn_cost(usage, PRICES_15).total_usd
    assert delta == k * (PRICES_15.audio_cached - PRICES_15.audio_in) / 1_000_000


def _turn(input_tokens: int, cached: int) -> TurnCost:
    usage = Usage(text_in=input_tokens, cached_text_in=cached, audio_out=100)
    return TurnCost("resp", "completed", usage, turn_cost(usage, prices_for("gpt-realtime-1.5")))


def test_a_low_cache_share_says_why_when_the_usage_can_tell() -> None:
    # One response of 1,500 tokens: its own request cannot hit a cache, so the session is too short.
    assert "too short" in (low_cache_reason(0.0, [_turn(1500, 0)]) or "")
    assert "too short" in (low_cache_reason(0.0, [_turn(600, 0), _turn(800, 0)]) or "")
    # Long turns whose prefixes a cache could have served, and mostly did not: the context changed.
    changed = [_turn(3000, 0), _turn(3200, 0), _turn(3400, 100)]
    reason = low_cache_reason(0.01, changed) or ""
    assert "could have served up to 65%" in reason and "changed" in reason
    assert low_cache_reason(0.8, changed) is None  # not low
    assert low_cache_reason(None, []) is None  # nothing billed


def test_a_perfect_cache_serves_the_previous_input_from_the_second_response_on() -> None:
    usages = [
        Usage(text_in=2000),
        Usage(text_in=2500, cached_text_in=10),
        Usage(text_in=900),
        Usage(text_in=1200),
    ]
    # 2nd: min(2500, 2000); 3rd: min(900, 2500); 4th: nothing (900 < 1,024 before it).
    assert best_cached_tokens(usages) == 2000 + 900 + 0
