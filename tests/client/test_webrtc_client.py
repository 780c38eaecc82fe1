"""``realtalk.client.webrtc``: a ``RealtimeSession`` over WebRTC.

The media pieces on their own (the microphone track's frames and pacing, resampling both ways,
which reply the received audio belongs to), then the session against the emulator's WebRTC door on
127.0.0.1: a spoken WAV gives transcripts and the agent's audio in the sink, a barge-in stops local
playback and the server's truncation arrives, close hangs up, and set-up failures say what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtalk.audio.duplex import VirtualDuplex
from realtalk.audio.pcm import pcm16_to_int16, read_wav, silence
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import MemorySink, MemorySource, SilenceSource
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.client.webrtc import CallSetupFailed, WebRTCSession
from realtalk.client.webrtc_media import (
    PCM24_FRAME_BYTES,
    TRACK_FRAME_SAMPLES,
    TRACK_RATE_HZ,
    MicrophoneTrack,
    RemoteAudio,
    ReplyAttribution,
    is_silent,
)
from realtalk.embedded_server import EmbeddedApp
from realtalk.emulator import Emulator, EmulatorConfig, load_engines, parse_scenario
from realtalk.errors import ConfigError, HandshakeRejected, LocalProtocolError
from realtalk.gateway import Gateway, create_app
from realtalk.protocol import AgentProfile
from realtalk.protocol.app_events import AudioChunk, FlushPlayback, LatencyMeasured, ResponseFinished
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.protocol.session_config import DEFAULT_TRANSCRIPTION_MODEL, InputTranscription
from realtalk.settings import Settings


def tone(freq_hz: float, ms: int, rate_hz: int = 24_000, amplitude: int = 10_000) -> bytes:
    t = np.arange(rate_hz * ms // 1000) / rate_hz
    return (np.sin(2 * np.pi * freq_hz * t) * amplitude).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate_hz: int) -> float:
    samples = pcm16_to_int16(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


LOUD = tone(300, 20)
QUIET = bytes(PCM24_FRAME_BYTES)


# -- the microphone track ----------------------------------------------------------------------------


async def test_microphone_frames_are_20_ms_of_48_khz_mono_with_running_timestamps() -> None:
    track = MicrophoneTrack()
    frames = [await track.recv() for _ in range(3)]
    for n, frame in enumerate(frames):
        assert isinstance(frame, AudioFrame)
        assert (frame.sample_rate, frame.samples, frame.layout.name, frame.format.name) == (
            TRACK_RATE_HZ,
            TRACK_FRAME_SAMPLES,
            "mono",
            "s16",
        )
        assert frame.pts == n * TRACK_FRAME_SAMPLES
        assert frame.time_base == fractions.Fraction(1, TRACK_RATE_HZ)
    track.stop()


async def test_microphone_sends_silence_when_nothing_is_pushed() -> None:
    track = MicrophoneTrack()
    assert track.next_frame_pcm() == bytes(TRACK_FRAME_SAMPLES * 2)


async def test_microphone_resamples_24_khz_to_48_khz_keeping_the_pitch() -> None:
    track = MicrophoneTrack()
    track.push(tone(440, 500))
    sent = b"".join(track.next_frame_pcm() for _ in range(20))  # 400 ms
    assert abs(dominant_hz(sent[9600:], TRACK_RATE_HZ) - 440) < 5  # past the filter's delay
    # 500 ms at 24 kHz is 500 ms at 48 kHz: what remains queued is the last ~100 ms.
    assert 80 <= track.queued_ms <= 101


async def test_microphone_is_paced_in_real_time() -> None:
    track = MicrophoneTrack()
    track.push(tone(440, 400))
    start = time.monotonic()
    for _ in range(11):  # the first frame goes at once, ten more at 20 ms each
        await track.recv()
    elapsed_s = time.monotonic() - start
    assert 0.19 <= elapsed_s <= 0.30
    track.stop()


async def test_microphone_reports_every_frame_sent_as_24_khz_bytes_silence_included() -> None:
    sent: list[int] = []
    track = MicrophoneTrack(on_frame_sent=sent.append)
    track.push(tone(440, 20))
    for _ in range(3):
        await track.recv()
    assert sent == [PCM24_FRAME_BYTES] * 3
    track.stop()


async def test_microphone_drops_the_oldest_audio_beyond_its_queue_bound() -> None:
    track = MicrophoneTrack(max_queued_s=0.1)
    for _ in range(3):
        track.push(tone(440, 100))
    assert track.queued_ms <= 100
    # About 200 ms at 48 kHz dropped (less the resampler's delay, which is still inside it).
    assert track.dropped_samples >= TRACK_RATE_HZ * 0.15


async def test_a_stopped_microphone_ends_the_track() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = MicrophoneTrack()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


# -- the remote track's audio ---------------------------------------------------------------------


def frame_48k(pcm_mono: bytes, *, layout: str = "stereo", pts: int = 0) -> AudioFrame:
    samples = len(pcm_mono) // 2
    mono = pcm16_to_int16(pcm_mono)
    frame = AudioFrame(format="s16", layout=layout, samples=samples)
    data = np.repeat(mono, 2) if layout == "stereo" else mono
    frame.planes[0].update(data.astype("<i2").tobytes())
    frame.sample_rate = TRACK_RATE_HZ
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, TRACK_RATE_HZ)
    return frame


def test_remote_stereo_48_khz_frames_become_24_khz_mono_at_the_same_pitch() -> None:
    remote = RemoteAudio()
    source = tone(440, 1000, rate_hz=TRACK_RATE_HZ)
    out = b"".join(
        remote.convert(frame_48k(source[i : i + 1920], pts=i // 2)) for i in range(0, len(source), 1920)
    )
    assert abs(len(out) - 24_000 * 2) <= 2 * 64  # one second, give or take the filter's delay
    assert abs(dominant_hz(out[4800:], 24_000) - 440) < 5


def test_remote_mono_frames_are_converted_too() -> None:
    remote = RemoteAudio()
    out = b"".join(
        remote.convert(frame_48k(tone(440, 20, rate_hz=TRACK_RATE_HZ), layout="mono", pts=n * 960))
        for n in range(10)
    )
    assert abs(len(out) - 10 * PCM24_FRAME_BYTES) <= 2 * 64


def test_silence_is_told_from_speech() -> None:
    assert is_silent(QUIET)
    assert is_silent((np.ones(480, dtype="<i2") * 20).tobytes())
    assert not is_silent(LOUD)


# -- which reply the received audio belongs to ----------------------------------------------------------


def test_audio_before_any_reply_is_dropped() -> None:
    attribution = ReplyAttribution()
    assert attribution.classify(LOUD) is None


def test_a_reply_starts_at_its_first_audible_frame_after_response_created() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(QUIET) is None  # the server's silence before the reply
    assert attribution.classify(LOUD) == "resp_1"
    assert attribution.classify(QUIET) == "resp_1"  # a pause inside the reply is the reply


def test_after_stopped_the_jitter_tail_is_kept_until_the_first_silent_frame() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    attribution.started("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.stopped("resp_1")
    assert attribution.classify(LOUD) == "resp_1"  # still in flight when stopped was sent
    assert attribution.classify(QUIET) is None
    assert attribution.classify(LOUD) is None  # not a reply any more
    assert attribution.playing_on_server == set()


def test_speech_started_drops_the_interrupted_reply_at_once() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.interrupted()
    assert attribution.classify(LOUD) is None


def test_cleared_drops_the_reply_and_forgets_it_was_playing() -> None:
    attribution = ReplyAttribution()
    attribution.started("resp_1")
    assert attribution.playing_on_server == {"resp_1"}
    assert attribution.classify(LOUD) == "resp_1"
    attribution.cleared("resp_1")
    assert attribution.classify(LOUD) is None
    assert attribution.playing_on_server == set()


def test_a_reply_created_while_another_plays_takes_over_after_it() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.response_created("resp_2")  # e.g. a tool's follow-up, queued behind resp_1's audio
    assert attribution.classify(LOUD) == "resp_1"
    attribution.stopped("resp_1")
    assert attribution.classify(QUIET) is None
    assert attribution.response_id == "resp_2"
    assert attribution.classify(LOUD) == "resp_2"


def test_started_switches_to_the_reply_the_server_plays() -> None:
    attribution = ReplyAttribution()
    attribution.response_created("resp_1")
    assert attribution.classify(LOUD) == "resp_1"
    attribution.started("resp_2")
    assert attribution.classify(LOUD) == "resp_2"


async def test_media_pieces_are_asyncio_friendly() -> None:
    # recv() must yield to the loop while it waits for its deadline (aiortc runs in the same loop).
    track = MicrophoneTrack()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    for _ in range(11):  # 200 ms of waiting for deadlines
        await track.recv()
    task.cancel()
    assert ticks >= 5  # the ticker ran meanwhile (every 5 ms when the loop is idle)
    track.stop()


# -- a scripted WebRTC server on 127.0.0.1 ------------------------------------------------------------
#
# The calls door of §4.1/§4.2 in a few lines, with an aiortc answering peer whose replies the test
# scripts: it pins down the client's side of the wire (what it posts, what it sends on the data
# channel, what it does with the track) independently of the emulator.

KEY = "test-key"
SECRET = "ek_test_secret"


class ScriptedPeer:
    """The server's end of one call: records what the client sent, plays what the test queues."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.speaker = MicrophoneTrack()  # the agent's voice: queued 24 kHz PCM, silence otherwise
        self.pc.addTrack(self.speaker)
        self.channel: RTCDataChannel | None = None
        self.received: list[dict[str, Any]] = []
        self.heard = bytearray()  # what the client's microphone track carried, 24 kHz
        self.hung_up = asyncio.Event()
        self.pc.on("datachannel", self._datachannel)
        self.pc.on("track", self._track)
        self._tasks: list[asyncio.Task[None]] = []

    def _datachannel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._message)
        self.send(
            {"type": "session.created", "event_id": "evt_0", "session": {"type": "realtime", "id": "sess_1"}}
        )

    def _message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.received.append(event)
        if event["type"] == "session.update":
            self.send({"type": "session.updated", "event_id": "evt_u", "session": event["session"]})

    def _track(self, track: MediaStreamTrack) -> None:
        async def read() -> None:
            remote = RemoteAudio()
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    assert isinstance(frame, AudioFrame)
                    self.heard += remote.convert(frame)

        self._tasks.append(asyncio.get_running_loop().create_task(read()))

    def send(self, event: dict[str, Any]) -> None:
        assert self.channel is not None
        self.channel.send(json.dumps(event))

    def types(self) -> list[str]:
        return [event["type"] for event in self.received]

    async def reply(self, response_id: str, item_id: str, pcm: bytes, text: str = "Hello there.") -> None:
        """A spoken reply as the server plays it: created, item, then started / audio / stopped;
        its usage counts 20 audio tokens per second of ``pcm``."""
        self.send(
            {
                "type": "response.created",
                "event_id": "e1",
                "response": {"id": response_id, "status": "in_progress", "output": []},
            }
        )
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        self.send(
            {
                "type": "response.output_item.added",
                "event_id": "e2",
                "response_id": response_id,
                "output_index": 0,
                "item": item,
            }
        )
        self.send(
            {
                "type": "response.output_audio_transcript.delta",
                "event_id": "e3",
                "response_id": response_id,
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": text,
            }
        )
        self.speaker.push(pcm)
        self.send({"type": "output_audio_buffer.started", "event_id": "e4", "response_id": response_id})
        self._tasks.append(asyncio.get_running_loop().create_task(self._stopped_when_played(response_id)))
        self.send(
            {
                "type": "response.output_audio.done",
                "event_id": "e5",
                "response_id": response_id,
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
            }
        )
        self.send(
            {
                "type": "response.done",
                "event_id": "e6",
                "response": {
                    "id": response_id,
                    "status": "completed",
                    "output": [],
                    "usage": {
                        "total_tokens": 10 + len(pcm) // 2400,
                        "input_tokens": 10,
                        "output_tokens": len(pcm) // 2400,
                        "output_token_details": {"text_tokens": 0, "audio_tokens": len(pcm) // 2400},
                    },
                },
            }
        )

    async def _stopped_when_played(self, response_id: str) -> None:
        await until(lambda: self.speaker.queued_ms <= 0, timeout_s=60)
        self.send({"type": "output_audio_buffer.stopped", "event_id": "e7", "response_id": response_id})

    async def close(self) -> None:
        self.speaker.stop()
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


class ScriptedCalls(EmbeddedApp):
    """``/openai/v1/realtime/client_secrets``, ``/calls`` and ``/calls/{id}/hangup``; ``answer`` picks
    what ``/calls`` answers: a real peer ("ok"), or a broken answer to test the client's errors."""

    name = "scripted calls"

    def __init__(self, answer: str = "ok") -> None:
        super().__init__("127.0.0.1", 0, handle_signals=False, stop_timeout_s=5)
        self.answer = answer
        self.minted: list[dict[str, Any]] = []
        self.offers: list[str] = []
        self.peers: dict[str, ScriptedPeer] = {}
        self.hangups: list[str] = []

    async def start(self) -> None:
        await self._serve(
            Starlette(
                routes=[
                    Route("/openai/v1/realtime/client_secrets", self._mint, methods=["POST"]),
                    Route("/openai/v1/realtime/calls", self._call, methods=["POST"]),
                    Route("/openai/v1/realtime/calls/{call_id}/hangup", self._hangup, methods=["POST"]),
                ]
            )
        )

    async def stop(self) -> None:
        for peer in self.peers.values():
            await peer.close()
        await super().stop()

    @property
    def endpoint(self) -> ResolvedEndpoint:
        return resolve_endpoint(self.http_base_url, "gpt-realtime-1.5")

    @property
    def peer(self) -> ScriptedPeer:
        return next(iter(self.peers.values()))

    async def _mint(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"code": "invalid_api_key", "message": "Incorrect API key"}}, 401)
        self.minted.append(await request.json())
        return JSONResponse({"value": SECRET, "expires_at": 0})

    async def _call(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return JSONResponse({"error": {"message": "bad secret"}}, 401)
        assert request.headers.get("content-type") == "application/sdp"
        offer = (await request.body()).decode()
        self.offers.append(offer)
        if self.answer == "no_door":
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, 404)
        if self.answer == "not_sdp":
            return Response("<html>hello</html>", 201, media_type="text/html")
        if self.answer == "bad_sdp":
            return Response(
                "v=0\r\nthis is not an answer\r\n",
                201,
                media_type="application/sdp",
                headers={"Location": "/v1/realtime/calls/rtc_bad"},
            )
        peer = ScriptedPeer()
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        call_id = f"rtc_{len(self.peers) + 1}"
        self.peers[call_id] = peer
        headers = {} if self.answer == "no_location" else {"Location": f"/v1/realtime/calls/{call_id}"}
        return Response(peer.pc.localDescription.sdp, 201, media_type="application/sdp", headers=headers)

    async def _hangup(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "no"}}, 401)
        call_id = request.path_params["call_id"]
        self.hangups.append(call_id)
        peer = self.peers.get(call_id)
        if peer is None:
            return JSONResponse({"error": {"message": "no such call"}}, 404)
        peer.hung_up.set()
        return Response(status_code=200)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


