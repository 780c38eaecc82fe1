"""WebRTC calls to the emulator (§4.2): an aiortc peer in the test, the way a browser calls.

The peer sends a fixture WAV as its microphone (Opus, paced in real time) over the ``oai-events``
data channel's call, records the track it receives, and validates every event of the data channel
against the SDK's types. The agent's voice is a continuous tone (no gaps between words), so the
audio played, on both sides of the connection, can be measured from the samples themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from websockets.exceptions import ConnectionClosed

from realtalk.audio.resample import resample
from realtalk.emulator import Emulator, Engines, parse_scenario
from realtalk.emulator.calls import Call, CallRegistry

from .conftest import KEY, fixture_pcm, validate_server_event
from .test_calls_sideband import ContinuousTone

LONG_REPLY = " ".join(["This is a long answer that keeps going so that the caller can interrupt it."] * 4)
_FRAME_48K = 960


class Microphone(MediaStreamTrack):
    """What ``say`` queued, then silence, 20 ms frames at 48 kHz in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queued = bytearray()
        self._timestamp = 0
        self._start: float | None = None

    def say(self, pcm24: bytes) -> None:
        self._queued += resample(pcm24, 24_000, 48_000)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += _FRAME_48K
            wait = self._start + self._timestamp / 48_000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk = bytes(self._queued[: _FRAME_48K * 2]).ljust(_FRAME_48K * 2, b"\0")
        del self._queued[: _FRAME_48K * 2]
        frame = AudioFrame(format="s16", layout="mono", samples=_FRAME_48K)
        frame.planes[0].update(chunk)
        frame.sample_rate = 48_000
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, 48_000)
        return frame


class Peer:
    """The test's side of one call: microphone, data channel, the received audio (48 kHz mono)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.microphone = Microphone()
        self.pc.addTrack(self.microphone)
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict[str, Any]] = []
        self.heard = bytearray()
        self.opened = asyncio.Event()
        self.channel_closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("close", self.channel_closed.set)
        self.channel.on("message", self._message)
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._changed.set)

    def _message(self, message: str | bytes) -> None:
        assert isinstance(message, str), "events are text messages"
        self.events.append(validate_server_event(message))
        self._changed.set()

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                self.heard += samples.astype("<i2").tobytes()
                self._changed.set()

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await asyncio.wait_for(self.opened.wait(), 20)

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def until(self, event_type: str, timeout_s: float = 30.0, after: int = 0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for e in self.events[after:] if e["type"] == event_type]
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, condition: Any, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def voiced_ms(self, threshold: int = 500) -> tuple[float, float]:
        """(ms of received audio before the first loud sample, ms from the first to the last)."""
        samples = np.frombuffer(bytes(self.heard), dtype="<i2")
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
        if not len(loud):
            return 0.0, 0.0
        return loud[0] / 48, (loud[-1] - loud[0] + 1) / 48

    def first_run_ms(self, threshold: int = 500, gap_ms: int = 100) -> float:
        """The length of the first stretch of received sound (until a silence of ``gap_ms``)."""
        samples = np.frombuffer(bytes(self.heard), dtype="<i2")
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
        if not len(loud):
            return 0.0
        gaps = np.flatnonzero(np.diff(loud) > gap_ms * 48)
        end = loud[gaps[0]] if len(gaps) else loud[-1]
        return float(end - loud[0] + 1) / 48

    def longest_gap_ms(self, threshold: int = 500) -> float:
        """The longest quiet stretch inside the first stretch of sound (a tone has none but its
        zero crossings)."""
        samples = np.frombuffer(bytes(self.heard), dtype="<i2")
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
        if len(loud) < 2:
            return 0.0
        steps = np.diff(loud)
        first_run = steps[: np.argmax(steps > 100 * 48)] if (steps > 100 * 48).any() else steps
        return float(first_run.max() - 1) / 48 if len(first_run) else 0.0

    async def close(self) -> None:
        self.microphone.stop()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


def calls_of(emu: Emulator) -> CallRegistry:
    registry: CallRegistry = emu._server.config.app.app.state.emulator.calls  # type: ignore[union-attr]
    return registry


class PlayedCounter:
    """Wraps a call's playout clock: counts the agent samples the hub handed to the media leg."""

    def __init__(self, call: Call) -> None:
        self.played = bytearray()
        original = call.next_output_frame

        def counting() -> bytes:
            frame = original()
            self.played += frame
            return frame

        call.next_output_frame = counting  # type: ignore[method-assign]

    def agent_ms(self) -> float:
        samples = np.frombuffer(bytes(self.played), dtype="<i2")
        voiced = np.flatnonzero(samples)
        return 0.0 if not len(voiced) else (voiced[-1] - voiced[0] + 1) / 24


async def mint(emu: Emulator, session: dict[str, Any] | None = None) -> str:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            f"{emu.http_base_url}/openai/v1/realtime/client_secrets",
            headers={"api-key": KEY},
            json={"session": {"type": "realtime", **(session or {})}},
        )
    assert response.status_code == 200, response.text
    return str(response.json()["value"])


