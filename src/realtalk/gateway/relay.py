"""One gateway session: a client WebSocket, its upstream WebSocket, and the protocol core between.

Theory of operation (issue 5, item 3; lessons.md mistakes 1, 5, 15):

* The client was authenticated and admitted before this object exists; the upstream socket is
  opened only now, with the server's credential. If that fails the client is closed with 1011 and
  ``UPSTREAM_UNAVAILABLE_SENTENCE``; the cause is logged, never told to the client.
* **Frames are relayed in callbacks, not pumps.** The client's frames arrive on ``client_text``
  (``embedded_server.DirectWebSocket``: uvicorn's socket, no ASGI message per frame) and the
  upstream's on ``_UpstreamListener`` (a ``picows`` connection); each is handled to the end and
  written to the other socket synchronously. No task switch, queue or lock per frame: that is why
  a frame through the gateway costs about half of one through a naive relay, and a quarter of
  what the naive relay adds to the kernel's share (bench/gateway.py). Flow control is the
  sockets' own: when one side's write buffer is full, the other side's reading pauses until it
  drains.
* One task per session, the **supervisor**, waits for the end: a side closing, a limit (idle,
  duration, no ``session.created`` in time), the budget, or a shutdown. Why it ended is one
  ``Ending`` (first one wins): the close code and reason for each side, plus an ``error`` event and
  a ``realtalk.notice`` the client is told first. After the end no frame is relayed.
* A per-session ``ClientProtocol`` (built with the profile) sees every upstream event and the
  client's audio timeline: it sends the authoritative ``session.update`` when ``session.created``
  arrives, prices every ``response.done`` (the budget), and turns the UI's playback reports into
  ``conversation.item.truncate``. Client events are held until that update went upstream (after
  ``_HOLD_FRAMES`` held, reading from the client pauses).
* Fast path: audio appends and audio deltas that match framing.py are forwarded as the same bytes;
  every other frame is parsed once (``json.loads``), checked (policy.py), and forwarded as the bytes
  that arrived, except ``session.created``/``session.updated``, which are re-serialised redacted.
* Under another ASGI server than realtalk's (no direct WebSocket), ``_AsgiChannel`` gives the same
  callbacks through ASGI messages: slower, same behaviour.
* Nothing here is shared with other sessions except the read-only services and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final, Protocol

from picows import WSCloseCode, WSError, WSFrame, WSListener, WSMsgType, WSTransport
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtalk.embedded_server import DIRECT_WEBSOCKET, DirectWebSocket, FrameSink
from realtalk.errors import LocalProtocolError
from realtalk.gateway import extension
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.extension import FLUSHED, PLAYBACK, NoticeLevel, PlaybackReport, parse_playback_report
from realtalk.gateway.framing import (
    append_audio_bytes,
    b64_decoded_length,
    match_audio_delta,
    readable_event_id,
)
from realtalk.gateway.limits import EventRateLimiter
from realtalk.gateway.logs import SessionLog
from realtalk.gateway.metrics import CLIENT_TO_UPSTREAM, UPSTREAM_TO_CLIENT, GatewayMetrics
from realtalk.gateway.policy import (
    ClientEventPolicy,
    Refusal,
    error_event,
    redact_session_event,
    without_noops,
)
from realtalk.gateway.upstream import UPSTREAM_ERRORS, Upstream
from realtalk.protocol import (
    AUDIO_FORMATS,
    ClientProtocol,
    LatencyMeasured,
    ProtocolViolation,
    ResponseFinished,
    ResponseState,
    SessionReady,
    TranscriptUpdated,
)

try:
    from realtalk.gateway.fastpath import FastPath
except ImportError:  # not built (no C compiler or Cython at install): the same frames take the Python path
    FastPath = None  # type: ignore[assignment,misc]  # the name is checked for None before use

__all__ = [
    "COMPILED_FAST_PATH",
    "SHUTDOWN_SENTENCE",
    "UPSTREAM_UNAVAILABLE_SENTENCE",
    "Ending",
    "GatewaySession",
    "SessionServices",
]

# Whether the compiled per-frame path (fastpath.pyx) was built; `realtalk serve` logs it.
COMPILED_FAST_PATH: Final = FastPath is not None

logger = logging.getLogger("realtalk.gateway.session")

# Close codes a server may send (RFC 6455 §7.4): 1004-1006 and 1015 are reserved.
_RESERVED_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})
_MAX_REASON_BYTES: Final = 123
_CORE_EVENT_IDS_KEPT: Final = 64
_LATENCY_WINDOW_CHUNKS: Final = 500
_HOLD_FRAMES: Final = 8
# Of each kind of refusal or dropped upstream frame, a session logs the first few; the rest are
# counted (metrics, and the "session ended" line), so a client sending junk cannot flood the log.
_LOGGED_PER_KIND: Final = 5
_TEXT: Final = WSMsgType.TEXT
_ASGI_CLOSE_WAIT_S: Final = 5.0


# What a client is told when a limit ends its session: the `error` event's message, the UI's notice
# and the close reason (whole sentences; RFC 6455 caps a close reason at 123 bytes).
LIMIT_SENTENCES: Final = {
    "session_duration": "The session reached the gateway's time limit of {limit:g} s; connect again.",
    "idle_timeout": "The client sent nothing for {limit:g} s, so the gateway closed the idle session.",
    "client_not_reading": "The client did not read what the gateway sent for {limit:g} s, so it was closed.",
    "upstream_not_reading": (
        "The Realtime service did not read what the gateway sent for {limit:g} s; connect again."
    ),
}

# What every client is told (an `error` event, then the close reason) when a drain ends its session.
SHUTDOWN_SENTENCE: Final = "The gateway is restarting; connect again in a few seconds."
# ... and when no upstream session could be opened (the cause, which may name hosts, is logged).
UPSTREAM_UNAVAILABLE_SENTENCE: Final = "The Realtime service is not available right now; try again shortly."


@dataclass(frozen=True)
class SessionServices:
    """What every session of one gateway shares: read-only configuration, and the metrics."""

    config: GatewayConfig
    upstream: Upstream
    policy: ClientEventPolicy
    metrics: GatewayMetrics
    # Relay audio frames through the compiled fast path where it was built (tests turn it off to
    # run the Python path: the two must behave the same).
    compiled: bool = True


@dataclass(frozen=True)
class Ending:
    """Why a session ends, and what each side is told. ``client_code=None``: the client is gone."""

    outcome: str
    client_code: int | None
    client_reason: str
    upstream_code: int = 1000
    upstream_reason: str = ""
    error: Refusal | None = None
    notice: tuple[NoticeLevel, str, str] | None = None


def close_reason(text: str) -> str:
    """``text`` cut to the 123 bytes a close frame's reason may hold."""
    encoded = text.encode("utf-8")
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[: _MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class ClientChannel(Protocol):
    """The client's side of a session, as the session uses it (see ``DirectWebSocket``)."""

    def send_text(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    @property
    def closed(self) -> bool: ...


class GatewaySession(FrameSink):
    """One client connection through the gateway; ``await run()`` serves it to the end."""

    def __init__(self, services: SessionServices, websocket: WebSocket, subject: str, *, ui: bool) -> None:
        self.id = "gw_" + secrets.token_hex(8)
        self.subject = subject
        self.ui = ui
        self._svc = services
        self._limits = services.config.limits
        self._max_bytes = self._limits.max_message_bytes
        self._ws = websocket
        self._client: ClientChannel | None = None
        self._asgi: _AsgiChannel | None = None
        self._upstream: WSTransport | None = None
        self._upstream_close: tuple[int, str] | None = None
        self._core = ClientProtocol(
            profile=services.config.profile.agent,
            prices=services.config.prices,
            # 10 s of 20 ms chunks: speech_stopped names audio sent a second or two before.
            latency_window_chunks=_LATENCY_WINDOW_CHUNKS,
        )
        now = perf_counter()
        self._limiter = EventRateLimiter(self._limits.max_events_per_s, self._limits.event_burst, now)
        self._started_s = now
        self.last_client_s = now  # the idle limit; written by the fast path too
        self._configured = False
        self._held: list[tuple[bytes, float]] = []
        self._client_paused: set[str] = set()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._upstream_stall_timer: asyncio.TimerHandle | None = None
        self._log_counts: dict[str, int] = {}
        # Model names that are a no-op in a client's session.update (see policy.without_noops).
        self._session_models: set[str] = {services.upstream.endpoint.deployment}
        if isinstance(requested := websocket.query_params.get("model"), str):
            self._session_models.add(requested)
        self._end_requested = asyncio.Event()
        self._ending: Ending | None = None
        self._draining = False
        self._drain_refused = False
        self._response_idle = asyncio.Event()
        self._core_event_ids: deque[str] = deque(maxlen=_CORE_EVENT_IDS_KEPT)
        self._traffic = services.metrics.open_traffic()
        self._fast: FastPath | None = None
        self.closed = asyncio.Event()
        self.log = SessionLog(logger, self.id, subject)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, subprotocol: str | None) -> None:
        """Accept the client, open the upstream, relay until one side ends, close both with a reason."""
        metrics = self._svc.metrics
        direct = self._ws.scope.get("extensions", {}).get(DIRECT_WEBSOCKET)
        if isinstance(direct, DirectWebSocket):
            fast_reads = None
            if FastPath is not None and self._svc.compiled:
                self._fast = FastPath(
                    self,
                    self._core,
                    self._limiter,
                    self._traffic,
                    direct,
                    ui=self.ui,
                    max_bytes=self._max_bytes,
                )
                fast_reads = self._fast.client_read
            direct.accept(
                self, subprotocol, fast_reads=fast_reads, write_limit_bytes=self._limits.client_buffer_bytes
            )
            self._client = direct
        else:
            self._asgi = _AsgiChannel(self._ws, self, self._limits.client_buffer_bytes)
            await self._asgi.accept(subprotocol)
            self._client = self._asgi
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        self.log.info("session opened (ui=%s)", self.ui)
        try:
            try:
                await self._svc.upstream.connect(
                    lambda: _UpstreamListener(self), self._svc.config.connect_timeout_s
                )
            except UPSTREAM_ERRORS as exc:
                self._upstream_unavailable(str(exc))
            else:
                await self._supervise()
        finally:
            await self._close()
            metrics.close_traffic(self._traffic)
            metrics.sessions_active.dec()
            self.closed.set()

    def _end(self, ending: Ending) -> None:
        if self._ending is None:
            self._ending = ending
            self._end_requested.set()
            self._fast_state()

    def _fast_state(self) -> None:
        # The fast path takes appends only in plain relaying, and nothing once the session ends.
        if self._fast is not None:
            self._fast.set_state(self._configured, self._ending is not None, self._draining)

    @property
    def fast_path(self) -> FastPath | None:
        """The compiled per-frame path this session relays audio through, if any."""
        return self._fast

    @property
    def ending(self) -> bool:
        """Whether the session's end was decided (it may still be closing its sockets)."""
        return self._ending is not None

    def end(self, ending: Ending) -> None:
        """Ask the session to end (from outside: shutdown). The first ending decided wins."""
        self._end(ending)

    def failed(self, exc: Exception) -> None:
        """A bug in handling a frame: this session ends (1011), the server goes on."""
        self.log.error("session failed: %r", exc, exc_info=exc)
        self._end(Ending("error", 1011, "gateway error", 1011, "gateway error"))

    async def _close(self) -> None:
        for timer in (self._stall_timer, self._upstream_stall_timer):
            if timer is not None:
                timer.cancel()
        self._stall_timer = self._upstream_stall_timer = None
        ending = self._ending or Ending("error", 1011, "the gateway ended the session")
        self._svc.metrics.session_ends.labels(ending.outcome).inc()
        client = self._client
        if client is not None and ending.client_code is not None and not client.closed:
            if ending.error is not None:
                self._send_client(error_event(ending.error, None))
            if self.ui and ending.notice is not None:
                self._send_client(extension.notice_message(*ending.notice))
            client.close(ending.client_code, close_reason(ending.client_reason))
        upstream = self._upstream
        if upstream is not None and not upstream.is_disconnected:
            with contextlib.suppress(WSError, OSError, RuntimeError):
                if not upstream.is_close_frame_sent:
                    upstream.send_close(
                        _close_code(ending.upstream_code), close_reason(ending.upstream_reason).encode()
                    )
                upstream.disconnect()
        if self._asgi is not None:
            await self._asgi.finish()
        counted = {kind: n for kind, n in self._log_counts.items() if n > _LOGGED_PER_KIND}
        self.log.info(
            "session ended: %s (client %s %r, upstream %s %r, cost $%s)%s",
            ending.outcome,
            ending.client_code,
            ending.client_reason,
            ending.upstream_code,
            ending.upstream_reason,
            extension.usd(self._core.costs.total_usd),
            "".join(f"; {n} x {kind}" for kind, n in sorted(counted.items())),
        )

    def _log_some(self, level: int, kind: str, msg: str, *args: object) -> None:
        """Log ``msg`` the first ``_LOGGED_PER_KIND`` times ``kind`` happens here; count the rest."""
        n = self._log_counts.get(kind, 0) + 1
        self._log_counts[kind] = n
        if n < _LOGGED_PER_KIND:
            self.log.log(level, msg, *args)
        elif n == _LOGGED_PER_KIND:
            self.log.log(level, msg + " (more of these are counted, not logged)", *args)

    async def _supervise(self) -> None:
        """Wait for the end: a side closing, a limit in time, the budget, a shutdown."""
        limits = self._limits
        created_by = perf_counter() + self._svc.config.connect_timeout_s
        while self._ending is None:
            now = perf_counter()
            duration_at = self._started_s + limits.max_session_s
            # While the gateway holds the client's reading paused (its upstream or its own send
            # buffer is full, or the session is not configured yet), silence is ours, not the
            # client's: the idle clock restarts when reading resumes (``_resume_client``), and is
            # looked at again within a second.
            paused = bool(self._client_paused)
            idle_at = now + 1.0 if paused else self.last_client_s + limits.idle_timeout_s
            if now >= duration_at:
                self._end(self._limit_ending("session_duration", limits.max_session_s))
                return
            if now >= idle_at:
                self._end(self._limit_ending("idle_timeout", limits.idle_timeout_s))
                return
            deadline = min(duration_at, idle_at)
            if not self._configured:
                if now >= created_by:
                    self._upstream_unavailable("no session.created in time")
                    return
                deadline = min(deadline, created_by)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - now):
                    await self._end_requested.wait()

    def _upstream_unavailable(self, detail: str) -> None:
        """No upstream session: the log says why (host, status, refusal); the client gets a sentence
        that reveals nothing of the upstream (an `error` event, the notice, and close 1011)."""
        self.log.warning("upstream unavailable: %s", detail)
        text = UPSTREAM_UNAVAILABLE_SENTENCE
        self._end(
            Ending(
                "upstream_unavailable",
                1011,
                text,
                error=Refusal("upstream_unavailable", text),
                notice=("error", "upstream_unavailable", text),
            )
        )

    def _limit_ending(self, code: str, limit: float) -> Ending:
        """A limit was hit: the client gets an ``error`` event, the notice (UI) and close 1008, each
        with the sentence ``LIMIT_SENTENCES`` has for it."""
        text = LIMIT_SENTENCES[code].format(limit=limit)
        return Ending(
            code,
            1008,
            text,
            1000,
            text,
            error=Refusal(code, text),
            notice=("warning", code, text),
        )

    # -- shutdown -----------------------------------------------------------------------------------

    async def begin_drain(self) -> None:
        """The server is stopping: tell the UI, accept no new turns, let the current reply finish."""
        self._draining = True
        self._fast_state()
        if self.ui and self._ending is None:
            self._send_client(
                extension.notice_message(
                    "warning",
                    "server_shutting_down",
                    "The server is shutting down; finishing the current reply.",
                )
            )
        self._check_idle()

    async def wait_response_idle(self) -> None:
        """Return once no response is in flight (only meaningful after ``begin_drain``)."""
        await self._response_idle.wait()

    def _check_idle(self) -> None:
        if self._draining and self._core.conversation.response_state is ResponseState.IDLE:
            self._response_idle.set()

    # -- the client's side (FrameSink) ------------------------------------------------------------

    def client_text(self, data: bytes) -> None:
        if self._ending is not None:
            return
        try:
            received_s = perf_counter()
            self.last_client_s = received_s
            if len(data) > self._max_bytes:
                self._refuse(
                    Refusal(
                        "message_too_large",
                        f"Rule 'message size': this event has {len(data)} bytes; "
                        f"the limit is {self._max_bytes}.",
                    ),
                    readable_event_id(data),
                )
            elif not self._limiter.allow(received_s):
                self.refuse_rate_limited(data)
            elif self._configured:
                self._client_frame(data, received_s)
            else:
                # Held until the authoritative session.update went upstream.
                self._held.append((data, received_s))
                if len(self._held) >= _HOLD_FRAMES:
                    self._pause_client("held")
        except Exception as exc:  # a bug must end this session, not the server
            self.failed(exc)

    def refuse_rate_limited(self, data: bytes) -> None:
        """Tell the client its event (``data``, not parsed) was over the rate limit and dropped."""
        self._refuse(
            Refusal(
                "rate_limit_exceeded",
                f"Rule 'event rate': at most {self._limits.max_events_per_s:g} events per second "
                f"(bursts of {self._limits.event_burst}); this event was dropped.",
            ),
            readable_event_id(data),
        )

    def client_binary(self, data: bytes) -> None:
        if self._ending is None:
            self.last_client_s = perf_counter()
            self._refuse(Refusal("invalid_event", "Binary frames are not supported; send JSON text."), None)

    def client_closed(self, code: int, reason: str) -> None:
        self.log.info("client closed (%s)", code)
        self._end(Ending("client_closed", None, "", 1000, "client disconnected"))

    def client_writable(self, writable: bool) -> None:
        """The client's send buffer crossed its high-water mark (``False``) or drained (``True``).

        Full: nothing more is read from either side (an upstream event or an answered client event
        would only add to it), and a timer starts: a client that stays full for
        ``client_stall_s`` is not reading, and is closed (1008). So what a session holds for its
        client is bounded by ``client_buffer_bytes`` plus what one read can add."""
        upstream = self._upstream
        socket = None if upstream is None or upstream.is_disconnected else upstream.underlying_transport
        if writable:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
            self._resume_client("client_buffer")
            if socket is not None:
                socket.resume_reading()
        else:
            self._pause_client("client_buffer")
            if socket is not None:
                socket.pause_reading()
            if self._stall_timer is None and self._ending is None:
                self._stall_timer = asyncio.get_running_loop().call_later(
                    self._limits.client_stall_s, self._client_stalled
                )

    def _client_stalled(self) -> None:
        self._stall_timer = None
        self._svc.metrics.refused("client_not_reading")
        self._end(self._limit_ending("client_not_reading", self._limits.client_stall_s))

    def _pause_client(self, why: str) -> None:
        if not self._client_paused and self._client is not None:
            self._client.pause_reading()
        self._client_paused.add(why)

    def _resume_client(self, why: str) -> None:
        paused = self._client_paused
        if why in paused:
            paused.discard(why)
            if not paused:
                self.last_client_s = max(self.last_client_s, perf_counter())  # see _supervise
                if self._client is not None:
                    self._client.resume_reading()

    def _client_frame(self, data: bytes, received_s: float) -> None:
        audio_bytes = append_audio_bytes(data)
        if audio_bytes < 0 or self._draining:
            self._client_event(data, received_s)
            return
        # The fast path: an audio append, forwarded as the bytes that came.
        self._core.audio_appended(audio_bytes, received_s)
        self._upstream_send(data)
        self._traffic.append(len(data), perf_counter() - received_s)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for data, received_s in held:
            if self._ending is not None:
                return
            self._client_frame(data, received_s)
        self._resume_client("held")

    def _client_event(self, data: bytes, received_s: float) -> None:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            self._refuse(Refusal("invalid_json", "The event is not valid JSON."), None)
            return
        if not isinstance(event, dict):
            self._refuse(Refusal("invalid_event", "An event must be a JSON object with a 'type'."), None)
            return
        event_type = event.get("type")
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if self.ui and event_type in (PLAYBACK, FLUSHED):
            self._playback(event, event_id, received_s)
            return
        refusal = self._svc.policy.check(event, session_models=self._session_models)
        if refusal is None and self._draining:
            refusal = self._drain_refusal(event_type)
            if refusal is None and event_type == "input_audio_buffer.append":
                return  # dropped: the one notice about it was already sent
        if refusal is not None:
            self._refuse(refusal, event_id)
            return
        if event_type == "session.update" and (kept := without_noops(event, self._session_models)):
            data = json.dumps(kept, separators=(",", ":")).encode()  # rare: a no-op taken out
        if event_type == "input_audio_buffer.append":
            audio_bytes = b64_decoded_length(event["audio"]) or 0
            spec = self._core.input_format
            if audio_bytes % spec.bytes_per_sample:
                # Half a sample would shift every later one by a byte: noise to the model.
                self._refuse(
                    Refusal(
                        "invalid_value",
                        f"Rule 'whole samples': {spec.name} audio has {spec.bytes_per_sample} bytes per "
                        f"sample; this append decodes to {audio_bytes} bytes.",
                        "audio",
                    ),
                    event_id,
                )
                return
            self._core.audio_appended(audio_bytes, received_s)
        self._upstream_send(data)
        traffic = self._traffic
        traffic.event(CLIENT_TO_UPSTREAM, event_type)
        traffic.bytes[0] += len(data)
        traffic.latency(0, perf_counter() - received_s)

    def _drain_refusal(self, event_type: object) -> Refusal | None:
        # While the server drains, no new turn may start; the first refusal says why, later audio
        # is dropped quietly (an error per 20 ms chunk would drown the client).
        if event_type not in ("response.create", "input_audio_buffer.append", "input_audio_buffer.commit"):
            return None
        if event_type == "input_audio_buffer.append" and self._drain_refused:
            return None
        self._drain_refused = True
        return Refusal("server_shutting_down", "The server is shutting down; no new turns are accepted.")

    def _playback(self, event: dict[str, Any], event_id: str | None, received_s: float) -> None:
        report = parse_playback_report(event)
        if isinstance(report, Refusal):
            self._refuse(report, event_id)
            return
        self._traffic.event(CLIENT_TO_UPSTREAM, event.get("type"))
        try:
            self._apply_playback(report, received_s)
        except LocalProtocolError as exc:
            self._refuse(Refusal("invalid_value", str(exc), "item_id"), event_id)
            return
        self._flush_core()

    def _apply_playback(self, report: PlaybackReport, received_s: float) -> None:
        if report.flushed:
            self._core.playback_flushed(report.item_id, report.played_samples)
            return
        # An item the core does not hold (a previous connection's) is the core's to drop and count.
        item = self._core.conversation.item(report.item_id)
        increment = report.played_samples - (item.audio_played_samples if item is not None else 0)
        if increment > 0:
            self._core.audio_played(report.item_id, increment, received_s)

    def _refuse(self, refusal: Refusal, event_id: str | None) -> None:
        self._svc.metrics.refused(refusal.code)
        self._log_some(logging.INFO, "refused " + refusal.code, "refused a client event: %s", refusal.code)
        self._send_client(error_event(refusal, event_id))

    def _send_client(self, text: str) -> None:
        self._client_send_bytes(text.encode())

    # -- the upstream's side ------------------------------------------------------------------------

    def _upstream_send(self, data: bytes) -> None:
        upstream = self._upstream
        if upstream is not None and not upstream.is_close_frame_sent:
            upstream.send(_TEXT, data)

    def upstream_connected(self, transport: WSTransport) -> None:
        self._upstream = transport
        if self._fast is not None:
            self._fast.set_upstream(transport)

    def upstream_text(self, data: bytes) -> None:
        if self._ending is not None:
            return
        try:
            received_s = perf_counter()
            delta = match_audio_delta(data)
            if delta is None:
                self._upstream_event(data, received_s)
                return
            # The fast path: an audio delta, forwarded as the bytes that came. UI sessions do not get
            # audio the core already flushed or cut (it would be played late).
            if self._core.receive_audio_delta(*delta, received_s) or not self.ui:
                client = self._client
                if client is not None:
                    client.send_text(data)
                self._traffic.delta(len(data), perf_counter() - received_s)
            else:
                self._traffic.delta(len(data), None)
        except Exception as exc:  # a bug must end this session, not the server
            self.failed(exc)

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream sent a close frame (``code``), or the connection was lost (``None``)."""
        if self._upstream_close is None:
            self._upstream_close = (code or 1006, reason)
        self._end(self._upstream_ending())

    def upstream_writable(self, writable: bool) -> None:
        """The upstream's send buffer crossed its high-water mark (``False``) or drained (``True``).

        Full: the client's reading pauses (what it sends would only add to it), and a timer starts:
        an upstream that stays full for ``upstream_stall_s`` is not reading, and the session ends
        (client 1011). While reading is paused the gateway cannot see the client leave, so
        without this a stalled upstream would hold the session, and the client's slot, for ever."""
        if writable:
            if self._upstream_stall_timer is not None:
                self._upstream_stall_timer.cancel()
                self._upstream_stall_timer = None
            self._resume_client("upstream")
        else:
            self._pause_client("upstream")
            if self._upstream_stall_timer is None and self._ending is None:
                self._upstream_stall_timer = asyncio.get_running_loop().call_later(
                    self._limits.upstream_stall_s, self._upstream_stalled
                )

    def _upstream_stalled(self) -> None:
        self._upstream_stall_timer = None
        text = LIMIT_SENTENCES["upstream_not_reading"].format(limit=self._limits.upstream_stall_s)
        self.log.warning("upstream not reading for %g s: session ended", self._limits.upstream_stall_s)
        self._end(
            Ending(
                "upstream_not_reading",
                1011,
                text,
                1001,
                "the gateway stopped waiting for the service to read",
                error=Refusal("upstream_not_reading", text),
                notice=("error", "upstream_not_reading", text),
            )
        )

    def _upstream_ending(self) -> Ending:
        code, reason = self._upstream_close or (1006, "")
        if code in _RESERVED_CLOSE_CODES:
            text = f"upstream connection lost ({code})"
            return Ending("upstream_lost", 1011, text, notice=("error", "upstream_lost", text))
        text = reason or f"upstream closed the session ({code})"
        level: NoticeLevel = "info" if code == 1000 else "warning"
        return Ending("upstream_closed", code, text, notice=(level, "upstream_closed", text))

    def _upstream_event(self, data: bytes, received_s: float) -> None:
        traffic = self._traffic
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            self._log_some(
                logging.WARNING, "upstream not JSON", "upstream sent a frame that is not UTF-8 JSON; dropped"
            )
            return
        if not isinstance(event, dict):
            self._log_some(
                logging.WARNING, "upstream not an object", "upstream sent JSON that is not an object; dropped"
            )
            return
        event_type = event.get("type")
        outgoing: bytes | None = data
        if event_type in ("session.created", "session.updated"):
            outgoing = json.dumps(redact_session_event(event), separators=(",", ":")).encode()
            session = event.get("session")
            if isinstance(session, dict) and isinstance(model := session.get("model"), str):
                self._session_models.add(model)  # what a client may echo back as a no-op
        elif event_type == "error":
            outgoing = self._upstream_error(event, data)
        self._core.receive_event(event, received_s)
        created = event_type == "session.created"
        if created:
            self.log.upstream_session_id = self._core.session_id
            self.log.info("upstream session created")
            self._flush_core_messages()
            self._configured = True
            self._fast_state()
        if outgoing is not None:
            self._client_send_bytes(outgoing)
            traffic.latency(1, perf_counter() - received_s)
        traffic.event(UPSTREAM_TO_CLIENT, event_type)
        traffic.bytes[1] += len(data)
        self._flush_core()
        if created:
            self._release_held()
        self._check_idle()

    def _client_send_bytes(self, data: bytes) -> None:
        client = self._client
        if client is not None:
            client.send_text(data)

    def _upstream_error(self, event: dict[str, Any], data: bytes) -> bytes | None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        self._svc.metrics.upstream_error(code)
        if error.get("event_id") in self._core_event_ids:
            # An answer to the gateway's own event (its session.update, a truncate): the client did
            # not send it, and some SDKs treat an unknown error as fatal. Logged, not forwarded.
            self.log.warning("upstream refused the gateway's own event: %s: %s", code, error.get("message"))
            return None
        return data

    # -- the core's outputs -------------------------------------------------------------------------

    def _flush_core(self) -> None:
        self._flush_core_messages()
        for event in self._core.events_received():
            self._on_core_event(event)
            if self._ending is not None:
                return

    def _flush_core_messages(self) -> None:
        for frame in self._core.messages_to_send():
            event_id = json.loads(frame).get("event_id")
            if isinstance(event_id, str):
                self._core_event_ids.append(event_id)
            self._upstream_send(frame.encode())

    def _on_core_event(self, event: object) -> None:
        metrics = self._svc.metrics
        match event:
            case SessionReady():
                self.log.info("session configured")
                if self.ui:
                    config = self._svc.config
                    self._send_client(
                        extension.session_message(
                            session_id=self.id,
                            upstream=self._svc.upstream.kind,
                            deployment=self._svc.upstream.endpoint.deployment,
                            budget_usd=config.limits.budget_usd,
                            sample_rate_hz=AUDIO_FORMATS[config.profile.agent.output_format].sample_rate_hz,
                            upstream_session_id=self._core.session_id,
                        )
                    )
            case TranscriptUpdated(lines=lines) if self.ui:
                self._send_client(extension.transcript_message(lines))
            case ResponseFinished(turn_cost=turn):
                if turn is not None:
                    metrics.turn(turn)
                if self.ui:
                    self._send_client(extension.cost_message(self._core.costs, turn))
                self._check_budget()
            case LatencyMeasured():
                metrics.voice_to_voice.observe(event.voice_to_voice_ms / 1000)
                if self.ui:
                    self._send_client(
                        extension.latency_message(
                            event.response_id, event.voice_to_voice_ms, event.first_audio_received_ms
                        )
                    )
            case ProtocolViolation():
                self._log_some(
                    logging.WARNING, "upstream violation", "upstream protocol violation: %s", event.error
                )
            case _:
                pass

    def _check_budget(self) -> None:
        budget = self._limits.budget_usd
        spent = self._core.costs.total_usd
        if budget <= 0 or spent < budget:
            return
        text = f"session budget of ${budget} reached (spent ${extension.usd(spent)})"
        self.log.warning("%s", text)
        self._end(
            Ending(
                "budget",
                1008,
                text,
                1000,
                "session budget reached",
                error=Refusal("budget_exceeded", f"The {text}; the session ends."),
                notice=("error", "budget_exceeded", f"The {text}."),
            )
        )


