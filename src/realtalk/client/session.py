"""``RealtimeSession``: one Realtime conversation over a WebSocket, for apps.

The app-facing API that ``realtalk talk``, ``realtalk serve`` and users' own code share. It wraps
the sans-I/O ``ClientProtocol`` in asyncio I/O and decides nothing about the protocol itself:

* **Pump.** One reader task feeds every received frame to the core and delivers the core's events;
  one writer task drains the core's outgoing frames. Both run in one ``asyncio.TaskGroup``: when the
  socket closes, the reader ends and the writer is cancelled with it (never two gathered pumps where
  one side hangs). App actions (``append_audio``, ``send_text``, ...) are plain method calls that
  feed the core and wake the writer; nothing on the receive path ever waits for the app.
* **Events.** Handlers registered with ``on_event`` run synchronously in the reader task, in order,
  right after the frame that caused them (a speaker's playback buffer is fed this way, with no queue
  in between). ``events()`` is an async iterator over a bounded queue for code that prefers to pull.
* **Reconnect.** A close or error that ``protocol.retry`` deems transient (1001 ``session_expired``,
  1006, 1011, 5xx, network loss) reconnects with capped exponential backoff and a fresh token; the new
  connection gets a new core that carries over the costs and replays the session config and the
  conversation so far as text (``ClientProtocol.carry_over``). Anything else (401, 403, 404, bad
  configuration) ends the session with one clear reason. ``ConnectionStatus`` events say which.
* **Tools.** With a ``ToolRunner``, every ``ToolCallRequested`` runs as its own task (never in the
  pump: a slow or blocking tool cannot hold audio back); its outcome goes back through the core,
  which sends the one follow-up ``response.create``. A call still running after
  ``tool_filler_after_s`` is reported slow to the core, which decides on a filler. Calls the core
  cancels (a barge-in), and every call at a reconnect or close, are cancelled here.
  ``ToolCallStarted``/``ToolCallFinished`` events tell the app what ran and for how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidHandshake

from realtalk.client.credentials import Credential
from realtalk.client.tools import ToolCalls, ToolOutcome, ToolRunner
from realtalk.client.transport import open_websocket
from realtalk.errors import ConnectionClosed, HandshakeRejected, LocalProtocolError, RealtalkError
from realtalk.protocol import AgentProfile, ClientProtocol, Prices
from realtalk.protocol.app_events import (
    AppEvent,
    SessionReady,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallsCancelled,
    ToolCallStarted,
)
from realtalk.protocol.client import DEFAULT_TOOL_FILLER
from realtalk.protocol.endpoint import ResolvedEndpoint
from realtalk.protocol.retry import RetryDecision, backoff_delays_s, classify_error

__all__ = ["ConnectionStatus", "FrameHook", "RealtimeSession", "SessionEvent"]

logger = logging.getLogger(__name__)

_NORMAL_CLOSE = 1000


@dataclass(frozen=True)
class ConnectionStatus:
    """The connection's state, for a status line: connecting, connected, reconnecting, closed."""

    state: Literal["connecting", "connected", "reconnecting", "closed"]
    reason: str = ""
    attempt: int = 0
    delay_s: float = 0.0
    # Set on the final "closed" when the session ended because of a failure.
    error: RealtalkError | None = None


SessionEvent = AppEvent | ConnectionStatus
EventHandler = Callable[[SessionEvent], None]
FrameHook = Callable[[Literal["in", "out"], str], None]