PROFILE = AgentProfile(instructions="Be brief.", voice="marin")


def half_played(session: WebRTCSession, item_id: str) -> int:
    """What a player reports at a flush: here, half of what arrived."""
    item = session.protocol.conversation.item(item_id)
    assert item is not None
    return item.audio_received_samples // 2


async def test_a_direct_call_mints_a_secret_with_the_session_and_posts_the_offer_with_it() -> None:
    async with ScriptedCalls() as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE)
        async with session:
            assert session.call_id == "rtc_1"
            assert session.status.state == "connected"
        [minted] = server.minted
        assert minted["session"]["model"] == "gpt-realtime-1.5"
        assert minted["session"]["instructions"] == "Be brief."
        assert minted["session"]["type"] == "realtime"
        assert 10 <= minted["expires_after"]["seconds"] <= 7200
        assert "m=audio" in server.offers[0] and "webrtc-datachannel" in server.offers[0]


async def test_events_travel_on_the_data_channel_both_ways() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            frames: list[tuple[str, str]] = []
            session.on_frame(lambda direction, text: frames.append((direction, text)))
            session.send_text("hello")
            await until(lambda: "response.create" in server.peer.types())
            assert server.peer.types()[:1] == ["session.update"]
            assert "conversation.item.create" in server.peer.types()
            assert "input_audio_buffer.append" not in server.peer.types()
            assert ("out", '"type":"response.create"') and any(
                '"response.create"' in t for d, t in frames if d == "out"
            )


