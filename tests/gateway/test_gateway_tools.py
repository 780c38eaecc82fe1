"""The gateway runs its profile's tools itself (issue 14, item 3), against the emulator.

The profile names Python functions in a ``tools.py`` next to it; the emulated model is scripted to
call them. What the client receives is checked frame by frame: no definition, call or output of a
server tool ever reaches it, and a UI client is told which tool ran.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from realtalk.emulator import parse_scenario

from .conftest import b64, fixture_pcm, text_turn

TOOLS_PY = '''
import asyncio

TICKETS = {"XR-4892": "open, waiting for the network team"}


def get_ticket_status(ticket_id: str) -> dict:
    """The status of a help-desk ticket, by its ID (like XR-4892)."""
    status = TICKETS.get(ticket_id, "unknown")
    return {"ticket_id": ticket_id, "status": status, "secret_note": "S3CR3T-OUTPUT"}


async def slow_lookup(ticket_id: str) -> str:
    """A lookup that takes its time."""
    await asyncio.sleep(30)
    return "too late"


async def lookup(ticket_id: str) -> str:
    """A lookup that takes a second and a half."""
    await asyncio.sleep(1.5)
    return "resolved yesterday"


def explode(ticket_id: str) -> str:
    """A tool with a bug."""
    raise RuntimeError("the ticket database is down")


def blocking(ticket_id: str) -> str:
    """Blocks its thread for two seconds (a synchronous database driver)."""
    import time

    time.sleep(2.0)
    return "found it"
'''
PROFILE = """
instructions = "You are the help desk. SECRET-INSTRUCTIONS."
tool_filler_after_s = 60

[[tools]]
function = "./tools.py:get_ticket_status"

[[tools]]
function = "./tools.py:slow_lookup"

[[tools]]
function = "./tools.py:explode"

[[tools]]
function = "./tools.py:lookup"
timeout_s = 0.5
"""
CALL = {"call": {"name": "get_ticket_status", "arguments": {"ticket_id": "XR-4892"}}}


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    path = tmp_path / "agent.toml"
    path.write_text(PROFILE)
    return path


def _leaks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Client events that show a server tool's definition, call or output (what the model says
    about a result is speech, and the client hears it: that is the point)."""
    leaks = []
    for event in events:
        items = [event.get("item")]
        response = event.get("response")
        if isinstance(response, dict):
            items += response.get("output") or []
        session = event.get("session") if isinstance(event.get("session"), dict) else {}
        if (
            event["type"].startswith("response.function_call_arguments")
            or any(
                isinstance(i, dict) and i.get("type") in ("function_call", "function_call_output")
                for i in items
            )
            or any(t.get("name") in ("get_ticket_status", "slow_lookup") for t in session.get("tools", []))
            or "instructions" in session
        ):
            leaks.append(event)
    return leaks


