"""One gateway session: a client WebSocket, its upstream WebSocket, and the protocol core between.

Theory of operation (issue 5, item 3; lessons.md mistakes 1, 5, 15):

* The client was authenticated and admitted before this object exists; the upstream socket is
  opened only now, with the server's credential. If that fails the client is closed with 1011
  ``upstream unavailable: ...``.
* Three tasks run per session: the **client pump** (client → upstream), the **upstream pump**
  (upstream → client) and a **watchdog** (idle and duration limits, and end requests). The first
  to finish ends the session; the others are cancelled (never two gathered pumps where one side
  hangs). Why it ended is one ``Ending`` (first one wins): the close code and reason for each side,
  plus an ``error`` event and a ``realtalk.notice`` the client is told first.
* A per-session ``ClientProtocol`` (built with the profile) sees every upstream event and the
  client's audio timeline: it sends the authoritative ``session.update`` when ``session.created``
  arrives, prices every ``response.done`` (the budget), and turns the UI's playback reports into
  ``conversation.item.truncate``. Client events wait until that update went upstream (the client
  pump holds the one frame it read, so nothing queues up: the socket's own buffers push back).
* Fast path: audio appends and audio deltas that match framing.py are forwarded as the same text;
  every other frame is parsed once (``json.loads``), checked (policy.py), and forwarded as the text
  that arrived, except ``session.created``/``session.updated``, which are re-serialised redacted.
* Nothing here is shared with other sessions except the read-only services and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as UpstreamClosed
from websockets.exceptions import InvalidHandshake
from websockets.exceptions import WebSocketException as UpstreamError

from realtalk.errors import LocalProtocolError, RealtalkError
from realtalk.gateway import extension
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.extension import FLUSHED, PLAYBACK, NoticeLevel, PlaybackReport, parse_playback_report
from realtalk.gateway.framing import b64_decoded_length, match_append, match_audio_delta
from realtalk.gateway.limits import EventRateLimiter
from realtalk.gateway.logs import SessionLog
from realtalk.gateway.metrics import CLIENT_TO_UPSTREAM, UPSTREAM_TO_CLIENT, GatewayMetrics
from realtalk.gateway.policy import ClientEventPolicy, Refusal, error_event, redact_session_event
from realtalk.gateway.upstream import Upstream
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

__all__ = ["Ending", "GatewaySession", "SessionServices"]

logger = logging.getLogger("realtalk.gateway.session")

# Close codes a server may send (RFC 6455 §7.4): 1004-1006 and 1015 are reserved.
_RESERVED_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})
_MAX_REASON_BYTES: Final = 123
_CORE_EVENT_IDS_KEPT: Final = 64
_LATENCY_WINDOW_CHUNKS: Final = 500


@dataclass(frozen=True)
class SessionServices:
    """What every session of one gateway shares: read-only configuration, and the metrics."""

    config: GatewayConfig
    upstream: Upstream
    policy: ClientEventPolicy
    metrics: GatewayMetrics


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


class _Stop(Exception):
    """Unwinds a pump once the session's ending is decided."""