async def test_microphone_audio_goes_out_on_the_track_not_in_events() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            said = tone(440, 500)
            for start in range(0, len(said), 960):  # in 20 ms blocks, as a microphone delivers it
                session.append_audio(said[start : start + 960])
            await until(lambda: len(server.peer.heard) > 48_000 * 2)  # a second received
            heard = bytes(server.peer.heard)
            loud = [i for i in range(0, len(heard) - 960, 960) if not is_silent(heard[i : i + 960])]
            assert loud, "the tone never arrived"
            start = loud[0]
            assert abs(dominant_hz(heard[start + 960 : start + 960 + 19_200], 24_000) - 440) < 10
            assert "input_audio_buffer.append" not in server.peer.types()


async def test_reply_audio_from_the_track_reaches_the_app_as_audio_chunks_of_its_item() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            chunks: list[AudioChunk] = []
            session.on_event(lambda event: chunks.append(event) if isinstance(event, AudioChunk) else None)
            reply = tone(300, 600)
            await server.peer.reply("resp_1", "item_A", reply)
            await until(lambda: sum(c.samples for c in chunks) >= 24_000 * 0.5)
            await asyncio.sleep(0.3)
            assert {(c.item_id, c.response_id, c.sample_rate_hz) for c in chunks} == {
                ("item_A", "resp_1", 24_000)
            }
            got = sum(c.samples for c in chunks)
            assert abs(got - 24_000 * 0.6) <= 24_000 * 0.06  # all of it, within a few frames
            audio = b"".join(c.pcm for c in chunks)
            assert abs(dominant_hz(audio, 24_000) - 300) < 10
            item = session.protocol.conversation.item("item_A")
            assert item is not None and item.audio_received_samples == got


