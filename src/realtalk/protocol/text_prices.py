"""Usage → money for text and reasoning models called over the Responses API (delegation).

Pure: a price table, a usage block read from the wire, and one formula. Prices are USD per 1M
tokens, ``Decimal`` throughout, like ``realtalk.protocol.cost`` for the realtime model.

The Responses API reports usage as (protocol reference §7)::

    {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 64},
     "output_tokens": 80, "output_tokens_details": {"reasoning_tokens": 48}, "total_tokens": 200}

Cached tokens are counted *inside* ``input_tokens`` and billed at the cached price; reasoning
tokens are counted *inside* ``output_tokens`` and billed as output (they are never spoken, but
they are paid for). So one response costs::

    (input - cached) * input price + cached * cached-input price + output * output price, / 1M

Along a ``previous_response_id`` chain every earlier turn is sent again as input, so each question
costs more input than the one before (prompt caching softens it when the prefix is cached).
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from realtalk.errors import ConfigError, RemoteProtocolError

__all__ = [
    "TEXT_PRICE_TABLE",
    "TextPrices",
    "TextUsage",
    "text_cost_usd",
    "text_price_overrides",
    "text_prices_for",
]

_PER_TOKENS: Final = Decimal(1_000_000)


@dataclass(frozen=True)
class TextPrices:
    """List prices in USD per 1M tokens for one text or reasoning model."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


def _prices(input_usd: str, cached_input_usd: str, output_usd: str) -> TextPrices:
    return TextPrices(Decimal(input_usd), Decimal(cached_input_usd), Decimal(output_usd))


# OpenAI platform list prices, standard tier, USD per 1M tokens (input, cached input, output); Azure
# Global Standard deployments are assumed at parity, as for the realtime model (§6.1). Users override
# any of them (Data Zone deployments cost more; prices change). Where each figure was read:
# - gpt-5-mini, gpt-5-nano: OpenAI's own model pages (developers.openai.com/api/docs/models/...).
# - gpt-5: the $1.25 input is on OpenAI's pages (GPT-5.1's and GPT-5-Codex's quick comparisons);
#   cached $0.125 and output $10 are [from third-party tables, not read on OpenAI's gpt-5 page]
#   (they match GPT-5.1's page, which OpenAI prices the same).
# - gpt-4.1, gpt-4.1-mini, gpt-4o, gpt-4o-mini, o4-mini, o3: [unconfirmed on an OpenAI page]; read
#   in several third-party price tables that cite OpenAI's pricing page, all agreeing. o3 is the
#   price after OpenAI's June 2025 cut ($2 / $8; it launched at $10 / $40).
TEXT_PRICE_TABLE: Final[Mapping[str, TextPrices]] = MappingProxyType(
    {
        "gpt-5": _prices("1.25", "0.125", "10.00"),
        "gpt-5-mini": _prices("0.25", "0.025", "2.00"),
        "gpt-5-nano": _prices("0.05", "0.005", "0.40"),
        "gpt-4.1": _prices("2.00", "0.50", "8.00"),
        "gpt-4.1-mini": _prices("0.40", "0.10", "1.60"),
        "gpt-4o": _prices("2.50", "1.25", "10.00"),
        "gpt-4o-mini": _prices("0.15", "0.075", "0.60"),
        "o4-mini": _prices("1.10", "0.275", "4.40"),
        "o3": _prices("2.00", "0.50", "8.00"),
    }
)
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_MODEL_VARIABLE = "delegate.model_for_prices"
_PRICES_VARIABLE = "delegate.prices"


def text_prices_for(model: str, overrides: Mapping[str, Any] | None = None) -> TextPrices:
    """Prices for ``model`` (case-insensitive; a dated version such as ``gpt-4.1-2025-04-14`` also
    matches its base model).

    ``overrides`` replaces single prices, e.g. ``{"output": "11.00"}`` for a Data Zone deployment;
    with overrides for all three prices any model name is accepted, so an unlisted model can be
    priced entirely by configuration.

    Raises:
        ConfigError: unknown model (without a full set of overrides), unknown price name, or a
            price that is not a number >= 0. It names the profile key to change.
    """
    names = [f.name for f in fields(TextPrices)]
    changes = text_price_overrides(overrides)
    key = model.strip().lower()
    prices = TEXT_PRICE_TABLE.get(key) or TEXT_PRICE_TABLE.get(_DATED_SUFFIX.sub("", key))
    if prices is None:
        if set(changes) == set(names):
            return TextPrices(**changes)
        raise ConfigError(
            f"no prices known for the text model {model!r}; known models: {', '.join(TEXT_PRICE_TABLE)}. "
            f"Set {_MODEL_VARIABLE} to the model your deployment runs (the deployment name is yours, "
            f"the pricing model is OpenAI's), or give all three prices in {_PRICES_VARIABLE}.",
            variable=_MODEL_VARIABLE,
            example='model_for_prices = "gpt-5-mini"',
        )
    return replace(prices, **changes) if changes else prices


