"""Usage → money: per-turn cost from ``response.done`` and the running totals of a session.

Money is ``Decimal`` throughout; prices are USD per 1M tokens (§6.1). Each ``response.done`` bills
its whole input context again plus its output, so a turn's cost is computed from that event's usage
alone (§6.2). Cached tokens are counted *inside* ``text_tokens``/``audio_tokens``/``image_tokens``;
they are subtracted before the uncached price is applied.
"""

from __future__ import annotations

import decimal
import itertools
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from openai.types.realtime import RealtimeResponseUsage

from realtalk.errors import ConfigError, RemoteProtocolError

__all__ = [
    "PRICE_TABLE",
    "CostBreakdown",
    "CostTracker",
    "Prices",
    "TurnCost",
    "Usage",
    "best_cached_tokens",
    "low_cache_reason",
    "prices_for",
    "turn_cost",
]

_PER_TOKENS: Final = Decimal(1_000_000)
_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class Prices:
    """List prices in USD per 1M tokens for one model."""

    text_in: Decimal
    text_cached: Decimal
    text_out: Decimal
    audio_in: Decimal
    audio_cached: Decimal
    audio_out: Decimal
    image_in: Decimal
    image_cached: Decimal


def _prices(*values: str) -> Prices:
    return Prices(*(Decimal(value) for value in values))


# §6.1, OpenAI platform list prices (Azure Global Standard assumed at parity).
PRICE_TABLE: Final[Mapping[str, Prices]] = MappingProxyType(
    {
        "gpt-realtime-1.5": _prices("4.00", "0.40", "16.00", "32.00", "0.40", "64.00", "5.00", "0.50"),
        "gpt-realtime-mini": _prices("0.60", "0.06", "2.40", "10.00", "0.30", "20.00", "0.80", "0.08"),
    }
)
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def prices_for(model: str, overrides: Mapping[str, str | Decimal] | None = None) -> Prices:
    """Prices for ``model`` (a dated version such as ``gpt-realtime-1.5-2026-02-23`` also matches).

    ``overrides`` replaces single prices, e.g. ``{"audio_out": "70.40"}`` for a Data Zone deployment.

    Raises:
        ConfigError: unknown model, unknown price name, or a price that is not a number >= 0.
    """
    prices = PRICE_TABLE.get(model) or PRICE_TABLE.get(_DATED_SUFFIX.sub("", model))
    if prices is None:
        raise ConfigError(
            f"no prices known for model {model!r}; known models: {', '.join(PRICE_TABLE)}. Set the pricing "
            "model (the deployment name is yours, the pricing model is OpenAI's).",
            variable="REALTALK_PRICING_MODEL",
            example="REALTALK_PRICING_MODEL=gpt-realtime-1.5",
        )
    if not overrides:
        return prices
    names = {f.name for f in fields(Prices)}
    changes: dict[str, Decimal] = {}
    for name, raw in overrides.items():
        if name not in names:
            raise ConfigError(
                f"unknown price {name!r}; known prices: {', '.join(sorted(names))}",
                example='{"audio_out": "64.00"}',
            )
        try:
            value = Decimal(raw)
        except (decimal.InvalidOperation, TypeError, ValueError):
            raise ConfigError(
                f"price {name}={raw!r} is not a number", example=f'{{"{name}": "4.00"}}'
            ) from None
        if not value.is_finite() or value < 0:
            raise ConfigError(f"price {name}={raw!r} must be a number >= 0", example=f'{{"{name}": "4.00"}}')
        changes[name] = value
    return replace(prices, **changes)