async def test_speech_started_flushes_local_playback_and_no_truncate_is_sent() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            events: list[Any] = []
            session.on_event(events.append)
            session.on_event(
                lambda e: (
                    session.playback_flushed(e.item_id, half_played(session, e.item_id))
                    if isinstance(e, FlushPlayback)
                    else None
                )
            )
            await server.peer.reply("resp_1", "item_A", tone(300, 3000))
            await until(lambda: any(isinstance(e, AudioChunk) for e in events))
            server.peer.speaker.clear()  # the server's own barge-in: its queue is dropped ...
            server.peer.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "event_id": "s1",
                    "audio_start_ms": 900,
                    "item_id": "item_U",
                }
            )
            await until(lambda: any(isinstance(e, FlushPlayback) for e in events))
            chunks_at_flush = sum(isinstance(e, AudioChunk) for e in events)
            server.peer.send(
                {"type": "output_audio_buffer.cleared", "event_id": "c1", "response_id": "resp_1"}
            )
            server.peer.send(
                {
                    "type": "conversation.item.truncated",
                    "event_id": "t1",
                    "item_id": "item_A",
                    "content_index": 0,
                    "audio_end_ms": 200,
                }
            )
            await asyncio.sleep(0.5)
            assert sum(isinstance(e, AudioChunk) for e in events) == chunks_at_flush  # nothing after it
            assert [e.item_id for e in events if isinstance(e, FlushPlayback)] == ["item_A"]
            assert session.truncates_dropped == 1
            assert "conversation.item.truncate" not in server.peer.types()
            assert "output_audio_buffer.clear" not in server.peer.types()  # the server cleared by itself
            assert session.protocol.conversation.is_cut("item_A")