def text_price_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """Checked price overrides (``input``, ``cached_input``, ``output``; numbers or numeric texts).

    Raises:
        ConfigError: an unknown price name, or a price that is not a number >= 0.
    """
    names = [f.name for f in fields(TextPrices)]
    changes: dict[str, Decimal] = {}
    if overrides is None:
        return changes
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{_PRICES_VARIABLE} must be a table of prices, not {overrides!r:.80}",
            variable=_PRICES_VARIABLE,
            example='prices = { output = "11.00" }',
        )
    for name, raw in overrides.items():
        if name not in names:
            raise ConfigError(
                f"unknown text price {name!r} in {_PRICES_VARIABLE}; known prices (USD per 1M tokens): "
                f"{', '.join(names)}",
                variable=_PRICES_VARIABLE,
                example='prices = { input = "1.25", cached_input = "0.125", output = "10.00" }',
            )
        try:
            # A float from TOML goes through str so 1.1 stays 1.1, not its binary approximation.
            value = Decimal(str(raw)) if isinstance(raw, float) else Decimal(raw)
        except (decimal.InvalidOperation, TypeError, ValueError):
            raise ConfigError(
                f"text price {name}={raw!r} in {_PRICES_VARIABLE} is not a number",
                variable=_PRICES_VARIABLE,
                example=f'prices = {{ {name} = "1.25" }}',
            ) from None
        if isinstance(raw, bool) or not value.is_finite() or value < 0:
            raise ConfigError(
                f"text price {name}={raw!r} in {_PRICES_VARIABLE} must be a number >= 0",
                variable=_PRICES_VARIABLE,
                example=f'prices = {{ {name} = "1.25" }}',
            )
        changes[name] = value
    return changes


@dataclass(frozen=True)
class TextUsage:
    """Token counts of one Responses API response.

    ``cached_input_tokens`` is a subset of ``input_tokens``; ``reasoning_tokens`` a subset of
    ``output_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{f.name} must be a token count >= 0, got {value!r}")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached input tokens exceed input tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning tokens exceed output tokens")

    @classmethod
    def from_wire(cls, usage: Mapping[str, Any]) -> TextUsage:
        """Read a response's ``usage`` object as the server sent it (decoded JSON).

        ``input_tokens`` and ``output_tokens`` are required; the details objects may be absent or
        ``null`` (no cached or reasoning tokens).

        Raises:
            RemoteProtocolError: not an object, a count missing, not an integer, negative, or a
                subset larger than its total.
        """
        if not isinstance(usage, Mapping):
            raise RemoteProtocolError(f"the server sent a usage that is not an object: {usage!r:.80}")
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        if not isinstance(input_details, Mapping) or not isinstance(output_details, Mapping):
            raise RemoteProtocolError("the server sent usage details that are not objects")
        for required in ("input_tokens", "output_tokens"):
            if required not in usage:
                raise RemoteProtocolError(f"the server sent a usage without {required}")
        try:
            return cls(
                input_tokens=usage["input_tokens"],
                output_tokens=usage["output_tokens"],
                cached_input_tokens=input_details.get("cached_tokens") or 0,
                reasoning_tokens=output_details.get("reasoning_tokens") or 0,
            )
        except ValueError as exc:
            raise RemoteProtocolError(f"the server sent an invalid usage: {exc}") from None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TextUsage) -> TextUsage:
        return TextUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def text_cost_usd(usage: TextUsage, prices: TextPrices) -> Decimal:
    """What one response cost: uncached input, cached input and output (reasoning included)."""
    # A wide local context keeps the result exact whatever the application did to the global one.
    ctx = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
    uncached = usage.input_tokens - usage.cached_input_tokens
    total = ctx.add(
        ctx.add(
            ctx.multiply(Decimal(uncached), prices.input),
            ctx.multiply(Decimal(usage.cached_input_tokens), prices.cached_input),
        ),
        ctx.multiply(Decimal(usage.output_tokens), prices.output),
    )
    return ctx.divide(total, _PER_TOKENS)