@dataclass(frozen=True)
class Usage:
    """Token counts of one response, per modality. ``cached_*`` are subsets of the matching ``*_in``."""

    text_in: int = 0
    audio_in: int = 0
    image_in: int = 0
    cached_text_in: int = 0
    cached_audio_in: int = 0
    cached_image_in: int = 0
    text_out: int = 0
    audio_out: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{f.name} must be a token count >= 0, got {value!r}")
        for modality in ("text", "audio", "image"):
            if getattr(self, f"cached_{modality}_in") > getattr(self, f"{modality}_in"):
                raise ValueError(f"cached {modality} tokens exceed {modality} input tokens")

    @classmethod
    def from_response_usage(cls, usage: RealtimeResponseUsage | Mapping[str, Any] | None) -> Usage:
        """Read ``response.done.response.usage`` (SDK model or plain dict; ``None`` → zero).

        Raises:
            RemoteProtocolError: negative counts, or cached counts larger than their modality's.
        """
        if usage is None:
            return cls()
        data = usage.model_dump() if isinstance(usage, RealtimeResponseUsage) else usage
        inp = data.get("input_token_details") or {}
        out = data.get("output_token_details") or {}
        cached = inp.get("cached_tokens_details") or {}
        try:
            return cls(
                text_in=inp.get("text_tokens") or 0,
                audio_in=inp.get("audio_tokens") or 0,
                image_in=inp.get("image_tokens") or 0,
                cached_text_in=cached.get("text_tokens") or 0,
                cached_audio_in=cached.get("audio_tokens") or 0,
                cached_image_in=cached.get("image_tokens") or 0,
                text_out=out.get("text_tokens") or 0,
                audio_out=out.get("audio_tokens") or 0,
            )
        except ValueError as exc:
            raise RemoteProtocolError(f"server sent inconsistent usage: {exc}") from None

    @property
    def input_tokens(self) -> int:
        """All input tokens, cached included."""
        return self.text_in + self.audio_in + self.image_in

    @property
    def cached_input_tokens(self) -> int:
        """Input tokens served from the prompt cache."""
        return self.cached_text_in + self.cached_audio_in + self.cached_image_in

    @property
    def output_tokens(self) -> int:
        """All output tokens."""
        return self.text_out + self.audio_out

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class CostBreakdown:
    """Cost in USD per modality and price class."""

    text_in_usd: Decimal = _ZERO
    text_cached_usd: Decimal = _ZERO
    text_out_usd: Decimal = _ZERO
    audio_in_usd: Decimal = _ZERO
    audio_cached_usd: Decimal = _ZERO
    audio_out_usd: Decimal = _ZERO
    image_in_usd: Decimal = _ZERO
    image_cached_usd: Decimal = _ZERO
    tools_usd: Decimal = _ZERO  # what tools cost on their own (a question delegated to a text model)

    @property
    def total_usd(self) -> Decimal:
        """The sum of all parts."""
        return sum((getattr(self, f.name) for f in fields(self)), _ZERO)

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _exact_context() -> decimal.Context:
    # Token counts times prices have few digits; a wide local context keeps results exact no matter
    # what the application did to the global decimal context.
    return decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def turn_cost(usage: Usage | RealtimeResponseUsage | Mapping[str, Any], prices: Prices) -> CostBreakdown:
    """The cost of one response (§6.2): uncached input, cached input and output, per modality."""
    if not isinstance(usage, Usage):
        usage = Usage.from_response_usage(usage)
    ctx = _exact_context()

    def usd(tokens: int, price: Decimal) -> Decimal:
        return ctx.divide(ctx.multiply(Decimal(tokens), price), _PER_TOKENS)

    return CostBreakdown(
        text_in_usd=usd(usage.text_in - usage.cached_text_in, prices.text_in),
        text_cached_usd=usd(usage.cached_text_in, prices.text_cached),
        text_out_usd=usd(usage.text_out, prices.text_out),
        audio_in_usd=usd(usage.audio_in - usage.cached_audio_in, prices.audio_in),
        audio_cached_usd=usd(usage.cached_audio_in, prices.audio_cached),
        audio_out_usd=usd(usage.audio_out, prices.audio_out),
        image_in_usd=usd(usage.image_in - usage.cached_image_in, prices.image_in),
        image_cached_usd=usd(usage.cached_image_in, prices.image_cached),
    )


@dataclass(frozen=True)
class TurnCost:
    """One billed response: its usage, its cost, and the part of its audio nobody heard."""

    response_id: str | None
    status: str | None
    usage: Usage
    cost: CostBreakdown
    unheard_audio_usd: Decimal = _ZERO

    @property
    def cost_usd(self) -> Decimal:
        """Total cost of the turn."""
        return self.cost.total_usd


