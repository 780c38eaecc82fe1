"""The WebRTC media leg of a call (§4.2): an aiortc peer connection on loopback.

:func:`answer` takes the client's SDP offer for a :class:`~realtalk.emulator.calls.Call` whose
session has started, and returns the SDP answer. Then, until the call ends:

- the client's audio track (Opus, which aiortc decodes to 48 kHz frames) is mixed down to mono,
  resampled to 24 kHz and fed to the call (``Call.feed_pcm24``: the session hears it as appends);
- an outbound audio track sends ``Call.next_output_frame()`` (20 ms at 24 kHz, resampled to
  48 kHz), paced in real time like aiortc's ``AudioStreamTrack``: each frame it takes is the call's
  playout clock, so the ms "played" are the ms handed to the encoder;
- the data channel the client opens (any label; ``oai-events`` usually) is attached to the call:
  its text messages are client events, in order; every server event goes out as JSON text. With
  ``?webrtcfilter=on`` (Azure) only :data:`FILTERED_EVENT_TYPES` go out, keeping prompts and tool
  calls out of the browser.

Both directions convert 24 <-> 48 kHz with ``HalfBandResampler`` (exactly 2:1, 2 ms of delay, no
buffering): soxr's streaming resampler hands its output over in blocks (0, then 1,660 samples,
per 20 ms frame), so a frame-by-frame track would have had to buffer ahead (latency the playout
clock does not see) or pad inside the reply (samples the server never counted).

No STUN or TURN servers: host candidates only, which is what a test on loopback needs. The peer
connection closing or failing hangs the call up (``ended_by="peer"``); a hangup closes it.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import time
from typing import Any

import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from realtalk.audio.aec import HalfBandResampler
from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.audio.resample import StreamingResampler
from realtalk.emulator.calls import FRAME_MS, Call

__all__ = ["FILTERED_EVENT_TYPES", "BadOffer", "answer"]

logger = logging.getLogger(__name__)

_RTC_RATE_HZ = 48_000
_FRAME_SAMPLES_48K = _RTC_RATE_HZ * FRAME_MS // 1000  # 960
_MAX_LATE_S = 0.2  # an event-loop stall longer than this is not made up with a burst of frames
_MAX_CHANNEL_BUFFER_BYTES = 8 * 1024 * 1024  # a data channel whose peer stopped reading is closed
_MAX_INBOX = 1024  # client messages waiting for the call

# What the data channel carries with ?webrtcfilter=on (§4.2).
FILTERED_EVENT_TYPES = frozenset(
    {
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
)


class BadOffer(ValueError):
    """The SDP offer cannot be answered (the message says why)."""


class _AgentTrack(MediaStreamTrack):
    """The agent's voice: the call's playout, 20 ms a frame at 48 kHz, in real time."""

    kind = "audio"

    def __init__(self, call: Call) -> None:
        super().__init__()
        self._call = call
        self._up = HalfBandResampler()
        self._start: float | None = None
        self._timestamp = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live" or self._call.ended.is_set():
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += _FRAME_SAMPLES_48K
            wait = self._start + self._timestamp / _RTC_RATE_HZ - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -_MAX_LATE_S:
                self._start -= wait  # the loop stalled: carry on from now rather than burst
        data = self._up.up(self._call.next_output_frame())  # 960 samples at 48 kHz
        frame = AudioFrame(format="s16", layout="mono", samples=_FRAME_SAMPLES_48K)
        frame.planes[0].update(data)
        frame.pts = self._timestamp
        frame.sample_rate = _RTC_RATE_HZ
        frame.time_base = fractions.Fraction(1, _RTC_RATE_HZ)
        return frame


class _DataChannel:
    """A WebRTC data channel as a :class:`~realtalk.emulator.calls.CallChannel`."""

    def __init__(self, channel: RTCDataChannel, allowed: frozenset[str] | None) -> None:
        self._channel = channel
        self._allowed = allowed

    def send_event(self, event: dict[str, Any]) -> None:
        if self._channel.readyState != "open":
            return
        if self._allowed is not None and event.get("type") not in self._allowed:
            return
        if self._channel.bufferedAmount > _MAX_CHANNEL_BUFFER_BYTES:
            logger.warning("emulator call: the data channel's peer is not reading; closing it")
            self._channel.close()
            return
        self._channel.send(json.dumps(event, separators=(",", ":")))

    def close(self, code: int, reason: str) -> None:
        if self._channel.readyState in ("connecting", "open"):
            self._channel.close()


def _mono_pcm16(frame: AudioFrame) -> bytes:
    """A decoded frame as mono PCM16 at the frame's rate (aiortc's Opus decoder gives packed s16)."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = samples.astype(np.int32).mean(axis=0) if samples.shape[0] > 1 else samples[0]
    else:
        interleaved = samples.reshape(-1, channels)
        data = interleaved.astype(np.int32).mean(axis=1) if channels > 1 else interleaved[:, 0]
    if frame.format.name not in ("s16", "s16p"):
        data = np.clip(np.asarray(data, dtype=np.float64) * 32767.0, -32768, 32767)
    return np.asarray(data).astype("<i2").tobytes()


