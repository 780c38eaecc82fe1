"""Tools run by ``RealtimeSession`` (what ``realtalk talk --profile`` uses), against the emulator.

Each test scripts the emulated model with a scenario (which tool it calls, with what) and checks
the wire as the emulator received it: the output items, and how many ``response.create`` followed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.delegation import DelegationSettings, DelegationTool
from realtalk.client.session import RealtimeSession, SessionEvent
from realtalk.client.tools import FunctionTool, Tool, ToolRunner, tool_definition
from realtalk.emulator.config import EmulatorConfig
from realtalk.emulator.runner import Emulator
from realtalk.emulator.scenario import parse_scenario
from realtalk.protocol import AgentProfile
from realtalk.protocol.app_events import (
    AudioChunk,
    ResponseFinished,
    ToolCallFinished,
    ToolCallsCancelled,
    ToolCallStarted,
    TranscriptUpdated,
)
from realtalk.protocol.client import DEFAULT_TOOL_FILLER
from realtalk.protocol.endpoint import resolve_endpoint

KEY = "test-key"
TICKETS = {"XR-4892": "open, waiting for the network team"}


def get_ticket_status(ticket_id: str) -> dict[str, str]:
    """The status of a help-desk ticket."""
    return {"ticket_id": ticket_id, "status": TICKETS.get(ticket_id, "unknown")}


async def get_room_rate(room_type: str) -> dict[str, Any]:
    """Tonight's rate of a room type."""
    await asyncio.sleep(0.05)
    return {"room_type": room_type, "usd": 189}


def explode(ticket_id: str) -> str:
    """A tool with a bug."""
    raise RuntimeError("database password rejected")


@dataclass
class Rig:
    emulator: Emulator
    session: RealtimeSession
    events: list[SessionEvent] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return self.emulator.stats.events_received(event_type)

    def received_types(self) -> list[str]:
        return [
            e["type"]
            for e in self.emulator.stats.events_received()
            if e["type"] != "input_audio_buffer.append"
        ]

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the condition spans the session and the emulator
                await asyncio.sleep(0.01)

    def outputs(self) -> list[dict[str, Any]]:
        items = [e["item"] for e in self.received("conversation.item.create")]
        return [item for item in items if item.get("type") == "function_call_output"]

    def transcript(self) -> str:
        updates = self.of(TranscriptUpdated)
        return " ".join(line.text for line in updates[-1].lines) if updates else ""


@asynccontextmanager
async def rig(
    tools: list[Tool], turns: list[dict[str, Any]], *, filler_after_s: float = 5.0, **session: Any
) -> AsyncIterator[Rig]:
    scenario = parse_scenario({"turns": turns})
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=8.0, scenario=scenario, tts="tone")) as emu:
        profile = AgentProfile(tools=tuple(tool_definition(tool) for tool in tools), turn_detection=None)
        rt = RealtimeSession(
            resolve_endpoint(emu.http_base_url, "gpt-realtime-1.5"),
            ApiKeyCredential(KEY, style="bearer"),
            profile=profile,
            tools=ToolRunner(tools, default_timeout_s=session.pop("timeout_s", 5.0)),
            tool_filler_after_s=filler_after_s,
            **session,
        )
        result = Rig(emu, rt)
        rt.on_event(result.events.append)
        async with rt:
            yield result


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


async def test_a_tool_call_runs_once_and_its_output_reaches_the_model_with_one_follow_up() -> None:
    async with rig(
        [FunctionTool(get_ticket_status)], [{"call": _call("get_ticket_status", ticket_id="XR-4892")}]
    ) as r:
        r.session.send_text("What is the status of ticket X R 4 8 9 2?")
        await r.until(lambda: len(r.of(ResponseFinished)) >= 2)
        await asyncio.sleep(0.3)  # time for a second, wrong follow-up to show
        [output] = r.outputs()
        assert json.loads(output["output"]) == {"ticket_id": "XR-4892", "status": TICKETS["XR-4892"]}
        types = r.received_types()
        # The user's text and its response, then the output and exactly one follow-up create.
        assert types[-2:] == ["conversation.item.create", "response.create"]
        assert types.count("response.create") == 2
        [finished] = r.of(ToolCallFinished)
        assert (finished.name, finished.status) == ("get_ticket_status", "ok")
        assert [e.name for e in r.of(ToolCallStarted)] == ["get_ticket_status"]
        assert "open, waiting for the network team" in r.transcript()  # the emulator read it back


