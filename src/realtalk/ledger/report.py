"""``realtalk report``'s figures: the ledger's rows grouped by day, user, deployment or session.

Ranges are whole UTC days, ``since`` to ``until`` inclusive. As in ``realtalk.ledger.queries``, a
response counts at its ``created_at`` and a session at its ``started_at`` (its day, user and
deployment), so the groups add up to the total. Tokens and dollars are the ledger's own (the core's
exact figures, summed as ``Decimal``). Derived figures:

* audio in, minutes: input audio tokens billed, at 1 token per 100 ms of user audio (protocol notes
  §3). Each response re-sends the conversation, so this is audio *paid for* as input, not minutes
  spoken. Audio out is the audio generated; unheard is what a barge-in cut off (where known).
* cache share: cached / all input tokens, to 4 decimals. Saved: what the cached tokens would have
  cost uncached minus what they cost, at the list prices of each row's pricing model (§6.1).
* latency p50/p95: voice-to-voice, interpolated between ranks (as ``realtalk talk``'s), to 0.1 ms.
* what-if: the same tokens priced on ``gpt-realtime-mini`` with ``turn_cost``; tools not included.

Low cache share (issue 15, item 4): a session is flagged when its cache share is below
``LOW_CACHE_SHARE`` (50%), with a reason when one can be told:

* ``too short``: even a perfect cache could not have reached 50%. The prompt cache serves a prefix
  of at least 1,024 tokens sent by an earlier request, so a response can reuse at best
  ``min(its input, the previous response's input)`` tokens, and none when the previous input was
  under 1,024 tokens (the first response, none); or what it was served, if more (the Realtime API
  has been seen caching shorter prefixes). Summed over the session, that best case is below 50% of
  its input: too few, or too small, turns.
* ``unknown``: otherwise. The ledger does not record what was sent, so a changed prefix (instructions
  or tools rewritten mid-session) cannot be told from a cache that expired while the session idled.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from realtalk.ledger.records import ResponseRow
from realtalk.ledger.schema import responses, sessions
from realtalk.percentiles import percentile
from realtalk.protocol.cost import (
    CACHE_MIN_PREFIX_TOKENS,
    CostBreakdown,
    Usage,
    best_cached_tokens,
    prices_for,
    turn_cost,
)

__all__ = [
    "AUDIO_IN_MS_PER_TOKEN", "CACHE_MIN_PREFIX_TOKENS", "LOW_CACHE_SHARE", "NO_USER", "WHAT_IF_MODEL",
    "GroupBy", "LedgerSpan", "LowCacheReason", "LowCacheSession", "Report", "ReportRow", "SessionInfo",
    "build_report", "day_bounds", "ledger_span", "load_report",
]  # fmt: skip

AUDIO_IN_MS_PER_TOKEN: Final = 100  # user audio: 1 token per 100 ms (protocol notes §3)
LOW_CACHE_SHARE: Final = Decimal("0.5")
WHAT_IF_MODEL: Final = "gpt-realtime-mini"
NO_USER: Final = "(no user)"

_ZERO: Final = Decimal(0)
_SHARE_PLACES: Final = Decimal("0.0001")
_MINUTE_PLACES: Final = Decimal("0.01")
_MS_PER_MINUTE: Final = Decimal(60_000)
_EXACT: Final = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


class GroupBy(StrEnum):
    """What a report's rows are."""

    DAY = "day"
    USER = "user"
    DEPLOYMENT = "deployment"
    SESSION = "session"


class LowCacheReason(StrEnum):
    """Why a session's cache share is low (see the module docstring for the rule)."""

    TOO_SHORT = "too short"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SessionInfo:
    """A session as the report needs it: who, where, when it started."""

    session_id: str
    user: str | None
    deployment: str
    started_at: datetime


