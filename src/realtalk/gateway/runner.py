"""Running the gateway: ``async with Gateway(app) as gw: ...`` (tests), or ``serve_forever`` (CLI).

uvicorn serves the app on a socket bound here (port 0 picks a free one). Its shutdown is replaced
so that SIGTERM is graceful for live calls (issue 5, item 6): stop accepting, tell connected
clients, let in-flight responses finish up to ``REALTALK_GATEWAY_DRAIN_S``, close every session
with 1001 "server shutting down", then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtalk.gateway.state import GatewayState

__all__ = ["Gateway"]

_FRAME_SLACK_BYTES = 64 * 1024
_READ_AHEAD_MESSAGES = 4


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, with two changes.

    * Reading is paused when ``_READ_AHEAD_MESSAGES`` received messages wait for the app, not after
      every message: uvicorn pauses and resumes the socket around each message, two system calls
      per audio frame. The queue stays bounded (lessons.md: bounded queues everywhere audio flows).
    * No spurious error log after a denial response (as in the emulator's runner: uvicorn logs
      "returned without completing handshake" after a 401).
    """

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
        if not self.read_paused and self.queue.qsize() >= _READ_AHEAD_MESSAGES:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.qsize() < _READ_AHEAD_MESSAGES // 2:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message.get("type") == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


class _GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: GatewayState, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._state = state
        self._handle_signals = handle_signals
        self.stop_requested = asyncio.Event()

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
        await self._state.drain()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn's connection and task sets have no change notification to wait on.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="the gateway is stopping")
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


class Gateway:
    """The gateway app served by uvicorn on ``host``:``port`` (from the app's configuration)."""

    def __init__(self, app: FastAPI, *, handle_signals: bool = False) -> None:
        self.app = app
        self.state: GatewayState = app.state.gateway
        self._handle_signals = handle_signals
        self._server: _GatewayServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return self.state.config.host

    @property
    def http_base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        """``ws://HOST:PORT/openai/v1``: the SDK's ``websocket_base_url``."""
        return "ws" + self.http_base_url[4:] + "/openai/v1"

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("this gateway is already running")
        config = self.state.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host.strip("[]"), config.port))
        sock.listen(1024)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            self.app,
            lifespan="on",
            ws=_WebSocketProtocol,
            # Audio is base64 PCM: deflate costs CPU and latency on every frame for little gain,
            # and SDK clients offer it by default (websockets' compression="deflate").
            ws_per_message_deflate=False,
            # Frames above the gateway's limit get an `error` event; far above it, uvicorn closes 1009.
            ws_max_size=config.limits.max_message_bytes * 2 + _FRAME_SLACK_BYTES,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            timeout_graceful_shutdown=5,
        )
        self._server = _GatewayServer(uv_config, self.state, handle_signals=self._handle_signals)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the gateway stopped during startup")
            await asyncio.sleep(0.005)

    def request_shutdown(self) -> None:
        """What SIGTERM does: begin the graceful shutdown (``stop`` waits for it)."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.stop_requested.set()

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.request_shutdown()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self.state.config.drain_s + 15)
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
        """Run (starting if needed) until stopped, or with ``handle_signals`` until SIGTERM/Ctrl+C."""
        if self._task is None:
            await self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        finally:
            await self.stop()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
