"""Benchmark of the tools realtalk runs: tool turnaround on the wire, and audio while a tool blocks.

Run: ``.venv/bin/python bench/tools.py`` (about two minutes); ``--quick`` for a smoke run;
``--calls 400`` for more calls per path. Prints a table and writes ``bench/results/tools.json``.

Everything runs on this machine, on 127.0.0.1, through realtalk's own code paths, against the
emulator scripted by a scenario (``realtalk.emulator.scenario``) to call a tool:

* ``emulator``: a child process holding ``realtalk.emulator.Emulator`` (energy VAD, no recogniser,
  tone replies) and, in front of it on the same event loop, a **timing proxy**: a WebSocket relay
  that stamps frames both ways with ``time.perf_counter_ns`` (what the emulator-side wire sees).
  It runs on uvloop (``--emulator-loop``): under asyncio's default loop the sockets that
  ``realtalk.embedded_server`` accepts have no ``TCP_NODELAY`` (it makes its listening socket with
  protocol 0, and asyncio sets the option only on sockets whose protocol is ``IPPROTO_TCP``), so
  Nagle's algorithm holds small frames for the peer's delayed ACK and the emulator's own stream
  shows stalls of about 40 ms that have nothing to do with tools (``--emulator-loop asyncio``
  shows them).
* ``gateway``: a child process running ``realtalk serve``'s app (``create_app`` + ``Gateway``, open
  mode, uvloop as ``serve`` uses), whose profile (``REALTALK_GATEWAY_PROFILE``, written to a
  temporary folder) names the tool functions defined in this file; its upstream is the proxy.
* this process: ``RealtimeSession(tools=ToolRunner([...]))`` (what ``realtalk talk --profile``
  runs), or a raw ``websockets`` client of the gateway.

With two or more cores, the code under test (this process for the session, the gateway process
for the gateway) is pinned to a core of its own, the emulator and the load on the others.

**1. Tool turnaround.** The scenario's turns repeat: the model calls ``lookup`` (a tool that
returns at once), then says "Done."; the emulator streams as fast as it can (pace ``None``). One
sample per call: from ``response.function_call_arguments.done`` to the follow-up
``response.create`` (and, beside it, to the ``function_call_output`` item):

* at the **wire** (both paths): the proxy's send time of the arguments-done frame to the session or
  gateway, to its receive time of the follow-up ``response.create``;
* at the **client** (the session): ``RealtimeSession.on_frame`` hooks, "in" as the frame is read,
  "out" once ``send`` has written the frame to the socket.

The protocol core sends the follow-up only after ``response.done`` (§2.5 D), which the emulator
sends right after the arguments, so every figure includes that frame's arrival. Paths:
``session sync`` / ``session async`` (a sync tool on the runner's thread, an async one on the
loop), and the **baseline** ``session app``: no runner, the app answers ``ToolCallRequested`` in
``on_event`` with ``submit_tool_output`` (the same function, called inline). ``gateway sync`` /
``gateway async``: the gateway's server-side tools; its baseline ``gateway client``: the profile
declares ``lookup`` without running it, so the call goes to the client, which answers at once
(output at the arguments, ``response.create`` at ``response.done``, as a correct client does).
The calls run in sessions of ``--calls-per-session`` (50, a long phone call; then a new session,
as calls end): in one session the client core's per-event work grows with the conversation
(``protocol.conversation.transcript_lines`` rebuilds the whole transcript a dozen times a turn),
which over hundreds of turns measures the transcript, not the tools. The first ``WARMUP_CALLS``
calls of each path are dropped. Each call is checked to get exactly one follow-up
``response.create`` (counted at the proxy). The calls are split into ``--rounds`` (5) that
interleave the paths (the gateways stay up between rounds), so a noisy moment of the machine hits
them all; figures are over all calls, and, as in ``bench/gateway.py``, the median over the rounds
of each round's percentile. Beside them, ``ToolRunner.run`` alone on an idle loop (what the runner
itself costs per call). Target: p50 and p95 under 5 ms.

**2. Audio while a blocking tool runs.** The emulator streams at real-time pace (``--pace``, 1.0)
in ``--chunk-ms`` chunks (20 ms): one ``response.output_audio.delta`` per chunk period. Each rep,
the model calls ``block``: a sync function that sleeps ``BLOCK_S`` (2 s) in its thread; after
``FILLER_AFTER_S`` the session (or gateway) has the filler sentence (3.6 s of audio) spoken, whose audio
streams while the tool blocks. Measured at the client: the gaps between consecutive audio deltas of
the filler response (arrival times, "in" frames). Compared with:

* **baseline**: the same sentence as a plain scripted reply right after, no tool running;
* **control**: the same blocking call made on the event loop (an async tool that calls
  ``time.sleep``), as a runner without its thread would; it starts blocking ``LOOP_BLOCK_AFTER_S``
  into the call, once the filler is streaming, so the stall shows inside one response.

A delta arrives one chunk period after the one before by construction, so the figure is the
largest gap, and how far it runs past one chunk period. Target: no gap over one chunk period,
read as: no delta held back by a chunk period or more (largest gap - period < period); the
baseline's largest gap shows the stream's own jitter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import websockets
from rich.console import Console
from rich.table import Table
from websockets.asyncio.server import ServerConnection

from harness import (
    CPUS,
    Child,
    child,
    figures,
    frame_type,
    pin,
    serve_gateway,
)  # bench/harness.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "tools.json"

THIS_FILE = Path(__file__).resolve()
KEY = "bench-key"
MODEL = "gpt-realtime-1.5"
WARMUP_CALLS = 20
TARGET_TURNAROUND_MS = 5.0
BLOCK_S = 2.0
LOOP_BLOCK_AFTER_S = 0.3  # the control blocks the loop once the filler is streaming
FILLER_AFTER_S = 0.05
# Longer than the block at real-time pace (tone replies: about 0.3 s a word), and no longer.
FILLER = "Please hold on while I look through the records for you."  # 3.6 s of tone audio
TICKET_ARGUMENTS = {"ticket_id": "XR-4892"}
ARGS_DONE: Final = "response.function_call_arguments.done"
_RESPONSE_ID = re.compile(r'"response_id"\s*:\s*"([^"]+)"')


# --- the tools (the gateway's profile names them in this file) ----------------------------------


def lookup_sync(ticket_id: str) -> dict[str, str]:
    """The status of a help-desk ticket (returns at once)."""
    return {"ticket_id": ticket_id, "status": "open"}


async def lookup_async(ticket_id: str) -> dict[str, str]:
    """The status of a help-desk ticket (returns at once)."""
    return {"ticket_id": ticket_id, "status": "open"}


def block_sync(ticket_id: str) -> str:
    """A lookup through a blocking driver: holds its thread for two seconds."""
    time.sleep(BLOCK_S)
    return "found"


async def block_on_loop(ticket_id: str) -> str:
    """The control: the same blocking call made on the event loop."""
    await asyncio.sleep(LOOP_BLOCK_AFTER_S)
    time.sleep(BLOCK_S)  # noqa: ASYNC251 - the control: blocking the loop is the point
    return "found"


# --- the emulator and its timing proxy (child process) --------------------------------------------


class TimingProxy:
    """A WebSocket relay in front of the emulator that stamps each tool call's frames.

    Per connection: the send time of ``response.function_call_arguments.done`` towards the client
    (session or gateway), then the receive time of the ``function_call_output`` item and of the
    ``response.create`` that follows it.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.samples: list[dict[str, Any]] = []

    async def handle(self, downstream: ServerConnection) -> None:
        request = downstream.request
        assert request is not None
        headers = [
            (k, v) for k, v in request.headers.raw_items() if k.lower() in ("authorization", "api-key")
        ]
        async with websockets.connect(
            f"ws://127.0.0.1:{self.upstream_port}{request.path}",
            additional_headers=headers,
            max_size=None,
            compression=None,
            ping_interval=None,
        ) as upstream:
            call: dict[str, int] = {}

            async def down() -> None:
                async for message in upstream:
                    if isinstance(message, str) and len(message) < 4096 and frame_type(message) == ARGS_DONE:
                        call.clear()
                        call["args_ns"] = time.perf_counter_ns()
                    await downstream.send(message)

            async def up() -> None:
                last_item: str | None = None  # the type of the client's latest item
                sample: dict[str, Any] = {}
                async for message in downstream:
                    now_ns = time.perf_counter_ns()
                    if isinstance(message, str) and len(message) < 4096:
                        event = json.loads(message)
                        kind = event.get("type")
                        if kind == "conversation.item.create":
                            last_item = (event.get("item") or {}).get("type")
                            if last_item == "function_call_output" and "args_ns" in call:
                                call.setdefault("output_ns", now_ns)
                        elif kind == "response.create" and last_item == "function_call_output":
                            if "output_ns" in call:
                                sample = {
                                    "output_ms": (call["output_ns"] - call["args_ns"]) / 1e6,
                                    "create_ms": (now_ns - call["args_ns"]) / 1e6,
                                    "follow_ups": 0,
                                }
                                self.samples.append(sample)
                                call.clear()
                            # Any more before the next item would be a second follow-up: counted.
                            sample["follow_ups"] = sample.get("follow_ups", 0) + 1
                    await upstream.send(message)

            tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def run_emulator(pace: float | None, chunk_ms: int, scenario: dict[str, Any]) -> None:
    from realtalk.emulator import Emulator, EmulatorConfig, parse_scenario

    config = EmulatorConfig(
        keys=(KEY,),
        pace=pace,
        audio_chunk_ms=chunk_ms,
        scenario=parse_scenario(scenario),
        vad="energy",
        asr="none",
        tts="tone",
    )
    async with Emulator(config) as emulator:
        proxy = TimingProxy(emulator.port)
        async with websockets.serve(
            proxy.handle, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None
        ) as server:
            proxy_port = next(iter(server.sockets)).getsockname()[1]
            print(f"PORTS {emulator.port} {proxy_port}", flush=True)
            loop = asyncio.get_running_loop()
            while True:  # commands on stdin, until the parent closes it
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    return
                if line.strip() == "stamps":
                    samples, proxy.samples = proxy.samples, []
                    print(json.dumps(samples), flush=True)