async def test_two_parallel_calls_are_both_answered_before_the_one_follow_up() -> None:
    tools: list[Tool] = [FunctionTool(get_ticket_status), FunctionTool(get_room_rate)]
    turns = [
        {"call": [_call("get_ticket_status", ticket_id="XR-4892"), _call("get_room_rate", room_type="king")]}
    ]
    async with rig(tools, turns) as r:
        r.session.send_text("Two things at once, please.")
        await r.until(lambda: len(r.of(ResponseFinished)) >= 2)
        await asyncio.sleep(0.3)
        types = r.received_types()
        assert types[-3:] == ["conversation.item.create", "conversation.item.create", "response.create"]
        assert types.count("response.create") == 2
        assert {json.loads(o["output"]).get("usd") for o in r.outputs()} == {None, 189}


async def test_a_tool_that_raises_times_out_or_gets_bad_arguments_gets_an_error_output_and_talk_goes_on() -> (
    None
):
    def slow(ticket_id: str) -> str:
        """Never answers in time."""
        time.sleep(1.0)
        return "late"

    tools: list[Tool] = [
        FunctionTool(explode),
        FunctionTool(slow, timeout_s=0.2),
        FunctionTool(get_ticket_status),
    ]
    turns = [
        {"call": _call("explode", ticket_id="XR-4892")},
        {"say": "Sorry, that failed."},
        {"call": _call("slow", ticket_id="XR-4892")},
        {"say": "Sorry, that took too long."},
        {"call": {"name": "get_ticket_status", "arguments": {"ticket": 4892}}},
        {"say": "Sorry, I asked wrongly."},
        {"say": "Still here."},
    ]
    async with rig(tools, turns) as r:
        for text in ("one", "two", "three"):
            done = len(r.of(ResponseFinished))
            r.session.send_text(text)
            await r.until(lambda done=done: len(r.of(ResponseFinished)) >= done + 2)
        r.session.send_text("are you there")
        await r.until(lambda: "Still here." in r.transcript())
        statuses = [e.status for e in r.of(ToolCallFinished)]
        assert statuses == ["error", "timeout", "invalid_arguments"]
        errors = [json.loads(o["output"])["error"] for o in r.outputs()]
        assert "RuntimeError" in errors[0]
        assert "Traceback" not in " ".join(errors)
        assert "ticket_id" in errors[2]


async def test_a_barge_in_during_a_slow_tool_cancels_it_and_no_stale_output_is_sent() -> None:
    cancelled = threading.Event()

    async def lookup(ticket_id: str) -> str:
        """A slow lookup."""
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    async with rig([FunctionTool(lookup)], [{"call": _call("lookup", ticket_id="XR-4892")}]) as r:
        r.session.send_text("Look it up.")
        await r.until(lambda: bool(r.of(ToolCallStarted)) and bool(r.of(ResponseFinished)))
        r.session.interrupt()  # what a key press, or the server's speech_started, does
        await r.until(cancelled.is_set, timeout_s=5)
        await asyncio.sleep(0.3)
        assert r.of(ToolCallsCancelled) == [
            ToolCallsCancelled((r.of(ToolCallStarted)[0].call_id,), "interrupted")
        ]
        assert [e.status for e in r.of(ToolCallFinished)] == ["cancelled"]
        assert r.outputs() == []
        assert r.received_types().count("response.create") == 1, "only the text turn's own"


