"""``realtalk serve`` writes every session's usage to the ledger (issue 15), exactly as it priced it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from realtalk.emulator import parse_scenario
from realtalk.errors import ConfigError
from realtalk.gateway.app import open_ledger
from realtalk.gateway.config import GatewayConfig
from realtalk.ledger import Ledger, responses_between
from realtalk.ledger.schema import sessions

from .conftest import gateway_settings, text_turn


async def _ledger_rows(data_home: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    async with await Ledger.open(f"sqlite+aiosqlite:///{data_home / 'realtalk' / 'ledger.db'}") as ledger:
        async with ledger.engine.connect() as connection:
            session_rows = [dict(row._mapping) for row in await connection.execute(select(sessions))]
        now = datetime.now(UTC)
        responses = await responses_between(ledger, now - timedelta(hours=1), now + timedelta(hours=1))
    return session_rows, list(responses)


async def test_each_response_is_in_the_ledger_with_the_cost_the_client_was_shown(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    _ledger_in_tmp: Path,
) -> None:
    async with emulator() as emu, gateway(emu) as gw:
        async with client(gw, ui=True) as c:
            for turn in ("hello", "and again"):
                for event in text_turn(turn):
                    await c.send(event)
                await c.until("realtalk.cost")
            costs = [e for e in c.events if e["type"] == "realtalk.cost"]
            shown = Decimal(costs[-1]["total_usd"])
        await asyncio.sleep(0.3)
    session_rows, responses = await _ledger_rows(_ledger_in_tmp)
    [session] = session_rows
    assert (session["transport"], session["client"], session["end_reason"]) == (
        "websocket",
        "ui",
        "client_closed",
    )
    assert len(responses) == 2 and all(r.session_id == session["session_id"] for r in responses)
    total = sum((r.cost_usd for r in responses), Decimal(0))
    assert total.quantize(Decimal("0.000001")) == shown  # the UI shows 6 decimals of the same figure
    assert all(r.audio_out > 0 and r.audio_generated_ms > 0 for r in responses)


async def test_delegated_questions_are_in_the_ledger_as_tool_spend(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    tmp_path: Path,
    _ledger_in_tmp: Path,
) -> None:
    profile = tmp_path / "expert.toml"
    profile.write_text('tool_filler_after_s = 60\n\n[delegate]\ndeployment = "gpt-5-mini"\n')
    turns = [{"call": {"name": "ask_expert", "arguments": {"question": "Why is the sky blue?"}}}]
    async with (
        emulator(scenario=parse_scenario({"turns": turns})) as emu,
        gateway(emu, gateway_profile=profile) as gw,
    ):
        async with client(gw, ui=True) as c:
            for event in text_turn("a hard one"):
                await c.send(event)
            async with asyncio.timeout(15):
                while c.types().count("response.done") < 2:
                    await c.next()
            tool = next(e for e in c.events if e["type"] == "realtalk.tool" and e["status"] == "ok")
        await asyncio.sleep(0.3)
    _, responses = await _ledger_rows(_ledger_in_tmp)
    spent = sum((r.tools_usd for r in responses), Decimal(0))
    assert spent > 0 and spent.quantize(Decimal("0.000001")) == Decimal(tool["cost_usd"])


async def test_a_configured_ledger_that_cannot_be_used_stops_the_gateway_from_starting() -> None:
    config = GatewayConfig.from_settings(gateway_settings(None, ledger_url="mysql://user:hunter2@db/ledger"))
    with pytest.raises(ConfigError, match="ledger") as failure:
        await open_ledger(config)
    assert "hunter2" not in str(failure.value)
    # Turned off: no ledger, and no file either.
    assert await open_ledger(GatewayConfig.from_settings(gateway_settings(None, ledger_url="off"))) is None


async def test_a_reply_cut_after_response_done_updates_its_row_with_what_was_heard(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    _ledger_in_tmp: Path,
) -> None:
    # An SDK client (no UI extension) barges in the usual way: the reply was fully generated
    # (response.done came), the user spoke over it 300 ms in, and the client truncates the item.
    heard_ms = 300
    async with emulator() as emu, gateway(emu) as gw:
        async with client(gw) as c:
            for event in text_turn("tell me a long story"):
                await c.send(event)
            await c.until("response.done")
            added = next(e for e in c.events if e["type"] == "response.output_item.added")
            truncate = {"item_id": added["item"]["id"], "content_index": 0, "audio_end_ms": heard_ms}
            await c.send({"type": "conversation.item.truncate", **truncate})
            await c.until("conversation.item.truncated")
        await asyncio.sleep(0.3)
    _, responses = await _ledger_rows(_ledger_in_tmp)
    [row] = responses
    assert row.audio_generated_ms > heard_ms
    assert row.audio_heard_ms == heard_ms
    # The unheard share of the audio out, priced as the core prices it (to the nano-dollar).
    unheard_share = Decimal(row.audio_generated_ms - heard_ms) / Decimal(row.audio_generated_ms)
    expected = row.audio_out_usd * unheard_share
    assert 0 < row.unheard_audio_usd < row.audio_out_usd
    assert abs(row.unheard_audio_usd - expected) <= row.audio_out_usd / row.audio_generated_ms
