"""Shared machinery of the example tests: each example runs through its real profile file.

``talk_session`` wires a profile into ``RealtimeSession`` the way ``realtalk talk --profile`` does
(its tools, its delegation tool against the same resource, its filler settings) in front of an
emulator whose model a scenario scripts; ``gateway_client`` puts ``realtalk serve``'s gateway,
with the profile, between a raw WebSocket client and the emulator. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from realtalk.client.agent_file import AgentFile, load_agent_file
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.delegation import DelegationTool
from realtalk.client.session import RealtimeSession, SessionEvent
from realtalk.client.tools import FunctionTool, Tool, ToolRunner
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines, parse_scenario
from realtalk.gateway import Gateway, create_app
from realtalk.protocol.app_events import ResponseFinished, ToolCallFinished, TranscriptUpdated
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.settings import Settings

EXAMPLES = Path(__file__).parents[2] / "examples"
KEY = "examples-test-key-0123456789"
MODEL = "gpt-realtime-1.5"


def load_example(name: str) -> AgentFile:
    """``examples/<name>/agent.toml``, loaded as ``talk`` and ``serve`` load it."""
    return load_agent_file(EXAMPLES / name / "agent.toml", secret=lambda _: None)


def tools_module(agent: AgentFile) -> ModuleType:
    """The module the profile's ``./tools.py`` was imported as (the very one its tools run in)."""
    function = next(tool for tool in agent.tools if isinstance(tool, FunctionTool)).function
    return sys.modules[function.__module__]


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No example may leave an error in the log (a traceback of a tool, the session or the gateway)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [
        r for phase in ("call", "teardown") for r in caplog.get_records(phase) if r.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture(scope="session")
def engines() -> Engines:
    """Energy VAD, no recogniser, tone voice: the examples are driven by text turns."""
    return load_engines("energy", "none", "tone")


@dataclass
class Talk:
    """A running session of an example's profile, and the emulator behind it."""

    emulator: Emulator
    session: RealtimeSession
    delegation: DelegationTool | None
    events: list[SessionEvent] = field(default_factory=list)

    async def say(self, text: str, *, responses: int, timeout_s: float = 20.0) -> None:
        """Send a text turn and wait until ``responses`` more responses have finished (a tool call
        takes two: the one that calls, and the follow-up that reads the output)."""
        wanted = self.responses_finished() + responses
        self.session.send_text(text)
        async with asyncio.timeout(timeout_s):
            while self.responses_finished() < wanted:  # noqa: ASYNC110 - events arrive by callback
                await asyncio.sleep(0.01)

    def responses_finished(self) -> int:
        return sum(isinstance(e, ResponseFinished) for e in self.events)

    def outputs(self) -> list[dict[str, Any]]:
        """The ``function_call_output`` items the emulated model received, decoded, in order."""
        items = [e["item"] for e in self.emulator.stats.events_received("conversation.item.create")]
        return [json.loads(i["output"]) for i in items if i.get("type") == "function_call_output"]

    def finished(self) -> list[tuple[str, str]]:
        """``(tool name, status)`` of every call that ended."""
        return [(e.name, e.status) for e in self.events if isinstance(e, ToolCallFinished)]

    def transcript(self) -> str:
        updates = [e for e in self.events if isinstance(e, TranscriptUpdated)]
        return "\n".join(line.text for line in updates[-1].lines) if updates else ""


@asynccontextmanager
async def talk_session(agent: AgentFile, scenario: dict[str, Any], engines: Engines) -> AsyncIterator[Talk]:
    """The profile in a ``RealtimeSession``, wired as ``realtalk talk --profile`` wires it."""
    config = EmulatorConfig(keys=(KEY,), pace=40.0, scenario=parse_scenario(scenario))
    async with Emulator(config, engines=engines) as emu:
        endpoint = resolve_endpoint(emu.http_base_url, MODEL)
        credential = ApiKeyCredential(KEY)
        tools: list[Tool] = list(agent.tools)
        delegation = None
        if agent.delegate is not None:
            delegation = DelegationTool(
                agent.delegate, rest_base_url=endpoint.rest_base_url, credential=credential
            )
            tools.append(delegation)
        session = RealtimeSession(
            endpoint,
            credential,
            profile=agent.agent,
            tools=ToolRunner(tools, default_timeout_s=agent.tool_settings.timeout_s),
            tool_filler=agent.tool_settings.filler,
            tool_filler_after_s=agent.tool_settings.filler_after_s,
        )
        talk = Talk(emu, session, delegation)
        session.on_event(talk.events.append)
        try:
            async with session:
                yield talk
        finally:
            if delegation is not None:
                await delegation.aclose()


class GatewayClient:
    """A raw WebSocket client of the gateway: every event it was sent, decoded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def text_turn(self, text: str) -> None:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await self.ws.send(json.dumps({"type": "response.create"}))

    async def until_responses_done(self, count: int, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while [e["type"] for e in self.events].count("response.done") < count:
                self.events.append(json.loads(await self.ws.recv()))


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    """A stand-in for the browser UI's folder (the gateway serves it; no test reads it)."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>realtalk</title>")
    return static


@asynccontextmanager
async def gateway_client(
    profile: Path, scenario: dict[str, Any], engines: Engines, static_dir: Path
) -> AsyncIterator[tuple[Emulator, GatewayClient]]:
    """``realtalk serve --profile <profile>`` in front of a scripted emulator, and a client of it."""
    config = EmulatorConfig(pace=40.0, scenario=parse_scenario(scenario))
    async with Emulator(config, engines=engines) as emu:
        settings = Settings(
            _env_file=None,
            azure_openai_endpoint=emu.http_base_url,
            azure_openai_deployment_name=MODEL,
            gateway_port=0,
            gateway_profile=profile,
        )
        app = create_app(settings, static_dir=static_dir, emulator_engines=engines)
        async with (
            Gateway(app) as gw,
            connect(f"{gw.websocket_base_url}/realtime?model={MODEL}", close_timeout=1.0) as ws,
        ):
            yield emu, GatewayClient(ws)