# --- the gateway (child process) -------------------------------------------------------------------


async def run_gateway(upstream_port: int, profile: str) -> None:
    await serve_gateway(upstream_port, MODEL, KEY, {"REALTALK_GATEWAY_PROFILE": profile})


def gateway_profile(folder: Path, name: str, tool: str | None, *, filler: bool) -> Path:
    """A profile naming one function of this file as ``tool_name`` (``None``: declared, not run)."""
    tool_name = "block" if tool and tool.startswith("block") else "lookup"
    lines = ['instructions = "You are the help desk."']
    if filler:
        lines += [f'tool_filler = "{FILLER}"', f"tool_filler_after_s = {FILLER_AFTER_S}"]
    lines += ["tool_timeout_s = 10", "", "[[tools]]"]
    if tool is None:
        lines += [
            'type = "function"',
            'name = "lookup"',
            'description = "The status of a help-desk ticket."',
            'parameters = {type = "object", properties = {ticket_id = {type = "string"}}, '
            'required = ["ticket_id"]}',
        ]
    else:
        lines += [f'function = "{THIS_FILE}:{tool}"', f'name = "{tool_name}"']
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- 1. tool turnaround --------------------------------------------------------------------------


@dataclass
class Turnaround:
    path: str
    mode: str
    wire_create_ms: list[float] = field(default_factory=list)
    wire_output_ms: list[float] = field(default_factory=list)
    client_create_ms: list[float] = field(default_factory=list)
    client_output_ms: list[float] = field(default_factory=list)
    follow_ups_per_call: list[int] = field(default_factory=list)
    wire_create_ms_rounds: list[list[float]] = field(default_factory=list)