def _close_code(code: int) -> WSCloseCode:
    try:
        return WSCloseCode(code)
    except ValueError:
        return WSCloseCode.OK


class _UpstreamListener(WSListener):
    """The upstream socket's frames, handed to the session as they arrive."""

    def __init__(self, session: GatewaySession) -> None:
        self._session = session
        self._fast = session.fast_path
        self._fragments: list[bytes] | None = None
        self._told = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        # Before the first frame, which may come in the same read as the 101.
        self._session.upstream_connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT:
            if frame.fin:
                if self._fast is not None:
                    self._fast.upstream_frame(frame)
                else:
                    self._session.upstream_text(frame.get_payload_as_bytes())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
        elif msg_type == WSMsgType.CONTINUATION:
            if self._fragments is not None:
                self._fragments.append(frame.get_payload_as_bytes())
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._session.upstream_text(data)
        elif msg_type == WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if not transport.is_close_frame_sent:
                transport.send_close(_close_code(code) if code != 1005 else WSCloseCode.OK)
            transport.disconnect()
            self._tell(code, reason)
        elif msg_type == WSMsgType.BINARY:
            self._session.log.warning("upstream sent a binary frame (%d bytes); ignored", frame.payload_size)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._tell(None, "")

    def _tell(self, code: int | None, reason: str) -> None:
        if not self._told:
            self._told = True
            self._session.upstream_closed(code, reason)

    def pause_writing(self) -> None:
        self._session.upstream_writable(False)

    def resume_writing(self) -> None:
        self._session.upstream_writable(True)