@dataclass(frozen=True)
class ReportRow:
    """The figures of one group (``key``: a day ``YYYY-MM-DD``, a user, a deployment, a session id,
    or ``"total"``). Money is exact; minutes, shares and latencies are at report precision."""

    key: str
    sessions: int
    responses: int
    cancelled_responses: int
    usage: Usage
    cost: CostBreakdown  # by modality and price class, tools apart
    cost_usd: Decimal  # the total, tools included
    text_usd: Decimal  # text in (uncached and cached) and out
    audio_usd: Decimal  # audio in (uncached and cached) and out
    image_usd: Decimal  # image in (uncached and cached)
    tools_usd: Decimal  # what tools cost on their own, delegation to the Responses API included
    audio_in_min: Decimal
    audio_out_min: Decimal
    audio_unheard_min: Decimal
    cache_share: Decimal | None
    cache_saved_usd: Decimal
    unheard_audio_usd: Decimal
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    what_if_mini_usd: Decimal


@dataclass(frozen=True)
class LowCacheSession:
    """A session whose cache share is below ``LOW_CACHE_SHARE``, and why when it can be told."""

    session_id: str
    user: str | None
    deployment: str
    responses: int
    input_tokens: int
    cached_tokens: int
    cache_share: Decimal
    best_share: Decimal  # what a perfect cache could have served (the rule's upper bound)
    reason: LowCacheReason
    explanation: str


@dataclass(frozen=True)
class Report:
    """A report over ``since``..``until`` (UTC days, inclusive): ``rows`` as asked (``group_by``),
    their ``total``, plus what the charts need whatever the grouping: every day of the range
    (``days``, empty ones included), users by spend (``users``), every latency (sorted)."""

    group_by: GroupBy
    since: date
    until: date
    rows: tuple[ReportRow, ...]
    total: ReportRow
    days: tuple[ReportRow, ...]
    users: tuple[ReportRow, ...]
    latencies_ms: tuple[float, ...]
    low_cache: tuple[LowCacheSession, ...]
    what_if_model: str = WHAT_IF_MODEL


@dataclass(frozen=True)
class LedgerSpan:
    """What a ledger holds at all: its row counts and first and last response times."""

    sessions: int
    responses: int
    first_response_at: datetime | None
    last_response_at: datetime | None


def day_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """The half-open UTC range ``[since 00:00, until + 1 day 00:00)``."""
    if since > until:
        raise ValueError(f"since ({since}) is after until ({until})")
    return datetime.combine(since, time(), UTC), datetime.combine(until + timedelta(days=1), time(), UTC)


def _usage_of(row: ResponseRow) -> Usage:
    return Usage(
        row.text_in, row.audio_in, row.image_in, row.text_cached, row.audio_cached, row.image_cached,
        row.text_out, row.audio_out,
    )  # fmt: skip


def _cost_of(row: ResponseRow) -> CostBreakdown:
    # The ledger's money columns carry CostBreakdown's field names.
    return CostBreakdown(**{f.name: getattr(row, f.name) for f in fields(CostBreakdown)})


def _cache_saved_usd(usage: Usage, model: str) -> Decimal:
    prices = prices_for(model)
    cached = (usage.cached_text_in, usage.cached_audio_in, usage.cached_image_in)
    as_uncached = Usage(text_in=cached[0], audio_in=cached[1], image_in=cached[2])
    as_cached = Usage(*cached, *cached)
    return turn_cost(as_uncached, prices).total_usd - turn_cost(as_cached, prices).total_usd


def _percentile(ordered: list[float], q: float) -> float | None:
    value = percentile(ordered, q)
    return None if value is None else round(value, 1)


def _share(part: int, whole: int) -> Decimal | None:
    if whole == 0:
        return None
    return _EXACT.divide(Decimal(part), Decimal(whole)).quantize(_SHARE_PLACES, context=_EXACT)


def _minutes(ms: int) -> Decimal:
    return _EXACT.divide(Decimal(ms), _MS_PER_MINUTE).quantize(_MINUTE_PLACES, context=_EXACT)


