"""Two ``realtalk serve`` processes on one PostgreSQL ledger are one gateway for a user's limit on
concurrent sessions (issues 15 and 16: replicas are stateless and share limits through the ledger).

A tiny round-robin in the test sends a user's sessions to the two processes in turn. With a limit
of three, the first three are served (two on one replica, one on the other), the fourth is refused
with 429 by whichever replica it reaches, with nothing opened upstream, and once one session ends
the next is served again.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from realtalk.ledger import upgrade
from realtalk.testing import configuration_variables

from ..ledger.conftest import PostgresServer, _postgres_server
from .commands import command
from .support import MODEL

TOKEN = "replica-test-token-0123456789abcdef"
LIMIT = 3

pytestmark = [pytest.mark.slow, pytest.mark.system_package("postgresql")]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    yield from _postgres_server()


async def _open(url: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, close_timeout=1.0)
    await ws.recv()  # session.created: the session is open upstream
    return ws


async def _open_when_free(url: str, within_s: float = 2.0) -> ClientConnection:
    """Open a session once the slot a session just gave back on another replica is free: that
    replica releases its lease right after the close, a few milliseconds later."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await _open(url)
        except InvalidStatus as refused:
            if refused.response.status_code != 429 or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_two_replicas_refuse_a_users_fourth_session_when_the_limit_is_three(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    ledger_url = postgres.create_database()
    await upgrade(ledger_url)  # `realtalk ledger upgrade`, once, before the replicas start
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    emulate_args = ["emulate", "--port", "0", "--vad", "energy", "--asr", "none", "--tts", "tone"]
    async with command(tmp_path, env, signal.SIGINT, *emulate_args) as emulate:
        endpoint = await emulate.emulator_endpoint()
        serve_env = env | {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT_NAME": MODEL,
            "AZURE_OPENAI_API_KEY": "replica-test-key",
            "REALTALK_LEDGER_URL": ledger_url,
            "REALTALK_GATEWAY_TOKENS": TOKEN,
            "REALTALK_GATEWAY_MAX_SESSIONS_PER_USER": str(LIMIT),
        }
        serve = ("serve", "--port", "0")
        async with (
            command(tmp_path, serve_env, signal.SIGTERM, *serve) as east,
            command(tmp_path, serve_env, signal.SIGTERM, *serve) as west,
        ):
            urls = [await replica.realtime_url(MODEL) for replica in (east, west)]
            round_robin = cycle(urls)
            sessions = [await _open(next(round_robin)) for _ in range(LIMIT)]
            try:
                for _ in urls:  # the fourth, on either replica
                    with pytest.raises(InvalidStatus) as refused:
                        await _open(next(round_robin))
                    assert refused.value.response.status_code == 429
                    assert b"too_many_sessions" in refused.value.response.body
                await sessions.pop(0).close()  # one ends (on the first replica) ...
                sessions.append(await _open_when_free(urls[1]))  # ... and the other serves the next
            finally:
                for ws in sessions:
                    await ws.close()
