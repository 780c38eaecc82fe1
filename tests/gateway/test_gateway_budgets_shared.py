"""Two gateway processes on one PostgreSQL ledger enforce one daily cap (issue 15, item 2)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from realtalk.gateway.auth import Authenticator
from realtalk.ledger import upgrade

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
