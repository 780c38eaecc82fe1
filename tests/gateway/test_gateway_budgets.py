"""Daily budgets from the usage ledger (issue 15, item 2): per user, per deployment, in total."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from realtalk.errors import ConfigError
from realtalk.gateway.auth import Authenticator
from realtalk.gateway.budgets import DailyBudgets, DailySpend, Scope, day_start, seconds_to_midnight
from realtalk.gateway.config import GatewayConfig

from .conftest import SECRET, gateway_settings, text_turn

# Any billed turn reaches this cap: the session it happens in is ended, the next one refused.
CAP = "0.0001"


def _token(subject: str) -> str:
    signer = Authenticator(secret=SECRET.encode(), signed_tokens_configured=True, token_ttl_s=900)
    return signer.mint(subject, time.time())[0]


async def test_a_user_at_the_daily_cap_is_ended_then_refused_at_connect_and_others_go_on(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    settings = {"gateway_secret": SECRET, "gateway_user_daily_budget_usd": CAP}
    async with emulator() as emu, gateway(emu, **settings) as gw:
        async with client(gw, token=_token("alice")) as c:
            for event in text_turn("hello"):
                await c.send(event)
            await c.until("response.done")
            error = await c.error()
            code, _ = await c.closed()
        assert (error["code"], code) == ("daily_budget_exceeded", 1008)
        assert "user alice" in error["message"] and "midnight UTC" in error["message"]
        accepted = emu.stats.connections_accepted
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw, token=_token("alice")):
                pass
        response = refused.value.response
        assert response.status_code == 429
        body = json.loads(response.body or b"{}")
        assert body["error"]["code"] == "daily_budget_exceeded" and "$0.0001" in body["error"]["message"]
        assert 0 < int(response.headers["Retry-After"]) <= 86_400
        assert emu.stats.connections_accepted == accepted, "nothing was opened upstream"
        # Bob has his own cap: he talks.
        async with client(gw, token=_token("bob")) as c:
            for event in text_turn("hello"):
                await c.send(event)
            await c.until("response.done")


async def test_a_daily_cap_for_the_whole_gateway_counts_every_user(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    settings = {"gateway_secret": SECRET, "gateway_daily_budget_usd": CAP}
    async with emulator() as emu, gateway(emu, **settings) as gw:
        async with client(gw, token=_token("carol")) as c:
            for event in text_turn("hello"):
                await c.send(event)
            await c.until("response.done")
            await c.closed()
        await gw.app.state.gateway.ledger.flush()
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw, token=_token("dave")):
                pass
        assert refused.value.response.status_code == 429
        assert b"the gateway" in (refused.value.response.body or b"")


def test_daily_budgets_need_the_ledger() -> None:
    with pytest.raises(ConfigError, match="REALTALK_LEDGER_URL"):
        GatewayConfig.from_settings(gateway_settings(None, ledger_url="off", gateway_daily_budget_usd="5"))


def test_a_day_is_a_utc_day_and_a_cap_is_reached_at_its_value() -> None:
    now = datetime(2026, 12, 4, 23, 59, 30, tzinfo=UTC)
    assert day_start(now) == datetime(2026, 12, 4, tzinfo=UTC)
    assert seconds_to_midnight(now) == 30
    spend = DailySpend((Scope("user alice", Decimal("1.00"), Decimal("0.75")),), now)
    assert spend.exceeded(Decimal("0.24")) is None
    assert spend.exceeded(Decimal("0.25")) == spend.scopes[0]
    assert DailyBudgets().configured is False and DailyBudgets(user_usd=Decimal("2")).configured
