"""A replica of ``realtalk serve`` killed with ``kill -9`` stops holding its users' session slots
once its leases expire (issue 15, item 2: concurrent-session limits shared between replicas).

Two ``realtalk serve`` processes share one ledger and a limit of one open session per user. While
the first holds the user's session, the second refuses that user (429). The first is killed: it
can neither release nor renew, so the second refuses for as long as the lease was last renewed
for, then admits, within ``REALTALK_GATEWAY_SESSION_LEASE_S`` of the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtalk.testing import configuration_variables

from .commands import command
from .support import MODEL

LEASE_S = 5.0


async def _admitted(url: str) -> bool:
    """Whether the gateway accepts a session now (it is closed again at once)."""
    try:
        async with connect(url, close_timeout=1.0) as ws:
            await ws.recv()  # session.created: a session was opened upstream
            return True
    except InvalidStatus as refused:
        assert refused.response.status_code == 429, refused.response.body
        assert b"too_many_sessions" in refused.response.body
        return False


@pytest.mark.slow
async def test_a_killed_replicas_sessions_stop_counting_when_their_leases_expire(tmp_path: Path) -> None:
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    emulate_args = ["emulate", "--port", "0", "--vad", "energy", "--asr", "none", "--tts", "tone"]
    async with command(tmp_path, env, signal.SIGINT, *emulate_args) as emulate:
        endpoint = await emulate.emulator_endpoint()
        serve_env = env | {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT_NAME": MODEL,
            "AZURE_OPENAI_API_KEY": "lease-test-key",
            "REALTALK_LEDGER_URL": f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}",
            "REALTALK_GATEWAY_MAX_SESSIONS_PER_USER": "1",
            "REALTALK_GATEWAY_SESSION_LEASE_S": str(LEASE_S),
        }
        serve = ("serve", "--port", "0")
        async with (
            command(tmp_path, serve_env, signal.SIGKILL, *serve) as doomed,
            command(tmp_path, serve_env, signal.SIGTERM, *serve) as survivor,
        ):
            urls = [await child.realtime_url(MODEL) for child in (doomed, survivor)]
            held = await connect(urls[0], close_timeout=0.5)
            await held.recv()  # the user's one session, on the replica about to die
            assert not await _admitted(urls[1])

            doomed.process.kill()  # SIGKILL: the lease is neither released nor renewed again
            killed_at = time.monotonic()
            refused_until = killed_at
            while not await _admitted(urls[1]):
                refused_until = time.monotonic()
                assert refused_until - killed_at < LEASE_S + 2.0, "the dead replica's lease never expired"
                await asyncio.sleep(0.2)
            admitted_after = time.monotonic() - killed_at
            await held.close()

    # The lease was renewed every LEASE_S / 3, so it had between 2/3 of LEASE_S and LEASE_S left.
    early = "the dead replica's session stopped counting early"
    assert refused_until - killed_at >= LEASE_S * 2 / 3 - 0.5, early
    assert admitted_after <= LEASE_S + 1.0