def _stamps(emulator: Child) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = json.loads(emulator.ask("stamps"))
    return samples


async def _until(event: asyncio.Event, timeout_s: float = 15.0) -> None:
    await asyncio.wait_for(event.wait(), timeout_s)
    event.clear()


async def session_turnaround(
    result: Turnaround, port: int, calls: int, per_session: int, warmup: int
) -> None:
    """Make ``warmup + calls`` calls in sessions of ``per_session``; the client clock's figures go
    to ``result`` (the wire's come from the proxy)."""
    from realtalk.client.credentials import ApiKeyCredential
    from realtalk.client.session import RealtimeSession, SessionEvent
    from realtalk.client.tools import FunctionTool, ToolRunner, tool_definition
    from realtalk.protocol import AgentProfile
    from realtalk.protocol.app_events import ResponseFinished, ToolCallRequested
    from realtalk.protocol.endpoint import resolve_endpoint

    clock = time.perf_counter
    mode = result.mode
    function = {"sync": lookup_sync, "async": lookup_async, "app": lookup_sync}[mode]
    tool = FunctionTool(function, name="lookup")
    runner = None if mode == "app" else ToolRunner([tool])
    call: dict[str, float] = {}
    skip = [warmup]

    def on_frame(direction: str, text: str) -> None:
        now = clock()
        if direction == "in":
            if len(text) < 4096 and frame_type(text) == ARGS_DONE:
                call.clear()
                call["args"] = now
            return
        if "args" not in call:
            return
        event = json.loads(text)  # frames out are small here: no audio is appended
        if event["type"] == "conversation.item.create" and event["item"]["type"] == "function_call_output":
            call.setdefault("output", now)
        elif event["type"] == "response.create" and "output" in call:
            if skip[0]:
                skip[0] -= 1
            else:
                result.client_output_ms.append((call["output"] - call["args"]) * 1000)
                result.client_create_ms.append((now - call["args"]) * 1000)
            del call["args"]

    async def one_session(count: int) -> None:
        session = RealtimeSession(
            resolve_endpoint(f"http://127.0.0.1:{port}", MODEL),
            ApiKeyCredential(KEY, style="bearer"),
            profile=AgentProfile(tools=(tool_definition(tool),), turn_detection=None),
            tools=runner,
            reconnect=False,
        )
        finished = [0]
        target = [0]
        done = asyncio.Event()

        def on_event(event: SessionEvent) -> None:
            if isinstance(event, ToolCallRequested) and mode == "app":
                # The baseline: the app runs the function itself, inline, and answers.
                output = json.dumps(function(**json.loads(event.arguments)))
                session.submit_tool_output(event.call_id, output)
            elif isinstance(event, ResponseFinished):
                finished[0] += 1
                if finished[0] >= target[0]:
                    done.set()

        session.on_frame(on_frame)
        session.on_event(on_event)
        async with session:
            for _ in range(count):
                target[0] = finished[0] + 2  # the call, then the follow-up's reply
                session.send_text("What is the status of ticket X R 4 8 9 2?")
                await _until(done)

    total = warmup + calls
    for start in range(0, total, per_session):
        await one_session(min(per_session, total - start))