class RealtimeSession:
    """A Realtime conversation with reconnects; use as ``async with RealtimeSession(...) as session``.

    Args:
        endpoint: where to connect (from ``protocol.endpoint.resolve_endpoint``).
        credential: supplies handshake headers; asked again at every connect (fresh Entra ID token).
        profile: the agent's session configuration, sent as ``session.update`` on every connect.
        prices: price table for the cost figures (default gpt-realtime-1.5).
        reconnect: reconnect on transient failures (default); ``False`` ends the session instead.
        max_reconnect_attempts: consecutive failed attempts before giving up.
        connect_timeout_s: for the TCP, TLS and WebSocket handshake of one attempt.
        clock: the client clock passed to the core as ``now_s`` (monotonic seconds).
        tools: runs the model's function calls (``None``: the app answers ``ToolCallRequested``
            itself with ``submit_tool_output``). The profile must declare the same tools.
        tool_filler: what the agent says when a call runs past ``tool_filler_after_s`` (``None``:
            stay silent).
    """

    def __init__(
        self,
        endpoint: ResolvedEndpoint,
        credential: Credential,
        *,
        profile: AgentProfile | None = None,
        prices: Prices | None = None,
        reconnect: bool = True,
        max_reconnect_attempts: int = 6,
        connect_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        event_queue_size: int = 1024,
        extra_headers: Mapping[str, str] | None = None,
        tools: ToolRunner | None = None,
        tool_filler: str | None = DEFAULT_TOOL_FILLER,
        tool_filler_after_s: float = 1.0,
    ) -> None:
        self.endpoint = endpoint
        self._credential = credential
        self._profile = profile
        self._prices = prices
        self._reconnect = reconnect
        self._max_attempts = max_reconnect_attempts
        self._timeout_s = connect_timeout_s
        self._clock = clock
        self._rng = rng
        self._extra_headers = dict(extra_headers or {})
        self._handlers: list[EventHandler] = []
        self._frame_hooks: list[FrameHook] = []
        self._queue: asyncio.Queue[SessionEvent | None] | None = None
        self._queue_size = event_queue_size
        self._tool_filler = tool_filler
        self._filler_after_s = tool_filler_after_s
        self._tool_calls = (
            ToolCalls(tools, self._tool_done, on_start=self._tool_started) if tools is not None else None
        )
        self._slow_timers: dict[str, asyncio.TimerHandle] = {}
        self.protocol = self._new_protocol()
        """The current connection's protocol core (replaced on reconnect; costs carry over)."""
        self.status = ConnectionStatus("connecting")
        self.connections = 0
        """Connections opened so far (1 + reconnects)."""
        self._ws: ClientConnection | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._first_ready: asyncio.Future[None] | None = None
        self._pending_texts: list[str] = []
        self.dropped_audio_bytes = 0
        """Microphone audio dropped while no connection was up (it cannot reach a server)."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> RealtimeSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, and return once the server's session is ready (``SessionReady`` was delivered).

        Raises ``HandshakeRejected`` (401, 404, ...), ``ConnectionClosed`` or ``OSError`` when the first
        connection cannot be made; reconnects only happen once a session was established.
        """
        if self._runner is not None:
            raise RuntimeError("the session was already started")
        loop = asyncio.get_running_loop()
        self._first_ready = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name="realtalk-session")
        try:
            await self._first_ready
        except BaseException:
            await self.close()
            raise

    async def close(self, reason: str = "closed by the application") -> None:
        """Close the connection cleanly (code 1000) and stop reconnecting."""
        self._closing = True
        self._cancel_tools("closed")
        if self._tool_calls is not None:
            await self._tool_calls.aclose()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(_NORMAL_CLOSE, reason[:120])
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self.status.state != "closed":
            self._set_status(ConnectionStatus("closed", reason))
        self._closed.set()

    async def wait_closed(self) -> ConnectionStatus:
        """Wait until the session has ended (by ``close()`` or an unrecoverable failure)."""
        await self._closed.wait()
        return self.status

    # -- events -----------------------------------------------------------------------------------

    def on_event(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event, synchronously, in the receive task. Keep it quick."""
        self._handlers.append(handler)

    def on_frame(self, hook: FrameHook) -> None:
        """Call ``hook("in"|"out", text)`` with every JSON frame received or sent (for event logs)."""
        self._frame_hooks.append(hook)

    async def events(self) -> AsyncIterator[SessionEvent]:
        """Iterate over events until the session closes (a bounded queue; slow readers slow the socket)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    # -- app actions (feed the core, wake the writer) ---------------------------------------------

    def append_audio(self, pcm: bytes) -> None:
        """Send microphone audio in the session's input format (24 kHz PCM16 by default)."""
        if self.status.state != "connected":
            self.dropped_audio_bytes += len(pcm)
            return
        self.protocol.append_audio(pcm, self._clock())
        self._wake.set()

    def commit_audio(self) -> None:
        self._act(self.protocol.commit_audio)

    def clear_audio(self) -> None:
        self._act(self.protocol.clear_audio)

    def send_text(self, text: str) -> None:
        """Send a typed user message and ask for a reply (kept and sent after a reconnect if needed)."""
        if self.status.state != "connected":
            self._pending_texts.append(text)
            return
        self._act(lambda: self.protocol.send_text(text))

    def submit_tool_output(self, call_id: str, output: str) -> None:
        """Answer a ``ToolCallRequested`` the app ran itself (dropped if the core cancelled the call)."""
        self._act(lambda: self.protocol.submit_tool_output(call_id, output))

    def create_response(self, **overrides: Any) -> None:
        self._act(lambda: self.protocol.create_response(**overrides))

    def cancel_response(self) -> None:
        self._act(self.protocol.cancel_response)

    def interrupt(self) -> None:
        """Local barge-in: stop the agent (a ``FlushPlayback`` event follows) and cancel its response."""
        self._act(self.protocol.interrupt)

    def update_session(self, profile: AgentProfile) -> None:
        self._profile = profile
        self._act(lambda: self.protocol.update_session(profile))

    def audio_played(self, item_id: str, samples: int) -> None:
        """Report samples of ``item_id`` handed to the speaker (increments)."""
        self._act(lambda: self.protocol.audio_played(item_id, samples, self._clock()))

    def playback_flushed(self, item_id: str, played_samples_total: int) -> None:
        """Report where playback of ``item_id`` stopped after a ``FlushPlayback``; sends the truncate."""
        self._act(lambda: self.protocol.playback_flushed(item_id, played_samples_total))

    @property
    def total_cost_usd(self) -> Decimal:
        return self.protocol.total_cost_usd

    def _act(self, action: Callable[[], object]) -> None:
        action()
        self._deliver()
        self._wake.set()

    # -- the connection loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        delays = self._new_backoff()
        attempt = 0
        try:
            while not self._closing:
                self._set_status(
                    ConnectionStatus("connecting" if attempt == 0 else "reconnecting", attempt=attempt)
                )
                failure: BaseException | None = None
                try:
                    ws = await self._connect()
                except (HandshakeRejected, OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    failure = exc
                else:
                    attempt = 0
                    delays = self._new_backoff()
                    failure = await self._pump(ws)
                if self._closing:
                    return
                assert failure is not None
                decision = classify_error(failure)
                first = self._first_ready is not None and not self._first_ready.done()
                if first or not self._reconnect or not decision.retry:
                    self._fail(failure, decision)
                    return
                attempt += 1
                delay = next(delays, None)
                if delay is None:
                    self._fail(
                        failure,
                        RetryDecision(False, f"gave up after {attempt - 1} attempts: {decision.reason}"),
                    )
                    return
                self._set_status(ConnectionStatus("reconnecting", decision.reason, attempt, delay))
                logger.warning("reconnecting in %.1f s (attempt %d): %s", delay, attempt, decision.reason)
                # The new server session has no function calls waiting: outputs could not be sent.
                self._cancel_tools("reconnected")
                previous, self.protocol = self.protocol, self._new_protocol()
                self.protocol.carry_over(previous)
                await asyncio.sleep(delay)
        finally:
            self._ws = None
            self._closed.set()
            if self._queue is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(None)

    def _new_backoff(self) -> Any:
        return backoff_delays_s(random=self._rng, max_attempts=self._max_attempts)

    async def _connect(self) -> ClientConnection:
        ws = await open_websocket(
            self.endpoint, self._credential, timeout_s=self._timeout_s, extra_headers=self._extra_headers
        )
        self.connections += 1
        return ws

    async def _pump(self, ws: ClientConnection) -> BaseException:
        """Run reader and writer until the socket closes; return why it closed."""
        self._ws = ws
        self._wake.set()  # the core may hold frames already (replayed history, texts typed offline)
        result: list[BaseException] = []
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._reader(ws, result), name="realtalk-reader")
                group.create_task(self._writer(ws), name="realtalk-writer")
        except* _PumpFinished:
            pass  # the reader saw the socket close and put the reason in ``result``
        except* (OSError, WsConnectionClosed) as group_error:
            result.extend(group_error.exceptions)
        finally:
            self._ws = None
            if self.status.state == "connected":
                self._set_status(ConnectionStatus("reconnecting", "connection lost"))
        if not result:
            return ConnectionClosed(None, "the connection ended")
        return result[0]

    async def _reader(self, ws: ClientConnection, result: list[BaseException]) -> None:
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                for hook in self._frame_hooks:
                    hook("in", text)
                self.protocol.receive_message(text, self._clock())
                self._deliver()
                self._wake.set()
        except WsConnectionClosed:
            pass
        close = ws.protocol.close_rcvd
        code = close.code if close is not None else 1006
        reason = close.reason if close is not None else "no close frame received"
        result.append(ConnectionClosed(code, reason))
        # The reader is done: stop the writer too (raising here cancels the whole group).
        raise _PumpFinished

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for frame in self.protocol.messages_to_send():
                await ws.send(frame)
                for hook in self._frame_hooks:
                    hook("out", frame)

    def _deliver(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, SessionReady):
                self._on_ready()
            self._emit(event)
            if self._tool_calls is None:
                continue
            if isinstance(event, ToolCallRequested):
                self._tool_calls.start(event.call_id, event.name, event.arguments, self._clock())
                if self._tool_filler is not None:
                    self._slow_timers[event.call_id] = asyncio.get_running_loop().call_later(
                        self._filler_after_s, self._tool_slow, event.call_id
                    )
            elif isinstance(event, ToolCallsCancelled):
                self._cancel_tools(event.reason, event.call_ids)

    # -- tools --------------------------------------------------------------------------------------

    def _new_protocol(self) -> ClientProtocol:
        return ClientProtocol(profile=self._profile, prices=self._prices, tool_filler=self._tool_filler)

    def _tool_started(self, call_id: str, name: str) -> None:
        self._emit(ToolCallStarted(call_id, name))

    def _tool_slow(self, call_id: str) -> None:
        self._slow_timers.pop(call_id, None)
        self._act(lambda: self.protocol.tool_call_slow(call_id))

    def _tool_done(self, outcome: ToolOutcome) -> None:
        timer = self._slow_timers.pop(outcome.call_id, None)
        if timer is not None:
            timer.cancel()
        self._emit(
            ToolCallFinished(
                outcome.call_id,
                outcome.name,
                outcome.status,
                outcome.duration_ms,
                outcome.cost_usd,
                outcome.note,
            )
        )
        try:
            self._act(
                lambda: self.protocol.submit_tool_output(
                    outcome.call_id, outcome.output, cost_usd=outcome.cost_usd
                )
            )
        except LocalProtocolError:
            # The call belonged to an earlier connection's core (what it cost was still counted).
            logger.info("dropped the output of %s: its connection is gone", outcome.call_id)

    def _cancel_tools(self, reason: str, call_ids: tuple[str, ...] | None = None) -> None:
        if self._tool_calls is None:
            return
        running = {call.call_id: call for call in self._tool_calls.running(self._clock())}
        for call_id in running if call_ids is None else call_ids:
            timer = self._slow_timers.pop(call_id, None)
            if timer is not None:
                timer.cancel()
            call = running.get(call_id)
            if call is not None and self._tool_calls.cancel(call_id):
                self._emit(
                    ToolCallFinished(call_id, call.name, "cancelled", call.elapsed_s * 1000, note=reason)
                )

    def _on_ready(self) -> None:
        self._set_status(ConnectionStatus("connected"))
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_result(None)
        texts, self._pending_texts = self._pending_texts, []
        for text in texts:
            self.protocol.send_text(text)

    def _fail(self, failure: BaseException, decision: RetryDecision) -> None:
        error = failure if isinstance(failure, RealtalkError) else ConnectionClosed(None, str(failure))
        self._set_status(ConnectionStatus("closed", decision.reason, error=error))
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_exception(error)

    def _set_status(self, status: ConnectionStatus) -> None:
        if status == self.status:
            return
        self.status = status
        self._emit(status)

    def _emit(self, event: SessionEvent) -> None:
        for handler in self._handlers:
            handler(event)
        if self._queue is not None:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                logger.warning(
                    "event queue full: dropped %s (read session.events() faster)", type(event).__name__
                )


class _PumpFinished(Exception):
    """Raised by the reader to end the TaskGroup (cancelling the writer) once the socket closed."""