@dataclass
class _Group:
    """Running sums of one group."""

    sessions: int = 0
    responses: int = 0
    cancelled: int = 0
    usage: Usage = field(default_factory=Usage)
    usage_by_model: dict[str, Usage] = field(default_factory=dict)
    cost: CostBreakdown = field(default_factory=CostBreakdown)
    cost_usd: Decimal = _ZERO
    unheard_usd: Decimal = _ZERO
    generated_ms: int = 0
    unheard_ms: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, row: ResponseRow) -> None:
        usage = _usage_of(row)
        self.responses += 1
        self.cancelled += row.status == "cancelled"
        self.usage = self.usage + usage
        self.usage_by_model[row.pricing_model] = self.usage_by_model.get(row.pricing_model, Usage()) + usage
        self.cost = self.cost + _cost_of(row)
        self.cost_usd += row.cost_usd
        self.unheard_usd += row.unheard_audio_usd
        self.generated_ms += row.audio_generated_ms
        if row.audio_heard_ms is not None:
            self.unheard_ms += max(0, row.audio_generated_ms - row.audio_heard_ms)
        if row.voice_to_voice_ms is not None:
            self.latencies_ms.append(row.voice_to_voice_ms)

    def finish(self, key: str) -> ReportRow:
        ordered, cost = sorted(self.latencies_ms), self.cost
        saved = sum((_cache_saved_usd(u, m) for m, u in self.usage_by_model.items()), _ZERO)
        return ReportRow(
            key=key,
            sessions=self.sessions,
            responses=self.responses,
            cancelled_responses=self.cancelled,
            usage=self.usage,
            cost=self.cost,
            cost_usd=self.cost_usd,
            text_usd=cost.text_in_usd + cost.text_cached_usd + cost.text_out_usd,
            audio_usd=cost.audio_in_usd + cost.audio_cached_usd + cost.audio_out_usd,
            image_usd=cost.image_in_usd + cost.image_cached_usd,
            tools_usd=cost.tools_usd,
            audio_in_min=_minutes(self.usage.audio_in * AUDIO_IN_MS_PER_TOKEN),
            audio_out_min=_minutes(self.generated_ms),
            audio_unheard_min=_minutes(self.unheard_ms),
            cache_share=_share(self.usage.cached_input_tokens, self.usage.input_tokens),
            cache_saved_usd=saved,
            unheard_audio_usd=self.unheard_usd,
            latency_p50_ms=_percentile(ordered, 50),
            latency_p95_ms=_percentile(ordered, 95),
            what_if_mini_usd=turn_cost(self.usage, prices_for(WHAT_IF_MODEL)).total_usd,
        )


def _key(group_by: GroupBy, at: datetime, user: str | None, deployment: str, session_id: str) -> str:
    day = at.date().isoformat()
    return {"day": day, "user": user or NO_USER, "deployment": deployment, "session": session_id}[group_by]


def _rows(
    group_by: GroupBy, session_list: list[SessionInfo], response_list: list[ResponseRow]
) -> dict[str, ReportRow]:
    groups: dict[str, _Group] = {}
    for s in session_list:
        groups.setdefault(
            _key(group_by, s.started_at, s.user, s.deployment, s.session_id), _Group()
        ).sessions += 1
    for r in response_list:
        groups.setdefault(_key(group_by, r.created_at, r.user, r.deployment, r.session_id), _Group()).add(r)
    return {key: group.finish(key) for key, group in groups.items()}


def _by_spend(rows: Iterable[ReportRow]) -> tuple[ReportRow, ...]:
    return tuple(sorted(rows, key=lambda r: (-r.cost_usd, r.key)))


def _low_cache(session_rows: list[ResponseRow]) -> LowCacheSession | None:
    """The flag for one session's responses (oldest first), or ``None`` when its share is fine."""
    usages = [_usage_of(row) for row in session_rows]
    inputs = [usage.input_tokens for usage in usages]
    input_tokens, cached_tokens = sum(inputs), sum(usage.cached_input_tokens for usage in usages)
    # The rule's bound (see the docstring), shared with realtalk talk's summary.
    best_tokens = best_cached_tokens(usages)
    share, best = _share(cached_tokens, input_tokens), _share(best_tokens, input_tokens)
    if share is None or best is None or share >= LOW_CACHE_SHARE:
        return None
    first, count = session_rows[0], len(session_rows)
    if best < LOW_CACHE_SHARE:
        reason = LowCacheReason.TOO_SHORT
        explanation = (
            f"too short for the prompt cache: {count} response{'s' if count != 1 else ''}, the largest "
            f"input {max(inputs):,} tokens; even a perfect cache could have served {best:.0%} of the input "
            f"(it reuses a prefix of at least {CACHE_MIN_PREFIX_TOKENS:,} tokens sent by an earlier request)"
        )
    else:
        reason = LowCacheReason.UNKNOWN
        explanation = (
            f"unknown: a cache could have served up to {best:.0%} of the input and served {share:.0%}; "
            "the ledger does not record what was sent, so a changed prefix (instructions or tools "
            "rewritten mid-session) cannot be told from a cache that expired between turns"
        )
    return LowCacheSession(
        first.session_id, first.user, first.deployment, count, input_tokens, cached_tokens, share, best,
        reason, explanation,
    )  # fmt: skip


