"""The browser UI shows the tools the gateway runs (issue 14, items 2 and 3), in Debian's Chromium.

Same set-up as ``test_browser.py`` (Playwright, the real page served by ``realtalk serve``'s app in
front of an emulator on 127.0.0.1, Chromium's fake microphone asking the question), with a gateway
profile whose tools live in a ``tools.py`` next to it. The emulated model is scripted to call them
on the first turn; the page learns of each call only through ``realtalk.tool`` events: a running
call shows with its name and a live elapsed time, an ended one as a line in the tool log with how
it ended, how long it took and what it cost.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from realtalk.emulator import Emulator, EmulatorConfig, Engines, Scenario, load_engines, parse_scenario
from realtalk.gateway import Gateway, create_app

from .test_browser import (
    PHRASES,
    UPSTREAM_KEY,
    UiStack,
    chromium_page,
    fake_microphone,
    hooks,
    open_ui,
    settings_for,
    transcript_lines,
)

pytestmark = [pytest.mark.system_package("chromium"), pytest.mark.slow]

# Arguments and outputs carry markers the page must never show (the gateway never sends them).
TOOLS_PY = '''
import asyncio


async def lookup(ticket_id: str) -> str:
    """A lookup that takes a second and a half."""
    await asyncio.sleep(1.5)
    return "OUTPUT-MARKER: resolved"


async def stalled(ticket_id: str) -> str:
    """A lookup that never answers in time."""
    await asyncio.sleep(30)
    return "OUTPUT-MARKER: too late"


async def hanging(ticket_id: str) -> str:
    """A lookup still running when the user stops."""
    await asyncio.sleep(60)
    return "OUTPUT-MARKER: never"


def explode(ticket_id: str) -> str:
    """A tool with a bug."""
    raise RuntimeError("OUTPUT-MARKER: the ticket database is down")


def get_ticket_status(ticket_id: str) -> str:
    """The status of a help-desk ticket."""
    return "OUTPUT-MARKER: open"
'''
PROFILE = """
transcription = {model = "gpt-4o-transcribe", language = "en"}

[[tools]]
function = "./tools.py:lookup"

[[tools]]
function = "./tools.py:stalled"
timeout_s = 0.3

[[tools]]
function = "./tools.py:hanging"

[[tools]]
function = "./tools.py:explode"

[[tools]]
function = "./tools.py:get_ticket_status"

