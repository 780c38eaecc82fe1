"""Calls: Realtime sessions whose audio travels over a media leg (WebRTC or SIP), not in events.

A :class:`Call` wraps one :class:`RealtimeSession`. The session does not know it is in a call,
except for a :class:`~realtalk.emulator.session.Playout` hook: its events go through a
:class:`_CallOutbox` that routes each one at once, in the order emitted:

- ``response.output_audio.delta`` is not sent to anyone: its audio (decoded from the session's
  output format to 24 kHz PCM16) joins the *playout queue*;
- every other event goes to every attached :class:`CallChannel` (a WebRTC data channel, sideband
  WebSockets on ``?call_id=``). Events emitted before the first channel attaches are kept (bounded,
  oldest dropped) and delivered to it: the data channel opens only after the SDP answer.

The media leg (``webrtc.py``, or the simulated phone of ``sip.py``) calls
:meth:`Call.next_output_frame` once per 20 ms; that is the playout clock. It emits
``output_audio_buffer.started`` when the first frame of a response plays, and
``output_audio_buffer.stopped`` once all of it has played (after its ``response.done``). The ms
played per item count from it, so that a barge-in (speech while a reply plays, with
``turn_detection.interrupt_response`` on) truncates the item at the ms actually played, through the
session's own truncate path (``conversation.item.truncated``), then emits
``output_audio_buffer.cleared``. ``output_audio_buffer.clear`` from a channel does the same.

Memory per call is bounded: the backlog before the first channel (``MAX_BACKLOG_EVENTS``), the
playout queue (``MAX_PLAYOUT_MS``; audio beyond it is dropped, with a warning), the per-item and
per-response bookkeeping (a few recent entries). The registry keeps live calls and the latest
``CallRegistry.ENDED_CALLS_KEPT`` ended ones.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from realtalk.audio.g711 import G711_SAMPLE_RATE_HZ, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.audio.resample import StreamingResampler, resample
from realtalk.emulator import events
from realtalk.emulator.config import EmulatorConfig
from realtalk.emulator.engines import Engines
from realtalk.emulator.events import new_id
from realtalk.emulator.outbox import Close, Drop, Outbox, Outgoing
from realtalk.emulator.responder import Responder
from realtalk.emulator.session import RealtimeSession
from realtalk.emulator.session_config import input_format_type, output_format_type
from realtalk.emulator.stats import EmulatorStats, SessionRecord

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "Call",
    "CallChannel",
    "CallDecision",
    "CallRegistry",
    "CallState",
    "CallTransport",
]

logger = logging.getLogger(__name__)

CallTransport = Literal["webrtc", "sip"]
CallState = Literal["ringing", "active", "rejected", "referred", "ended"]

FRAME_MS = 20
_PCM24_BYTES_PER_MS = 48
FRAME_BYTES = FRAME_MS * _PCM24_BYTES_PER_MS  # 960: 20 ms of 24 kHz PCM16 mono
MAX_BACKLOG_EVENTS = 512  # events kept for the first channel, oldest dropped
MAX_PLAYOUT_MS = 120_000  # agent audio queued for playout at most (5.8 MB); more is dropped
_RECENT = 32  # responses / items whose playout bookkeeping is kept
_SILENCE = bytes(FRAME_BYTES)


@dataclass(frozen=True)
class CallDecision:
    """What the app answered to a ringing (SIP) call."""

    kind: Literal["accept", "reject", "refer"]
    session: dict[str, Any] | None = None  # accept: the session object of the /accept body
    status_code: int | None = None  # reject (default 603)
    target_uri: str | None = None  # refer


class CallChannel(Protocol):
    """Where a call's server events go: a WebRTC data channel, a sideband WebSocket."""

    def send_event(self, event: dict[str, Any]) -> None:
        """Queue one event; never blocks (a channel drops the oldest or closes itself on overflow)."""

    def close(self, code: int, reason: str) -> None:
        """The call ended (or the channel is refused): close, after what was queued."""


class _Chunk:
    __slots__ = ("data", "item_id", "offset", "response_id")

    def __init__(self, response_id: str, item_id: str, data: bytes) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.data = data
        self.offset = 0


class _CallOutbox(Outbox):
    """The session's outbox in a call: routes each message to the call as it is put."""

    def __init__(self, call: Call) -> None:
        super().__init__(maxsize=1)
        self._call = call

    async def put(self, message: Outgoing) -> None:
        if self.ended:
            return
        if isinstance(message, Close | Drop):
            self.ended = True
        self._call._route(message)