async def post_offer(emu: Emulator, sdp: str, query: str = "", **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        return await client.post(
            f"{emu.http_base_url}/openai/v1/realtime/calls{query}", content=sdp, **kwargs
        )


@asynccontextmanager
async def webrtc_call(
    emu: Emulator, session: dict[str, Any] | None = None, query: str = ""
) -> AsyncIterator[tuple[Peer, Call]]:
    """A connected call: the ek_ minted with ``session``, the offer posted as application/sdp."""
    peer = Peer()
    call: Call | None = None
    try:
        secret = await mint(emu, session)
        response = await post_offer(
            emu,
            await peer.offer(),
            query,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/sdp")
        match = re.fullmatch(r"/v1/realtime/calls/(rtc_[0-9a-f]{32})", response.headers["location"])
        assert match, response.headers["location"]
        call = calls_of(emu).get(match.group(1))
        assert call is not None and call.transport == "webrtc" and call.state == "active"
        await peer.answer(response.text)
        yield peer, call
    finally:
        await peer.close()
        if call is not None:
            await call.hangup("hangup")


@pytest.fixture
def tone_engines(fast_engines: Engines) -> Engines:
    return dataclasses.replace(fast_engines, synthesizer=ContinuousTone())


async def test_a_spoken_turn_over_webrtc_comes_back_as_events_and_audio(emulator, speech_engines) -> None:
    engines = dataclasses.replace(speech_engines, synthesizer=ContinuousTone())
    # Opus and the peer's stereo mix leave the speech a few dB quieter: bridge the gaps between words.
    detection = {"type": "server_vad", "silence_duration_ms": 800}
    session = {
        "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": detection}}
    }
    async with emulator(engines=engines) as emu, webrtc_call(emu, session) as (peer, call):
        counter = PlayedCounter(call)
        # The data channel opened after the answer: it gets what the session said before.
        await peer.wait_for(lambda: bool(peer.events))
        created = peer.events[0]
        assert created["type"] == "session.created"
        assert created["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
        peer.microphone.say(fixture_pcm("question"))
        await peer.until("input_audio_buffer.speech_started")
        await peer.until("input_audio_buffer.speech_stopped")
        transcript = await peer.until("conversation.item.input_audio_transcription.completed")
        assert "weather" in transcript["transcript"].lower()
        done = await peer.until("response.done")
        assert done["response"]["status"] == "completed", peer.types()
        spoken = done["response"]["output"][0]["content"][0]["transcript"]
        assert spoken.lower().startswith("you said")
        stopped = await peer.until("output_audio_buffer.stopped")
        started = await peer.until("output_audio_buffer.started")
        assert started["response_id"] == stopped["response_id"] == done["response"]["id"]
        assert "response.output_audio.delta" not in peer.types()  # audio goes over the track
        # The reply's audio came over the track: the whole tone (80 ms a word), as the hub played it.
        expected_ms = len(spoken.split()) * 80
        assert abs(counter.agent_ms() - expected_ms) <= 1
        await peer.wait_for(lambda: peer.voiced_ms()[1] >= expected_ms - 40)
        assert abs(peer.voiced_ms()[1] - expected_ms) <= 40
        assert peer.longest_gap_ms() < 1.0  # nothing inserted into the reply on its way
        assert emu.stats.calls_created == {"webrtc": 1}
        record = emu.stats.sessions[-1]
        assert (record.transport, record.call_id, record.credential_kind) == ("webrtc", call.id, "ephemeral")


async def test_a_barge_in_is_truncated_where_the_hub_stopped_playing(emulator, tone_engines) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}, {"say": "Yes?"}]})
    async with emulator(engines=tone_engines, scenario=scenario) as emu, webrtc_call(emu) as (peer, call):
        counter = PlayedCounter(call)
        peer.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Tell me."}],
                },
            }
        )
        peer.send({"type": "response.create"})
        started = await peer.until("output_audio_buffer.started")
        item_id = (await peer.until("response.output_item.added"))["item"]["id"]
        await peer.wait_for(lambda: peer.voiced_ms()[1] >= 800)  # the reply is being heard
        peer.microphone.say(fixture_pcm("stop"))
        speech = await peer.until("input_audio_buffer.speech_started")
        truncated = await peer.until("conversation.item.truncated")
        cleared = await peer.until("output_audio_buffer.cleared")
        types = peer.types()
        assert types.index("input_audio_buffer.speech_started") < types.index("conversation.item.truncated")
        assert types.index("conversation.item.truncated") < types.index("output_audio_buffer.cleared")
        assert truncated["item_id"] == item_id and truncated["content_index"] == 0
        assert cleared["response_id"] == started["response_id"]
        assert speech["item_id"] != item_id
        # The server cut the item at what its playout clock had played: within one frame.
        assert abs(truncated["audio_end_ms"] - counter.agent_ms()) <= 20
        assert 800 <= truncated["audio_end_ms"] < len(LONG_REPLY.split()) * 80
        # And that is what the peer heard of the reply (Opus smooths the edges a little).
        await peer.until("output_audio_buffer.stopped", after=types.index("output_audio_buffer.cleared"))
        assert abs(peer.first_run_ms() - truncated["audio_end_ms"]) <= 60