[delegate]
deployment = "gpt-5-mini"
"""
ARGUMENT = "ARGUMENT-MARKER-XR4892"
ANSWER = "The ticket was resolved yesterday."

# How the tool log writes a duration: milliseconds under a second, tenths of seconds above.
DURATION = r"(\d+ ms|\d+\.\d s)"
RUNNING_JS = """[...document.querySelectorAll("#tools-running li")].map(li => ({
    name: li.querySelector(".tool-name").textContent,
    elapsed: li.querySelector(".tool-elapsed").textContent}))"""
TOOL_LOG_JS = """[...document.querySelectorAll("#tool-log li")].map(li => ({
    name: li.querySelector(".tool-name").textContent, status: li.dataset.status, text: li.textContent}))"""


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_engines("energy", "auto", "auto", phrases=PHRASES)


@asynccontextmanager
async def tool_stack(tmp_path: Path, engines: Engines, scenario: Scenario) -> AsyncIterator[UiStack]:
    """``test_browser.ui_stack`` with a gateway profile that names the tools of :data:`TOOLS_PY`."""
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "tools.py").write_text(TOOLS_PY)
    profile = folder / "agent.toml"
    profile.write_text(PROFILE)
    config = EmulatorConfig(keys=(UPSTREAM_KEY,), pace=1.0, scenario=scenario)
    async with Emulator(config, engines=engines) as emulator:
        settings = settings_for(tmp_path, emulator).model_copy(update={"gateway_profile": profile})
        async with Gateway(create_app(settings)) as gateway:
            yield UiStack(gateway, emulator)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


async def running(page: Any) -> list[dict[str, str]]:
    shown: list[dict[str, str]] = await page.evaluate(f"() => {RUNNING_JS}")
    return shown


async def tool_log(page: Any) -> list[dict[str, str]]:
    lines: list[dict[str, str]] = await page.evaluate(f"() => {TOOL_LOG_JS}")
    return lines


def seconds(elapsed: str) -> float:
    match = re.fullmatch(r"(\d+\.\d) s", elapsed)
    assert match, elapsed
    return float(match[1])


async def test_a_slow_tool_shows_its_name_and_a_growing_elapsed_time_then_a_line_saying_it_is_done(
    tmp_path: Path, engines: Engines
) -> None:
    scenario = parse_scenario({"turns": [{"call": call("lookup", ticket_id=ARGUMENT)}, {"say": ANSWER}]})
    microphone = fake_microphone(tmp_path / "mic.wav", "question", 6000)
    async with tool_stack(tmp_path, engines, scenario) as stack, chromium_page(microphone) as page:
        await open_ui(page, stack)
        indicator = page.locator("#tools-running li").filter(has_text="lookup")
        await indicator.wait_for(timeout=30_000)
        [first] = await running(page)
        first_hook = (await hooks(page))["tools"]
        # The counter counts while the call runs (the tool takes 1.5 s; the page redraws 4x/s).
        await page.wait_for_function(
            f"""() => {{
                 const shown = document.querySelector("#tools-running .tool-elapsed");
                 return shown !== null && parseFloat(shown.textContent) >= {seconds(first["elapsed"]) + 0.5};
               }}""",
            timeout=1_400,
        )
        [later] = await running(page)
        later_hook = (await hooks(page))["tools"]
        live_region = await page.locator("#tools-running").get_attribute("aria-live")
        timers = await page.get_by_role("timer").count()
        # Then it ends: a line in the tool log, and the indicator is gone.
        line = page.get_by_role("log", name="Tool calls").locator("li")
        await line.wait_for(timeout=10_000)
        await page.wait_for_function("window.realtalk.tools.running.length === 0", timeout=2_000)
        indicator_hidden = await page.locator("#tools-running").is_hidden()
        logged = await tool_log(page)
        final = (await hooks(page))["tools"]
        # The conversation goes on: the follow-up speaks the answer.
        await (
            page.locator("#transcript li.assistant:not(.partial)")
            .filter(has_text=ANSWER)
            .wait_for(timeout=30_000)
        )
        page_text = await page.evaluate("document.body.innerText")
        lines = await transcript_lines(page)
    assert first["name"] == later["name"] == "lookup"
    assert seconds(later["elapsed"]) >= seconds(first["elapsed"]) + 0.5
    [hooked_first] = first_hook["running"]
    [hooked_later] = later_hook["running"]
    assert hooked_first["name"] == "lookup" and hooked_first["call_id"]
    assert hooked_first["elapsed_ms"] < hooked_later["elapsed_ms"] and hooked_later["elapsed_ms"] >= 500
    assert first_hook["finished"] == later_hook["finished"] == []
    # Announced once when it starts; the ticking seconds are a timer, which screen readers leave quiet.
    assert live_region == "polite" and timers == 1
    assert indicator_hidden
    [entry] = logged
    assert (entry["name"], entry["status"]) == ("lookup", "ok")
    assert re.fullmatch(r"Tool lookup done \(1\.\d s\)", entry["text"]), entry["text"]
    assert final["running"] == []
    [finished] = final["finished"]
    assert finished["call_id"] == hooked_first["call_id"]
    assert (finished["name"], finished["status"]) == ("lookup", "ok")
    assert finished["cost_usd"] is None or Decimal(finished["cost_usd"]) == 0, "a plain tool costs nothing"
    assert 1_400 <= finished["duration_ms"] < 3_000
    assert any(line["role"] == "assistant" and line["text"] == ANSWER for line in lines)
    assert "MARKER" not in page_text, "neither the call's arguments nor its output reach the page"


async def test_each_ended_call_says_how_it_ended_and_a_call_still_running_ends_with_the_session(
    tmp_path: Path, engines: Engines
) -> None:
    calls = [
        call("hanging", ticket_id=ARGUMENT),  # still running when the user stops
        call("explode", ticket_id=ARGUMENT),  # raises
        call("stalled", ticket_id=ARGUMENT),  # over its 0.3 s limit
        call("get_ticket_status", ticket=4892),  # not its schema
        call("ask_expert", question="Why is ticket " + ARGUMENT + " stuck?"),  # delegated: priced
    ]
    scenario = parse_scenario({"turns": [{"call": calls}, {"say": ANSWER}]})
    microphone = fake_microphone(tmp_path / "mic.wav", "question", 6000)
    async with tool_stack(tmp_path, engines, scenario) as stack, chromium_page(microphone) as page:
        await open_ui(page, stack)
        await page.wait_for_function(
            "window.realtalk.tools.finished.length === 4 && window.realtalk.tools.running.length === 1",
            timeout=30_000,
        )
        still_running = await running(page)
        ended = {line["name"]: line for line in await tool_log(page)}
        before_stop = (await hooks(page))["tools"]
        await page.get_by_role("button", name="Stop").click()
        await page.wait_for_function("window.realtalk.tools.finished.length === 5", timeout=5_000)
        # Nothing is redrawn once the session is over (the elapsed counter stopped with it).
        await asyncio.sleep(0.3)
        indicator_hidden = await page.locator("#tools-running").is_hidden()
        after_stop = (await hooks(page))["tools"]
        last_line = (await tool_log(page))[-1]
        page_text = await page.evaluate("document.body.innerText")
    assert [shown["name"] for shown in still_running] == ["hanging"]
    assert [call["name"] for call in before_stop["running"]] == ["hanging"]
    statuses = {call["name"]: call["status"] for call in before_stop["finished"]}
    assert statuses == {
        "explode": "error",
        "stalled": "timeout",
        "get_ticket_status": "invalid_arguments",
        "ask_expert": "ok",
    }
    # Each line says how the call ended and how long it took; a delegated question also what it
    # cost on its own (an estimate); a local function costs nothing, so no price is shown.
    lines = {
        "explode": rf"Tool explode failed \({DURATION}\)",
        "stalled": rf"Tool stalled timed out \({DURATION}\)",
        "get_ticket_status": rf"Tool get_ticket_status refused: invalid arguments \({DURATION}\)",
        "ask_expert": rf"Tool ask_expert done \({DURATION}, (≈ \$\d\.\d{{4}}|< \$0\.0001)\)",
    }
    for name, pattern in lines.items():
        assert re.fullmatch(pattern, ended[name]["text"]), ended[name]
    [expert] = [call for call in before_stop["finished"] if call["name"] == "ask_expert"]
    assert expert["cost_usd"] is not None and Decimal(expert["cost_usd"]) > 0
    others = [call["cost_usd"] for call in before_stop["finished"] if call["name"] != "ask_expert"]
    assert all(cost_usd is None or Decimal(cost_usd) == 0 for cost_usd in others), others
    assert after_stop["running"] == [] and indicator_hidden
    assert after_stop["finished"][-1]["name"] == "hanging"
    assert after_stop["finished"][-1]["status"] == "session_ended"
    assert last_line["text"] == "Tool hanging stopped: the session ended"
    assert "MARKER" not in page_text