class CostTracker:
    """Per-turn and running totals for one session.

    ``record_playback`` may come before or after the turn's ``add_turn`` (a local interrupt
    truncates before ``response.done`` arrives; a VAD barge-in usually after).
    """

    def __init__(self, prices: Prices, *, max_turns_kept: int = 1024) -> None:
        self.prices = prices
        self._turns: deque[TurnCost] = deque(maxlen=max_turns_kept)
        self._tokens = Usage()
        self._cost = CostBreakdown()
        self._unheard_usd = _ZERO
        # response_id -> (played_samples, received_samples) reported before the turn was billed.
        self._playback: dict[str, tuple[int, int]] = {}

    def add_turn(self, response_id: str | None, status: str | None, usage: Usage) -> TurnCost:
        """Bill one ``response.done`` (cancelled and failed responses are billed too, §6.2)."""
        turn = TurnCost(response_id, status, usage, turn_cost(usage, self.prices))
        if response_id is not None and response_id in self._playback:
            played, received = self._playback.pop(response_id)
            turn = replace(turn, unheard_audio_usd=self._unheard_usd_for(usage, played, received))
        self._turns.append(turn)
        self._tokens = self._tokens + usage
        self._cost = self._cost + turn.cost
        self._unheard_usd += turn.unheard_audio_usd
        return turn

    def add_tool_cost(self, cost_usd: Decimal) -> None:
        """Add what a tool call cost on its own (e.g. a question delegated to the Responses API)."""
        if not cost_usd.is_finite() or cost_usd < 0:
            raise ValueError(f"a tool's cost must be a number >= 0, got {cost_usd!r}")
        self._cost = self._cost + CostBreakdown(tools_usd=cost_usd)

    def record_playback(
        self, response_id: str, *, played_samples: int, received_samples: int
    ) -> TurnCost | None:
        """Record how much of a response's audio was heard, for the cost of what was not.

        Returns the response's turn with the unheard share priced when it was already billed;
        ``None`` when it was not yet (``add_turn`` prices it then)."""
        for index, turn in enumerate(self._turns):
            if turn.response_id == response_id:
                unheard = self._unheard_usd_for(turn.usage, played_samples, received_samples)
                self._unheard_usd += unheard - turn.unheard_audio_usd
                updated = replace(turn, unheard_audio_usd=unheard)
                self._turns[index] = updated
                return updated
        if len(self._playback) < 64:  # only a handful of responses are ever in flight
            self._playback[response_id] = (played_samples, received_samples)
        return None

    def _unheard_usd_for(self, usage: Usage, played_samples: int, received_samples: int) -> Decimal:
        if received_samples <= 0:
            return _ZERO
        unplayed = max(0, received_samples - min(played_samples, received_samples))
        ctx = _exact_context()
        fraction = ctx.divide(Decimal(unplayed), Decimal(received_samples))
        return ctx.divide(
            ctx.multiply(ctx.multiply(Decimal(usage.audio_out), fraction), self.prices.audio_out), _PER_TOKENS
        )

    @property
    def turns(self) -> tuple[TurnCost, ...]:
        """The most recent turns, oldest first (bounded by ``max_turns_kept``)."""
        return tuple(self._turns)

    @property
    def last_turn(self) -> TurnCost | None:
        """The most recently billed turn."""
        return self._turns[-1] if self._turns else None

    @property
    def tokens(self) -> Usage:
        """Tokens per modality, summed over the session."""
        return self._tokens

    @property
    def total(self) -> CostBreakdown:
        """Cost per modality, summed over the session."""
        return self._cost

    @property
    def total_usd(self) -> Decimal:
        """Total cost of the session so far."""
        return self._cost.total_usd

    @property
    def unheard_audio_usd(self) -> Decimal:
        """What the audio that was generated but never heard (cut by barge-in) cost."""
        return self._unheard_usd

    @property
    def cache_hit_ratio(self) -> float | None:
        """Cached input tokens / input tokens over the session; ``None`` before any input."""
        if self._tokens.input_tokens == 0:
            return None
        return self._tokens.cached_input_tokens / self._tokens.input_tokens

    def low_cache_reason(self) -> str | None:
        """Why this session's cache share is low, when it is (see ``low_cache_reason``)."""
        return low_cache_reason(self.cache_hit_ratio, self.turns)


LOW_CACHE_SHARE: Final = 0.5
CACHE_MIN_PREFIX_TOKENS: Final = 1024  # the prompt cache serves a prefix of at least this many tokens


def best_cached_tokens(usages: Sequence[Usage]) -> int:
    """The most input tokens a perfect prompt cache could have served over these responses, in
    order: a response can reuse at best ``min(its input, the previous response's input)``, and
    nothing when that previous input was under ``CACHE_MIN_PREFIX_TOKENS`` (the first response:
    nothing); never less than what it was actually served (the service has been seen caching
    shorter prefixes)."""
    best = usages[0].cached_input_tokens if usages else 0
    for before, now in itertools.pairwise(usages):
        reachable = (
            min(now.input_tokens, before.input_tokens)
            if before.input_tokens >= CACHE_MIN_PREFIX_TOKENS
            else 0
        )
        best += max(reachable, now.cached_input_tokens)
    return best


def low_cache_reason(ratio: float | None, turns: Sequence[TurnCost]) -> str | None:
    """A sentence on why a session's cached share of input is under ``LOW_CACHE_SHARE``, or
    ``None`` when it is not low (or nothing was billed).

    Each response bills its whole context again; the part the service has seen before is cached
    at a tenth of the price or less (§6). When even a perfect cache (``best_cached_tokens``) could
    not have reached the share, the session was too short for it; otherwise the start of the
    context changed between turns (instructions or tools rewritten mid-session, a reconnect's
    replay) or the cache expired while the session idled, which usage alone cannot tell apart."""
    if ratio is None or ratio >= LOW_CACHE_SHARE or not turns:
        return None
    usages = [turn.usage for turn in turns]
    input_tokens = sum(usage.input_tokens for usage in usages)
    if not input_tokens:
        return None
    best = best_cached_tokens(usages) / input_tokens
    if best < LOW_CACHE_SHARE:
        return (
            f"too short for the prompt cache: even a perfect cache could have served {best:.0%} of the input "
            f"(it reuses a prefix of at least {CACHE_MIN_PREFIX_TOKENS:,} tokens sent by an earlier request)"
        )
    return (
        f"a cache could have served up to {best:.0%} of the input: the start of the context changed between "
        "turns (instructions or tools rewritten, a reconnect's replay) or the cache expired while it idled"
    )
