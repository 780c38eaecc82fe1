"""The read side, on SQLite and PostgreSQL: spend by user, deployment and day (exact sums over
half-open ranges), session counts, responses in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from realtalk.ledger import Ledger, responses_between, session_count, spend_usd

from .conftest import response, session

DAY1 = datetime(2026, 5, 20, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)


@pytest.fixture
async def filled(ledger: Ledger) -> Ledger:
    at = DAY1 + timedelta(hours=9)
    ledger.session_started(session("s_alice_eu", user="alice", deployment="voice-eu", started_at=at))
    ledger.session_started(session("s_alice_us", user="alice", deployment="voice-us", started_at=at))
    ledger.session_started(session("s_bob", user="bob", deployment="voice-eu", started_at=at))
    ledger.session_started(session("s_alice_2", user="alice", deployment="voice-eu", started_at=DAY2))
    for record in (
        response("s_alice_eu", "r1", user="alice", deployment="voice-eu", created_at=at, cost_usd="0.25"),
        response(
            "s_alice_eu", "r2", user="alice", deployment="voice-eu", created_at=at, cost_usd="0.0000384"
        ),
        response("s_alice_us", "r3", user="alice", deployment="voice-us", created_at=at, cost_usd="0.10"),
        response("s_bob", "r4", user="bob", deployment="voice-eu", created_at=at, cost_usd="0.000000001"),
        # At midnight exactly: the second day's, not the first's.
        response("s_alice_2", "r5", user="alice", deployment="voice-eu", created_at=DAY2, cost_usd="1.5"),
        response("s_alice_2", "r6", user="alice", deployment="voice-eu", created_at=DAY3, cost_usd="7"),
    ):
        ledger.response_done(record)
    await ledger.flush()
    return ledger


@pytest.mark.parametrize(
    ("user", "deployment", "day1_usd", "day2_usd"),
    [
        (None, None, "0.350038401", "1.5"),
        ("alice", None, "0.3500384", "1.5"),
        ("bob", None, "0.000000001", "0"),
        (None, "voice-eu", "0.250038401", "1.5"),
        ("alice", "voice-us", "0.10", "0"),
        ("carol", None, "0", "0"),
    ],
)
async def test_spend_is_summed_exactly_by_user_deployment_and_day(
    filled: Ledger, user: str | None, deployment: str | None, day1_usd: str, day2_usd: str
) -> None:
    day1 = await spend_usd(filled, since=DAY1, until=DAY2, user=user, deployment=deployment)
    day2 = await spend_usd(filled, since=DAY2, until=DAY3, user=user, deployment=deployment)
    assert (day1, day2) == (Decimal(day1_usd), Decimal(day2_usd))
    assert isinstance(day1, Decimal)


async def test_spend_since_a_time_has_no_upper_bound_and_any_timezone_names_the_same_instant(
    filled: Ledger,
) -> None:
    assert await spend_usd(filled, since=DAY2) == Decimal("8.5")
    paris = timezone(timedelta(hours=2))
    assert await spend_usd(filled, since=DAY2.astimezone(paris), user="alice") == Decimal("8.5")


async def test_sessions_are_counted_by_their_start(filled: Ledger) -> None:
    assert await session_count(filled, since=DAY1, until=DAY2) == 3
    assert await session_count(filled, since=DAY1, until=DAY2, user="alice") == 2
    assert await session_count(filled, since=DAY1, until=DAY2, deployment="voice-eu") == 2
    assert await session_count(filled, since=DAY2, user="alice", deployment="voice-eu") == 1
    assert await session_count(filled, since=DAY3) == 0


async def test_responses_between_are_the_half_open_range_oldest_first(filled: Ledger) -> None:
    first_day = await responses_between(filled, DAY1, DAY2)
    assert [row.response_id for row in first_day] == ["r1", "r2", "r3", "r4"]
    assert [row.response_id for row in await responses_between(filled, DAY2, None)] == ["r5", "r6"]
    assert [row.response_id for row in await responses_between(filled, DAY1, None, user="bob")] == ["r4"]
    assert all(row.created_at.tzinfo is UTC for row in first_day)
    assert len({row.id for row in first_day}) == 4


async def test_a_naive_time_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await spend_usd(ledger, since=datetime(2026, 5, 20))