def build_report(
    session_list: Iterable[SessionInfo],
    response_list: Iterable[ResponseRow],
    *,
    group_by: GroupBy,
    since: date,
    until: date,
) -> Report:
    """The report of the sessions and responses given (already those of the range; a pure function).

    Raises:
        ConfigError: a row's pricing model has no known prices.
    """
    day_bounds(since, until)  # refuses a range that ends before it starts
    all_sessions, all_responses = list(session_list), list(response_list)
    all_responses.sort(key=lambda r: (r.created_at, r.id))
    rows = _rows(group_by, all_sessions, all_responses).values()
    ordered_rows = tuple(sorted(rows, key=lambda r: r.key)) if group_by is GroupBy.DAY else _by_spend(rows)
    by_day = _rows(GroupBy.DAY, all_sessions, all_responses)
    day_keys = [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]
    days = tuple(by_day.get(key) or _Group().finish(key) for key in day_keys)
    users = _by_spend(_rows(GroupBy.USER, all_sessions, all_responses).values())
    total = _Group(sessions=len(all_sessions))
    per_session: dict[str, list[ResponseRow]] = {}
    for row in all_responses:
        total.add(row)
        per_session.setdefault(row.session_id, []).append(row)
    flags = (_low_cache(session_rows) for session_rows in per_session.values())
    low_cache = tuple(
        sorted((f for f in flags if f is not None), key=lambda f: (f.cache_share, f.session_id))
    )
    return Report(
        group_by=group_by,
        since=since,
        until=until,
        rows=ordered_rows,
        total=total.finish("total"),
        days=days,
        users=users,
        latencies_ms=tuple(sorted(total.latencies_ms)),
        low_cache=low_cache,
    )


async def load_report(engine: AsyncEngine, *, group_by: GroupBy, since: date, until: date) -> Report:
    """Read the sessions started and the responses created from ``since`` to ``until`` (UTC days,
    inclusive) and build their report.

    Raises:
        ValueError: ``since`` after ``until``.
        ConfigError: a row's pricing model has no known prices.
        sqlalchemy.exc.DBAPIError, OSError: the database could not be read.
    """
    start, end = day_bounds(since, until)
    session_query = select(
        sessions.c.session_id, sessions.c.user, sessions.c.deployment, sessions.c.started_at
    ).where(sessions.c.started_at >= start, sessions.c.started_at < end)
    response_query = (
        select(responses)
        .where(responses.c.created_at >= start, responses.c.created_at < end)
        .order_by(responses.c.created_at, responses.c.id)
    )
    async with engine.connect() as connection:
        session_list = [SessionInfo(**row._mapping) for row in await connection.execute(session_query)]
        response_list = [ResponseRow(**row._mapping) for row in await connection.execute(response_query)]
    return build_report(session_list, response_list, group_by=group_by, since=since, until=until)


async def ledger_span(engine: AsyncEngine) -> LedgerSpan:
    """How many sessions and responses the ledger holds, and when its first and last responses were."""
    session_total = select(func.count()).select_from(sessions).scalar_subquery()
    created = responses.c.created_at
    query = select(session_total, func.count(), func.min(created), func.max(created)).select_from(responses)
    async with engine.connect() as connection:
        found = (await connection.execute(query)).one()
    return LedgerSpan(int(found[0] or 0), int(found[1] or 0), found[2], found[3])
