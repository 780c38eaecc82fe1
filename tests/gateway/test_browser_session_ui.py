"""The browser UI's session controls and messages, as a new user meets them (issue 13, defect 12).

Same set-up as ``test_browser.py`` (Debian's Chromium driven by Playwright, the real page served by
``realtalk serve``'s app in front of an emulator on 127.0.0.1): sign-in before Start, mute per
session, every close the gateway sends read as a sentence, the reconnecting state and the
Reconnect button, session notices gone with their session, and the target and cost labelled.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines, parse_scenario
from realtalk.gateway import Gateway, create_app
from realtalk.gateway.endings import LIMIT_SENTENCES, SHUTDOWN_SENTENCE, UPSTREAM_UNAVAILABLE_SENTENCE

from .test_browser import PHRASES, REPLY, UPSTREAM_KEY, chromium_page, fake_microphone, settings_for, ui_stack

pytestmark = [pytest.mark.system_package("chromium"), pytest.mark.slow]

TOKEN = "browser-ui-test-token-0123456789"
SCENARIO = parse_scenario({"turns": [{"say": REPLY}]})
# What a user may read on the page: never a bare close code.
CLOSE_CODE_TEXT = re.compile(r"\bcode\b|\b1\d{3}\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_engines("energy", "auto", "auto", phrases=PHRASES)


async def status_text(page: Any) -> str:
    return str(await page.get_by_role("status").text_content())


async def wait_for_phase(page: Any, phase: str, timeout_ms: int = 10_000) -> None:
    await page.wait_for_function(f"window.realtalk.status === {phase!r}", timeout=timeout_ms)


async def sign_in(page: Any, token: str) -> None:
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def test_before_sign_in_start_is_disabled_and_the_page_says_to_sign_in(
    tmp_path: Path, engines: Engines
) -> None:
    microphone = fake_microphone(tmp_path / "mic.wav", 3000)
    async with (
        ui_stack(tmp_path, engines, SCENARIO, gateway_tokens=TOKEN) as stack,
        chromium_page(microphone) as page,
    ):
        await page.goto(stack.page_url)
        await page.locator("#auth").wait_for(state="visible", timeout=5_000)
        start = page.get_by_role("button", name="Start")
        # A Start that can only fail ("code 1006") is not offered; the status says what to do.
        await page.get_by_role("status").filter(has_text="Sign in").wait_for(timeout=5_000)
        assert await start.is_disabled()
        assert await status_text(page) == "Sign in below to start talking."
        await sign_in(page, TOKEN)
        await page.locator("#auth").wait_for(state="hidden", timeout=5_000)
        assert await start.is_enabled()
        await start.click()
        await wait_for_phase(page, "listening")
        assert stack.emulator.stats.connections_accepted == 1


async def test_signing_in_clears_the_earlier_error_and_confirms_it(tmp_path: Path, engines: Engines) -> None:
    microphone = fake_microphone(tmp_path / "mic.wav", 3000)
    async with (
        ui_stack(tmp_path, engines, SCENARIO, gateway_tokens=TOKEN) as stack,
        chromium_page(microphone) as page,
    ):
        await page.goto(stack.page_url)
        await page.locator("#auth").wait_for(state="visible", timeout=5_000)
        await sign_in(page, "not-the-token-at-all")
        await page.get_by_text("That token was not accepted").wait_for(timeout=5_000)
        await sign_in(page, TOKEN)
        await page.locator("#auth").wait_for(state="hidden", timeout=5_000)
        # Signing in is confirmed where the user looks (the status, announced politely).
        await page.get_by_role("status").filter(has_text="Signed in").wait_for(timeout=5_000)
        assert await status_text(page) == "Signed in. Press Start to talk."
        assert await page.locator("#auth-error").text_content() == ""
        # The sign-in ends (the cookie expired): Start is refused, and the page asks again.
        await page.context.clear_cookies()
        await page.get_by_role("button", name="Start").click()
        await page.locator("#auth").wait_for(state="visible", timeout=10_000)
        await page.get_by_role("status").filter(has_text="Sign in").wait_for(timeout=5_000)
        assert not CLOSE_CODE_TEXT.search(await page.locator("main").inner_text())
        assert await page.get_by_role("button", name="Start").is_disabled()
        await sign_in(page, TOKEN)
        await page.locator("#auth").wait_for(state="hidden", timeout=5_000)
        # Nothing of the refusal is left over, and the new sign-in is confirmed.
        await page.get_by_role("status").filter(has_text="Signed in").wait_for(timeout=5_000)
        assert await status_text(page) == "Signed in. Press Start to talk."
        assert await page.locator("#notice").is_hidden()
        assert await page.get_by_role("button", name="Reconnect").is_hidden()
        await page.get_by_role("button", name="Start").click()
        await wait_for_phase(page, "listening")
        assert stack.emulator.stats.connections_accepted == 1


async def test_each_session_starts_unmuted(tmp_path: Path, engines: Engines) -> None:
    microphone = fake_microphone(tmp_path / "mic.wav", 8000)
    async with ui_stack(tmp_path, engines, SCENARIO) as stack, chromium_page(microphone) as page:
        await page.goto(stack.page_url)
        await page.get_by_role("button", name="Start").click()
        await wait_for_phase(page, "listening")
        await page.get_by_role("button", name="Mute").click()
        assert await status_text(page) == "Listening (muted)"
        await page.get_by_role("button", name="Stop").click()
        await wait_for_phase(page, "closed")
        await page.get_by_role("button", name="Start").click()
        await wait_for_phase(page, "listening")
        mute = page.locator("#mute")
        assert await mute.text_content() == "Mute"
        assert await mute.get_attribute("aria-pressed") == "false"
        assert await status_text(page) == "Listening"
        microphone_on = await page.evaluate(
            "() => window.realtalk.microphoneSettings !== null && window.realtalk.microphoneMuted === false"
        )
        assert microphone_on, "the new session's microphone track is enabled"


def gateway_closes() -> list[tuple[int, str]]:
    """Every close (code, reason) the gateway sends a client (docs/gateway.md, "Closing"), and the
    standard codes with no reason."""
    closes = [(1008, sentence.format(limit=1.5)) for sentence in LIMIT_SENTENCES.values()]
    closes += [
        (1011, LIMIT_SENTENCES["upstream_not_reading"].format(limit=15)),
        (1001, SHUTDOWN_SENTENCE),
        (1011, UPSTREAM_UNAVAILABLE_SENTENCE),
        (1001, "Your session hit the maximum duration of 30 minutes."),  # the upstream's, passed on
        (1011, "upstream connection lost (1006)"),
        (1011, "gateway error"),
        (1011, "the gateway ended the session"),
        (1008, "session budget of $0.5 reached (spent $0.501234)"),
        (1000, "upstream closed the session (1000)"),
        (4000, "upstream closed the session (4000)"),
    ]
    return closes + [(code, "") for code in (1000, 1001, 1006, 1008, 1009, 1011, 1012, 1013, 4000)]


async def test_every_close_the_gateway_sends_reads_as_a_sentence_without_its_code(
    tmp_path: Path, engines: Engines
) -> None:
    closes = gateway_closes()
    async with ui_stack(tmp_path, engines, SCENARIO) as stack, chromium_page() as page:
        await page.goto(stack.page_url)
        described: list[str] = await page.evaluate(
            """async (closes) => {
                 const { describeClose } = await import("./static/connection.js");
                 return closes.map(([code, reason]) => describeClose(code, reason));
               }""",
            closes,
        )
    for (code, reason), text in zip(closes, described, strict=True):
        assert re.fullmatch(r"[A-Z].*[.!?]", text), (code, reason, text)
        assert not CLOSE_CODE_TEXT.search(text), (code, reason, text)
        if re.fullmatch(r"[A-Z].*[.!?]", reason):
            assert text == reason, "the gateway's own sentence is shown as it is"
    budget = described[closes.index((1008, "session budget of $0.5 reached (spent $0.501234)"))]
    assert "$0.50" in budget and "$0.5012" in budget, budget
    no_reason = [text for (_, reason), text in zip(closes, described, strict=True) if not reason]
    assert len(set(no_reason)) == len(no_reason), "each code says something of its own"


async def test_an_upstream_drop_is_told_in_words_and_the_page_offers_to_reconnect(
    tmp_path: Path, engines: Engines
) -> None:
    scenario = parse_scenario({"turns": [{"say": REPLY}], "faults": {"drop_after_s": 2.0}})
    microphone = fake_microphone(tmp_path / "mic.wav", 10_000)
    async with ui_stack(tmp_path, engines, scenario) as stack, chromium_page(microphone) as page:
        await page.goto(stack.page_url)
        await page.get_by_role("button", name="Start").click()
        await wait_for_phase(page, "listening")
        await wait_for_phase(page, "closed", timeout_ms=15_000)
        status = await status_text(page)
        assert status == "Closed: The connection to the Realtime service was lost; start again."
        reconnect = page.get_by_role("button", name="Reconnect")
        assert await reconnect.is_visible()
        await reconnect.click()
        await stack.emulator.stats.wait_for(lambda stats: stats.connections_accepted == 2, timeout_s=10)
        assert await reconnect.is_hidden()


# Every status the page shows, with whether a notice was showing then: a phase may be too short to
# catch by polling on a loaded machine.
RECORD_STATUSES = """
(() => {
  const seen = [];
  Object.defineProperty(window, "statusesSeen", { get: () => seen.map((s) => ({ ...s })) });
  new MutationObserver(() => {
    const status = document.getElementById("status");
    const notice = document.getElementById("notice");
    if (!status || !notice) return;
    const last = seen[seen.length - 1];
    const now = { phase: status.dataset.phase, text: status.textContent, noticeHidden: notice.hidden };
    if (JSON.stringify(last) !== JSON.stringify(now)) seen.push(now);
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
})();
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_gateway_restart_shows_reconnecting_then_a_reconnect_button_and_no_stale_notice(
    tmp_path: Path, engines: Engines
) -> None:
    port = free_port()
    microphone = fake_microphone(tmp_path / "mic.wav", 20_000)
    config = EmulatorConfig(keys=(UPSTREAM_KEY,), pace=1.0, scenario=SCENARIO)
    async with Emulator(config, engines=engines) as emulator, chromium_page(microphone) as page:
        settings = settings_for(tmp_path, emulator, gateway_port=port)
        await page.add_init_script(RECORD_STATUSES)
        async with Gateway(create_app(settings)) as gateway:
            await page.goto(gateway.http_base_url + "/?transport=websocket")
            await page.get_by_role("button", name="Start").click()
            await wait_for_phase(page, "listening")
        # The gateway drained ("finishing the current reply", then 1001 "connect again in a few
        # seconds") and is gone: the page says it is reconnecting, then gives up and offers a button.
        await wait_for_phase(page, "closed", timeout_ms=20_000)
        seen = await page.evaluate("window.statusesSeen")
        reconnecting = [status for status in seen if status["phase"] == "reconnecting"]
        assert reconnecting, seen
        assert all(status["text"].startswith("Reconnecting") for status in reconnecting)
        assert all(status["noticeHidden"] for status in reconnecting), "the ended session's notices are gone"
        assert not CLOSE_CODE_TEXT.search(await status_text(page))
        assert await page.locator("#notice").is_hidden()
        reconnect = page.get_by_role("button", name="Reconnect")
        assert await reconnect.is_visible()
        async with Gateway(create_app(settings)):
            await reconnect.click()
            await wait_for_phase(page, "listening")
            assert await page.locator("#notice").is_hidden()
        assert emulator.stats.connections_accepted == 2


async def test_the_emulator_badge_shows_before_start(tmp_path: Path, engines: Engines) -> None:
    async with ui_stack(tmp_path, engines, SCENARIO) as stack, chromium_page() as page:
        await page.goto(stack.page_url)
        await page.locator("#emulator-badge").wait_for(state="visible", timeout=5_000)
        assert stack.emulator.stats.connections_accepted == 0