async def test_a_slow_tool_gets_the_filler_spoken_while_it_runs_then_the_answer() -> None:
    async def lookup(ticket_id: str) -> str:
        """A lookup that takes a while."""
        await asyncio.sleep(1.0)
        return "resolved"

    async with rig(
        [FunctionTool(lookup)], [{"call": _call("lookup", ticket_id="XR-4892")}], filler_after_s=0.2
    ) as r:
        r.session.send_text("Look it up.")
        await r.until(lambda: "resolved" in r.transcript())
        creates = r.received("response.create")
        assert [c.get("response", {}).get("tool_choice") for c in creates][-2:] == ["none", None]
        assert DEFAULT_TOOL_FILLER in r.transcript()
        assert r.transcript().index(DEFAULT_TOOL_FILLER) < r.transcript().index("resolved")


async def test_a_blocking_tool_does_not_hold_back_audio_deltas() -> None:
    def blocking(ticket_id: str) -> str:
        """Blocks its thread for a while (a synchronous database driver)."""
        time.sleep(2.0)
        return "done"

    # The filler is spoken while the tool blocks its thread: its audio must flow all the same.
    filler = "Please hold on while I look through the records, this can take a few seconds. " * 2
    arrivals: list[tuple[str, float]] = []  # (response id, when its audio delta arrived)
    async with rig(
        [FunctionTool(blocking)],
        [{"call": _call("blocking", ticket_id="XR-4892")}],
        filler_after_s=0.05,
        tool_filler=filler,
    ) as r:
        r.session.on_event(
            lambda e: (
                arrivals.append((e.response_id, time.monotonic())) if isinstance(e, AudioChunk) else None
            )
        )
        r.session.send_text("Go.")
        await r.until(lambda: any(e.status == "ok" for e in r.of(ToolCallFinished)))
        during = list(arrivals)
    # The emulator sends a reply's audio at a steady pace (8 x real time: a 100 ms chunk every
    # ~12 ms); a pump held up by the tool would show as a gap between two deltas of the filler as
    # long as the tool (2 s). The bound leaves room for a busy machine's scheduling (bench/tools.py
    # measures the gap itself against the chunk period).
    filler_id = during[0][0]
    times = [t for response_id, t in during if response_id == filler_id]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) > 10, "the filler's audio arrived while the tool was running"
    assert max(gaps) < 0.5, " ".join(f"{g:.3f}" for g in gaps)


async def test_delegation_chains_three_questions_in_one_thread_and_its_cost_is_in_the_session_total() -> None:
    questions = ["Why is the sky blue?", "And at sunset?", "And on Mars?"]
    turns = [{"call": _call("ask_expert", question=q)} for q in questions]
    scenario = parse_scenario({"turns": [turn for t in turns for turn in (t, {"echo": True})]})
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=8.0, scenario=scenario, tts="tone")) as emu:
        endpoint = resolve_endpoint(emu.http_base_url, "gpt-realtime-1.5")
        credential = ApiKeyCredential(KEY, style="bearer")
        expert = DelegationTool(
            DelegationSettings(deployment="gpt-5-mini"),
            rest_base_url=endpoint.rest_base_url,
            credential=credential,
        )
        rt = RealtimeSession(
            endpoint,
            credential,
            profile=AgentProfile(tools=(tool_definition(expert),), turn_detection=None),
            tools=ToolRunner([expert]),
        )
        r = Rig(emu, rt)
        rt.on_event(r.events.append)
        async with rt:
            for n, question in enumerate(questions, start=1):
                rt.send_text(question)
                await r.until(lambda n=n: len(r.of(ResponseFinished)) >= 2 * n)
            total = rt.total_cost_usd
            tools_usd = rt.protocol.costs.total.tools_usd
        await expert.aclose()
    assert "Expert answer 3 to: And on Mars?" in r.transcript()
    assert expert.questions == 3 and tools_usd == expert.cost_usd > 0
    finished = r.of(ToolCallFinished)
    assert [f.status for f in finished] == ["ok"] * 3 and finished[2].cost_usd > finished[0].cost_usd
    assert total > tools_usd  # the realtime turns are in it too
