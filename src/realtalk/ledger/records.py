"""What the ledger writes and reads back: one record per session and one per response.

Records are checked when they are made (token counts >= 0, money a finite ``Decimal`` >= 0,
timezone-aware times), so a row the database would refuse never reaches the writer's queue,
where it could hold back the rows behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Final

from realtalk.protocol.cost import TurnCost

__all__ = ["ResponseHeard", "ResponseRecord", "ResponseRow", "SessionEnd", "SessionRecord"]

_ZERO: Final = Decimal(0)
# Money columns are NUMERIC(18, 9): below a billion dollars per figure.
_MAX_USD: Final = Decimal(10) ** 9
_COUNT_FIELDS: Final = frozenset(
    {
        "text_in",
        "text_cached",
        "audio_in",
        "audio_cached",
        "image_in",
        "image_cached",
        "text_out",
        "audio_out",
        "audio_generated_ms",
        "audio_heard_ms",
    }
)


def _check_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


@dataclass(frozen=True)
class SessionRecord:
    """A session as it starts: who, on which deployment, priced as which model, over what.

    ``transport`` is how audio travels (``"websocket"``, ``"terminal"``, ...); ``client`` what
    drives the session (``"ui"``, ``"sdk"``, ``"talk"``, ...).
    """

    session_id: str
    user: str | None
    deployment: str
    pricing_model: str
    transport: str
    client: str
    started_at: datetime

    def __post_init__(self) -> None:
        _check_aware("started_at", self.started_at)


@dataclass(frozen=True)
class SessionEnd:
    """The end of a session: when, and why (``"client closed"``, ``"budget"``, ...)."""

    session_id: str
    ended_at: datetime
    reason: str | None

    def __post_init__(self) -> None:
        _check_aware("ended_at", self.ended_at)


@dataclass(frozen=True)
class ResponseHeard:
    """How much of a response's audio was heard, learnt after its row was written (a barge-in
    after ``response.done``, the usual case): the row's ``audio_heard_ms`` and
    ``unheard_audio_usd`` are set to these."""

    session_id: str
    response_id: str
    audio_heard_ms: int
    unheard_audio_usd: Decimal

    def __post_init__(self) -> None:
        if self.audio_heard_ms < 0:
            raise ValueError(f"audio_heard_ms must be >= 0, got {self.audio_heard_ms}")
        if not self.unheard_audio_usd.is_finite() or self.unheard_audio_usd < 0:
            raise ValueError(f"unheard_audio_usd must be a Decimal >= 0, got {self.unheard_audio_usd!r}")


@dataclass(frozen=True)
class ResponseRecord:
    """One billed response (``response.done``), with the core's figures exactly.

    Token counts follow ``protocol.cost.Usage`` (``*_cached`` are subsets of ``*_in``). ``cost_usd``
    is the turn's total; the ``*_usd`` parts are ``CostBreakdown``'s; ``unheard_audio_usd`` is the
    share of ``audio_out_usd`` whose audio was cut off before it was heard (not added again).
    """

    session_id: str
    response_id: str | None
    user: str | None
    deployment: str
    pricing_model: str
    status: str | None
    created_at: datetime
    text_in: int = 0
    text_cached: int = 0
    audio_in: int = 0
    audio_cached: int = 0
    image_in: int = 0
    image_cached: int = 0
    text_out: int = 0
    audio_out: int = 0
    cost_usd: Decimal = _ZERO
    text_in_usd: Decimal = _ZERO
    text_cached_usd: Decimal = _ZERO
    text_out_usd: Decimal = _ZERO
    audio_in_usd: Decimal = _ZERO
    audio_cached_usd: Decimal = _ZERO
    audio_out_usd: Decimal = _ZERO
    image_in_usd: Decimal = _ZERO
    image_cached_usd: Decimal = _ZERO
    tools_usd: Decimal = _ZERO
    unheard_audio_usd: Decimal = _ZERO
    audio_generated_ms: int = 0
    audio_heard_ms: int | None = None
    voice_to_voice_ms: float | None = None

    def __post_init__(self) -> None:
        _check_aware("created_at", self.created_at)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_usd"):
                if not isinstance(value, Decimal) or not value.is_finite() or not _ZERO <= value < _MAX_USD:
                    raise ValueError(f"{f.name} must be a Decimal in [0, 1e9) USD, got {value!r}")
            elif f.name in _COUNT_FIELDS and value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
                    raise ValueError(f"{f.name} must be an integer >= 0, got {value!r}")
        if self.voice_to_voice_ms is not None and not 0 <= self.voice_to_voice_ms < float("inf"):
            raise ValueError(
                f"voice_to_voice_ms must be a finite number >= 0, got {self.voice_to_voice_ms!r}"
            )

    @classmethod
    def from_turn(
        cls,
        turn: TurnCost,
        *,
        session_id: str,
        user: str | None,
        deployment: str,
        pricing_model: str,
        created_at: datetime,
        audio_generated_ms: int,
        audio_heard_ms: int | None,
        voice_to_voice_ms: float | None,
        tools_usd: Decimal = _ZERO,
    ) -> ResponseRecord:
        """The row for one ``TurnCost`` (``CostTracker.add_turn``'s result), its figures copied.

        ``tools_usd`` adds what tools cost on their own during this turn (``CostTracker.add_tool_cost``
        keeps those apart from turns); it is included in ``cost_usd``.
        """
        usage, cost = turn.usage, turn.cost
        return cls(
            session_id=session_id,
            response_id=turn.response_id,
            user=user,
            deployment=deployment,
            pricing_model=pricing_model,
            status=turn.status,
            created_at=created_at,
            text_in=usage.text_in,
            text_cached=usage.cached_text_in,
            audio_in=usage.audio_in,
            audio_cached=usage.cached_audio_in,
            image_in=usage.image_in,
            image_cached=usage.cached_image_in,
            text_out=usage.text_out,
            audio_out=usage.audio_out,
            cost_usd=turn.cost_usd + tools_usd,
            text_in_usd=cost.text_in_usd,
            text_cached_usd=cost.text_cached_usd,
            text_out_usd=cost.text_out_usd,
            audio_in_usd=cost.audio_in_usd,
            audio_cached_usd=cost.audio_cached_usd,
            audio_out_usd=cost.audio_out_usd,
            image_in_usd=cost.image_in_usd,
            image_cached_usd=cost.image_cached_usd,
            tools_usd=cost.tools_usd + tools_usd,
            unheard_audio_usd=turn.unheard_audio_usd,
            audio_generated_ms=audio_generated_ms,
            audio_heard_ms=audio_heard_ms,
            voice_to_voice_ms=voice_to_voice_ms,
        )


@dataclass(frozen=True)
class ResponseRow(ResponseRecord):
    """A response as read back from the ledger: the record plus its row ``id``."""

    id: int = 0
