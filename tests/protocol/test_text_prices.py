"""Text-model prices and the cost of one Responses API answer (cached inside input, reasoning
inside output)."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.errors import ConfigError, RemoteProtocolError
from realtalk.protocol.text_prices import (
    TEXT_PRICE_TABLE,
    TextPrices,
    TextUsage,
    text_cost_usd,
    text_price_overrides,
    text_prices_for,
)

# A usage block shaped as the Responses API sends it (§7).
WIRE_USAGE: dict[str, Any] = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 192},
    "total_tokens": 1500,
}


def test_every_model_the_brief_names_has_prices() -> None:
    expected = {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"}
    assert expected | {"o4-mini", "o3"} <= set(TEXT_PRICE_TABLE)


def test_prices_are_decimals_and_cached_input_is_never_dearer_than_input() -> None:
    for model, prices in TEXT_PRICE_TABLE.items():
        assert all(isinstance(value, Decimal) for value in (prices.input, prices.cached_input, prices.output))
        assert prices.cached_input <= prices.input < prices.output, model


def test_gpt_5_mini_list_prices() -> None:
    assert text_prices_for("gpt-5-mini") == TextPrices(Decimal("0.25"), Decimal("0.025"), Decimal("2.00"))


def test_a_dated_model_version_matches_its_base_model() -> None:
    assert text_prices_for("gpt-4.1-2025-04-14") == TEXT_PRICE_TABLE["gpt-4.1"]


def test_model_names_match_whatever_their_case() -> None:
    assert text_prices_for("GPT-5-Nano") == TEXT_PRICE_TABLE["gpt-5-nano"]


def test_an_unknown_model_names_the_profile_key_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        text_prices_for("my-expert-deployment")
    assert caught.value.variable == "delegate.model_for_prices"
    assert "my-expert-deployment" in str(caught.value) and "gpt-5-mini" in str(caught.value)


def test_an_override_replaces_one_price_and_keeps_the_others() -> None:
    prices = text_prices_for("gpt-5", {"output": "11.00"})
    assert prices == TextPrices(Decimal("1.25"), Decimal("0.125"), Decimal("11.00"))


def test_a_toml_float_override_keeps_its_written_value() -> None:
    assert text_prices_for("gpt-5", {"input": 1.1}).input == Decimal("1.1")


def test_an_unknown_model_with_all_three_prices_overridden_is_priced_by_configuration() -> None:
    prices = text_prices_for("in-house-model", {"input": "1", "cached_input": "0.1", "output": "4"})
    assert prices == TextPrices(Decimal(1), Decimal("0.1"), Decimal(4))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"text_in": "1"}, "unknown text price 'text_in'"),
        ({"input": "cheap"}, "is not a number"),
        ({"input": "-1"}, "must be a number >= 0"),
        ({"input": "NaN"}, "must be a number >= 0"),
        ({"input": True}, "must be a number >= 0"),
        ({"input": [1]}, "is not a number"),
    ],
)
def test_a_bad_override_names_the_prices_key(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        text_prices_for("gpt-5", overrides)
    assert caught.value.variable == "delegate.prices"
    assert words in str(caught.value)


def test_usage_is_read_from_the_wire_shape() -> None:
    usage = TextUsage.from_wire(WIRE_USAGE)
    assert usage == TextUsage(
        input_tokens=1200, output_tokens=300, cached_input_tokens=1024, reasoning_tokens=192
    )
    assert usage.total_tokens == 1500


def test_usage_without_details_has_no_cached_or_reasoning_tokens() -> None:
    usage = TextUsage.from_wire(
        {"input_tokens": 5, "output_tokens": 7, "input_tokens_details": None, "total_tokens": 12}
    )
    assert usage == TextUsage(input_tokens=5, output_tokens=7)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        [],
        {"output_tokens": 1},
        {"input_tokens": 1},
        {"input_tokens": "12", "output_tokens": 1},
        {"input_tokens": 1.5, "output_tokens": 1},
        {"input_tokens": True, "output_tokens": 1},
        {"input_tokens": -1, "output_tokens": 1},
        {"input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 11}},
        {"input_tokens": 10, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 2}},
        {"input_tokens": 10, "output_tokens": 1, "input_tokens_details": "none"},
    ],
)
def test_a_malformed_usage_is_a_remote_protocol_error(usage: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        TextUsage.from_wire(usage)


def test_cost_bills_cached_input_at_the_cached_price_and_reasoning_as_output() -> None:
    # gpt-5: 176 uncached * 1.25 + 1024 cached * 0.125 + 300 output * 10 = 220 + 128 + 3000 per 1M.
    cost = text_cost_usd(TextUsage.from_wire(WIRE_USAGE), TEXT_PRICE_TABLE["gpt-5"])
    assert cost == Decimal("0.003348")


def test_cost_is_exact_whatever_the_global_decimal_context() -> None:
    usage = TextUsage(input_tokens=123_456_789, output_tokens=987_654_321, cached_input_tokens=3)
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        cost = text_cost_usd(usage, TEXT_PRICE_TABLE["o4-mini"])
    # 123,456,786 * 1.10 + 3 * 0.275 + 987,654,321 * 4.40 = 4,481,481,477.825 per 1M tokens.
    assert cost == Decimal("4481.481477825")


def test_no_tokens_cost_nothing() -> None:
    assert text_cost_usd(TextUsage(), TEXT_PRICE_TABLE["o3"]) == 0


@given(
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.sampled_from(sorted(TEXT_PRICE_TABLE)),
)
def test_caching_never_makes_an_answer_dearer(
    input_tokens: int, output_tokens: int, cached: int, model: str
) -> None:
    cached = min(cached, input_tokens)
    prices = TEXT_PRICE_TABLE[model]
    with_cache = text_cost_usd(TextUsage(input_tokens, output_tokens, cached), prices)
    without = text_cost_usd(TextUsage(input_tokens, output_tokens), prices)
    assert 0 <= with_cache <= without


def test_usages_add_up() -> None:
    total = TextUsage(10, 5, 2, 1) + TextUsage(20, 7, 3, 0)
    assert total == TextUsage(30, 12, 5, 1)


def test_no_overrides_change_nothing() -> None:
    assert text_price_overrides(None) == {}
    assert text_prices_for("o3", {}) == TEXT_PRICE_TABLE["o3"]
