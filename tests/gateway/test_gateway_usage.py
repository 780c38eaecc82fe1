"""``GET /api/usage`` and the ledger's counters on ``/metrics`` (issue 15, item 5).

Through the real app in front of the emulator: a user who ran a spoken session reads back the
ledger's exact decimal spend, anyone else their own (nothing), a caller without a credential the
gateway's one 401; the tightest daily cap is what remains, named by its scope. The HTTP answers
do not depend on how frames are relayed, so the tests that only need spend run the direct path
only; the spoken session runs all three (conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtalk.gateway import Gateway
from realtalk.gateway.auth import REFUSAL, Authenticator
from realtalk.gateway.budgets import day_start
from realtalk.gateway.metrics import GatewayMetrics
from realtalk.ledger import Ledger, SessionRecord, responses_between, session_count, spend_usd

from .conftest import MODEL, SECRET, b64, fixture_pcm, text_turn

ONE_MODE = pytest.mark.parametrize("gateway", ["direct"], indirect=True)
ANSWER_KEYS = {
    "ledger",
    "user",
    "day",
    "spent_usd",
    "sessions",
    "daily_cap_usd",
    "remaining_usd",
    "limited_by",
    "resets_at",
    "resets_in_s",
    "session_budget_usd",
}


def _token(subject: str) -> str:
    signer = Authenticator(secret=SECRET.encode(), signed_tokens_configured=True, token_ttl_s=900)
    return signer.mint(subject, time.time())[0]


def _bearer(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(subject)}"}


async def _usage(gw: Gateway, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
        return await http.get("/api/usage", headers=headers, params=params)


async def _metrics(gw: Gateway) -> str:
    async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
        return (await http.get("/metrics")).text


async def _text_session(client: Callable[..., Any], gw: Gateway, subject: str) -> None:
    """One billed text turn by ``subject``, its rows committed when this returns."""
    async with client(gw, token=_token(subject)) as c:
        for event in text_turn("hello"):
            await c.send(event)
        await c.until("response.done")
    await gw.state.ledger.flush()  # type: ignore[union-attr]


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    """An answer without its clock (``resets_in_s`` counts down between two requests)."""
    return {key: value for key, value in body.items() if key != "resets_in_s"}


async def _today(ledger: Ledger, **scope: str) -> Decimal:
    return await spend_usd(ledger, since=day_start(datetime.now(UTC)), **scope)


async def test_a_user_who_spoke_reads_the_ledgers_exact_spend_and_another_user_reads_only_their_own(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    async with emulator() as emu, gateway(emu, gateway_secret=SECRET) as gw:
        before = await _usage(gw, _bearer("alice"))
        async with client(gw, token=_token("alice"), ui=True) as c:
            await c.until("realtalk.session")
            pcm = fixture_pcm("question")
            for offset in range(0, len(pcm), 1920):  # 40 ms appends, as the page sends them
                await c.send(
                    '{"type":"input_audio_buffer.append","audio":"' + b64(pcm[offset : offset + 1920]) + '"}'
                )
            shown = Decimal((await c.until("realtalk.cost"))["total_usd"])
        ledger = gw.state.ledger
        assert ledger is not None
        await ledger.flush()
        alice = await _usage(gw, _bearer("alice"))
        bob = await _usage(gw, _bearer("bob"))
        bob_asking_for_alice = await _usage(gw, _bearer("bob"), user="alice")
        # The browser's way: the session cookie set in exchange for a token.
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            assert (await http.post("/api/session", headers=_bearer("alice"))).status_code == 200
            by_cookie = await http.get("/api/usage")
        spent = await _today(ledger, user="alice")
        now = datetime.now(UTC)
        rows = await responses_between(ledger, day_start(now), None, user="alice")
    assert before.status_code == 200 and before.json()["spent_usd"] == "0"
    assert before.json()["sessions"] == 0
    body = alice.json()
    assert alice.status_code == 200 and set(body) == ANSWER_KEYS
    assert alice.headers["cache-control"] == "no-store"
    # Exactly the ledger's decimal, as a string: no float, no rounding.
    assert Decimal(body["spent_usd"]) == spent == sum((row.cost_usd for row in rows), Decimal(0)) > 0
    assert body["spent_usd"] == format(spent, "f")
    assert Decimal(body["spent_usd"]).quantize(Decimal("0.000001")) == shown  # what the page was shown
    assert (body["user"], body["sessions"], body["ledger"]) == ("alice", 1, True)
    assert body["day"] == now.date().isoformat()
    # No daily cap configured: nothing remains to say; the session budget is the default $1.00.
    assert (body["daily_cap_usd"], body["remaining_usd"], body["limited_by"]) == (None, None, None)
    assert body["session_budget_usd"] == "1.00"
    midnight = day_start(now) + timedelta(days=1)
    assert body["resets_at"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert abs(body["resets_in_s"] - (midnight - now).total_seconds()) <= 2
    assert (bob.json()["user"], bob.json()["spent_usd"], bob.json()["sessions"]) == ("bob", "0", 0)
    assert _figures(bob_asking_for_alice.json()) == _figures(bob.json()), "no parameter names another user"
    assert _figures(by_cookie.json()) == _figures(body)
    assert emu.stats.connections_accepted == 1


@ONE_MODE
async def test_a_caller_without_a_valid_credential_gets_the_gateways_one_refusal(
    emulator: Callable[..., Any], gateway: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with emulator() as emu, gateway(emu, gateway_secret=SECRET) as gw:
        answers = [
            await _usage(gw),
            await _usage(gw, {"Authorization": "Bearer rt1.forged.signature"}),
            await _usage(gw, {"api-key": "not-a-token-at-all"}),
            await _usage(gw, {"Cookie": "realtalk_session=rt1.e30.bad"}),
        ]
        cross_site = await _usage(gw, {**_bearer("alice"), "Origin": "https://evil.example"})
        metrics = await _metrics(gw)
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json() == {"error": {"code": "unauthorized", "message": REFUSAL}}
    assert cross_site.status_code == 403 and cross_site.json()["error"]["code"] == "origin_not_allowed"
    assert 'realtalk_gateway_refusals_total{reason="usage_unauthorized"} 4.0' in metrics
    # The log says which check failed, never the credential.
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused a client")]
    assert len(logged) == 4 and not any("not-a-token-at-all" in line for line in logged)


@ONE_MODE
async def test_behind_container_apps_authentication_the_signed_in_user_reads_their_own_usage(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    settings = {"gateway_secret": SECRET, "gateway_trust_principal_header": True}
    async with emulator() as emu, gateway(emu, **settings) as gw:
        await _text_session(client, gw, "erin@example.com")
        answer = await _usage(gw, {"X-MS-CLIENT-PRINCIPAL-NAME": "erin@example.com"})
        assert gw.state.ledger is not None
        spent = await _today(gw.state.ledger, user="erin@example.com")
    assert answer.json()["user"] == "erin@example.com"
    assert Decimal(answer.json()["spent_usd"]) == spent > 0


@ONE_MODE
@pytest.mark.parametrize(
    ("caps", "binding"),
    [
        ({"user": "1", "deployment": "3", "total": "2"}, "user"),
        ({"user": "5", "deployment": "2", "total": "3"}, "deployment"),
        ({"user": "5", "deployment": "3", "total": "2"}, "gateway"),
    ],
    ids=["user", "deployment", "gateway"],
)
async def test_what_remains_is_the_tightest_daily_cap_and_the_answer_names_its_scope(
    emulator: Callable[..., Any],
    gateway: Callable[..., Any],
    client: Callable[..., Any],
    caps: dict[str, str],
    binding: str,
) -> None:
    settings = {
        "gateway_secret": SECRET,
        "gateway_user_daily_budget_usd": caps["user"],
        "gateway_deployment_daily_budget_usd": caps["deployment"],
        "gateway_daily_budget_usd": caps["total"],
    }
    async with emulator() as emu, gateway(emu, **settings) as gw:
        # Bob spends; Alice has spent nothing, but the deployment and the gateway count Bob's spend.
        await _text_session(client, gw, "bob")
        alice = (await _usage(gw, _bearer("alice"))).json()
        bob = (await _usage(gw, _bearer("bob"))).json()
        assert gw.state.ledger is not None
        spent = await _today(gw.state.ledger, user="bob")
    cap = {scope: Decimal(value) for scope, value in caps.items()}
    assert spent > 0
    assert (alice["spent_usd"], alice["daily_cap_usd"], bob["daily_cap_usd"]) == (
        "0",
        caps["user"],
        caps["user"],
    )
    expected_alice = {
        "user": cap["user"],
        "deployment": cap["deployment"] - spent,
        "gateway": cap["total"] - spent,
    }
    expected_bob = {
        "user": cap["user"] - spent,
        "deployment": cap["deployment"] - spent,
        "gateway": cap["total"] - spent,
    }
    assert (alice["limited_by"], Decimal(alice["remaining_usd"])) == (binding, expected_alice[binding])
    assert (bob["limited_by"], Decimal(bob["remaining_usd"])) == (binding, expected_bob[binding])
    assert min(expected_alice.values()) == expected_alice[binding]


@ONE_MODE
async def test_a_user_past_their_daily_cap_has_nothing_left_and_is_told_when_it_resets(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    settings = {
        "gateway_secret": SECRET,
        "gateway_user_daily_budget_usd": "0.0001",
        "gateway_budget_usd": "0",
    }
    async with emulator() as emu, gateway(emu, **settings) as gw:
        await _text_session(client, gw, "alice")  # its first response passes the cap: it is ended
        body = (await _usage(gw, _bearer("alice"))).json()
    assert Decimal(body["spent_usd"]) > Decimal("0.0001")
    assert (body["daily_cap_usd"], body["remaining_usd"], body["limited_by"]) == ("0.0001", "0", "user")
    assert 0 < body["resets_in_s"] <= 86_400
    assert body["session_budget_usd"] is None, "a session budget of 0 is none"


@ONE_MODE
async def test_with_the_ledger_off_the_answer_says_usage_is_not_recorded(
    emulator: Callable[..., Any], gateway: Callable[..., Any]
) -> None:
    async with emulator() as emu, gateway(emu, gateway_secret=SECRET, ledger_url="off") as gw:
        answer = await _usage(gw, _bearer("alice"))
        metrics = await _metrics(gw)
    body = answer.json()
    assert answer.status_code == 200 and set(body) == ANSWER_KEYS
    assert (body["ledger"], body["user"], body["session_budget_usd"]) == (False, "alice", "1.00")
    assert [
        body[key] for key in ("spent_usd", "sessions", "daily_cap_usd", "remaining_usd", "limited_by")
    ] == [None] * 5
    assert "realtalk_ledger_enabled 0.0" in metrics
    assert "realtalk_ledger_rows_dropped" not in metrics


@ONE_MODE
async def test_metrics_carry_the_ledgers_counts_next_to_the_gateways_own(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any]
) -> None:
    async with emulator() as emu, gateway(emu, gateway_secret=SECRET) as gw:
        await _text_session(client, gw, "alice")
        metrics = await _metrics(gw)
    for line in (
        "realtalk_ledger_enabled 1.0",
        "realtalk_ledger_rows_dropped_total 0.0",
        "realtalk_ledger_rows_rejected_total 0.0",
        "realtalk_ledger_rows_pending 0.0",
        "realtalk_ledger_queue_capacity 10000.0",
        "realtalk_ledger_session_leases_held 0.0",  # the session ended: its lease is given back
        # The gateway's own counters are still there, unchanged.
        "realtalk_gateway_sessions_total 1.0",
        'realtalk_gateway_session_ends_total{reason="client_closed"} 1.0',
    ):
        assert line in metrics, line
    assert "# TYPE realtalk_ledger_rows_dropped_total counter" in metrics
    assert "# TYPE realtalk_ledger_rows_pending gauge" in metrics


async def test_the_ledger_metrics_follow_the_writers_counts(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    async with await Ledger.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", max_queue=2) as ledger:
        metrics.watch_ledger(ledger)
        started = datetime.now(UTC)
        for n in range(3):  # the third does not fit in the queue: dropped, and counted
            ledger.session_started(SessionRecord(f"s{n}", "alice", MODEL, MODEL, "websocket", "ui", started))
        queued = metrics.render().decode()
        await ledger.flush()
        written = metrics.render().decode()
        committed = await session_count(ledger, since=started)
    assert "realtalk_ledger_rows_pending 2.0" in queued
    assert "realtalk_ledger_rows_written_total 0.0" in queued
    assert "realtalk_ledger_rows_dropped_total 1.0" in queued
    assert "realtalk_ledger_queue_capacity 2.0" in queued
    assert "realtalk_ledger_rows_written_total 2.0" in written
    assert "realtalk_ledger_rows_pending 0.0" in written
    assert "realtalk_ledger_rows_dropped_total 1.0" in written
    assert "realtalk_ledger_rows_rejected_total 0.0" in written
    assert committed == 2, "the queued rows are in the database"