class _AsgiChannel:
    """The client's side through plain ASGI messages (an ASGI server other than realtalk's): a
    reader task feeds the session's callbacks, a writer task sends what it queues."""

    def __init__(self, websocket: WebSocket, sink: FrameSink, limit_bytes: int) -> None:
        self._ws = websocket
        self._sink = sink
        # Bounded in bytes like the direct path's send buffer: above ``limit_bytes`` queued the sink
        # hears client_writable(False) (and stops producing), below a quarter of it True again.
        self._outbox: asyncio.Queue[bytes | tuple[int, str]] = asyncio.Queue()
        self._queued_bytes = 0
        self._high_bytes = limit_bytes
        self._low_bytes = limit_bytes // 4
        self._readable = asyncio.Event()
        self._readable.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._told = False
        self._close_queued = False
        self._writable = True

    async def accept(self, subprotocol: str | None) -> None:
        await self._ws.accept(subprotocol=subprotocol)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    @property
    def closed(self) -> bool:
        return self._closing

    def send_text(self, data: bytes) -> None:
        if self._closing:
            return
        self._outbox.put_nowait(data)
        self._queued_bytes += len(data)
        if self._writable and self._queued_bytes >= self._high_bytes:
            self._writable = False
            self._sink.client_writable(False)

    def close(self, code: int, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._told = True
            self._close_queued = True
            self._outbox.put_nowait((code, reason))

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def _tell(self, code: int, reason: str) -> None:
        if not self._told:
            self._told = True
            self._closing = True
            self._sink.client_closed(code, reason)

    async def _read(self) -> None:
        try:
            while True:
                await self._readable.wait()
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    self._tell(int(message.get("code") or 1005), str(message.get("reason") or ""))
                    return
                text = message.get("text")
                if text is not None:
                    self._sink.client_text(text.encode())
                else:
                    self._sink.client_binary(message.get("bytes") or b"")
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._tell(1006, "connection lost")

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, tuple):
                    await self._ws.close(item[0], item[1])
                    return
                await self._ws.send({"type": "websocket.send", "text": item.decode()})
                self._queued_bytes -= len(item)
                if not self._writable and self._queued_bytes <= self._low_bytes:
                    self._writable = True
                    self._sink.client_writable(True)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._tell(1006, "connection lost")

    async def finish(self) -> None:
        """Let the writer send what is queued (its close last), then stop both tasks."""
        if self._tasks and self._close_queued:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ASGI_CLOSE_WAIT_S):
                    await asyncio.wait({self._tasks[1]})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
