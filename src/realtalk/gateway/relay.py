"""One gateway session: a client WebSocket, its upstream WebSocket, and the protocol core between.

Theory of operation (issue 5, item 3; lessons.md mistakes 1, 5, 15). The session is one object,
``GatewaySession``, written in four modules, one idea each:

* here, its **lifecycle and limits**: accept the client, open the upstream, supervise, close;
* ``client_side.py``, the client's frames (checked, held, forwarded, answered) and its flow control;
* ``upstream_side.py``, the upstream's events through the protocol core, and its flow control;
* ``channels.py``, the sockets as the session uses them; ``endings.py``, why a session ends and
  the sentences each side is told.

* The client was authenticated and admitted before this object exists; the upstream socket is
  opened only now, with the server's credential. If that fails the client is closed with 1011 and
  ``UPSTREAM_UNAVAILABLE_SENTENCE``; the cause is logged, never told to the client.
* **Frames are relayed in callbacks, not pumps.** The client's frames arrive on ``client_text``
  (``embedded_server.DirectWebSocket``: uvicorn's socket, no ASGI message per frame) and the
  upstream's on ``UpstreamListener`` (a ``picows`` connection); each is handled to the end and
  written to the other socket synchronously. No task switch, queue or lock per frame: that is why
  a frame through the gateway costs about half of one through a naive relay, and a quarter of
  what the naive relay adds to the kernel's share (bench/gateway.py). Flow control is the
  sockets' own: when one side's write buffer is full, the other side's reading pauses until it
  drains; a side that stays full past its stall limit ends the session.
* One task per session, the **supervisor**, waits for the end: a side closing, a limit (idle,
  duration, no ``session.created`` in time), the budget, or a shutdown. Why it ended is one
  ``Ending`` (first one wins): the close code and reason for each side, plus an ``error`` event and
  a ``realtalk.notice`` the client is told first. After the end no frame is relayed.
* A per-session ``ClientProtocol`` (built with the profile) sees every upstream event and the
  client's audio timeline: it sends the authoritative ``session.update`` when ``session.created``
  arrives, prices every ``response.done`` (the budget), and turns the UI's playback reports into
  ``conversation.item.truncate``. Client events are held until that update went upstream.
* Fast path: audio appends and audio deltas that match framing.py are forwarded as the same bytes;
  every other frame is parsed once (``json.loads``), checked (policy.py), and forwarded as the bytes
  that arrived, except ``session.created``/``session.updated``, which are re-serialised redacted.
* Under another ASGI server than realtalk's (no direct WebSocket), ``AsgiChannel`` gives the same
  callbacks through ASGI messages: slower, same behaviour.
* Nothing here is shared with other sessions except the read-only services and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Final

from picows import WSError, WSTransport
from starlette.websockets import WebSocket

from realtalk.client.tools import Tool, tool_definition
from realtalk.embedded_server import DIRECT_WEBSOCKET, DirectWebSocket, FrameSink
from realtalk.gateway import extension
from realtalk.gateway.budgets import DailySpend
from realtalk.gateway.channels import AsgiChannel, ClientChannel, UpstreamListener
from realtalk.gateway.client_side import ClientSide
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.endings import (
    LIMIT_SENTENCES,
    SHUTDOWN_SENTENCE,
    UPSTREAM_UNAVAILABLE_SENTENCE,
    Ending,
    close_reason,
    ws_close_code,
)
from realtalk.gateway.limits import EventRateLimiter
from realtalk.gateway.logs import SessionLog
from realtalk.gateway.metrics import GatewayMetrics
from realtalk.gateway.policy import ClientEventPolicy, Refusal, SessionView, error_event
from realtalk.gateway.tool_side import SessionTools, ToolSide
from realtalk.gateway.upstream import UPSTREAM_ERRORS, Upstream
from realtalk.gateway.upstream_side import UpstreamSide
from realtalk.ledger import Ledger
from realtalk.ledger.meter import SessionMeter
from realtalk.protocol import ClientProtocol, ResponseState
from realtalk.protocol.session_config import AudioFormatName

try:
    from realtalk.gateway.fastpath import FastPath
except ImportError:  # not built (no C compiler or Cython at install): the same frames take the Python path
    FastPath = None  # type: ignore[assignment,misc]  # the name is checked for None before use

__all__ = [
    "COMPILED_FAST_PATH",
    "LIMIT_SENTENCES",
    "SHUTDOWN_SENTENCE",
    "UPSTREAM_UNAVAILABLE_SENTENCE",
    "Ending",
    "GatewaySession",
    "SessionServices",
]

# Whether the compiled per-frame path (fastpath.pyx) was built; `realtalk serve` logs it.
COMPILED_FAST_PATH: Final = FastPath is not None

logger = logging.getLogger("realtalk.gateway.session")

_CORE_EVENT_IDS_KEPT: Final = 64
_LEDGER_FLUSH_S: Final = 2.0
_LATENCY_WINDOW_CHUNKS: Final = 500
# Of each kind of refusal or dropped upstream frame, a session logs the first few; the rest are
# counted (metrics, and the "session ended" line), so a client sending junk cannot flood the log.
_LOGGED_PER_KIND: Final = 5


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
    tools: SessionTools | None = None  # the profile's tools, run by the gateway (tool_side.py)
    ledger: Ledger | None = None  # where every session's usage is written (realtalk.ledger)


class GatewaySession(ClientSide, UpstreamSide, ToolSide, FrameSink):
    """One client connection through the gateway; ``await run()`` serves it to the end."""

    def __init__(
        self,
        services: SessionServices,
        websocket: WebSocket | None,
        subject: str,
        *,
        ui: bool,
        daily: DailySpend | None = None,
        session_id: str | None = None,
        transport: str = "websocket",
        extra_tools: Sequence[Tool] = (),
        audio_format: AudioFormatName | None = None,
    ) -> None:
        """``websocket`` is the client's socket; ``None`` for a call (``calls.CallSession``), whose
        client talks to the upstream directly. ``transport`` is what the ledger records;
        ``extra_tools`` are tools this session offers the model and runs, besides the profile's
        (a SIP call's ``transfer_to_human``); ``audio_format`` replaces the profile's audio formats
        (G.711 on a phone call)."""
        self.id = session_id or "gw_" + secrets.token_hex(8)
        self.subject = subject
        self.ui = ui
        self._svc = services
        self._limits = services.config.limits
        self._max_bytes = self._limits.max_message_bytes
        self._ws = websocket
        self._client: ClientChannel | None = None
        self._asgi: AsgiChannel | None = None
        self._upstream: WSTransport | None = None
        self._upstream_close: tuple[int, str] | None = None
        profile = services.config.profile
        agent = profile.agent
        extra_names = frozenset(tool.name for tool in extra_tools)
        if extra_tools:
            agent = dataclasses.replace(
                agent, tools=(*agent.tools, *(tool_definition(tool) for tool in extra_tools))
            )
        if audio_format is not None:
            agent = dataclasses.replace(agent, input_format=audio_format, output_format=audio_format)
        self.agent = agent  # what this session's authoritative session.update says
        self._core = ClientProtocol(
            profile=agent,
            prices=services.config.prices,
            # 10 s of 20 ms chunks: speech_stopped names audio sent a second or two before.
            latency_window_chunks=_LATENCY_WINDOW_CHUNKS,
            # Only the gateway's own tools are answered here; the client answers the rest.
            answered_tools=profile.server_tool_names | extra_names,
            tool_filler=profile.file.tool_settings.filler if profile.file is not None else None,
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
        # What tells a no-op from a change in a client's update (see policy.without_noops).
        self._view = SessionView({services.upstream.endpoint.deployment})
        if websocket is not None and isinstance(requested := websocket.query_params.get("model"), str):
            self._view.models.add(requested)
        self._end_requested = asyncio.Event()
        self._ending: Ending | None = None
        self._draining = False
        self._drain_refused = False
        self._response_idle = asyncio.Event()
        self._core_event_ids: deque[str] = deque(maxlen=_CORE_EVENT_IDS_KEPT)
        self._traffic = services.metrics.open_traffic()
        self._tools_init(profile.server_tool_names | extra_names, services.tools, extra_tools)
        self._daily = daily
        self._meter = (
            SessionMeter(
                services.ledger,
                session_id=self.id,
                user=subject,
                deployment=services.upstream.endpoint.deployment,
                pricing_model=services.config.pricing_model,
                transport=transport,
                client="ui" if ui else "realtime",
            )
            if services.ledger is not None
            else None
        )
        self._fast: FastPath | None = None
        self.closed = asyncio.Event()
        self.log = SessionLog(logger, self.id, subject)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, subprotocol: str | None) -> None:
        """Accept the client, open the upstream, relay until one side ends, close both with a reason."""
        metrics = self._svc.metrics
        assert self._ws is not None, "a call session runs with CallSession.run"
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
            self._asgi = AsgiChannel(self._ws, self, self._limits.client_buffer_bytes)
            await self._asgi.accept(subprotocol)
            self._client = self._asgi
        metrics.sessions.inc()
        metrics.sessions_active.inc()
        self.log.info("session opened (ui=%s)", self.ui)
        try:
            try:
                await self._svc.upstream.connect(
                    lambda: UpstreamListener(self), self._svc.config.connect_timeout_s
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
        await self._tools_close()
        for timer in (self._stall_timer, self._upstream_stall_timer):
            if timer is not None:
                timer.cancel()
        self._stall_timer = self._upstream_stall_timer = None
        ending = self._ending or Ending("error", 1011, "the gateway ended the session")
        self._svc.metrics.session_ends.labels(ending.outcome).inc()
        if self._meter is not None:
            self._meter.close(ending.outcome)
            if ending.outcome == "daily_budget":
                # The row that reached the cap is committed before the client hears why: a client
                # that reconnects at once is refused at connect, not given one more response.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_LEDGER_FLUSH_S):
                        await self._meter.ledger.flush()
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
                        ws_close_code(ending.upstream_code), close_reason(ending.upstream_reason).encode()
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