class _Leg:
    """One call's peer connection and the tasks that move its audio and events."""

    def __init__(self, call: Call, *, filtered: bool) -> None:
        self.call = call
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tasks: set[asyncio.Task[Any]] = set()
        self._inbox: asyncio.Queue[str] = asyncio.Queue(_MAX_INBOX)
        self._closed = False

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._listen(track))

        @self.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            adapter = _DataChannel(channel, FILTERED_EVENT_TYPES if filtered else None)

            @channel.on("message")
            def on_message(message: Any) -> None:
                if isinstance(message, str):
                    try:
                        self._inbox.put_nowait(message)
                    except asyncio.QueueFull:
                        logger.warning("emulator call %s: client events arrive faster than handled", call.id)

            @channel.on("close")
            def on_close() -> None:
                call.detach(adapter)

            if channel.readyState == "open":
                call.attach(adapter)
            else:
                channel.on("open", lambda: call.attach(adapter))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed") and not call.ended.is_set():
                await call.hangup("peer")

        call.on_end(self._close_soon)
        self._spawn(self._deliver())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _listen(self, track: MediaStreamTrack) -> None:
        half = HalfBandResampler()
        other: StreamingResampler | None = None  # for a decoder at another rate than 48 kHz
        try:
            while not self.call.ended.is_set():
                frame = await track.recv()
                if not isinstance(frame, AudioFrame):
                    continue
                mono = _mono_pcm16(frame)
                if frame.sample_rate == _RTC_RATE_HZ and len(mono) % 4 == 0:
                    pcm = half.down(mono)
                else:
                    if other is None or other.from_hz != frame.sample_rate:
                        other = StreamingResampler(frame.sample_rate, WIRE_SAMPLE_RATE_HZ)
                    pcm = other.process(mono)
                if pcm:
                    await self.call.feed_pcm24(pcm)
        except MediaStreamError:
            if not self.call.ended.is_set():  # the peer's track ended: the caller left
                await self.call.hangup("peer")

    async def _deliver(self) -> None:
        while True:
            text = await self._inbox.get()
            await self.call.receive(text)

    def _close_soon(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        self._closed = True
        try:
            await self.pc.close()
        except Exception as exc:
            logger.debug("emulator call %s: closing the peer connection: %r", self.call.id, exc)
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _LEGS.discard(self)


_LEGS: set[_Leg] = set()  # keeps each leg (and its peer connection) alive while its call lasts


async def answer(call: Call, offer_sdp: str, *, filtered: bool = False) -> str:
    """Answer ``offer_sdp`` for ``call`` (its session started) and run the media leg; the SDP answer.

    ``filtered``: the data channel carries only :data:`FILTERED_EVENT_TYPES` (``?webrtcfilter=on``).
    """
    leg = _Leg(call, filtered=filtered)
    _LEGS.add(leg)
    try:
        try:
            await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise BadOffer(_describe(exc)) from exc
        if not any(t.kind == "audio" for t in leg.pc.getTransceivers()) and not _has_application(offer_sdp):
            raise BadOffer("it offers neither an audio track nor a data channel")
        for transceiver in leg.pc.getTransceivers():
            if transceiver.kind == "audio":
                leg.pc.addTrack(_AgentTrack(call))
                break
        answer_description = await leg.pc.createAnswer()
        await leg.pc.setLocalDescription(answer_description)  # gathers the host candidates
    except BaseException:
        await leg.close()
        raise
    return str(leg.pc.localDescription.sdp)


def _has_application(sdp: str) -> bool:
    return any(line.startswith("m=application") for line in sdp.splitlines())


def _describe(exc: Exception) -> str:
    detail = str(exc).strip() or type(exc).__name__
    return detail if len(detail) <= 200 else detail[:200] + "..."