async def test_interrupt_clears_the_servers_playout_too() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            events: list[Any] = []
            session.on_event(events.append)
            server.peer.send(
                {
                    "type": "response.created",
                    "event_id": "e1",
                    "response": {"id": "resp_1", "status": "in_progress", "output": []},
                }
            )
            await server.peer.reply("resp_1", "item_A", tone(300, 3000))
            await until(lambda: any(isinstance(e, AudioChunk) for e in events))
            session.interrupt()
            await until(lambda: "output_audio_buffer.clear" in server.peer.types())
            assert any(isinstance(e, FlushPlayback) for e in events)


async def test_cleared_by_someone_else_flushes_what_the_client_still_holds() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            events: list[Any] = []
            session.on_event(events.append)
            await server.peer.reply("resp_1", "item_A", tone(300, 3000))
            await until(lambda: any(isinstance(e, AudioChunk) for e in events))
            server.peer.speaker.clear()
            server.peer.send(
                {"type": "output_audio_buffer.cleared", "event_id": "c1", "response_id": "resp_1"}
            )
            await until(lambda: any(isinstance(e, FlushPlayback) for e in events))


async def test_close_hangs_the_call_up() -> None:
    async with ScriptedCalls() as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE)
        await session.start()
        await session.close()
        assert server.hangups == ["rtc_1"]
        assert session.status.state == "closed"


async def test_a_call_the_server_ends_closes_the_session_with_the_reason() -> None:
    async with ScriptedCalls() as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE)
        await session.start()
        await server.peer.close()
        status = await asyncio.wait_for(session.wait_closed(), 10)
        assert status.state == "closed"
        assert "call ended" in status.reason
        await session.close()


# -- set-up failures say what to fix --------------------------------------------------------------------


async def test_a_refused_credential_names_the_request_and_the_key() -> None:
    async with ScriptedCalls() as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential("wrong", style="bearer"), profile=PROFILE)
        with pytest.raises(HandshakeRejected) as caught:
            await session.start()
        assert caught.value.status == 401
        assert "minting a client secret" in caught.value.reason
        assert "AZURE_OPENAI_API_KEY" in caught.value.reason
        assert "wrong" not in str(caught.value)


