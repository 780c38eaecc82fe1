"""Calls without WebRTC: the playout hub, the sideband WebSocket (``?call_id=``) and hangup.

A call is made here the way the SIP simulation makes one (``CallRegistry.create`` and
``Call.start_session``); a small paced loop stands in for its media leg: 20 ms of caller audio in
(``feed_pcm24``), 20 ms of agent audio out (``next_output_frame``), in real time. The agent's voice
is a continuous tone, so every sample the hub hands over while a reply plays is non-zero and the
test can count what was played without asking the hub.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.emulator import Emulator, Engines, parse_scenario
from realtalk.emulator.calls import FRAME_BYTES, Call, CallRegistry

from .conftest import KEY, MANIFEST, SERVER_EVENTS, fixture_pcm, validate_server_event

LONG_REPLY = " ".join(["This is a long answer that keeps going so that the caller can interrupt it."] * 4)


class ContinuousTone:
    """A synthesiser with no gaps: 80 ms of a 440 Hz tone per word."""

    name = "continuous-tone"

    def synthesize(self, text: str, *, voice: str = "marin", speed: float = 1.0) -> bytes:
        samples = len(text.split()) * WIRE_SAMPLE_RATE_HZ * 80 // 1000
        t = np.arange(samples) / WIRE_SAMPLE_RATE_HZ
        tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767
        tone[np.abs(tone) < 1] = 1  # no zero sample: "non-zero" means "agent audio"
        return tone.astype("<i2").tobytes()


@pytest.fixture
def tone_engines(fast_engines: Engines) -> Engines:
    return dataclasses.replace(fast_engines, synthesizer=ContinuousTone())


def calls_of(emu: Emulator) -> CallRegistry:
    registry: CallRegistry = emu._server.config.app.app.state.emulator.calls  # type: ignore[union-attr]
    return registry


def check_event(raw: str | bytes) -> dict[str, Any]:
    """Strict SDK validation (the DTMF event has no event_id in the SDK's type)."""
    data: dict[str, Any] = json.loads(raw)
    if data.get("type") == "input_audio_buffer.dtmf_event_received":
        model = SERVER_EVENTS.validate_json(raw, strict=True)
        assert not model.model_extra, model.model_extra
        return data
    return validate_server_event(raw)


class Recorder:
    """A CallChannel kept in the test: every event, validated, and how it was closed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self._changed = asyncio.Event()

    def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(check_event(json.dumps(event)))
        self._changed.set()

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._changed.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def until(self, event_type: str, timeout_s: float = 20.0, after: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for e in self.events[after:] if e["type"] == event_type]
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    def index(self, event_type: str) -> int:
        return self.types().index(event_type)


class FakeLeg:
    """The media leg: caller audio in and agent audio out, 20 ms per tick, in real time."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.caller = bytearray()
        self.played = bytearray()  # everything next_output_frame returned
        self._task: asyncio.Task[None] | None = None
        self._tick = asyncio.Event()

    def say(self, pcm24: bytes) -> None:
        self.caller += pcm24

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        frame = 0
        while not self.call.ended.is_set():
            wait = start + frame * 0.02 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            heard = bytes(self.caller[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
            del self.caller[:FRAME_BYTES]
            await self.call.feed_pcm24(heard)
            self.played += self.call.next_output_frame()
            self._tick.set()
            frame += 1

    async def played_for(self, ms: float, timeout_s: float = 20.0) -> None:
        """Wait until the agent's audio has played for ``ms``."""
        async with asyncio.timeout(timeout_s):
            while self.agent_ms() < ms:
                self._tick.clear()
                await self._tick.wait()

    def agent_ms(self) -> float:
        """The agent audio played: from its first non-zero sample to its last."""
        samples = np.frombuffer(bytes(self.played), dtype="<i2")
        voiced = np.flatnonzero(samples)
        return 0.0 if not len(voiced) else (voiced[-1] - voiced[0] + 1) / 24

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def active_call(
    emu: Emulator, update: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Call, Recorder]]:
    call = calls_of(emu).create(
        "sip", sip_headers=[{"name": "From", "value": "sip:+14255550100@example.com"}]
    )
    await call.start_session("gpt-realtime-1.5", update)
    channel = Recorder()
    call.attach(channel)
    try:
        yield call, channel
    finally:
        await call.hangup("caller")


async def open_sideband(emu: Emulator, call_id: str, **headers: str) -> Any:
    return await websockets.connect(
        f"{emu.websocket_base_url}/realtime?call_id={call_id}",
        additional_headers=headers or {"api-key": KEY},
        close_timeout=1,
    )


async def next_event(ws: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    return check_event(await asyncio.wait_for(ws.recv(), timeout_s))


async def until(ws: Any, event_type: str, timeout_s: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            event = await next_event(ws)
            if event["type"] == event_type:
                return event


# --- the hub -------------------------------------------------------------------------------------


async def test_a_reply_plays_through_the_hub_with_started_and_stopped_and_no_audio_events(
    emulator, tone_engines
) -> None:
    async with emulator(engines=tone_engines) as emu, active_call(emu) as (call, channel):
        leg = FakeLeg(call)
        leg.start()
        assert channel.events[0]["type"] == "session.created"  # the backlog, first
        await call.receive(json.dumps({"type": "response.create"}))
        done = await channel.until("response.done")
        stopped = await channel.until("output_audio_buffer.stopped")
        started = await channel.until("output_audio_buffer.started")
        response_id = done["response"]["id"]
        assert started["response_id"] == stopped["response_id"] == response_id
        assert channel.index("output_audio_buffer.started") < channel.index("output_audio_buffer.stopped")
        assert channel.index("response.done") < channel.index("output_audio_buffer.stopped")
        assert "response.output_audio.delta" not in channel.types()
        # Everything generated was played, whole: the tone's length (80 ms a word).
        words = len(done["response"]["output"][0]["content"][0]["transcript"].split())
        assert abs(leg.agent_ms() - words * 80) <= 1
        assert emu.stats.calls_created == {"sip": 1}
        record = emu.stats.sessions[-1]
        assert (record.transport, record.call_id) == ("sip", call.id)
        await leg.stop()


async def test_a_barge_in_truncates_the_reply_where_the_hub_stopped_playing(emulator, tone_engines) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}, {"say": "Yes?"}]})
    async with emulator(engines=tone_engines, scenario=scenario) as emu, active_call(emu) as (call, channel):
        leg = FakeLeg(call)
        leg.start()
        await call.receive(json.dumps({"type": "response.create"}))
        started = await channel.until("output_audio_buffer.started")
        item_id = (await channel.until("response.output_item.added"))["item"]["id"]
        await leg.played_for(600)  # the reply has played for a while
        leg.say(fixture_pcm("stop"))
        truncated = await channel.until("conversation.item.truncated")
        cleared = await channel.until("output_audio_buffer.cleared")
        assert truncated["item_id"] == item_id
        assert cleared["response_id"] == started["response_id"]
        types = channel.types()
        assert (
            types.index("input_audio_buffer.speech_started")
            < types.index("conversation.item.truncated")
            < types.index("output_audio_buffer.cleared")
        )
        assert "output_audio_buffer.stopped" not in types[: types.index("output_audio_buffer.cleared")]
        # The cut is where the agent's audio stopped coming out of the hub: within one frame.
        assert abs(truncated["audio_end_ms"] - leg.agent_ms()) <= 20
        assert 600 <= truncated["audio_end_ms"] < len(LONG_REPLY.split()) * 80
        # The server dropped the transcript of what was not heard; the item keeps what was played.
        await call.receive(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
        item = (await channel.until("conversation.item.retrieved"))["item"]
        assert item["content"][0]["transcript"] is None
        # The caller's turn goes on: a reply to it plays.
        second = await channel.until(
            "output_audio_buffer.stopped", after=channel.index("output_audio_buffer.cleared")
        )
        assert second["response_id"] != started["response_id"]
        await leg.stop()


async def test_g711_calls_play_and_truncate_in_the_items_own_milliseconds(emulator, tone_engines) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    update = {
        "type": "realtime",
        "audio": {
            # Telephone-band audio has weaker consonants: bridge the gaps between words.
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            },
            "output": {"format": {"type": "audio/pcmu"}},
        },
    }
    async with (
        emulator(engines=tone_engines, scenario=scenario) as emu,
        active_call(emu, update) as (call, channel),
    ):
        assert channel.events[0]["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        leg = FakeLeg(call)
        leg.start()
        # The caller's speech reaches the session through the G.711 conversion, and starts the reply.
        leg.say(fixture_pcm("question"))
        started = await channel.until("input_audio_buffer.speech_started")
        stopped = await channel.until("input_audio_buffer.speech_stopped")
        assert abs(started["audio_start_ms"] - (MANIFEST["question"]["speech_start_ms"] - 300)) <= 100
        assert abs(stopped["audio_end_ms"] - MANIFEST["question"]["speech_end_ms"]) <= 100
        await channel.until("output_audio_buffer.started")
        await leg.played_for(400)
        await call.receive(json.dumps({"type": "output_audio_buffer.clear"}))
        truncated = await channel.until("conversation.item.truncated")
        await channel.until("output_audio_buffer.cleared")
        assert abs(truncated["audio_end_ms"] - leg.agent_ms()) <= 20
        await leg.stop()


async def test_clear_over_a_plain_websocket_session_keeps_its_error(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send_raw(json.dumps({"type": "output_audio_buffer.clear"}))
        error = await stream.error()
        assert "only supported on WebRTC and SIP" in error["message"]


async def test_dtmf_reaches_every_channel(emulator) -> None:
    async with emulator() as emu, active_call(emu) as (call, channel):
        ws = await open_sideband(emu, call.id)
        assert (await next_event(ws))["type"] == "session.created"
        await call.dtmf("7")
        event = await until(ws, "input_audio_buffer.dtmf_event_received")
        assert event["event"] == "7" and isinstance(event["received_at"], int)
        assert (await channel.until("input_audio_buffer.dtmf_event_received"))["event"] == "7"
        await ws.close()


# --- the sideband --------------------------------------------------------------------------------


async def test_a_sideband_sees_the_current_session_then_every_event_and_can_steer_the_call(
    emulator, tone_engines
) -> None:
    async with emulator(engines=tone_engines) as emu, active_call(emu) as (call, channel):
        await call.receive(
            json.dumps(
                {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}
            )
        )
        await channel.until("session.updated")
        ws = await open_sideband(emu, call.id)
        created = await next_event(ws)
        assert created["type"] == "session.created"
        assert created["session"]["instructions"] == "Be brief."
        # The sideband's client events go to the call; its answers go to every channel.
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "realtime", "instructions": "Be kind."}}
            )
        )
        updated = await until(ws, "session.updated")
        assert updated["session"]["instructions"] == "Be kind."
        assert [e for e in channel.events if e["type"] == "session.updated"][-1]["session"][
            "instructions"
        ] == "Be kind."
        await ws.send(json.dumps({"type": "response.create"}))
        await until(ws, "response.done")
        assert "response.output_audio.delta" not in channel.types()
        assert emu.stats.sidebands_attached == 1
        await ws.close()