async def gateway_turnaround(mode: str, port: int, calls: int, per_session: int) -> None:
    """Make ``calls`` calls through the gateway in sessions of ``per_session`` (timed at the proxy)."""
    url = f"ws://127.0.0.1:{port}/openai/v1/realtime?model={MODEL}"
    turn = [
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the status of ticket XR-4892?"}],
                },
            }
        ),
        json.dumps({"type": "response.create"}),
    ]

    async def one_session(count: int) -> None:
        async with websockets.connect(url, max_size=None, compression=None, ping_interval=None) as ws:
            async with asyncio.timeout(10):
                while frame_type(str(await ws.recv())) != "session.updated":
                    pass
            for _ in range(count):
                for frame in turn:
                    await ws.send(frame)
                responses_done = 0
                async with asyncio.timeout(15):
                    while responses_done < 2:
                        message = await ws.recv()
                        assert isinstance(message, str)
                        kind = frame_type(message)
                        if kind == ARGS_DONE and mode == "client":
                            # The baseline: the client answers the call at once.
                            event = json.loads(message)
                            output = json.dumps(lookup_sync(**json.loads(event["arguments"])))
                            item = {
                                "type": "function_call_output",
                                "call_id": event["call_id"],
                                "output": output,
                            }
                            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
                        elif kind == "response.done":
                            responses_done += 1
                            if mode == "client" and responses_done == 1:
                                await ws.send(json.dumps({"type": "response.create"}))
                        elif kind == "error":
                            raise RuntimeError(f"the gateway sent an error: {message[:300]}")

    for start in range(0, calls, per_session):
        await one_session(min(per_session, calls - start))


async def runner_alone(function: Any, calls: int) -> list[float]:
    """``ToolRunner.run`` by itself on an idle loop: what the runner costs per call, in ms."""
    from realtalk.client.tools import FunctionTool, ToolRunner

    runner = ToolRunner([FunctionTool(function, name="lookup")])
    arguments = json.dumps(TICKET_ARGUMENTS)
    times: list[float] = []
    for _ in range(WARMUP_CALLS + calls):
        started = time.perf_counter()
        outcome = await runner.run("call_bench", "lookup", arguments)
        times.append((time.perf_counter() - started) * 1000)
        assert outcome.status == "ok", outcome
    return times[WARMUP_CALLS:]


def _wire(result: Turnaround, stamps: list[dict[str, Any]], warmup: int) -> None:
    stamps = stamps[warmup:]
    result.wire_create_ms_rounds.append([s["create_ms"] for s in stamps])
    result.wire_create_ms += [s["create_ms"] for s in stamps]
    result.wire_output_ms += [s["output_ms"] for s in stamps]
    result.follow_ups_per_call += [int(s["follow_ups"]) for s in stamps]


# --- 2. audio while a blocking tool runs ---------------------------------------------------------


@dataclass
class AudioRun:
    path: str
    mode: str  # "thread" (the runner) or "loop" (the control)
    chunk_ms: int
    pace: float
    tool_gaps_ms: list[list[float]] = field(default_factory=list)  # per rep, the filler's gaps
    tool_overlap: list[int] = field(default_factory=list)  # per rep, filler deltas while the tool ran
    baseline_gaps_ms: list[list[float]] = field(default_factory=list)


class DeltaLog:
    """Arrival times of audio deltas, by response, each tagged with the phase it started in."""

    def __init__(self) -> None:
        self.phase = ""
        self.by_response: dict[str, list[float]] = {}
        self.phase_of: dict[str, str] = {}
        self.order: list[str] = []

    def frame(self, text: str, now: float) -> None:
        if frame_type(text) != "response.output_audio.delta":
            return
        found = _RESPONSE_ID.search(text, 0, 400)
        if found is None:
            return
        response_id = found[1]
        if response_id not in self.by_response:
            self.by_response[response_id] = []
            self.phase_of[response_id] = self.phase
            self.order.append(response_id)
        self.by_response[response_id].append(now)

    def first_of(self, phase: str) -> list[float]:
        """The deltas of the first response with audio that started in ``phase``."""
        for response_id in self.order:
            if self.phase_of[response_id] == phase:
                return self.by_response[response_id]
        raise RuntimeError(f"no audio in phase {phase!r}")