def close_reason(text: str) -> str:
    """``text`` cut to the 123 bytes a close frame's reason may hold."""
    encoded = text.encode("utf-8")
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[: _MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class GatewaySession:
    """One client connection through the gateway; ``await run()`` serves it to the end."""

    def __init__(self, services: SessionServices, websocket: WebSocket, subject: str, *, ui: bool) -> None:
        self.id = "gw_" + secrets.token_hex(8)
        self.subject = subject
        self.ui = ui
        self._svc = services
        self._limits = services.config.limits
        self._ws = websocket
        self._upstream: ClientConnection | None = None
        self._core = ClientProtocol(
            profile=services.config.profile.agent,
            prices=services.config.prices,
            # 10 s of 20 ms chunks: speech_stopped names audio sent a second or two before.
            latency_window_chunks=_LATENCY_WINDOW_CHUNKS,
        )
        now = time.perf_counter()
        self._limiter = EventRateLimiter(self._limits.max_events_per_s, self._limits.event_burst, now)
        self._started_s = now
        self._last_client_s = now
        self._configured = asyncio.Event()
        self._end_requested = asyncio.Event()
        self._ending: Ending | None = None
        self._draining = False
        self._drain_refused = False
        self._response_idle = asyncio.Event()
        self._core_event_ids: deque[str] = deque(maxlen=_CORE_EVENT_IDS_KEPT)
        self._traffic = services.metrics.open_traffic()
        self.closed = asyncio.Event()
        self.log = SessionLog(logger, self.id, subject)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, subprotocol: str | None) -> None:
        """Accept the client, open the upstream, relay until one side ends, close both with a reason."""
        metrics = self._svc.metrics
        await self._ws.accept(subprotocol=subprotocol)
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        self.log.info("session opened (ui=%s)", self.ui)
        try:
            try:
                self._upstream = await self._svc.upstream.open(self._svc.config.connect_timeout_s)
            except (RealtalkError, OSError, TimeoutError, InvalidHandshake, UpstreamError) as exc:
                reason = f"upstream unavailable: {exc}"
                self.log.warning("%s", reason)
                self._end(
                    Ending(
                        "upstream_unavailable", 1011, reason, notice=("error", "upstream_unavailable", reason)
                    )
                )
            else:
                await self._relay()
        finally:
            await self._close()
            metrics.close_traffic(self._traffic)
            metrics.sessions_active.dec()
            self.closed.set()

    async def _relay(self) -> None:
        tasks = [
            asyncio.create_task(self._client_pump(), name=f"{self.id}-client"),
            asyncio.create_task(self._upstream_pump(), name=f"{self.id}-upstream"),
            asyncio.create_task(self._watchdog(), name=f"{self.id}-watchdog"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                self.log.error("session failed: %r", result, exc_info=result)
                self._end(Ending("error", 1011, "gateway error", 1011, "gateway error"))

    def _end(self, ending: Ending) -> None:
        if self._ending is None:
            self._ending = ending
            self._end_requested.set()

    @property
    def ending(self) -> bool:
        """Whether the session's end was decided (it may still be closing its sockets)."""
        return self._ending is not None

    def end(self, ending: Ending) -> None:
        """Ask the session to end (from outside: shutdown). The first ending decided wins."""
        self._end(ending)

    async def _close(self) -> None:
        ending = self._ending or Ending("error", 1011, "the gateway ended the session")
        self._svc.metrics.session_ends.labels(ending.outcome).inc()
        if ending.client_code is not None:
            with contextlib.suppress(_ClientGone):
                if ending.error is not None:
                    await self._send_client(error_event(ending.error, None))
                if self.ui and ending.notice is not None:
                    await self._send_client(extension.notice_message(*ending.notice))
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._ws.close(ending.client_code, close_reason(ending.client_reason))
        upstream = self._upstream
        if upstream is not None:
            with contextlib.suppress(UpstreamError, OSError):
                await upstream.close(ending.upstream_code, close_reason(ending.upstream_reason))
        self.log.info(
            "session ended: %s (client %s %r, upstream %s %r, cost $%s)",
            ending.outcome,
            ending.client_code,
            ending.client_reason,
            ending.upstream_code,
            ending.upstream_reason,
            extension.usd(self._core.costs.total_usd),
        )

    # -- shutdown -----------------------------------------------------------------------------------

    async def begin_drain(self) -> None:
        """The server is stopping: tell the UI, accept no new turns, let the current reply finish."""
        self._draining = True
        if self.ui:
            with contextlib.suppress(_ClientGone):
                await self._send_client(
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

    # -- client → upstream ------------------------------------------------------------------------

    async def _client_pump(self) -> None:
        try:
            await self._client_loop()
        except _ClientGone:
            self._end(Ending("client_closed", None, "", 1000, "client disconnected"))
        except UpstreamClosed:
            self._end(self._upstream_closed())
        except _Stop:
            pass

    async def _client_loop(self) -> None:
        receive = self._ws.receive
        upstream = self._upstream
        assert upstream is not None
        traffic = self._traffic
        max_chars = self._limits.max_message_bytes
        perf_counter = time.perf_counter
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code")
                self.log.info("client closed (%s)", code)
                self._end(Ending("client_closed", None, "", 1000, "client disconnected"))
                return
            received_s = perf_counter()
            self._last_client_s = received_s
            text = message.get("text")
            if text is None:
                await self._refuse(
                    Refusal("invalid_event", "Binary frames are not supported; send JSON text."), None
                )
                continue
            if len(text) > max_chars:
                await self._refuse(
                    Refusal(
                        "message_too_large",
                        f"Rule 'message size': this event has {len(text)} characters; "
                        f"the limit is {max_chars}.",
                    ),
                    None,
                )
                continue
            if not self._limiter.allow(received_s):
                await self._refuse(
                    Refusal(
                        "rate_limit_exceeded",
                        f"Rule 'event rate': at most {self._limits.max_events_per_s:g} events per second "
                        f"(bursts of {self._limits.event_burst}); this event was dropped.",
                    ),
                    None,
                )
                continue
            if not self._configured.is_set():
                # Held until the authoritative session.update went upstream.
                await self._configured.wait()
            frame = match_append(text)
            if frame is not None and not self._draining:
                self._core.audio_appended(frame.audio_bytes, received_s)
                await upstream.send(text)
                traffic.appends += 1
                traffic.bytes[0] += len(text)
                traffic.latency(0, perf_counter() - received_s)
                continue
            await self._client_event(text, received_s)

    async def _client_event(self, text: str, received_s: float) -> None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            await self._refuse(Refusal("invalid_json", "The event is not valid JSON."), None)
            return
        if not isinstance(data, dict):
            await self._refuse(
                Refusal("invalid_event", "An event must be a JSON object with a 'type'."), None
            )
            return
        event_type = data.get("type")
        event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
        if self.ui and event_type in (PLAYBACK, FLUSHED):
            await self._playback(data, event_id, received_s)
            return
        refusal = self._svc.policy.check(data)
        if refusal is None and self._draining:
            refusal = self._drain_refusal(event_type)
            if refusal is None and event_type == "input_audio_buffer.append":
                return  # dropped: the one notice about it was already sent
        if refusal is not None:
            await self._refuse(refusal, event_id)
            return
        if event_type == "input_audio_buffer.append":
            self._core.audio_appended(b64_decoded_length(data["audio"]) or 0, received_s)
        upstream = self._upstream
        assert upstream is not None
        await upstream.send(text)
        traffic = self._traffic
        traffic.event(CLIENT_TO_UPSTREAM, event_type)
        traffic.bytes[0] += len(text)
        traffic.latency(0, time.perf_counter() - received_s)

    def _drain_refusal(self, event_type: object) -> Refusal | None:
        # While the server drains, no new turn may start; the first refusal says why, later audio
        # is dropped quietly (an error per 20 ms chunk would drown the client).
        if event_type not in ("response.create", "input_audio_buffer.append", "input_audio_buffer.commit"):
            return None
        if event_type == "input_audio_buffer.append" and self._drain_refused:
            return None
        self._drain_refused = True
        return Refusal("server_shutting_down", "The server is shutting down; no new turns are accepted.")

    async def _playback(self, data: dict[str, Any], event_id: str | None, received_s: float) -> None:
        report = parse_playback_report(data)
        if isinstance(report, Refusal):
            await self._refuse(report, event_id)
            return
        self._traffic.event(CLIENT_TO_UPSTREAM, data.get("type"))
        try:
            self._apply_playback(report, received_s)
        except LocalProtocolError as exc:
            await self._refuse(Refusal("invalid_value", str(exc), "item_id"), event_id)
            return
        await self._flush_core()

    def _apply_playback(self, report: PlaybackReport, received_s: float) -> None:
        if report.flushed:
            self._core.playback_flushed(report.item_id, report.played_samples)
            return
        item = self._core.conversation.item(report.item_id)
        if item is None:
            raise LocalProtocolError(f"unknown item {report.item_id!r}")
        increment = report.played_samples - item.audio_played_samples
        if increment > 0:
            self._core.audio_played(report.item_id, increment, received_s)

    async def _refuse(self, refusal: Refusal, event_id: str | None) -> None:
        self._svc.metrics.refused(refusal.code)
        self.log.info("refused a client event: %s", refusal.code)
        await self._send_client(error_event(refusal, event_id))

    # -- upstream → client ------------------------------------------------------------------------

    async def _upstream_pump(self) -> None:
        upstream = self._upstream
        assert upstream is not None
        try:
            try:
                async with asyncio.timeout(self._svc.config.connect_timeout_s):
                    first = await upstream.recv()
            except TimeoutError:
                reason = "upstream unavailable: no session.created in time"
                self._end(
                    Ending(
                        "upstream_unavailable", 1011, reason, notice=("error", "upstream_unavailable", reason)
                    )
                )
                return
            await self._upstream_message(first)
            async for message in upstream:
                await self._upstream_message(message)
        except UpstreamClosed:
            pass
        except _ClientGone:
            self._end(Ending("client_closed", None, "", 1000, "client disconnected"))
            return
        except _Stop:
            return
        self._end(self._upstream_closed())

    def _upstream_closed(self) -> Ending:
        upstream = self._upstream
        code = upstream.close_code if upstream is not None else None
        reason = (upstream.close_reason if upstream is not None else None) or ""
        if code is None or code in _RESERVED_CLOSE_CODES:
            text = f"upstream connection lost ({code or 'no close code'})"
            return Ending("upstream_lost", 1011, text, notice=("error", "upstream_lost", text))
        text = reason or f"upstream closed the session ({code})"
        level: NoticeLevel = "info" if code == 1000 else "warning"
        return Ending("upstream_closed", code, text, notice=(level, "upstream_closed", text))

    async def _upstream_message(self, message: str | bytes) -> None:
        received_s = time.perf_counter()
        traffic = self._traffic
        if not isinstance(message, str):
            self.log.warning("upstream sent a binary frame (%d bytes); ignored", len(message))
            return
        delta = match_audio_delta(message)
        if delta is not None:
            audible = self._core.receive_audio_delta(
                delta.item_id, delta.response_id, delta.audio_bytes, received_s
            )
            # UI sessions do not get audio the core already flushed or cut (it would be played late).
            if audible or not self.ui:
                await self._send_client(message)
                traffic.latency(1, time.perf_counter() - received_s)
            traffic.deltas += 1
            traffic.bytes[1] += len(message)
            return
        try:
            data = json.loads(message)
        except (ValueError, RecursionError):
            self.log.warning("upstream sent a frame that is not JSON; dropped")
            return
        if not isinstance(data, dict):
            self.log.warning("upstream sent JSON that is not an object; dropped")
            return
        event_type = data.get("type")
        outgoing: str | None = message
        if event_type in ("session.created", "session.updated"):
            outgoing = json.dumps(redact_session_event(data), separators=(",", ":"))
        elif event_type == "error":
            outgoing = self._upstream_error(data, message)
        self._core.receive_event(data, received_s)
        if event_type == "session.created":
            self.log.upstream_session_id = self._core.session_id
            self.log.info("upstream session created")
            await self._flush_core_messages()
            self._configured.set()
        if outgoing is not None:
            await self._send_client(outgoing)
            traffic.latency(1, time.perf_counter() - received_s)
        traffic.event(UPSTREAM_TO_CLIENT, event_type)
        traffic.bytes[1] += len(message)
        await self._flush_core()
        self._check_idle()

    def _upstream_error(self, data: dict[str, Any], message: str) -> str | None:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        self._svc.metrics.upstream_error(code)
        if error.get("event_id") in self._core_event_ids:
            # An answer to the gateway's own event (its session.update, a truncate): the client did
            # not send it, and some SDKs treat an unknown error as fatal. Logged, not forwarded.
            self.log.warning("upstream refused the gateway's own event: %s: %s", code, error.get("message"))
            return None
        return message

    # -- the core's outputs -------------------------------------------------------------------------

    async def _flush_core(self) -> None:
        await self._flush_core_messages()
        for event in self._core.events_received():
            await self._on_core_event(event)

    async def _flush_core_messages(self) -> None:
        upstream = self._upstream
        assert upstream is not None
        for frame in self._core.messages_to_send():
            event_id = json.loads(frame).get("event_id")
            if isinstance(event_id, str):
                self._core_event_ids.append(event_id)
            await upstream.send(frame)

    async def _on_core_event(self, event: object) -> None:
        metrics = self._svc.metrics
        match event:
            case SessionReady():
                self.log.info("session configured")
                if self.ui:
                    config = self._svc.config
                    await self._send_client(
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
                await self._send_client(extension.transcript_message(lines))
            case ResponseFinished(turn_cost=turn):
                if turn is not None:
                    metrics.turn(turn)
                if self.ui:
                    await self._send_client(extension.cost_message(self._core.costs, turn))
                self._check_budget()
            case LatencyMeasured():
                metrics.voice_to_voice.observe(event.voice_to_voice_ms / 1000)
                if self.ui:
                    await self._send_client(
                        extension.latency_message(
                            event.response_id, event.voice_to_voice_ms, event.first_audio_received_ms
                        )
                    )
            case ProtocolViolation():
                self.log.warning("upstream protocol violation: %s", event.error)
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
        raise _Stop

    async def _send_client(self, text: str) -> None:
        try:
            await self._ws.send({"type": "websocket.send", "text": text})
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise _ClientGone from None

    # -- limits in time -------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        limits = self._limits
        while True:
            now = time.perf_counter()
            duration_at = self._started_s + limits.max_session_s
            idle_at = self._last_client_s + limits.idle_timeout_s
            if now >= duration_at:
                text = f"session duration limit of {limits.max_session_s:g} s reached"
                self._end(self._limit_ending("session_duration", text))
                return
            if now >= idle_at:
                text = f"no client event for {limits.idle_timeout_s:g} s (idle limit)"
                self._end(self._limit_ending("idle_timeout", text))
                return
            try:
                async with asyncio.timeout(min(duration_at, idle_at) - now):
                    await self._end_requested.wait()
                return
            except TimeoutError:
                continue

    def _limit_ending(self, code: str, text: str) -> Ending:
        return Ending(
            code,
            1008,
            text,
            1000,
            text,
            error=Refusal(code, f"The {text}; the session ends."),
            notice=("warning", code, f"The {text}."),
        )


class _ClientGone(Exception):
    """The client's socket is closed: nothing more can be sent to it."""