class Call:
    """One WebRTC or SIP call; see the module docstring. Made by :meth:`CallRegistry.create`."""

    def __init__(
        self, registry: CallRegistry, transport: CallTransport, sip_headers: Iterable[dict[str, str]]
    ):
        self.id = f"rtc_{secrets.token_hex(16)}"
        self.transport: CallTransport = transport
        self.state: CallState = "ringing"
        self.sip_headers: list[dict[str, str]] = [dict(h) for h in sip_headers]
        self.decision: asyncio.Future[CallDecision] = asyncio.get_running_loop().create_future()
        self.ended = asyncio.Event()
        self.ended_by: str | None = None
        self.session: RealtimeSession | None = None
        self.recorded_output_pcm24: bytearray | None = None
        self.created_at = time.time()
        self._registry = registry
        self._record: SessionRecord | None = None
        self._channels: list[CallChannel] = []
        self._backlog: deque[dict[str, Any]] | None = deque(maxlen=MAX_BACKLOG_EVENTS)
        self._ending = False
        self._on_end: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # playout
        self._queue: deque[_Chunk] = deque()
        self._queued_bytes = 0
        self._played_bytes: OrderedDict[str, int] = OrderedDict()  # item id → bytes of it played
        self._started: OrderedDict[str, None] = OrderedDict()  # responses whose audio began playing
        self._generated: OrderedDict[str, None] = OrderedDict()  # responses whose response.done was seen
        self._cut: OrderedDict[str, None] = OrderedDict()  # responses cleared: later deltas are dropped
        self._last_response_id: str | None = None
        self._overflow_warned = False
        # caller audio in
        self._in_format: str | None = None
        self._in_resampler: StreamingResampler | None = None
        self.frames_played = 0  # next_output_frame calls (the playout clock, 20 ms each)
        self._halted: tuple[str | None, dict[str, int]] | None = None  # cut by halt, not truncated yet

    def __repr__(self) -> str:
        return f"Call({self.id!r}, {self.transport}, {self.state})"

    # --- lifecycle -----------------------------------------------------------------------------

    async def start_session(
        self, model: str, initial_update: dict[str, Any] | None, *, credential_kind: str = "call"
    ) -> None:
        """Create and start the call's Realtime session (``session.created`` goes to the backlog)."""
        if self.session is not None:
            raise RuntimeError(f"call {self.id} already has a session")
        if self.ended.is_set():
            raise RuntimeError(f"call {self.id} has ended")
        registry = self._registry
        self._record = registry.stats.open_session(
            SessionRecord(new_id("sess"), model, credential_kind, transport=self.transport, call_id=self.id)
        )
        self.session = RealtimeSession(
            model=model,
            config=registry.config,
            engines=registry.engines,
            responder=registry.responder_factory(),
            outbox=_CallOutbox(self),
            record=self._record,
            notify=registry.stats.notify,
            initial_update=initial_update,
            playout=self,
        )
        self.state = "active"
        await self.session.start()

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, must not block) once the call has ended."""
        if self.ended.is_set():
            callback()
        else:
            self._on_end.append(callback)

    async def hangup(self, by: str) -> None:
        """End the call: stop the session, close the channels (1000), let the media leg stop."""
        if self._ending:
            await self.ended.wait()
            return
        self._ending = True
        try:
            self.ended_by = by
            if self.state in ("ringing", "active"):
                self.state = "ended"
            channels, self._channels = self._channels, []
            for channel in channels:
                _safely(channel.close, 1000, "call ended")
            if self.session is not None:
                await self.session.aclose()
            if self._record is not None:
                self._registry.stats.close_session(self._record)
            self._queue.clear()
            self._queued_bytes = 0
            self._backlog = None
        finally:
            self.ended.set()
            callbacks, self._on_end = self._on_end, []
            for callback in callbacks:
                _safely(callback)
            self._registry._call_ended(self)

    def _hangup_soon(self, by: str) -> None:
        task = asyncio.get_running_loop().create_task(self.hangup(by))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- channels ------------------------------------------------------------------------------

    def attach(self, channel: CallChannel) -> None:
        """``channel`` gets every server event from now on (the first one also gets the backlog)."""
        if self.ended.is_set():
            channel.close(1000, "call ended")
            return
        backlog, self._backlog = self._backlog, None
        for event in backlog or ():
            channel.send_event(event)
        self._channels.append(channel)

    def attach_sideband(self, channel: CallChannel) -> None:
        """Attach a sideband: ``session.created`` with the current session, then every event.

        On a SIP call (no data channel) the first sideband takes the backlog instead, which starts
        with ``session.created`` and holds what happened before it attached.
        """
        if self.transport == "sip" and self._backlog is not None:
            self.attach(channel)
            return
        if self.session is None:
            raise RuntimeError(f"call {self.id} has no session")
        channel.send_event(events.session_created(self.session.session))
        self._channels.append(channel)

    def detach(self, channel: CallChannel) -> None:
        if channel in self._channels:
            self._channels.remove(channel)

    @property
    def channels(self) -> int:
        return len(self._channels)

    async def receive(self, text: str) -> None:
        """A client event from any channel: handled by the session like a WebSocket frame."""
        if self.session is not None and not self._ending:
            await self.session.receive(text)

    def _send(self, event: dict[str, Any]) -> None:
        if self._record is not None:
            self._record.server_event(event["type"])
        if self._backlog is not None:
            self._backlog.append(event)
        for channel in list(self._channels):
            _safely(channel.send_event, event)

    def _route(self, message: Outgoing) -> None:
        """Everything the session emits, in order (called from the session's outbox)."""
        if isinstance(message, Close | Drop):
            self._hangup_soon("session")
            return
        kind = message["type"]
        if kind == "response.output_audio.delta":
            if self._record is not None:
                self._record.server_event(kind)
            self._enqueue(message)
            return
        self._send(message)
        if kind == "response.done":
            response_id = message["response"]["id"]
            _remember(self._generated, response_id)
            self._maybe_stopped(response_id)

    # --- caller audio in -------------------------------------------------------------------------

    async def feed_pcm24(self, pcm: bytes) -> None:
        """Caller audio (24 kHz PCM16 mono), converted to the session's input format, as an append."""
        session = self.session
        if session is None or self._ending or not pcm:
            return
        fmt = input_format_type(session.session)
        if fmt != self._in_format:
            self._in_format = fmt
            self._in_resampler = (
                None if fmt == "audio/pcm" else StreamingResampler(WIRE_SAMPLE_RATE_HZ, G711_SAMPLE_RATE_HZ)
            )
        if self._in_resampler is None:
            raw = pcm
        else:
            narrow = self._in_resampler.process(pcm)
            raw = ulaw_encode(narrow) if fmt == "audio/pcmu" else alaw_encode(narrow)
        if raw:
            await session.feed_input(raw)

    async def dtmf(self, digit: str) -> None:
        """A keypad digit from the caller: ``input_audio_buffer.dtmf_event_received``."""
        if self.session is None or self._ending:
            return
        self._send(
            {
                "type": "input_audio_buffer.dtmf_event_received",
                "event": digit,
                "received_at": int(time.time()),
            }
        )
        self._registry.stats.notify()

    # --- agent audio out: the playout hub --------------------------------------------------------

    def _enqueue(self, event: dict[str, Any]) -> None:
        response_id: str = event["response_id"]
        if response_id in self._cut or self.session is None:
            return
        try:
            raw = base64.b64decode(event["delta"], validate=True)
        except (binascii.Error, ValueError):
            return
        fmt = output_format_type(self.session.session["audio"]["output"]["format"])
        if fmt == "audio/pcm":
            pcm24 = raw
        else:
            narrow = ulaw_decode(raw) if fmt == "audio/pcmu" else alaw_decode(raw)
            pcm24 = resample(narrow, G711_SAMPLE_RATE_HZ, WIRE_SAMPLE_RATE_HZ)
        room = MAX_PLAYOUT_MS * _PCM24_BYTES_PER_MS - self._queued_bytes
        if len(pcm24) > room:
            if not self._overflow_warned:
                self._overflow_warned = True
                logger.warning("emulator call %s: playout queue full, agent audio dropped", self.id)
            pcm24 = pcm24[: max(0, room) // 2 * 2]
        if not pcm24:
            return
        self._last_response_id = response_id
        self._queue.append(_Chunk(response_id, event["item_id"], pcm24))
        self._queued_bytes += len(pcm24)

    def next_output_frame(self) -> bytes:
        """The next 20 ms of agent audio (960 bytes, 24 kHz PCM16), silence when nothing plays.

        The media leg calls this once per 20 ms of real time: it is the playout clock.
        """
        self.frames_played += 1
        if not self._queue:
            return _SILENCE
        out = bytearray()
        while len(out) < FRAME_BYTES and self._queue:
            chunk = self._queue[0]
            if chunk.response_id not in self._started:
                _remember(self._started, chunk.response_id)
                self._send(_audio_buffer_event("output_audio_buffer.started", chunk.response_id))
            take = chunk.data[chunk.offset : chunk.offset + FRAME_BYTES - len(out)]
            chunk.offset += len(take)
            out += take
            self._queued_bytes -= len(take)
            self._played_bytes[chunk.item_id] = self._played_bytes.get(chunk.item_id, 0) + len(take)
            self._played_bytes.move_to_end(chunk.item_id)
            while len(self._played_bytes) > _RECENT:
                self._played_bytes.popitem(last=False)
            if chunk.offset >= len(chunk.data):
                self._queue.popleft()
                self._maybe_stopped(chunk.response_id)
        if len(out) < FRAME_BYTES:
            out += bytes(FRAME_BYTES - len(out))
        return bytes(out)

    def played_ms(self, item_id: str) -> int:
        """How much of an item's audio the playout clock has played, in ms."""
        return self._played_bytes.get(item_id, 0) // _PCM24_BYTES_PER_MS

    @property
    def queued_ms(self) -> int:
        return self._queued_bytes // _PCM24_BYTES_PER_MS

    def _maybe_stopped(self, response_id: str) -> None:
        if response_id not in self._started or response_id not in self._generated:
            return
        if any(c.response_id == response_id for c in self._queue):
            return
        del self._started[response_id]
        del self._generated[response_id]
        self._send(_audio_buffer_event("output_audio_buffer.stopped", response_id))

    def halt(self) -> None:
        """Speech started (``interrupt_response`` on): stop playing at once, before the response is
        cancelled, so the caller hears nothing more of it; ``barge_in`` then truncates there."""
        if self._queue:
            self._halted = self._stop_playout()

    async def barge_in(self) -> None:
        """After ``halt`` and the response's cancellation: truncate each cut item where it stopped."""
        halted, self._halted = self._halted, None
        if halted is not None:
            await self._truncate(*halted)

    async def clear(self) -> None:
        """``output_audio_buffer.clear`` from a channel."""
        await self._truncate(*self._stop_playout())

    def _stop_playout(self) -> tuple[str | None, dict[str, int]]:
        """Drop the queue; (its first response, the ms played of each item in it)."""
        chunks = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        response_id = chunks[0].response_id if chunks else self._last_response_id
        played: dict[str, int] = {}
        for chunk in chunks:
            _remember(self._cut, chunk.response_id)
            self._started.pop(chunk.response_id, None)
            self._generated.pop(chunk.response_id, None)
            played[chunk.item_id] = self.played_ms(chunk.item_id)
        return response_id, played

    async def _truncate(self, response_id: str | None, played: dict[str, int]) -> None:
        session = self.session
        if session is not None:
            for item_id, played_ms in played.items():
                await session.truncate_played(item_id, played_ms)
        if response_id is not None:
            self._send(_audio_buffer_event("output_audio_buffer.cleared", response_id))


def _audio_buffer_event(kind: str, response_id: str) -> dict[str, Any]:
    return {"type": kind, "event_id": new_id("event"), "response_id": response_id}


def _remember(recent: OrderedDict[str, None], key: str) -> None:
    recent[key] = None
    recent.move_to_end(key)
    while len(recent) > _RECENT:
        recent.popitem(last=False)


def _safely(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception as exc:  # a channel's failure must not stop the call or the other channels
        logger.debug("emulator call: channel callback failed: %r", exc)


class CallRegistry:
    """The calls of one emulator instance: the live ones and the latest ended ones."""

    ENDED_CALLS_KEPT = 64

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        engines: Engines,
        stats: EmulatorStats,
        responder_factory: Callable[[], Responder],
    ) -> None:
        self.config = config
        self.engines = engines
        self.stats = stats
        self.responder_factory = responder_factory
        self._live: dict[str, Call] = {}
        self._ended: OrderedDict[str, Call] = OrderedDict()

    def create(self, transport: CallTransport, *, sip_headers: Iterable[dict[str, str]] = ()) -> Call:
        call = Call(self, transport, sip_headers)
        self._live[call.id] = call
        self.stats.call_created(transport)
        return call

    def get(self, call_id: str) -> Call | None:
        return self._live.get(call_id) or self._ended.get(call_id)

    @property
    def live(self) -> list[Call]:
        return list(self._live.values())

    async def hangup_all(self, by: str = "session") -> None:
        """End every live call (the emulator is stopping)."""
        for call in list(self._live.values()):
            await call.hangup(by)

    def _call_ended(self, call: Call) -> None:
        if self._live.pop(call.id, None) is None:
            return
        self._ended[call.id] = call
        while len(self._ended) > self.ENDED_CALLS_KEPT:
            self._ended.popitem(last=False)
        self.stats.call_ended(call.transport)
