"""Session leases: the per-user count of open sessions that every gateway replica shares (issue 15,
item 2), on SQLite and on a real PostgreSQL server.

Each ``SessionLeases`` below stands for one replica: its own engine (its own connection pool) on
the same database, its own holder name and, where time matters, its own clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from realtalk.ledger import Ledger, upgrade
from realtalk.ledger.database import create_ledger_engine
from realtalk.ledger.leases import LOST_REASON, LeaseUnavailable, SessionLeases
from realtalk.ledger.schema import sessions

from .conftest import T0, session

TTL_S = 30.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def replica(empty_db_url: str) -> AsyncIterator[Callable[..., Any]]:
    await upgrade(empty_db_url)
    engines = []

    @asynccontextmanager
    async def open_replica(clock: Callable[[], datetime] | None = None) -> AsyncIterator[SessionLeases]:
        engine = create_ledger_engine(empty_db_url)
        engines.append(engine)
        leases = SessionLeases(engine, ttl_s=TTL_S, **({"clock": clock} if clock else {}))
        yield leases

    yield open_replica
    for engine in engines:
        await engine.dispose()


async def test_a_user_gets_at_most_limit_leases_and_a_released_one_is_free_again(replica: Any) -> None:
    async with replica() as leases:
        first = await leases.acquire(session_id="s1", user="alice", limit=2)
        second = await leases.acquire(session_id="s2", user="alice", limit=2)
        assert first is not None and second is not None
        assert await leases.acquire(session_id="s3", user="alice", limit=2) is None
        assert await leases.acquire(session_id="s4", user="bob", limit=2) is not None
        assert (await leases.open_sessions("alice"), await leases.open_sessions("bob")) == (2, 1)

        await leases.release(first)

        assert await leases.acquire(session_id="s5", user="alice", limit=2) is not None
        assert leases.held == 3  # s2, s4, s5


async def test_two_replicas_admitting_one_user_at_the_same_instant_grant_exactly_the_limit(
    replica: Any,
) -> None:
    async with replica() as east, replica() as west:
        attempts = [
            (east if n % 2 else west).acquire(session_id=f"s{n}", user="alice", limit=3) for n in range(24)
        ]
        granted = [lease for lease in await asyncio.gather(*attempts) if lease is not None]

        assert len(granted) == 3
        assert await east.open_sessions("alice") == 3
        assert east.held + west.held == 3


async def test_a_dead_replicas_leases_stop_counting_after_the_ttl(replica: Any) -> None:
    clock = Clock()
    async with replica(clock) as dead, replica(clock) as alive:
        assert await dead.acquire(session_id="s1", user="alice", limit=1) is not None
        # `dead` stops here: no release, no renewal, as after a kill -9.
        clock.advance(TTL_S - 1)
        assert await alive.acquire(session_id="s2", user="alice", limit=1) is None
        clock.advance(2)
        assert await alive.acquire(session_id="s2", user="alice", limit=1) is not None
        assert await alive.open_sessions("alice") == 1


async def test_renewal_keeps_a_live_replicas_leases_and_clears_expired_ones(replica: Any) -> None:
    clock = Clock()
    async with replica(clock) as live, replica(clock) as dead, replica(clock) as other:
        assert await live.acquire(session_id="s1", user="alice", limit=1) is not None
        assert await dead.acquire(session_id="s2", user="bob", limit=5) is not None
        for _ in range(4):  # well past the TTL, renewed every third of it
            clock.advance(TTL_S / 3)
            assert await live.renew() == 1
        assert await other.acquire(session_id="s3", user="alice", limit=1) is None
        assert await other.open_sessions("bob") == 0
        # The renewal round deleted bob's expired lease, not only skipped it.
        assert await dead.renew() == 0


async def test_a_lease_taken_away_after_a_long_stall_is_reported(
    replica: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    async with replica(clock) as stalled, replica(clock) as other:
        assert await stalled.acquire(session_id="s1", user="alice", limit=1) is not None
        clock.advance(TTL_S + 1)
        assert await other.acquire(session_id="s2", user="alice", limit=1) is not None
        with caplog.at_level(logging.WARNING, logger="realtalk.ledger"):
            assert await stalled.renew() == 0
        assert "1 of this gateway's 1 session leases had expired" in caplog.text


async def test_aclose_releases_what_is_still_held(replica: Any) -> None:
    async with replica() as leases, replica() as other:
        leases.start()
        await leases.acquire(session_id="s1", user="alice", limit=1)
        await leases.aclose()
        assert await other.open_sessions("alice") == 0


async def test_a_reconnect_right_after_a_release_is_not_refused(replica: Any) -> None:
    async with replica() as leases:
        lease = await leases.acquire(session_id="s1", user="alice", limit=1)
        assert lease is not None
        releasing = asyncio.create_task(leases.release(lease))
        await asyncio.sleep(0)  # the release has started, not finished
        assert await leases.acquire(session_id="s2", user="alice", limit=1) is not None
        await releasing


async def test_an_unreachable_database_raises_lease_unavailable_without_the_password() -> None:
    engine = create_ledger_engine("postgresql+asyncpg://realtalk:hunter2-secret@127.0.0.1:9/ledger")
    try:
        leases = SessionLeases(engine)
        with pytest.raises(LeaseUnavailable) as raised:
            await leases.acquire(session_id="s1", user="alice", limit=1)
        assert "hunter2-secret" not in str(raised.value)
        assert "127.0.0.1:9" in str(raised.value)
        assert leases.held == 0
    finally:
        await engine.dispose()


async def test_the_ledger_rows_of_a_dead_replicas_sessions_are_ended_when_their_leases_expire(
    replica: Any, empty_db_url: str
) -> None:
    clock = Clock()
    async with await Ledger.open(empty_db_url) as ledger, replica(clock) as dead, replica(clock) as alive:
        for session_id in ("s1", "s2"):
            ledger.session_started(session(session_id))
        ledger.session_ended("s2", T0 + timedelta(seconds=5), "client_closed")
        await ledger.flush()
        assert await dead.acquire(session_id="s1", user="alice", limit=5) is not None
        assert await dead.acquire(session_id="s2", user="alice", limit=5) is not None
        await alive.acquire(session_id="s3", user="bob", limit=1)
        clock.advance(TTL_S + 1)

        await alive.renew()

        async with ledger.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(sessions.c.session_id, sessions.c.ended_at, sessions.c.end_reason).order_by(
                        sessions.c.session_id
                    )
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("s1", T0 + timedelta(seconds=TTL_S), LOST_REASON),  # ended when its lease expired
            ("s2", T0 + timedelta(seconds=5), "client_closed"),  # its own end is kept
        ]
