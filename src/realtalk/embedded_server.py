"""Serving an ASGI app with uvicorn inside the running event loop (the emulator and the gateway).

``EmbeddedApp`` binds its own socket (port 0 picks a free port, so parallel test runs never
collide), starts uvicorn as a task, and stops it as soon as asked. It is the base of
``realtalk.emulator.Emulator`` and ``realtalk.gateway.runner.Gateway``, which add their app and
their uvicorn options; the gateway also passes ``before_shutdown`` to drain live calls on SIGTERM.

Changes to uvicorn, all of them about running embedded and carrying audio:

* it polls for "stop" every 100 ms and waits for connections in 100 ms steps: fine for a service,
  slow for hundreds of test servers, so a stop request (or SIGTERM) wakes it at once, and it ticks
  once a second;
* it leaves the process's signal handlers alone unless told to own them (the CLI commands do);
* its websockets protocol pauses and resumes the socket around every received message, two system
  calls per audio frame: here reading pauses only when ``READ_AHEAD_MESSAGES`` wait for the app
  (the queue stays bounded);
* a malformed upgrade request gets a 4xx that never repeats a header's value, and one log line
  (``websocket_handshake``), where websockets echoed the header or, on a non-ASCII byte, crashed
  with no answer and logged the value in a traceback;
* after an app refuses the upgrade with an HTTP response (the ASGI "websocket.http.response"
  extension: 401, 404, ...), it logs "ASGI callable returned without completing handshake" at
  ERROR although the response went out; the refusal ends the handshake, so it is marked complete;
* **direct WebSockets**: every WebSocket scope carries ``scope["extensions"][DIRECT_WEBSOCKET]``, a
  ``DirectWebSocket``. An app that accepts through it instead of the ASGI ``websocket.accept`` gets
  the connection's frames as synchronous callbacks on a ``FrameSink`` and writes frames straight to
  the socket (``websocket_frames``): no ASGI message, queue or task switch per frame. The gateway
  relays audio this way (bench/gateway.py); under another ASGI server the extension is absent and
  it falls back to plain ASGI. Routing, authentication and the upgrade stay FastAPI's and uvicorn's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import socket
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Final, Protocol, Self

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtalk.http_deadline import DEFAULT_HEAD_TIMEOUT_S, HeadDeadlineProtocol
from realtalk.websocket_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_payload,
    encode_frame,
    parse_close,
)
from realtalk.websocket_handshake import QuietServerProtocol, malformed_upgrade_response

__all__ = ["DIRECT_WEBSOCKET", "READ_AHEAD_MESSAGES", "DirectWebSocket", "EmbeddedApp", "FrameSink"]

READ_AHEAD_MESSAGES = 4
DIRECT_WEBSOCKET: Final = "realtalk.direct_websocket"


class FrameSink(Protocol):
    """What receives a direct WebSocket's traffic. Called synchronously from the event loop."""

    def client_text(self, data: bytes) -> None:
        """A text message, as the UTF-8 bytes it came as (checked: valid UTF-8)."""

    def client_binary(self, data: bytes) -> None:
        """A binary message."""

    def client_closed(self, code: int, reason: str) -> None:
        """The peer closed (its code; 1006 when the connection was lost without a close frame),
        or the connection failed a protocol check. Called once; nothing follows it."""

    def client_writable(self, writable: bool) -> None:
        """The socket's write buffer went above (``False``) or back below (``True``) its limit."""


