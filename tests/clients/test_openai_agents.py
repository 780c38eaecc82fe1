"""openai-agents (``RealtimeAgent`` + ``RealtimeRunner``), configured for Azure, through the gateway.

The Azure configuration is the one openai-agents documents for Azure OpenAI: the resource's
``/openai/v1/realtime?model=<deployment>`` URL and an ``api-key`` header (``headers`` replaces the
bearer the library would send), the deployment as ``model_name``, and tracing off (OpenAI's
tracing is a platform feature, not an Azure one). openai-agents sends ``conversation.item.retrieve``
after every input transcript: the gateway must answer it, not refuse it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents import function_tool, set_tracing_disabled
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

from realtalk.emulator import parse_scenario
from realtalk.gateway import Gateway

from .conftest import (
    API_KEY,
    DEPLOYMENT,
    OPEN_FORMATS,
    TURN_TIMEOUT_S,
    fixture_pcm,
    realtime_url,
    session_updates,
)

# The SDK's own trace export goes to OpenAI's platform: nothing may leave 127.0.0.1.
set_tracing_disabled(True)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_REPLY = "It is seven degrees in Oslo."


class Recorder:
    """Everything a ``RealtimeSession`` reports, read in the background as an application would."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.events: list[Any] = []
        self.server_events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.session:
            self.events.append(event)
            if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                self.server_events.append(event.data.data)
            self._changed.set()

    async def until(self, done: Any, timeout_s: float = TURN_TIMEOUT_S) -> None:
        """Wait until ``done(self)`` holds."""
        try:
            async with asyncio.timeout(timeout_s):
                while not done(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out; server events: {self.server_types()}") from None

    def server_types(self) -> list[str]:
        return [event["type"] for event in self.server_events]

    def errors(self) -> list[Any]:
        """The errors the library reported (its ``error`` events), as the library parsed them."""
        return [event.error for event in self.events if event.type == "error"]

    def audio_bytes(self) -> int:
        return sum(len(event.audio.data) for event in self.events if event.type == "audio")

    def assistant_transcripts(self) -> list[str]:
        history = _latest_history(self.events)
        return [
            part.transcript or ""
            for item in history
            if item.type == "message" and item.role == "assistant"
            for part in item.content
            if part.type == "audio"
        ]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _latest_history(events: list[Any]) -> list[Any]:
    for event in reversed(events):
        if event.type == "history_updated":
            return list(event.history)
    return []


def _session_update_refusals(errors: list[Any]) -> list[Any]:
    return [e for e in errors if (getattr(e, "param", None) or "").startswith("session.")]


def _other_errors(errors: list[Any]) -> list[Any]:
    """Errors other than the refusal of openai-agents' own ``session.update`` (see the xfail below)."""
    refusals = _session_update_refusals(errors)
    return [e for e in errors if e not in refusals]


@asynccontextmanager
async def azure_session(gw: Gateway, agent: RealtimeAgent) -> AsyncIterator[Recorder]:
    """``RealtimeRunner(agent).run(...)`` as documented for Azure OpenAI, pointed at the gateway."""
    runner = RealtimeRunner(agent, config={"tracing_disabled": True})
    session = await runner.run(
        model_config={
            "url": realtime_url(gw),
            "headers": {"api-key": API_KEY},
            "initial_model_settings": {"model_name": DEPLOYMENT},
        }
    )
    async with session:
        recorder = Recorder(session)
        try:
            yield recorder
        finally:
            await recorder.close()


async def _speak(session: RealtimeSession, pcm: bytes, chunk_ms: int = 100) -> None:
    step = chunk_ms * 48
    for offset in range(0, len(pcm), step):
        await session.send_audio(pcm[offset : offset + step])


async def test_openai_agents_voice_turns_and_its_item_retrieve_get_answers(stack) -> None:
    async with stack() as (emu, gw), azure_session(gw, RealtimeAgent(name="assistant")) as rec:
        await _speak(rec.session, fixture_pcm("question"))
        await rec.until(lambda r: "response.done" in r.server_types())
        # openai-agents retrieves its latest assistant item after each input transcript: the second
        # turn's transcript makes it retrieve the first reply.
        await _speak(rec.session, fixture_pcm("question"))

        def retrieves() -> list[dict[str, Any]]:
            return emu.stats.events_received("conversation.item.retrieve")

        await rec.until(
            lambda r: (
                r.server_types().count("response.done") >= 2
                and 0 < r.server_types().count("conversation.item.retrieved") == len(retrieves())
            )
        )

        types = rec.server_types()
        assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.committed")
        assert types.count("conversation.item.input_audio_transcription.completed") == 2
        # The retrieve reached the emulator and came back answered, with no refusal from the gateway.
        retrieved = [e["item"] for e in rec.server_events if e["type"] == "conversation.item.retrieved"]
        assert [e["item_id"] for e in retrieves()] == [item["id"] for item in retrieved]
        assert {item["role"] for item in retrieved} == {"assistant"}
        assert _other_errors(rec.errors()) == []
        # The turns as the library reports them: the replies' audio and their transcripts.
        done = [e for e in rec.server_events if e["type"] == "response.done"]
        assert [e["response"]["status"] for e in done] == ["completed", "completed"]
        assert rec.audio_bytes() > 2 * 24_000
        # (The first reply's transcript may be cut: openai-agents truncates it at the second turn's
        # speech_started, as if it had played in real time.)
        transcripts = rec.assistant_transcripts()
        assert len(transcripts) == 2 and transcripts[-1].strip()


async def test_openai_agents_calls_a_tool_and_answers_with_its_output(stack) -> None:
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return json.dumps({"city": city, "celsius": 7})

    scenario = parse_scenario(
        {"turns": [{"call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}, {"say": WEATHER_REPLY}]}
    )
    agent = RealtimeAgent(name="assistant", tools=[get_weather])
    async with (
        stack(client_adjustable=OPEN_FORMATS, tools=[WEATHER_TOOL], scenario=scenario) as (emu, gw),
        azure_session(gw, agent) as rec,
    ):
        await rec.session.send_message("What is the weather in Oslo?")
        await rec.until(lambda r: r.server_types().count("response.done") >= 2)

        assert calls == ["Oslo"]
        kinds = [event.type for event in rec.events]
        assert kinds.index("tool_start") < kinds.index("tool_end")
        outputs = [
            e["item"]
            for e in emu.stats.events_received("conversation.item.create")
            if e["item"]["type"] == "function_call_output"
        ]
        assert [json.loads(item["output"]) for item in outputs] == [{"city": "Oslo", "celsius": 7}]
        assert WEATHER_REPLY in rec.assistant_transcripts()
        assert rec.audio_bytes() > 24_000
        assert _other_errors(rec.errors()) == []


async def test_openai_agents_session_update_is_accepted_and_applied(stack) -> None:
    agent = RealtimeAgent(name="assistant")
    async with stack() as (emu, gw), azure_session(gw, agent) as rec:
        await rec.session.send_message("hello")
        await rec.until(lambda r: "response.done" in r.server_types())

        assert [str(e) for e in rec.errors()] == []
        client_updates = session_updates(emu)[1:]  # the first is the gateway's profile
        voices = [u["session"].get("audio", {}).get("output", {}).get("voice") for u in client_updates]
        assert "ash" in voices  # openai-agents' default voice reached the upstream