async def test_a_server_tool_runs_and_the_client_sees_the_answer_but_never_the_tool(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], profile: Path
) -> None:
    scenario = parse_scenario({"turns": [CALL]})
    async with (
        emulator(scenario=scenario) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for event in text_turn("what is the status of ticket XR-4892"):
            await c.send(event)
        # The client's response makes the call; the gateway's follow-up speaks the answer.
        await c.until("response.done")
        done = await c.until("response.done")
        [message] = done["response"]["output"]
        assert "open, waiting for the network team" in json.dumps(message)
        tool_events = [e for e in c.events if e["type"] == "realtalk.tool"]
        assert [(e["name"], e["status"]) for e in tool_events] == [
            ("get_ticket_status", "running"),
            ("get_ticket_status", "ok"),
        ]
        received = emu.stats.events_received()
        await asyncio.sleep(0.2)
    assert _leaks(c.events) == []
    assert any(e["type"] == "session.updated" for e in c.events)
    outputs = [
        e
        for e in received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1
    assert [e["type"] for e in received].count("response.create") == 2  # the client's, then one follow-up
    # The first response's call is gone from its response.done; the follow-up's message hangs
    # on the user's item, not on the hidden call and output.
    first_done = next(e for e in c.events if e["type"] == "response.done")
    assert first_done["response"]["output"] == []
    user_item = next(e for e in c.events if e["type"] == "conversation.item.added")["item"]["id"]
    added = [e for e in c.events if e["type"] == "conversation.item.added"]
    assert added[-1]["item"]["role"] == "assistant" and added[-1]["previous_item_id"] == user_item


async def test_a_client_cannot_answer_a_call_the_gateway_runs(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], profile: Path
) -> None:
    slow = {"name": "slow_lookup", "arguments": {"ticket_id": "XR-4892"}, "call_id": "call_server_1"}
    scenario = parse_scenario({"turns": [{"call": slow}]})
    async with (
        emulator(scenario=scenario) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw) as c,
    ):
        for event in text_turn("look it up"):
            await c.send(event)
        await c.until("response.done")
        await emu.stats.wait_for(lambda s: bool(s.events_received("response.create")), timeout_s=5)
        assert [e for e in c.events if "call_server_1" in json.dumps(e)] == [], (
            "the client never saw the call"
        )
        # A client that guesses the call id all the same: its answer is refused, never forwarded.
        await c.send(
            {
                "type": "conversation.item.create",
                "event_id": "evt_forged",
                "item": {"type": "function_call_output", "call_id": "call_server_1", "output": "{}"},
            }
        )
        error = await c.error()
        assert (error["code"], error["param"], error["event_id"]) == (
            "item_not_allowed",
            "item.call_id",
            "evt_forged",
        )
    assert not [
        e
        for e in emu.stats.events_received("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]


async def test_speech_during_a_slow_server_tool_cancels_it_and_nothing_stale_is_sent(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], profile: Path
) -> None:
    scenario = parse_scenario(
        {"turns": [{"call": {"name": "slow_lookup", "arguments": {"ticket_id": "XR-4892"}}}]}
    )
    async with (
        emulator(scenario=scenario, pace=4.0) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for event in text_turn("look it up"):
            await c.send(event)
        await c.until("realtalk.tool", lambda e: e["status"] == "running")
        # The user speaks while the tool runs: server VAD's speech_started supersedes the call.
        speech = fixture_pcm("question")
        for start in range(0, len(speech), 9600):
            await c.send({"type": "input_audio_buffer.append", "audio": b64(speech[start : start + 9600])})
        cancelled = await c.until("realtalk.tool", lambda e: e["status"] == "cancelled", timeout_s=20)
        assert cancelled["name"] == "slow_lookup"
        await asyncio.sleep(0.3)
    assert not [
        e
        for e in emu.stats.events_received("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]


async def test_delegation_chains_three_questions_and_its_cost_is_in_the_session_total(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], tmp_path: Path
) -> None:
    profile = tmp_path / "expert.toml"
    profile.write_text('tool_filler_after_s = 60\n\n[delegate]\ndeployment = "gpt-5-mini"\n')
    questions = ["Why is the sky blue?", "And at sunset?", "And on Mars?"]
    turns = [{"call": {"name": "ask_expert", "arguments": {"question": q}}} for q in questions]
    scenario = parse_scenario(
        {"turns": [turn for t in turns for turn in (t, {"say": "Here is what I found."})]}
    )
    async with (
        emulator(scenario=scenario) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for n, question in enumerate(questions, start=1):
            for event in text_turn(question):
                await c.send(event)
            # The call's response, then the follow-up that speaks the answer.
            async with asyncio.timeout(15):
                while c.types().count("response.done") < 2 * n:
                    await c.next()
            assert emu.stats.responses_requests == n
        costs = [e for e in c.events if e["type"] == "realtalk.cost"]
    finished = [e for e in c.events if e["type"] == "realtalk.tool" and e["status"] != "running"]
    assert [(e["name"], e["status"]) for e in finished] == [("ask_expert", "ok")] * 3
    tool_usd = [Decimal(e["cost_usd"]) for e in finished]
    assert all(usd > 0 for usd in tool_usd)
    assert tool_usd[2] > tool_usd[0], "the third question re-bills the thread as input"
    # The session's total is the realtime turns plus every delegated question.
    last = costs[-1]
    assert Decimal(last["total_usd"]) >= sum(tool_usd)
    assert _leaks(c.events) == []
    # The emulator's experts counted the thread: the third answer knew it was the third question.
    outputs = [
        e["item"]["output"]
        for e in emu.stats.events_received("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert "Expert answer 3 to: And on Mars?" in outputs[-1]


async def test_parallel_calls_and_failing_calls_are_all_answered_and_the_talk_goes_on(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], profile: Path
) -> None:
    both = [
        {"name": "get_ticket_status", "arguments": {"ticket_id": "XR-4892"}},
        {"name": "explode", "arguments": {"ticket_id": "XR-4892"}},
    ]
    turns = [
        {"call": both},
        {"say": "One worked, one failed."},
        {"call": {"name": "lookup", "arguments": {"ticket_id": "XR-4892"}}},  # over its 0.5 s limit
        {"say": "That took too long."},
        {"call": {"name": "get_ticket_status", "arguments": {"ticket": 4892}}},  # not its schema
        {"say": "I asked wrongly."},
    ]
    async with (
        emulator(scenario=parse_scenario({"turns": turns})) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for n, text in enumerate(("two things", "slow one", "bad one"), start=1):
            for event in text_turn(text):
                await c.send(event)
            async with asyncio.timeout(15):
                while c.types().count("response.done") < 2 * n:
                    await c.next()
        received = emu.stats.events_received()
    finished = [
        (e["name"], e["status"])
        for e in c.events
        if e["type"] == "realtalk.tool" and e["status"] != "running"
    ]
    assert sorted(finished[:2]) == [("explode", "error"), ("get_ticket_status", "ok")]
    assert finished[2:] == [("lookup", "timeout"), ("get_ticket_status", "invalid_arguments")]
    # Both outputs of the parallel calls went up before the one follow-up.
    kinds = [
        "output"
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
        else e["type"]
        for e in received
        if e["type"] in ("conversation.item.create", "response.create")
    ]
    assert kinds[:4] == ["conversation.item.create", "response.create", "output", "output"]
    assert kinds[4] == "response.create" and kinds.count("response.create") == 6
    outputs = [
        json.loads(e["item"]["output"])
        for e in received
        if e.get("item", {}).get("type") == "function_call_output"
    ]
    errors = [o["error"] for o in outputs if "error" in o]
    assert len(errors) == 3 and all("Traceback" not in e for e in errors)
    assert any("ticket_id" in e for e in errors)
    assert _leaks(c.events) == []
    assert "I asked wrongly." in json.dumps(c.events[-10:])


async def test_a_slow_server_tool_gets_the_filler_spoken_before_its_answer(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    profile = tmp_path / "agent.toml"
    profile.write_text(
        'tool_filler = "Bear with me."\ntool_filler_after_s = 0.2\n'
        '\n[[tools]]\nfunction = "./tools.py:lookup"\n'
    )
    scenario = parse_scenario(
        {"turns": [{"call": {"name": "lookup", "arguments": {"ticket_id": "XR-4892"}}}]}
    )
    async with (
        emulator(scenario=scenario) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for event in text_turn("look it up"):
            await c.send(event)
        async with asyncio.timeout(15):
            while c.types().count("response.done") < 3:  # the call, the filler, the answer
                await c.next()
    said = [
        part.get("transcript")
        for e in c.events
        if e["type"] == "response.done"
        for item in e["response"]["output"]
        for part in item.get("content", [])
    ]
    assert said[0] == "Bear with me." and "resolved yesterday" in said[1]
    tool = [e for e in c.events if e["type"] == "realtalk.tool"]
    # The filler was spoken while the tool was running: before its "ok".
    filler_done = next(
        i for i, e in enumerate(c.events) if e["type"] == "response.done" and e["response"]["output"]
    )
    assert c.events.index(tool[-1]) > filler_done


async def test_ids_that_are_not_strings_are_refused_not_a_crash(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], profile: Path
) -> None:
    # Found by the fuzzer: a list where an id belongs was looked up in a set of ids (unhashable).
    async with emulator() as emu, gateway(emu, gateway_profile=profile) as gw, client(gw) as c:
        await c.send({"type": "conversation.item.retrieve", "event_id": "evt_1", "item_id": ["item_x"]})
        assert (await c.error())["event_id"] == "evt_1"
        output = {"type": "function_call_output", "call_id": {"id": "call_x"}, "output": "{}"}
        await c.send({"type": "conversation.item.create", "event_id": "evt_2", "item": output})
        assert (await c.error())["event_id"] == "evt_2"
        for event in text_turn("still here?"):
            await c.send(event)
        await c.until("response.done")


async def test_a_blocking_server_tool_does_not_hold_back_the_audio_the_client_receives(
    emulator: Callable[..., Any], gateway: Callable[..., Any], client: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    profile = tmp_path / "agent.toml"
    filler = "Please hold on while I look through the records, this can take a few seconds. " * 2
    profile.write_text(
        f'tool_filler = "{filler.strip()}"\ntool_filler_after_s = 0.05\n'
        '\n[[tools]]\nfunction = "./tools.py:blocking"\n'
    )
    scenario = parse_scenario(
        {"turns": [{"call": {"name": "blocking", "arguments": {"ticket_id": "XR-4892"}}}]}
    )
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[str, float]] = []
    async with (
        emulator(scenario=scenario, pace=8.0) as emu,
        gateway(emu, gateway_profile=profile) as gw,
        client(gw, ui=True) as c,
    ):
        for event in text_turn("look it up"):
            await c.send(event)
        async with asyncio.timeout(15):
            while not any(e["type"] == "realtalk.tool" and e["status"] == "ok" for e in c.events):
                event = await c.next()
                if event["type"] == "response.output_audio.delta":
                    arrivals.append((event["response_id"], loop.time()))
    # The filler streams while the tool blocks a thread of the gateway's process: at the
    # emulator's pace (a 100 ms chunk every ~12 ms), never a gap near the tool's 2 s.
    filler_id = arrivals[0][0]
    times = [t for response_id, t in arrivals if response_id == filler_id]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) > 10 and max(gaps) < 0.5, " ".join(f"{g:.3f}" for g in gaps)