async def test_the_first_sideband_of_a_sip_call_gets_what_happened_before_it(emulator) -> None:
    async with emulator() as emu:
        call = calls_of(emu).create("sip")
        await call.start_session("gpt-realtime-1.5", None)
        await call.dtmf("1")
        ws = await open_sideband(emu, call.id)
        assert (await next_event(ws))["type"] == "session.created"
        assert (await next_event(ws))["type"] == "input_audio_buffer.dtmf_event_received"
        await call.hangup("caller")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def _refused(emu: Emulator, call_id: str, **headers: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        await open_sideband(emu, call_id, **headers)
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_sideband_refusals(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu:
        status, body = await _refused(emu, "rtc_" + "0" * 32)
        assert status == 404 and body["error"]["code"] == "CallNotFound"
        ringing = calls_of(emu).create("sip")
        status, body = await _refused(emu, ringing.id)
        assert status == 400 and "ringing" in body["error"]["message"]
        active = calls_of(emu).create("sip")
        await active.start_session("gpt-realtime-1.5", None)
        status, _ = await _refused(emu, active.id, **{"api-key": "wrong"})
        assert status == 401
        status, _ = await _refused(emu, active.id, **{"x-nothing": "1"})
        assert status == 401
        async with httpx.AsyncClient(trust_env=False) as client:
            minted = await client.post(
                f"{emu.http_base_url}/openai/v1/realtime/client_secrets", headers={"api-key": KEY}, json={}
            )
        ek = minted.json()["value"]
        status, _ = await _refused(emu, active.id, Authorization=f"Bearer {ek}")  # the browser's key
        assert status == 401
        await active.hangup("hangup")
        status, body = await _refused(emu, active.id)
        assert status == 400 and "ended" in body["error"]["message"]
        await ringing.hangup("caller")
        assert emu.stats.sidebands_attached == 0


# --- hangup --------------------------------------------------------------------------------------


async def test_hangup_ends_the_call_and_closes_its_sidebands(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu, active_call(emu) as (call, channel):
        ws = await open_sideband(emu, call.id)
        await next_event(ws)
        async with httpx.AsyncClient(trust_env=False, base_url=emu.http_base_url) as client:
            path = f"/openai/v1/realtime/calls/{call.id}/hangup"
            assert (await client.post(path)).status_code == 401
            response = await client.post(path, headers={"api-key": KEY})
            assert response.status_code == 200
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert call.ended.is_set() and call.ended_by == "hangup" and call.state == "ended"
            assert channel.closed == (1000, "call ended")
            assert emu.stats.calls_ended == {"sip": 1} and emu.stats.active_calls == 0
            assert emu.stats.sessions[-1].closed
            # Again: nothing left to end, still 200; an unknown call is a 404.
            assert (await client.post(path, headers={"api-key": KEY})).status_code == 200
            missing = await client.post("/v1/realtime/calls/rtc_nope/hangup", headers={"api-key": KEY})
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "call_not_found"


async def test_the_session_limit_hangs_the_call_up(emulator) -> None:
    async with emulator(session_limit_s=0.5) as emu, active_call(emu) as (call, channel):
        await asyncio.wait_for(call.ended.wait(), 10)
        assert call.ended_by == "session"
        assert channel.types()[-1] == "error" and channel.events[-1]["error"]["code"] == "session_expired"
        assert channel.closed is not None


async def test_memory_per_call_is_bounded(emulator) -> None:
    from realtalk.emulator import calls

    async with emulator() as emu:
        call = calls_of(emu).create("sip")
        await call.start_session("gpt-realtime-1.5", None)
        for _ in range(calls.MAX_BACKLOG_EVENTS + 50):  # nobody attached: the backlog keeps the latest
            await call.dtmf("1")
        channel = Recorder()
        call.attach(channel)
        assert len(channel.events) == calls.MAX_BACKLOG_EVENTS
        assert math.isclose(call.queued_ms, 0)
        await call.hangup("caller")


async def test_the_playout_queue_is_bounded(emulator, tone_engines, monkeypatch, caplog) -> None:
    from realtalk.emulator import calls

    monkeypatch.setattr(calls, "MAX_PLAYOUT_MS", 300)
    async with emulator(engines=tone_engines) as emu, active_call(emu) as (call, channel):
        # Nothing plays (no media leg): the reply is generated whole, and only 300 ms of it is kept.
        await call.receive(json.dumps({"type": "response.create"}))
        await channel.until("response.done")
        assert call.queued_ms == 300
        assert "playout queue full" in caplog.text
        leg = FakeLeg(call)
        leg.start()
        await channel.until("output_audio_buffer.stopped")
        assert abs(leg.agent_ms() - 300) <= 1
        await leg.stop()