async def test_session_update_over_the_data_channel_is_allowed(emulator) -> None:
    async with emulator() as emu, webrtc_call(emu, {"instructions": "Be brief."}) as (peer, _):
        await peer.until("session.created")
        assert peer.events[0]["session"]["instructions"] == "Be brief."
        # The emulator is as permissive as Azure: the client may rewrite its session.
        peer.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be verbose."}})
        updated = await peer.until("session.updated")
        assert updated["session"]["instructions"] == "Be verbose."
        peer.send({"type": "input_audio_buffer.commit"})  # nothing buffered: an error, on the channel
        error = await peer.until("error")
        assert error["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_webrtcfilter_keeps_the_data_channel_to_speech_and_transcripts(emulator, tone_engines) -> None:
    allowed = {
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.added",
        "conversation.item.created",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
    }
    session = {"instructions": "A secret prompt."}
    async with (
        emulator(engines=tone_engines, keys=(KEY,)) as emu,
        webrtc_call(emu, session, "?webrtcfilter=on") as (peer, call),
        websockets.connect(
            f"{emu.websocket_base_url}/realtime?call_id={call.id}", additional_headers={"api-key": KEY}
        ) as sideband,
    ):
        assert validate_server_event(await asyncio.wait_for(sideband.recv(), 20))["type"] == "session.created"
        peer.send({"type": "response.create"})
        await peer.until("output_audio_buffer.stopped")
        assert set(peer.types()) <= allowed
        assert "response.output_audio_transcript.done" in peer.types()
        assert "A secret prompt." not in json.dumps(peer.events)
        # The sideband (the server's) still sees everything.
        async with asyncio.timeout(20):
            while validate_server_event(await sideband.recv())["type"] != "response.done":
                pass


async def test_hangup_ends_the_peer_and_closes_the_sideband(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu, webrtc_call(emu) as (peer, call):
        async with websockets.connect(
            f"{emu.websocket_base_url}/realtime?call_id={call.id}", additional_headers={"api-key": KEY}
        ) as ws:
            created = validate_server_event(await asyncio.wait_for(ws.recv(), 20))
            assert created["type"] == "session.created"
            async with httpx.AsyncClient(trust_env=False) as client:
                response = await client.post(
                    f"{emu.http_base_url}/openai/v1/realtime/calls/{call.id}/hangup", headers={"api-key": KEY}
                )
            assert response.status_code == 200
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        await asyncio.wait_for(peer.channel_closed.wait(), 20)
        await peer.wait_for(lambda: peer.pc.connectionState == "closed")
        assert call.ended_by == "hangup"
        assert emu.stats.active_calls == 0


async def test_the_peer_leaving_ends_the_call(emulator) -> None:
    async with emulator() as emu, webrtc_call(emu) as (peer, call):
        await peer.until("session.created")
        await peer.close()
        await asyncio.wait_for(call.ended.wait(), 30)
        assert call.ended_by == "peer"
        assert emu.stats.sessions[-1].closed


async def test_a_multipart_offer_with_the_servers_key(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu:
        peer = Peer()
        try:
            sdp = await peer.offer()
            session = {"type": "realtime", "instructions": "From the server."}
            files = {
                "sdp": (None, sdp, "application/sdp"),
                "session": (None, json.dumps(session), "application/json"),
            }
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                url = f"{emu.http_base_url}/v1/realtime/calls"
                refused = await client.post(url, files=files)
                assert refused.status_code == 401
                response = await client.post(url, files=files, headers={"api-key": KEY})
            assert response.status_code == 201, response.text
            await peer.answer(response.text)
            created = await peer.until("session.created")
            assert created["session"]["instructions"] == "From the server."
        finally:
            await peer.close()
            for call in calls_of(emu).live:
                await call.hangup("hangup")


async def test_bad_offers_are_a_clear_400_and_leave_no_call(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu:
        secret = await mint(emu)
        bearer = {"Authorization": f"Bearer {secret}", "Content-Type": "application/sdp"}
        empty = await post_offer(emu, "", headers=bearer)
        assert empty.status_code == 400 and "Missing SDP offer" in empty.json()["error"]["message"]
        garbage = await post_offer(emu, "hello, I am not SDP", headers=bearer)
        assert garbage.status_code == 400
        assert garbage.json()["error"]["param"] == "sdp" and "SDP" in garbage.json()["error"]["message"]
        broken = await post_offer(emu, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio\r\n", headers=bearer)
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_sdp", broken.text
        wrong_type = await post_offer(
            emu, "v=0\r\n", headers={"Authorization": f"Bearer {secret}", "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 400 and "application/sdp" in wrong_type.json()["error"]["message"]
        no_auth = await post_offer(emu, "v=0\r\n", headers={"Content-Type": "application/sdp"})
        assert no_auth.status_code == 401
        assert calls_of(emu).live == []
        assert emu.stats.active_sessions == 0
