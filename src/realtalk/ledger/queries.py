"""The ledger's read side: what was spent, how many sessions, which responses, over a time range.

Ranges are half-open, ``since <= t < until`` (``until=None``: no upper bound), with
timezone-aware datetimes, so consecutive days add up without counting a row twice. A response
counts at its ``created_at``; a session at its ``started_at``. Sums are exact ``Decimal``s,
added up by the database (never through a float).

Only committed rows are seen: rows still in a ``Ledger``'s queue (at most about
``flush_interval_s`` old) are not; ``await ledger.flush()`` first when that matters.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, Table, and_, func, select

from realtalk.ledger.records import ResponseRow
from realtalk.ledger.schema import responses, sessions
from realtalk.ledger.writer import Ledger

__all__ = ["responses_between", "session_count", "spend_usd"]


def _check_range(since: datetime, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def _where(
    table: Table,
    time_column: str,
    since: datetime,
    until: datetime | None,
    user: str | None,
    deployment: str | None,
) -> ColumnElement[bool]:
    _check_range(since, until)
    conditions: list[ColumnElement[bool]] = [table.c[time_column] >= since]
    if until is not None:
        conditions.append(table.c[time_column] < until)
    if user is not None:
        conditions.append(table.c.user == user)
    if deployment is not None:
        conditions.append(table.c.deployment == deployment)
    return and_(*conditions)


async def spend_usd(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime | None = None,
    user: str | None = None,
    deployment: str | None = None,
) -> Decimal:
    """Total ``cost_usd`` of the responses created in ``[since, until)``, optionally for one user
    and/or one deployment; ``Decimal(0)`` when there are none."""
    statement = select(func.sum(responses.c.cost_usd)).where(
        _where(responses, "created_at", since, until, user, deployment)
    )
    async with ledger.engine.connect() as connection:
        total = await connection.scalar(statement)
    return total if total is not None else Decimal(0)


async def session_count(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime | None = None,
    user: str | None = None,
    deployment: str | None = None,
) -> int:
    """How many sessions started in ``[since, until)``, optionally for one user and/or deployment."""
    statement = (
        select(func.count())
        .select_from(sessions)
        .where(_where(sessions, "started_at", since, until, user, deployment))
    )
    async with ledger.engine.connect() as connection:
        count = await connection.scalar(statement)
    return int(count or 0)


async def responses_between(
    ledger: Ledger,
    since: datetime,
    until: datetime | None,
    *,
    user: str | None = None,
    deployment: str | None = None,
) -> list[ResponseRow]:
    """The responses created in ``[since, until)``, oldest first, as ``ResponseRow``s."""
    statement = (
        select(responses)
        .where(_where(responses, "created_at", since, until, user, deployment))
        .order_by(responses.c.created_at, responses.c.id)
    )
    async with ledger.engine.connect() as connection:
        result = await connection.execute(statement)
        return [ResponseRow(**row._mapping) for row in result]