def _gaps_ms(times: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(times)]


async def session_audio(port: int, mode: str, reps: int, chunk_ms: int, pace: float) -> AudioRun:
    from realtalk.client.credentials import ApiKeyCredential
    from realtalk.client.session import RealtimeSession, SessionEvent
    from realtalk.client.tools import FunctionTool, ToolRunner, tool_definition
    from realtalk.protocol import AgentProfile
    from realtalk.protocol.app_events import ResponseFinished, ToolCallFinished, ToolCallStarted
    from realtalk.protocol.endpoint import resolve_endpoint

    clock = time.perf_counter
    tool = FunctionTool(block_sync if mode == "thread" else block_on_loop, name="block")
    session = RealtimeSession(
        resolve_endpoint(f"http://127.0.0.1:{port}", MODEL),
        ApiKeyCredential(KEY, style="bearer"),
        profile=AgentProfile(tools=(tool_definition(tool),), turn_detection=None),
        tools=ToolRunner([tool], default_timeout_s=10),
        tool_filler=FILLER,
        tool_filler_after_s=FILLER_AFTER_S,
        reconnect=False,
    )
    log = DeltaLog()
    window: dict[str, float] = {}
    finished = [0]
    target = [0]
    done = asyncio.Event()

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, ToolCallStarted):
            window["start"] = clock()
        elif isinstance(event, ToolCallFinished):
            window["end"] = clock()
        elif isinstance(event, ResponseFinished):
            finished[0] += 1
            if finished[0] >= target[0]:
                done.set()

    session.on_frame(lambda direction, text: log.frame(text, clock()) if direction == "in" else None)
    session.on_event(on_event)
    result = AudioRun("session", mode, chunk_ms, pace)
    async with session:
        for rep in range(reps):
            window.clear()
            log.phase = f"tool {rep}"
            target[0] = finished[0] + 3  # the call, the filler, the follow-up's reply
            session.send_text("Look it up.")
            await _until(done, 30)
            filler = log.first_of(log.phase)
            result.tool_gaps_ms.append(_gaps_ms(filler))
            result.tool_overlap.append(sum(window["start"] <= t <= window["end"] for t in filler))
            log.phase = f"baseline {rep}"
            target[0] = finished[0] + 1
            session.send_text("Say it again.")
            await _until(done, 30)
            result.baseline_gaps_ms.append(_gaps_ms(log.first_of(log.phase)))
    return result


async def gateway_audio(port: int, mode: str, reps: int, chunk_ms: int, pace: float) -> AudioRun:
    clock = time.perf_counter
    url = f"ws://127.0.0.1:{port}/openai/v1/realtime?model={MODEL}&realtalk_ui=1"
    result = AudioRun("gateway", mode, chunk_ms, pace)
    log = DeltaLog()

    def turn(text: str) -> list[str]:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return [json.dumps({"type": "conversation.item.create", "item": item}), '{"type":"response.create"}']

    async with websockets.connect(url, max_size=None, compression=None, ping_interval=None) as ws:

        async def until_done(count: int, window: dict[str, float]) -> None:
            seen = 0
            async with asyncio.timeout(30):
                while seen < count:
                    message = await ws.recv()
                    assert isinstance(message, str)
                    now = clock()
                    log.frame(message, now)
                    kind = frame_type(message)
                    if kind == "response.done":
                        seen += 1
                    elif kind == "realtalk.tool":
                        status = json.loads(message)["status"]
                        window["start" if status == "running" else "end"] = now
                    elif kind == "error":
                        raise RuntimeError(f"the gateway sent an error: {message[:300]}")

        async with asyncio.timeout(10):
            while frame_type(str(await ws.recv())) != "session.updated":
                pass
        for rep in range(reps):
            window: dict[str, float] = {}
            log.phase = f"tool {rep}"
            for frame in turn("Look it up."):
                await ws.send(frame)
            await until_done(3, window)  # the call, the filler, the follow-up's reply
            filler = log.first_of(log.phase)
            result.tool_gaps_ms.append(_gaps_ms(filler))
            result.tool_overlap.append(sum(window["start"] <= t <= window["end"] for t in filler))
            log.phase = f"baseline {rep}"
            for frame in turn("Say it again."):
                await ws.send(frame)
            await until_done(1, {})
            result.baseline_gaps_ms.append(_gaps_ms(log.first_of(log.phase)))
    return result