async def test_nothing_listening_says_so() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = resolve_endpoint(f"http://127.0.0.1:{port}", "gpt-realtime-1.5")
    session = WebRTCSession(endpoint, ApiKeyCredential(KEY, style="bearer"), connect_timeout_s=3)
    with pytest.raises(CallSetupFailed) as caught:
        await session.start()
    assert caught.value.step == "client_secret"
    assert f"cannot connect to 127.0.0.1:{port}" in caught.value.reason


@pytest.mark.parametrize(
    ("answer", "step", "words"),
    [
        ("not_sdp", "answer", "without an SDP answer"),
        ("bad_sdp", "answer", "could not be used"),
        ("no_location", "answer", "no Location header"),
    ],
)
async def test_a_bad_answer_names_the_problem(answer: str, step: str, words: str) -> None:
    async with ScriptedCalls(answer) as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential(KEY, style="bearer"), connect_timeout_s=5)
        with pytest.raises(CallSetupFailed) as caught:
            await session.start()
        assert caught.value.step == step
        assert words in caught.value.reason
        if answer == "bad_sdp":
            assert server.hangups == ["rtc_bad"]  # the call the server did create is hung up


async def test_a_server_without_the_webrtc_door_says_to_use_the_websocket() -> None:
    async with ScriptedCalls("no_door") as server:
        session = WebRTCSession(server.endpoint, ApiKeyCredential(KEY, style="bearer"))
        with pytest.raises(HandshakeRejected) as caught:
            await session.start()
        assert caught.value.status == 404
        assert "does not take WebRTC calls" in caught.value.reason
        assert "use the WebSocket transport" in caught.value.reason


def test_a_telephony_profile_is_refused_over_webrtc() -> None:
    endpoint = resolve_endpoint("http://127.0.0.1:9", "gpt-realtime-1.5")
    with pytest.raises(LocalProtocolError, match="pcm24k"):
        WebRTCSession(
            endpoint, ApiKeyCredential(KEY), profile=AgentProfile(input_format="pcmu", output_format="pcmu")
        )


def test_a_gateway_url_must_be_https_unless_local() -> None:
    with pytest.raises(ConfigError, match="https"):
        WebRTCSession.via_gateway("http://voice.example.com", "token")
    session = WebRTCSession.via_gateway("http://127.0.0.1:8000/", "token")
    assert session.endpoint.url == "http://127.0.0.1:8000/api/realtime/webrtc"


async def test_through_the_voice_loop_the_reply_is_played_and_a_barge_in_silences_it() -> None:
    async with ScriptedCalls() as server:
        async with WebRTCSession(
            server.endpoint, ApiKeyCredential(KEY, style="bearer"), profile=PROFILE
        ) as session:
            playback, sink = PlaybackBuffer(), MemorySink()
            device = VirtualDuplex(SilenceSource(), sink, playback, block_samples=480)
            loop = VoiceLoop(session, device, playback)
            driver = PacedDriver(device)
            loop.start()
            driver.start()
            try:
                await server.peer.reply("resp_1", "item_A", tone(300, 3000), LONG_REPLY)
                await until(lambda: playback.played_samples("item_A") >= 24_000 * 0.5)
                server.peer.speaker.clear()
                server.peer.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "event_id": "s1",
                        "audio_start_ms": 900,
                        "item_id": "item_U",
                    }
                )
                await until(lambda: loop.stats.flushes == 1)
                flushed_at = sink.samples_written
                server.peer.send(
                    {
                        "type": "conversation.item.truncated",
                        "event_id": "t1",
                        "item_id": "item_A",
                        "content_index": 0,
                        "audio_end_ms": playback.played_samples("item_A") // 24,
                    }
                )
                await asyncio.sleep(0.5)
            finally:
                await driver.stop()
                loop.stop()
            after = np.frombuffer(sink.pcm, dtype="<i2")[flushed_at + 480 :]
            assert after.size > 0 and np.count_nonzero(after) == 0  # silence from the next block on
            item = session.protocol.conversation.item("item_A")
            assert item is not None and item.cut
            # The transcript keeps what was heard of the whole reply (3 s by its usage), not all of it.
            assert item.audio_received_samples == 3 * 24_000
            heard = item.audio_played_samples / item.audio_received_samples
            assert 0.1 < heard < 0.5
            assert 0 < len(item.heard_text) < len(LONG_REPLY) * 0.6
            assert "conversation.item.truncate" not in server.peer.types()
            audible = np.frombuffer(sink.pcm, dtype="<i2")[:flushed_at]
            assert abs(dominant_hz(audible[-9600:].tobytes(), 24_000) - 300) < 10


