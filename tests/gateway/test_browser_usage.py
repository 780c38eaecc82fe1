"""The page's "Today" line: the signed-in user's spend today and their daily budget (issue 15,
item 5), in Debian's Chromium.

Same set-up as ``test_browser.py`` (Playwright, the real page served by ``realtalk serve``'s app in
front of an emulator on 127.0.0.1, Chromium's fake microphone asking the question). The line comes
from ``GET /api/usage``; after a spoken session it shows the ledger's spend, to the cent's
hundredth, against the cap, well before the page's 30 s poll could have refreshed it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from realtalk.emulator import Engines, load_engines, parse_scenario
from realtalk.gateway.budgets import day_start
from realtalk.ledger import session_count, spend_usd

from .test_browser import PHRASES, REPLY, chromium_page, fake_microphone, hooks, open_ui, ui_stack

pytestmark = [pytest.mark.system_package("chromium"), pytest.mark.slow]

SCENARIO = parse_scenario({"turns": [{"say": REPLY}]})
TOKEN = "browser-usage-test-token-0123456789"


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_engines("energy", "auto", "auto", phrases=PHRASES)


async def usage_line(page: Any) -> dict[str, Any]:
    line: dict[str, Any] = await page.evaluate(
        """() => { const p = document.getElementById("usage");
                   return {text: p.textContent, hidden: p.hidden, live: p.getAttribute("aria-live"),
                           state: p.dataset.state ?? null}; }"""
    )
    return line


async def test_after_a_spoken_session_the_today_line_shows_the_ledgers_spend_against_the_daily_cap(
    tmp_path: Path, engines: Engines
) -> None:
    microphone = fake_microphone(tmp_path / "mic.wav", "question", 3000)
    async with (
        ui_stack(tmp_path, engines, SCENARIO, gateway_user_daily_budget_usd="5") as stack,
        chromium_page(microphone) as page,
    ):
        await open_ui(page, stack)
        # Before any session of today: nothing spent, against the cap.
        await page.locator("#usage").filter(has_text="0 sessions").wait_for(timeout=10_000)
        first = await usage_line(page)
        # One spoken turn, heard to the end, then Stop.
        await page.wait_for_function(
            """() => document.querySelector("#transcript li.assistant:not(.partial)") !== null
                     && window.realtalk.status === "listening" """,
            timeout=30_000,
        )
        await page.get_by_role("button", name="Stop").click()
        await page.wait_for_function("window.realtalk.status === 'closed'", timeout=5_000)
        # Refreshed because the session ended: far sooner than the 30 s idle poll.
        await page.locator("#usage").filter(has_text="1 session").wait_for(timeout=8_000)
        after = await usage_line(page)
        answer = (await hooks(page))["usage"]
        ledger = stack.gateway.state.ledger
        assert ledger is not None
        await ledger.flush()
        since = day_start(datetime.now(UTC))
        user = answer["usage"]["user"]
        spent = await spend_usd(ledger, since=since, user=user)
        sessions = await session_count(ledger, since=since, user=user)
    assert first == {
        "text": "Today: $0.0000 of $5.00 · 0 sessions",
        "hidden": False,
        "live": "polite",
        "state": "ok",
    }
    assert answer["state"] == "ok" and user == "open:127.0.0.1"  # no sign-in on a loopback gateway
    # The page holds the ledger's exact decimal, and shows it rounded to 4 places.
    assert Decimal(answer["usage"]["spent_usd"]) == spent > 0 and sessions == 1
    shown = spent.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert after["text"] == f"Today: ${shown} of $5.00 · 1 session", after
    assert not after["hidden"]


async def test_the_line_waits_for_sign_in_and_says_when_usage_is_not_recorded(
    tmp_path: Path, engines: Engines
) -> None:
    microphone = fake_microphone(tmp_path / "mic.wav", 2000)
    async with (
        ui_stack(tmp_path, engines, SCENARIO, gateway_tokens=TOKEN, ledger_url="off") as stack,
        chromium_page(microphone) as page,
    ):
        await page.goto(stack.page_url)
        await page.locator("#auth").wait_for(state="visible", timeout=5_000)
        signed_out = await usage_line(page)
        await page.get_by_label("Access token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#usage").wait_for(state="visible", timeout=5_000)
        signed_in = await usage_line(page)
    assert signed_out["hidden"], "nothing to show before the user is known"
    assert (signed_in["text"], signed_in["state"]) == ("Usage is not recorded on this gateway.", "off")