# --- the run -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    lookup_scenario = {
        "turns": [{"call": {"name": "lookup", "arguments": TICKET_ARGUMENTS}}, {"say": "Done."}],
        "after": "repeat",
    }
    session_runs = [Turnaround("session", mode) for mode in ("app", "sync", "async")]
    gateway_tools = {"client": None, "sync": "lookup_sync", "async": "lookup_async"}
    gateway_runs = [Turnaround("gateway", mode) for mode in gateway_tools]
    per_round = max(1, args.calls // args.rounds)
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(
            child(
                THIS_FILE,
                "emulator",
                "none",
                "100",
                json.dumps(lookup_scenario),
                args.emulator_loop,
                under_test=False,
            )
        )
        proxy_port = emulator.ports[1]
        gateways = {
            mode: stack.enter_context(
                child(
                    THIS_FILE,
                    "gateway",
                    str(proxy_port),
                    str(gateway_profile(folder, f"turnaround-{mode}", tool, filler=False)),
                    under_test=True,
                )
            )
            for mode, tool in gateway_tools.items()
        }
        # Rounds interleave the paths, so a noisy moment of the machine hits them all.
        for round_index in range(args.rounds):
            warmup = WARMUP_CALLS if round_index == 0 else 0
            pin(os.getpid(), under_test=True)
            for run in session_runs:
                _stamps(emulator)
                asyncio.run(session_turnaround(run, proxy_port, per_round, args.calls_per_session, warmup))
                _wire(run, _stamps(emulator), warmup)
            # The gateway is under test now: this process is the load, beside the emulator.
            pin(os.getpid(), under_test=False)
            for run in gateway_runs:
                _stamps(emulator)
                port = gateways[run.mode].ports[0]
                asyncio.run(gateway_turnaround(run.mode, port, warmup + per_round, args.calls_per_session))
                _wire(run, _stamps(emulator), warmup)
            print(f"  round {round_index + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    turnarounds = session_runs + gateway_runs
    for run in turnarounds:
        _progress(run)
    pin(os.getpid(), under_test=True)
    alone = {
        "sync": figures(asyncio.run(runner_alone(lookup_sync, args.calls))),
        "async": figures(asyncio.run(runner_alone(lookup_async, args.calls))),
    }

    audio: list[AudioRun] = []
    block_scenario = {
        "turns": [
            {"call": {"name": "block", "arguments": TICKET_ARGUMENTS}},
            {"say": "Done."},
            {"say": FILLER},  # the baseline: the same sentence, no tool running
        ],
        "after": "repeat",
    }
    with child(
        THIS_FILE,
        "emulator",
        str(args.pace),
        str(args.chunk_ms),
        json.dumps(block_scenario),
        args.emulator_loop,
        under_test=False,
    ) as emulator:
        emulator_port = emulator.ports[0]
        pin(os.getpid(), under_test=True)
        for mode in ("thread", "loop"):
            audio_run = asyncio.run(session_audio(emulator_port, mode, args.reps, args.chunk_ms, args.pace))
            audio.append(audio_run)
            _progress_audio(audio_run)
        pin(os.getpid(), under_test=False)
        for mode, tool in (("thread", "block_sync"), ("loop", "block_on_loop")):
            profile = gateway_profile(folder, f"audio-{mode}", tool, filler=True)
            with child(THIS_FILE, "gateway", str(emulator_port), str(profile), under_test=True) as gateway:
                audio_run = asyncio.run(
                    gateway_audio(gateway.ports[0], mode, args.reps, args.chunk_ms, args.pace)
                )
            audio.append(audio_run)
            _progress_audio(audio_run)
    return report(turnarounds, alone, audio, args)


def _progress(run: Turnaround) -> None:
    print(
        f"  {run.path} {run.mode}: {len(run.wire_create_ms)} calls, wire p50 "
        f"{statistics.median(run.wire_create_ms):.3f} ms",
        file=sys.stderr,
        flush=True,
    )


def _progress_audio(run: AudioRun) -> None:
    worst = max(max(g) for g in run.tool_gaps_ms)
    print(f"  {run.path} {run.mode}: largest gap {worst:.1f} ms", file=sys.stderr, flush=True)


def report(
    turnarounds: list[Turnaround],
    alone: dict[str, dict[str, Any]],
    audio: list[AudioRun],
    args: argparse.Namespace,
) -> dict[str, Any]:
    baselines = {"session": "app", "gateway": "client"}
    rows: list[dict[str, Any]] = []
    for run in turnarounds:
        row: dict[str, Any] = {
            "path": run.path,
            "mode": run.mode,
            "baseline": run.mode == baselines[run.path],
            "calls": len(run.wire_create_ms),
            "follow_ups_per_call": sorted(set(run.follow_ups_per_call)),
            "wire_args_done_to_response_create_ms": figures(run.wire_create_ms),
            "wire_args_done_to_output_item_ms": figures(run.wire_output_ms),
            "wire_create_ms_per_round": [
                {q: figures(r)[q] for q in ("n", "p50", "p95", "max")} for r in run.wire_create_ms_rounds
            ],
        }
        row["wire_create_ms_median_of_rounds"] = {
            q: round(statistics.median(r[q] for r in row["wire_create_ms_per_round"]), 4)
            for q in ("p50", "p95")
        }
        if run.client_create_ms:
            row["client_args_done_to_response_create_ms"] = figures(run.client_create_ms)
            row["client_args_done_to_output_item_ms"] = figures(run.client_output_ms)
        rows.append(row)
    for row in rows:
        base = next(r for r in rows if r["path"] == row["path"] and r["baseline"])
        if row is base:
            continue
        mine, theirs = (
            row["wire_args_done_to_response_create_ms"],
            base["wire_args_done_to_response_create_ms"],
        )
        row["added_vs_baseline_ms"] = {q: round(mine[q] - theirs[q], 4) for q in ("p50", "p95")}
        row["ratio_vs_baseline"] = {q: round(mine[q] / theirs[q], 3) for q in ("p50", "p95")}
        wire = row["wire_args_done_to_response_create_ms"]
        row["met"] = wire["p50"] < TARGET_TURNAROUND_MS and wire["p95"] < TARGET_TURNAROUND_MS
        rounds = row["wire_create_ms_median_of_rounds"]
        row["met_median_of_rounds"] = (
            rounds["p50"] < TARGET_TURNAROUND_MS and rounds["p95"] < TARGET_TURNAROUND_MS
        )

    period_ms = args.chunk_ms / args.pace
    audio_rows: list[dict[str, Any]] = []
    for audio_run in audio:
        tool_gaps = [g for rep in audio_run.tool_gaps_ms for g in rep]
        base_gaps = [g for rep in audio_run.baseline_gaps_ms for g in rep]
        largest = max(tool_gaps)
        audio_rows.append(
            {
                "path": audio_run.path,
                "mode": audio_run.mode,
                "reps": len(audio_run.tool_gaps_ms),
                "chunk_period_ms": period_ms,
                "filler_deltas": sum(len(rep) + 1 for rep in audio_run.tool_gaps_ms),
                "filler_deltas_while_tool_ran": audio_run.tool_overlap,
                "gap_during_tool_ms": figures(tool_gaps),
                "largest_gap_during_tool_ms_per_rep": [round(max(rep), 3) for rep in audio_run.tool_gaps_ms],
                "gap_baseline_ms": figures(base_gaps),
                "largest_gap_baseline_ms_per_rep": [round(max(rep), 3) for rep in audio_run.baseline_gaps_ms],
                "largest_gap_over_period_ms": round(largest - period_ms, 3),
                "largest_gap_vs_baseline_ms": round(largest - max(base_gaps), 3),
                "met": largest - period_ms < period_ms,
            }
        )

    table = Table(
        title=f"Tool turnaround: response.function_call_arguments.done → follow-up response.create "
        f"({args.calls} calls per path, ms)"
    )
    for column in (
        "path",
        "tool",
        "wire p50",
        "wire p95",
        "wire p99",
        "p95 rounds",
        "+p50",
        "+p95",
        "client p50",
        "client p95",
        "output p50",
        "< 5 ms (rounds)",
    ):
        table.add_column(column, justify="left" if column in ("path", "tool") else "right", no_wrap=True)
    labels = {
        "app": "baseline: app answers",
        "client": "baseline: client answers",
        "sync": "sync tool, thread",
        "async": "async tool, loop",
    }

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for row in rows:
        wire = row["wire_args_done_to_response_create_ms"]
        client = row.get("client_args_done_to_response_create_ms", {})
        added = row.get("added_vs_baseline_ms", {})
        met = row.get("met")
        table.add_row(
            row["path"],
            labels[row["mode"]],
            ms(wire["p50"]),
            ms(wire["p95"]),
            ms(wire["p99"]),
            ms(row["wire_create_ms_median_of_rounds"]["p95"]),
            ms(added.get("p50")),
            ms(added.get("p95")),
            ms(client.get("p50")),
            ms(client.get("p95")),
            ms(row["wire_args_done_to_output_item_ms"]["p50"]),
            ""
            if met is None
            else f"{'yes' if met else 'NO'} ({'yes' if row['met_median_of_rounds'] else 'NO'})",
        )
    gaps = Table(
        title=f"Audio deltas while a tool blocks for {BLOCK_S:g} s ({args.chunk_ms} ms chunks at pace "
        f"{args.pace:g}: one every {period_ms:g} ms; {args.reps} reps)"
    )
    for column in (
        "path",
        "blocking call runs",
        "deltas (while tool ran)",
        "largest gap",
        "p99 gap",
        "baseline largest",
        "over period",
        "target",
    ):
        gaps.add_column(column, justify="left" if column in ("path", "blocking call runs") else "right")
    for row in audio_rows:
        gaps.add_row(
            row["path"],
            "on the runner's thread" if row["mode"] == "thread" else "control: on the event loop",
            f"{row['filler_deltas']} ({sum(row['filler_deltas_while_tool_ran'])})",
            f"{row['gap_during_tool_ms']['max']:.1f} ms",
            f"{row['gap_during_tool_ms']['p99']:.1f} ms",
            f"{row['gap_baseline_ms']['max']:.1f} ms",
            f"{row['largest_gap_over_period_ms']:+.1f} ms",
            ("yes" if row["met"] else "NO") if row["mode"] == "thread" else "(control)",
        )
    console = Console(width=max(Console().width, 160))
    console.print(table)
    console.print(
        "wire: at the emulator's side (timing proxy); client: RealtimeSession.on_frame; +p50/+p95: "
        "minus the same path's baseline; output: arguments.done → function_call_output on the wire; "
        "rounds: the median over the rounds of each round's figure"
    )
    console.print(
        "the runner alone (ToolRunner.run on an idle loop, same process): "
        + "; ".join(f"{mode} p50 {f['p50']:.3f} ms, p95 {f['p95']:.3f} ms" for mode, f in alone.items())
    )
    console.print(gaps)
    console.print(
        "deltas: the filler's audio deltas in all reps (those that arrived while the tool ran); "
        "over period: largest gap - chunk period; baseline: the same sentence, no tool running"
    )

    runner_rows = [r for r in rows if not r["baseline"]]
    targets = {
        "turnaround_p50_p95_under_ms": TARGET_TURNAROUND_MS,
        "turnaround_met": all(r["met"] for r in runner_rows),
        "turnaround_met_median_of_rounds": all(r["met_median_of_rounds"] for r in runner_rows),
        "audio_gap": "largest gap - chunk period < chunk period, with the tool on the runner's thread",
        "audio_gap_met": all(r["met"] for r in audio_rows if r["mode"] == "thread"),
    }
    for name, value in targets.items():
        console.print(f"target {name}: {value}")
    return {
        "benchmark": "tools",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": args.load_before,
        },
        "settings": {
            "calls_per_path": args.calls,
            "calls_per_session": args.calls_per_session,
            "rounds": args.rounds,
            "warmup_calls": WARMUP_CALLS,
            "turnaround_emulator_pace": None,
            "audio_emulator_pace": args.pace,
            "audio_chunk_ms": args.chunk_ms,
            "audio_reps": args.reps,
            "block_s": BLOCK_S,
            "loop_block_after_s": LOOP_BLOCK_AFTER_S,
            "filler_after_s": FILLER_AFTER_S,
            "filler": FILLER,
            "pinning": (
                {"under_test": [CPUS[-1]], "emulator_and_load": list(CPUS[:-1])} if len(CPUS) >= 2 else None
            ),
            "session_event_loop": "asyncio (as realtalk talk)",
            "emulator_event_loop": args.emulator_loop,
            "gateway_event_loop": "uvloop where installed (as realtalk serve)",
        },
        "turnaround": rows,
        "runner_alone_ms": alone,
        "audio_while_tool_blocks": audio_rows,
        "targets": targets,
        "bench_wall_s": round(time.perf_counter() - args.started, 1),
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _loop_factory(name: str) -> Any:
    from realtalk.cli.serve import event_loop_factory

    return event_loop_factory() if name == "uvloop" else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--calls", type=int, default=250, help="measured tool calls per path (after 20 warm-up)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds that interleave the paths (calls split between them)"
    )
    parser.add_argument(
        "--calls-per-session",
        type=int,
        default=50,
        help="tool calls per session (a new session after that many, as a call ends)",
    )
    parser.add_argument("--reps", type=int, default=3, help="blocking-tool reps per path and mode")
    parser.add_argument("--pace", type=float, default=1.0, help="emulator pace for the audio measurement")
    parser.add_argument(
        "--chunk-ms", type=int, default=20, help="emulator audio chunk for the audio measurement"
    )
    parser.add_argument(
        "--emulator-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the emulator's event loop (asyncio: its sockets lack TCP_NODELAY, see above)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 calls, 1 round, 1 rep")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "emulator":
            pace, chunk_ms, scenario, loop = rest
            emulator = run_emulator(
                None if pace == "none" else float(pace), int(chunk_ms), json.loads(scenario)
            )
            with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
                runner.run(emulator)
        elif role == "gateway":
            with asyncio.Runner(loop_factory=_loop_factory("uvloop")) as runner:
                runner.run(run_gateway(int(rest[0]), rest[1]))
        return
    if args.quick:
        args.calls, args.reps, args.rounds = 30, 1, 1
    args.started = time.perf_counter()
    args.load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as folder:
        results = measure(args, Path(folder))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output} in {results['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
