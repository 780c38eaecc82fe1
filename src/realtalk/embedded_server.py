"""Serving an ASGI app with uvicorn inside the running event loop (the emulator and the gateway).

``EmbeddedApp`` binds its own socket (port 0 picks a free port, so parallel test runs never
collide), starts uvicorn as a task, and stops it as soon as asked. It is the base of
``realtalk.emulator.Emulator`` and ``realtalk.gateway.runner.Gateway``, which add their app and
their uvicorn options; the gateway also passes ``before_shutdown`` to drain live calls on SIGTERM.

Changes to uvicorn, all of them about running embedded and carrying audio:

* it polls for "stop" every 100 ms and waits for connections in 100 ms steps: fine for a service,
  slow for hundreds of test servers, so a stop request wakes it at once;
* it leaves the process's signal handlers alone unless told to own them (the CLI commands do);
* its websockets protocol pauses and resumes the socket around every received message, two system
  calls per audio frame: here reading pauses only when ``READ_AHEAD_MESSAGES`` wait for the app
  (the queue stays bounded);
* after an app refuses the upgrade with an HTTP response (the ASGI "websocket.http.response"
  extension: 401, 404, ...), it logs "ASGI callable returned without completing handshake" at
  ERROR although the response went out; the refusal ends the handshake, so it is marked complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["READ_AHEAD_MESSAGES", "EmbeddedApp"]

READ_AHEAD_MESSAGES = 4


class _WebSocketProtocol(WebSocketsSansIOProtocol):
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
        if message.get("type") == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), timeout=0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting
        if self._before_shutdown is not None:
            await self._before_shutdown()
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
        **uvicorn_options: Any,
    ) -> None:
        if self._task is not None:
            raise RuntimeError(f"this {self.name} is already running")
        host = self._bind_host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, self._bind_port))
        sock.listen(backlog)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            ws=_WebSocketProtocol,
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
