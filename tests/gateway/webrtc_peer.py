"""A WebRTC peer for tests, the way a browser makes a call: an aiortc peer connection with a
microphone track (PCM queued by the test, then silence, paced in real time), the ``oai-events``
data channel, and what the remote track plays, kept as 24 kHz PCM16.

Written for the tests, independently of ``realtalk.client``'s WebRTC session, so that a misreading
of the protocol there does not pass here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from realtalk.audio.resample import resample

FRAME_SAMPLES_48K = 960  # 20 ms


class Microphone(MediaStreamTrack):
    """An audio track that plays what ``say`` queued, and silence in between, in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queued = bytearray()  # 48 kHz PCM16 mono
        self._timestamp = 0
        self._started: float | None = None

    def say(self, pcm24: bytes) -> None:
        self._queued += resample(pcm24, 24_000, 48_000)

    @property
    def speaking(self) -> bool:
        return bool(self._queued)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._started is None:
            self._started = time.monotonic()
        else:
            wait = self._started + self._timestamp / 48_000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        size = FRAME_SAMPLES_48K * 2
        chunk = bytes(self._queued[:size]).ljust(size, b"\0")
        del self._queued[:size]
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES_48K)
        frame.planes[0].update(chunk)
        frame.sample_rate = 48_000
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, 48_000)
        self._timestamp += FRAME_SAMPLES_48K
        return frame


class Peer:
    """One call: ``await peer.offer()`` → SDP to post; ``await peer.answer(sdp)``; then events."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.microphone = Microphone()
        self.pc.addTrack(self.microphone)
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.opened = asyncio.Event()
        self.heard = bytearray()  # 24 kHz PCM16 mono, every sample the remote track delivered
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._message)
        self.pc.on("track", self._track)

    def _message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.events.append(json.loads(message))
            self._arrived.set()

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
                pcm48 = samples.astype(np.int16).tobytes()
                self.heard += resample(pcm48, frame.sample_rate, 24_000)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def until(self, event_type: str, timeout_s: float = 20.0, after: int = 0) -> dict[str, Any]:
        """The first event of ``event_type`` at index ``after`` or later, waiting for it."""
        deadline = time.monotonic() + timeout_s
        index = after
        while True:
            while index < len(self.events):
                if self.events[index].get("type") == event_type:
                    return self.events[index]
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {event_type} in {timeout_s} s; got {[e['type'] for e in self.events]}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def types(self) -> list[str]:
        return [event.get("type", "") for event in self.events]

    async def close(self) -> None:
        self.microphone.stop()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