# -- against the emulator's WebRTC door (real time: WebRTC media is never sped up) ------------------------

FIXTURES = Path(__file__).parents[1] / "fixtures"
LONG_REPLY = (
    "Here is a long answer so that there is plenty of audio to interrupt. The lighthouse stood on the "
    "rocks for a hundred years, and every night its keeper climbed the stairs to light the lamp."
)


def wav(name: str) -> bytes:
    return read_wav(FIXTURES / f"{name}.wav")[0]


@dataclass
class EmulatorCall:
    emulator: Emulator
    session: WebRTCSession
    loop: VoiceLoop
    sink: MemorySink
    events: list[Any] = field(default_factory=list)
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return [
            event for direction, event in self.frames if direction == "in" and event["type"] == event_type
        ]

    def sent_types(self) -> set[str]:
        return {event["type"] for direction, event in self.frames if direction == "out"}


@contextlib.asynccontextmanager
async def emulator_call(mic: bytes, reply: str) -> AsyncIterator[EmulatorCall]:
    scenario = parse_scenario({"turns": [{"say": reply}]})
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=4, scenario=scenario)) as emulator:
        endpoint = resolve_endpoint(emulator.http_base_url, "gpt-realtime-1.5")
        profile = AgentProfile(transcription=InputTranscription(model=DEFAULT_TRANSCRIPTION_MODEL))
        session = WebRTCSession(endpoint, ApiKeyCredential(KEY, style="bearer"), profile=profile)
        playback, sink = PlaybackBuffer(), MemorySink()
        device = VirtualDuplex(MemorySource(mic), sink, playback, block_samples=480)
        loop = VoiceLoop(session, device, playback)
        call = EmulatorCall(emulator, session, loop, sink)
        session.on_event(call.events.append)
        session.on_frame(lambda direction, text: call.frames.append((direction, json.loads(text))))
        async with session:
            driver = PacedDriver(device)
            loop.start()
            driver.start()
            try:
                yield call
            finally:
                await driver.stop()
                loop.stop()


@pytest.mark.slow
async def test_over_the_emulator_a_spoken_question_gets_transcripts_and_a_spoken_reply() -> None:
    async with emulator_call(wav("question"), "It is seven degrees in Oslo.") as call:
        await until(lambda: bool(call.received("output_audio_buffer.stopped")), timeout_s=30)
        await until(lambda: not call.loop.playback.is_playing)
        await until(lambda: bool(call.received("conversation.item.input_audio_transcription.completed")))
    lines = call.session.protocol.conversation.transcript_lines()
    assert [line.role for line in lines] == ["user", "assistant"]
    assert "oslo" in lines[0].text.lower()  # the recogniser heard the WAV through Opus
    assert lines[1].text == "It is seven degrees in Oslo."
    out = np.frombuffer(call.sink.pcm, dtype="<i2")
    assert int(np.count_nonzero(np.abs(out) > 300)) > 24_000  # over a second of reply was heard
    assert [finished.status for finished in call.of(ResponseFinished)] == ["completed"]
    [latency] = call.of(LatencyMeasured)
    assert 0 < latency.voice_to_voice_ms < 3000
    assert call.session.total_cost_usd > 0
    assert "input_audio_buffer.append" not in call.sent_types()
    assert call.emulator.stats.calls_created == {"webrtc": 1}
    await until(lambda: call.emulator.stats.calls_ended == {"webrtc": 1})  # close hung up


