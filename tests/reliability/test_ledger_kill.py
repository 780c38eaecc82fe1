"""``kill -9`` of ``realtalk serve`` during 10 sessions loses no ledger row of a response whose
``response.done`` reached the gateway more than a second before (issue 15: durable within 1 s)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtalk.ledger import Ledger, responses_between
from realtalk.testing import configuration_variables

from .commands import command
from .support import MODEL

SESSIONS = 10


async def _converse(url: str, done_at: dict[str, float]) -> None:
    """Text turns one after another until the gateway goes away; when each response.done came."""
    try:
        async with connect(url, close_timeout=1.0) as ws:
            n = 0
            while True:
                item = {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": f"turn {n}"}],
                }
                await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
                await ws.send(json.dumps({"type": "response.create"}))
                while (event := json.loads(await ws.recv()))["type"] != "response.done":
                    pass
                done_at[event["response"]["id"]] = time.monotonic()
                n += 1
    except (ConnectionClosed, OSError):
        return


@pytest.mark.slow
async def test_kill_9_mid_conversations_loses_no_row_older_than_a_second(tmp_path: Path) -> None:
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    ledger_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    emulate_args = ["emulate", "--port", "0", "--vad", "energy", "--asr", "none", "--tts", "tone"]
    async with command(tmp_path, env, signal.SIGINT, *emulate_args) as emulate:
        endpoint = await emulate.emulator_endpoint()
        serve_env = env | {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT_NAME": MODEL,
            "AZURE_OPENAI_API_KEY": "ledger-test-key",
            "REALTALK_LEDGER_URL": ledger_url,
            "REALTALK_GATEWAY_MAX_SESSIONS_PER_USER": str(SESSIONS),
        }
        async with command(tmp_path, serve_env, signal.SIGKILL, "serve", "--port", "0") as serve:
            url = await serve.realtime_url(MODEL)
            done_at: dict[str, float] = {}
            talks = [asyncio.create_task(_converse(url, done_at)) for _ in range(SESSIONS)]
            await asyncio.sleep(4.0)
            serve.process.kill()  # SIGKILL: no drain, no flush, no exit handlers
            killed_at = time.monotonic()
            await asyncio.gather(*talks)
    owed = {response_id for response_id, at in done_at.items() if at < killed_at - 1.0}
    assert len(owed) >= SESSIONS, "every session had answered at least once more than 1 s before the kill"
    async with await Ledger.open(ledger_url) as ledger:
        now = datetime.now(UTC)
        rows = await responses_between(ledger, now - timedelta(hours=1), now + timedelta(hours=1))
    written = {row.response_id for row in rows}
    assert owed <= written, f"lost: {sorted(owed - written)}"