class _Pong:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class DirectWebSocket:
    """One upgraded connection's frames without ASGI (see the module docstring)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: _WebSocketProtocol) -> None:
        self._protocol = protocol

    def accept(
        self,
        sink: FrameSink,
        subprotocol: str | None = None,
        *,
        fast_reads: Callable[[bytes], bytes] | None = None,
        write_limit_bytes: int | None = None,
    ) -> None:
        """Complete the upgrade (like ASGI's ``websocket.accept``) and deliver frames to ``sink``.

        ``write_limit_bytes``: the send buffer's high-water mark; above it the sink hears
        ``client_writable(False)``, below a quarter of it ``client_writable(True)``. The sink decides
        what to do (the gateway pauses reading that client and closes it if it stays full).
        When the sink pauses reading from inside a frame callback, the rest of that read is held and
        delivered on ``resume_reading``: what one read can make the sink write stays bounded.

        ``fast_reads``, if given, sees each read from the socket first whenever no partial frame is
        held here (so a read starts at a frame boundary). It may handle frames at the start of the
        read itself (the gateway's compiled path for audio appends), keeping an incomplete one for
        the next read, and returns the rest, which is parsed here as usual."""
        if write_limit_bytes is not None:
            self._protocol.transport.set_write_buffer_limits(
                high=write_limit_bytes, low=write_limit_bytes // 4
            )
        self._protocol.direct_accept(sink, subprotocol, fast_reads)

    def send_text(self, data: bytes) -> None:
        """Send one text message (UTF-8 ``data``); dropped once the connection is closing."""
        protocol = self._protocol
        if not protocol.close_sent and not protocol.disconnected:
            protocol.transport.write(encode_frame(OP_TEXT, data))

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (the socket closes on the peer's answer, or after a timeout)."""
        self._protocol.direct_close(code, reason)

    def pause_reading(self) -> None:
        protocol = self._protocol
        if not protocol.read_paused and not protocol.disconnected:
            protocol.read_paused = True
            protocol.transport.pause_reading()

    def resume_reading(self) -> None:
        protocol = self._protocol
        if protocol.read_paused and not protocol.disconnected:
            protocol.read_paused = False
            protocol.deliver_held()
            if not protocol.read_paused and not protocol.disconnected:
                protocol.transport.resume_reading()

    @property
    def closed(self) -> bool:
        """Whether nothing more can be sent (closing, closed, or lost)."""
        return self._protocol.close_sent or self._protocol.disconnected


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    _sink: FrameSink | None = None
    _reader: FrameReader | None = None
    _sink_told = False
    _fast_reads: Callable[[bytes], bytes] | None = None
    _reader_idle = True  # no partial frame or message held: a read may go to _fast_reads
    # Frames of a read that the sink paused in the middle of, delivered when it resumes.
    _held: list[tuple[int, bytes]] | None = None

    offers_direct = True
    # Bytes that arrived after the upgrade request and before the app answered it. A client should
    # wait for the 101 (RFC 6455 §4.1), but one that did not must lose nothing: the bytes are held
    # raw and parsed by whichever path the app then takes (direct or ASGI).
    _early: list[bytes] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets' own handshake, with refusals that never echo the request (a subclass that
        # only overrides ``reject``: no state of its own).
        self.conn.__class__ = QuietServerProtocol

    def handle_connect(self, event: Any) -> None:
        try:
            super().handle_connect(event)
        except Exception as exc:  # a request websockets could not even refuse: answer it here
            self.handshake_complete = self.close_sent = True
            self.conn.send_response(malformed_upgrade_response(400, exc))
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        scope = getattr(self, "scope", None)
        if scope is not None and not self.close_sent and self.offers_direct:
            scope["extensions"][DIRECT_WEBSOCKET] = DirectWebSocket(self)
            self._early = []

    def _replay_early_bytes(self) -> None:
        early, self._early = self._early, None
        if self.read_paused and (self._sink is not None or self.queue.qsize() < READ_AHEAD_MESSAGES):
            self.read_paused = False
            self.transport.resume_reading()
        for data in early or ():
            if self.transport.is_closing():
                return
            self.data_received(data)

    # -- direct mode ------------------------------------------------------------------------------

    def direct_accept(
        self, sink: FrameSink, subprotocol: str | None, fast_reads: Callable[[bytes], bytes] | None = None
    ) -> None:
        if self.handshake_complete or self.disconnected or self.transport.is_closing():
            raise RuntimeError("the WebSocket was already accepted, refused or lost")
        headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in self.default_headers
        ]
        if subprotocol:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        del self.response.headers["Date"]
        self.response.headers.update(headers)
        self.handshake_complete = True
        self.conn.send_response(self.response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.start_keepalive()
        self._sink = sink
        self._reader = FrameReader(self.config.ws_max_size)
        self._fast_reads = fast_reads
        while not self.queue.empty():
            self.queue.get_nowait()  # "websocket.connect": the app answered it by accepting here
        self._replay_early_bytes()

    def direct_close(self, code: int, reason: str) -> None:
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.transport.write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.close_sent = True
        self._sink_told = True  # the app closed: it needs no callback about it
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        # Reading resumes to find the peer's answer. Frames held from a paused read go first (text
        # is discarded now, a close is the answer); were they left held, every read until the close
        # timeout would be added to them (a flooding client grew the gateway by ~27 MiB a read).
        self.deliver_held()
        if self.read_paused:
            self.read_paused = False
            if not self.disconnected:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        reader = self._reader
        if sink is None or reader is None:
            early = self._early
            if early is None:
                super().data_received(data)
                return
            early.append(data)
            if not self.read_paused and sum(map(len, early)) >= self.config.ws_max_size:
                self.read_paused = True
                self.transport.pause_reading()
            return
        fast = self._fast_reads
        if fast is not None and self._reader_idle:
            data = fast(data)
            if not data:
                return
        try:
            messages = reader.feed(data)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        if self._held is not None:  # a read that arrived as the pause took effect: after the held ones
            self._held.extend(messages)
            return
        if fast is not None:
            self._reader_idle = reader.buffered_bytes == 0
        self._deliver(sink, messages)

    def deliver_held(self) -> None:
        """Deliver the frames held when the sink paused mid-read (from ``resume_reading``)."""
        held, self._held = self._held, None
        if held and self._sink is not None and not self.disconnected:
            self._deliver(self._sink, held)
        if self._held is None and self._reader is not None:
            self._reader_idle = self._reader.buffered_bytes == 0

    def _deliver(self, sink: FrameSink, messages: list[tuple[int, bytes]]) -> None:
        for index, (opcode, payload) in enumerate(messages):
            if self.read_paused and not self._sink_told:
                # The sink paused reading (its client's send buffer is full, or its upstream's):
                # the rest of this read waits, so one read cannot make it write without bound.
                self._held = messages[index:]
                self._reader_idle = False  # the fast path must not see a read before these
                return
            if opcode == OP_TEXT:
                if self.close_sent:
                    continue  # the app is past its close: discard, keep reading for the answer
                if not payload.isascii():
                    try:
                        payload.decode()
                    except UnicodeDecodeError:
                        self._fail(1007, "a text message that is not UTF-8")
                        return
                sink.client_text(payload)
            elif opcode == OP_BINARY:
                if not self.close_sent:
                    sink.client_binary(payload)
            elif opcode == OP_PING:
                if not self.close_sent:
                    self.transport.write(encode_frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                self.handle_pong(_Pong(payload))  # type: ignore[arg-type]  # uvicorn's keepalive
            elif opcode == OP_CLOSE:
                self._close_received(payload)
                return

    def _close_received(self, payload: bytes) -> None:
        if self.close_sent:
            # The answer to our close: the closing handshake is complete.
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        try:
            code, reason = parse_close(payload)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)
            return
        self.transport.write(encode_frame(OP_CLOSE, payload[:2]))
        self.close_sent = True
        self.transport.close()
        self._tell_sink(code, reason)

    def _fail(self, code: int, reason: str) -> None:
        if not self.close_sent and not self.transport.is_closing():
            self.transport.write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.close_sent = True
        self.transport.close()
        self._tell_sink(code, reason)

    def _tell_sink(self, code: int, reason: str) -> None:
        sink = self._sink
        if sink is not None and not self._sink_told:
            self._sink_told = True
            sink.client_closed(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._tell_sink(1006, "connection lost")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._sink is not None and not self._sink_told:
            self._sink.client_writable(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._sink is not None and not self._sink_told:
            self._sink.client_writable(True)

    # -- ASGI mode --------------------------------------------------------------------------------

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                self.queue.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused and self.queue.qsize() >= READ_AHEAD_MESSAGES:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() < READ_AHEAD_MESSAGES // 2:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        await super().send(message)
        message_type = message.get("type")
        if message_type == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
        if self._early is not None and message_type in ("websocket.accept", "websocket.close"):
            self._replay_early_bytes()  # accepted through ASGI (or refused: then they are dropped)


class _AsgiOnlyWebSocketProtocol(_WebSocketProtocol):
    offers_direct = False


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        handle_signals: bool,
        before_shutdown: Callable[[], Awaitable[None]] | None,
        name: str,
    ) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals
        self._before_shutdown = before_shutdown
        self._name = name
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                try:
                    yield
                finally:
                    if getattr(self, "_captured_signals", None):
                        # uvicorn now re-raises the signal: SIGTERM's default action ends the process
                        # without running atexit, which is where child processes are stopped (the
                        # emulator's recogniser pool); they outlived `realtalk serve`. Run them now.
                        atexit._run_exitfuncs()
        else:
            yield

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            # From a signal handler: wake the loop through its self-pipe.
            self._loop.call_soon_threadsafe(self.stop_requested.set)

    async def main_loop(self) -> None:
        # uvicorn ticks every 100 ms to refresh its Date header (each 10th tick) and to notice a
        # stop; here a stop wakes the loop at once, so one tick a second does both (idle CPU).
        self._loop = asyncio.get_running_loop()
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.stop_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._before_shutdown is not None:
            # Still listening while the app drains: a client that connects now gets the app's
            # answer (the gateway's 503 with Retry-After, /readyz 503), not a refused connection.
            await self._before_shutdown()
        for server in self.servers:
            server.close()  # stop accepting
        for connection in list(self.server_state.connections):
            connection.shutdown()  # WebSockets get a close frame (1012), as from a restarting service
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn's connection and task sets have no change notification: poll them.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg=f"the {self._name} is stopping")
        for server in self.servers:
            await server.wait_closed()
        if self.config.lifespan != "off" and not self.force_exit:
            await self.lifespan.shutdown()


class EmbeddedApp:
    """An ASGI app served by uvicorn on ``host``:``port``, as an async context manager.

    Subclasses implement ``start()`` by building their app and calling ``_serve(app, ...)``.
    """

    name = "server"
    # False: WebSocket scopes carry no DirectWebSocket, as under another ASGI server (the apps'
    # plain-ASGI fallbacks are tested this way).
    direct_websockets = True

    def __init__(self, host: str, port: int, *, handle_signals: bool, stop_timeout_s: float) -> None:
        self._bind_host = host
        self._bind_port = port
        self._handle_signals = handle_signals
        self._stop_timeout_s = stop_timeout_s
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return self._bind_host

    @property
    def listening_socket(self) -> socket.socket | None:
        """The socket this server accepts connections on, while it runs (for diagnostics)."""
        return self._socket

    @property
    def http_base_url(self) -> str:
        """``http://HOST:PORT``: what ``AZURE_OPENAI_ENDPOINT`` should be set to."""
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        """``ws://HOST:PORT/openai/v1``: the SDK's ``websocket_base_url``."""
        return "ws" + self.http_base_url[4:] + "/openai/v1"

    async def start(self) -> None:
        raise NotImplementedError

    async def _serve(
        self,
        app: Any,
        *,
        backlog: int = 128,
        before_shutdown: Callable[[], Awaitable[None]] | None = None,
        head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
        **uvicorn_options: Any,
    ) -> None:
        if self._task is not None:
            raise RuntimeError(f"this {self.name} is already running")
        host = self._bind_host.strip("[]")
        # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket's proto says TCP (base_events._set_nodelay), and proto 0 does not.
        # Without it small frames wait for the peer's delayed ACK: ~40 ms stalls in an audio stream
        # on the default event loop (uvloop sets it regardless). Found by bench/tools.py.
        sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, self._bind_port))
        sock.listen(backlog)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            # h11 with a deadline for each request's head (a slowloris client is closed, 408).
            http=functools.partial(HeadDeadlineProtocol, head_timeout_s=head_timeout_s),  # type: ignore[arg-type]  # called like the class
            ws=_WebSocketProtocol if self.direct_websockets else _AsgiOnlyWebSocketProtocol,
            # Audio is base64 PCM: deflate costs CPU and latency on every frame for little gain,
            # and SDK clients offer it by default (websockets' compression="deflate").
            ws_per_message_deflate=False,
            log_config=None,  # a library must not reconfigure the process's logging
            log_level="warning",
            access_log=False,
            **uvicorn_options,
        )
        self._server = _Server(
            config, handle_signals=self._handle_signals, before_shutdown=before_shutdown, name=self.name
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self._server.started:
            await self._task  # raises the startup error, if any
            raise RuntimeError(f"the {self.name} stopped during startup")

    def request_shutdown(self) -> None:
        """Begin the (graceful) shutdown, as SIGTERM does; ``stop()`` waits for it."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.stop_requested.set()

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.request_shutdown()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self._stop_timeout_s)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
        finally:
            self._server = None
            self._task = None
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    async def serve_forever(self) -> None:
        """Run (starting if needed) until cancelled or, with ``handle_signals``, until SIGTERM/Ctrl+C."""
        if self._task is None:
            await self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        finally:
            await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