@pytest.mark.slow
async def test_over_the_emulator_a_barge_in_stops_playback_and_the_server_truncates() -> None:
    mic = wav("question") + silence(2000) + wav("stop")
    sink_at_flush: list[int] = []
    async with emulator_call(mic, LONG_REPLY) as call:
        call.session.on_event(
            lambda event: (
                sink_at_flush.append(call.sink.samples_written) if isinstance(event, FlushPlayback) else None
            )
        )
        await until(lambda: bool(call.received("conversation.item.truncated")), timeout_s=40)
        await until(lambda: bool(call.received("input_audio_buffer.speech_stopped")[1:]), timeout_s=20)
        sink_at_speech_stop = call.sink.samples_written
    [cleared] = call.received("output_audio_buffer.cleared")
    [truncated] = call.received("conversation.item.truncated")
    [flush] = call.of(FlushPlayback)
    assert truncated["item_id"] == flush.item_id
    assert "conversation.item.truncate" not in call.sent_types()  # the server truncated by itself
    played_ms = call.loop.playback.played_samples(flush.item_id) * 1000 // 24_000
    # What the server says was played and what this speaker played differ by the audio in flight
    # (encoder, the receiver's jitter buffer, the playback buffer, one device block): 140-400 ms
    # measured here, where one event loop runs the emulator, both peers and the device; the server
    # counts a frame as played when its encoder takes it.
    assert 0 <= truncated["audio_end_ms"] - played_ms <= 500, (truncated["audio_end_ms"], played_ms)
    assert cleared["response_id"] == call.session.protocol.conversation.item(flush.item_id).response_id  # type: ignore[union-attr]
    # From one block after the flush until the user stopped speaking, the speaker was silent.
    quiet = np.frombuffer(call.sink.pcm, dtype="<i2")[sink_at_flush[0] + 480 : sink_at_speech_stop]
    assert quiet.size > 0 and np.count_nonzero(quiet) == 0
    [reply] = [
        line for line in call.session.protocol.conversation.transcript_lines() if line.role == "assistant"
    ]
    assert reply.cut and 0 < len(reply.text) < len(LONG_REPLY)


# -- through a realtalk gateway ----------------------------------------------------------------------------

GATEWAY_TOKEN = "client-token-0123456789abcdef"


@contextlib.asynccontextmanager
async def gateway_over_emulator(tmp_path: Path) -> AsyncIterator[Gateway]:
    engines = load_engines("energy", "none", "tone")
    agent = tmp_path / "agent.toml"
    agent.write_text('instructions = "You are the Oslo weather line."\n')
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=4.0), engines=engines) as emulator:
        settings = Settings(
            _env_file=None,
            azure_openai_endpoint=emulator.http_base_url,
            azure_openai_deployment_name="gpt-realtime-1.5",
            azure_openai_api_key=KEY,
            gateway_tokens=GATEWAY_TOKEN,
            gateway_profile=agent,
            gateway_port=0,
            connect_timeout_s=5.0,
        )
        async with Gateway(create_app(settings, emulator_engines=engines)) as gateway:
            yield gateway


@pytest.mark.slow
async def test_through_a_gateway_the_call_runs_with_the_gateways_profile_and_close_hangs_up(
    tmp_path: Path, isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_over_emulator(tmp_path) as gateway:
        session = WebRTCSession.via_gateway(gateway.http_base_url, GATEWAY_TOKEN)
        frames: list[dict[str, Any]] = []
        events: list[Any] = []
        session.on_frame(
            lambda direction, text: frames.append(json.loads(text)) if direction == "in" else None
        )
        session.on_event(events.append)
        async with session:
            call_id = session.call_id
            assert call_id is not None and call_id.startswith("rtc_")
            [created] = [frame for frame in frames if frame["type"] == "session.created"]
            assert created["session"]["instructions"] == "You are the Oslo weather line."
            session.send_text("What is the weather?")
            await until(lambda: any(isinstance(e, ResponseFinished) for e in events), timeout_s=20)
            await until(lambda: any(isinstance(e, AudioChunk) for e in events), timeout_s=10)
        async with httpx.AsyncClient(base_url=gateway.http_base_url, timeout=10) as http:
            for _ in range(100):
                state = (
                    await http.get(
                        f"/api/realtime/calls/{call_id}", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
                    )
                ).json()
                if state["state"] == "ended":
                    break
                await asyncio.sleep(0.1)
        assert state["state"] == "ended"
        # The session's own DELETE ended it (not the peer connection closing), and it got its
        # answer: the HTTP client was not closed under it while the gateway hung up upstream.
        assert state["ended"]["reason"] == "hung up", state
        assert not [r for r in caplog.records if "could not hang up" in r.getMessage()]


@pytest.mark.slow
async def test_a_gateway_refusing_the_token_says_to_check_it(tmp_path: Path, isolated_env: Path) -> None:
    async with gateway_over_emulator(tmp_path) as gateway:
        session = WebRTCSession.via_gateway(gateway.http_base_url, "not-the-token-0123456789")
        with pytest.raises(HandshakeRejected) as caught:
            await session.start()
        assert caught.value.status == 401
        assert "the gateway refused the token" in caught.value.reason
        assert "not-the-token" not in str(caught.value)
