"""Two gateway processes on one PostgreSQL ledger enforce one daily cap (issue 15, item 2)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from realtalk.gateway.auth import Authenticator
from realtalk.ledger import head_revision, upgrade

from ..ledger.conftest import PostgresServer, _postgres_server
from .conftest import SECRET, text_turn

pytestmark = pytest.mark.system_package("postgresql")


@pytest.fixture(scope="module")
def shared_postgres() -> Iterator[PostgresServer]:
    yield from _postgres_server()


def _token(subject: str) -> str:
    signer = Authenticator(secret=SECRET.encode(), signed_tokens_configured=True, token_ttl_s=900)
    return signer.mint(subject, time.time())[0]


async def test_a_user_capped_on_one_replica_is_refused_by_the_other(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    shared_postgres: PostgresServer,
) -> None:
    url = shared_postgres.create_database()
    await upgrade(url)
    settings = {"gateway_secret": SECRET, "gateway_user_daily_budget_usd": "0.0001", "ledger_url": url}
    async with emulator() as emu, gateway(emu, **settings) as first, gateway(emu, **settings) as second:
        async with client(first, token=_token("alice")) as c:
            for event in text_turn("hello"):
                await c.send(event)
            await c.until("response.done")
            assert (await c.error())["code"] == "daily_budget_exceeded"
        accepted = emu.stats.connections_accepted
        with pytest.raises(InvalidStatus) as refused:
            async with client(second, token=_token("alice")):
                pass
        assert refused.value.response.status_code == 429
        assert emu.stats.connections_accepted == accepted
        async with client(second, token=_token("bob")) as c:  # another user is not capped
            for event in text_turn("hello"):
                await c.send(event)
            await c.until("response.done")


async def test_two_replicas_enforce_one_per_user_limit_on_open_sessions(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    shared_postgres: PostgresServer,
) -> None:
    url = shared_postgres.create_database()
    await upgrade(url)
    settings = {"gateway_secret": SECRET, "gateway_max_sessions_per_user": 1, "ledger_url": url}
    async with emulator() as emu, gateway(emu, **settings) as first, gateway(emu, **settings) as second:
        async with client(first, token=_token("alice")) as c:
            await c.until("session.created")
            accepted = emu.stats.connections_accepted
            with pytest.raises(InvalidStatus) as refused:
                async with client(second, token=_token("alice")):
                    pass
            assert refused.value.response.status_code == 429
            assert b"too_many_sessions" in refused.value.response.body
            assert emu.stats.connections_accepted == accepted  # nothing opened upstream
            async with client(second, token=_token("bob")) as other:  # another user is not limited
                await other.until("session.created")
        # Alice's session ended on the first replica: the second admits her now.
        await emu.stats.wait_for(lambda s: s.active_sessions == 0)
        async with client(second, token=_token("alice")) as c:
            await c.until("session.created")


async def test_a_ledger_that_cannot_be_asked_refuses_with_503_and_opens_nothing(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for server in _postgres_server():
        url = server.create_database()
        await upgrade(url)
        async with emulator() as emu, gateway(emu, gateway_secret=SECRET, ledger_url=url) as gw:
            server.stop()  # the database goes away while the gateway runs
            with pytest.raises(InvalidStatus) as refused:
                async with client(gw, token=_token("alice")):
                    pass
            response = refused.value.response
            assert response.status_code == 503
            assert b"ledger_unavailable" in response.body and b"try again shortly" in response.body
            assert response.headers["Retry-After"] == "5"
            assert emu.stats.connections_accepted == 0
            # The operator is told why, at ERROR (and the no_error_logs check is satisfied here).
            (logged,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert logged.startswith("refused alice: ledger: could not take a session lease in postgresql")
            caplog.clear()
            server.start()
            async with client(gw, token=_token("alice")) as c:  # back: served again
                await c.until("session.created")


async def test_replicas_that_upgrade_the_ledger_on_start_do_it_one_at_a_time(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    shared_postgres: PostgresServer,
) -> None:
    # Four replicas starting together on an empty database (a fresh deployment): one migrates,
    # the others wait for it and find nothing to do.
    url = shared_postgres.create_database()
    results = await asyncio.gather(*(upgrade(url) for _ in range(4)))
    assert sorted(result.changed for result in results) == [False, False, False, True]
    assert {result.to_revision for result in results} == {head_revision()}
    # And `realtalk serve` does it itself with REALTALK_LEDGER_UPGRADE_ON_START on a database
    # no one migrated.
    fresh = shared_postgres.create_database()
    settings = {"gateway_secret": SECRET, "ledger_url": fresh, "ledger_upgrade_on_start": True}
    async with emulator() as emu, gateway(emu, **settings) as gw:
        async with client(gw, token=_token("alice")) as c:
            await c.until("session.created")
    assert not (await upgrade(fresh)).changed
