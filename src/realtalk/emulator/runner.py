"""Running the emulator in-process: ``async with Emulator(config) as emu: ...``.

The server is uvicorn, started on the running event loop on a socket bound here (port 0 picks a
free port, so parallel test runs never collide). ``realtalk emulate``, ``talk`` and ``serve`` (when
no Azure endpoint is configured) and the tests all use this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtalk.emulator.config import EmulatorConfig
from realtalk.emulator.engines import Engines, load_engines
from realtalk.emulator.responder import Responder
from realtalk.emulator.server import build_app
from realtalk.emulator.stats import EmulatorStats

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)

# uvicorn closes frames above this with 1009 before the session sees them; the session itself
# answers anything above EmulatorConfig.max_event_bytes with an `error` event.
_FRAME_SLACK_BYTES = 1024 * 1024


class _WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, minus a spurious error log after a denial response.

    After an app refuses the upgrade with an HTTP response (the ASGI "websocket.http.response"
    extension: our 401/404/400), uvicorn 0.3x-0.5x still logs "ASGI callable returned without
    completing handshake" at ERROR, although the response went out. The refusal is the handshake's
    end, so mark it complete once its body is sent.
    """

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message.get("type") == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


class _EmbeddedServer(uvicorn.Server):
    """uvicorn tuned to run inside another program's event loop.

    It stops as soon as asked (uvicorn polls every 100 ms, and waits in 100 ms steps for
    connections to end: fine for a service, slow for hundreds of test emulators), and it leaves
    the process's signal handlers alone unless told to own them (``realtalk emulate`` does).
    """

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals
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
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # WebSockets get a close frame (1012), as from a restarting service
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn's connection and task sets have no change notification: poll them.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="the emulator is stopping")
        for server in self.servers:
            await server.wait_closed()


class Emulator:
    """A local Realtime API server, as an async context manager.

    ``engines`` replaces the speech engines named in the config (tests pass light fakes);
    ``responder_factory`` replaces the echo/scenario responder (one responder per session).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        engines: Engines | None = None,
        responder_factory: Callable[[], Responder] | None = None,
        handle_signals: bool = False,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.stats = EmulatorStats()
        self._engines = engines
        self._responder_factory = responder_factory
        self._handle_signals = handle_signals
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # --- addresses -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def http_base_url(self) -> str:
        """``http://HOST:PORT``: what ``AZURE_OPENAI_ENDPOINT`` should be set to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        """``ws://HOST:PORT/openai/v1``: the SDK's ``websocket_base_url``."""
        return "ws" + self.http_base_url[4:] + "/openai/v1"

    @property
    def engines(self) -> Engines:
        if self._engines is None:
            raise RuntimeError("the emulator's engines are loaded when it starts")
        return self._engines

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("this emulator is already running")
        if self._engines is None:
            config = self.config
            self._engines = await asyncio.to_thread(
                load_engines, config.vad, config.asr, config.tts, config.phrases
            )
        app = build_app(
            self.config, self._engines, stats=self.stats, responder_factory=self._responder_factory
        )
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.config.port))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            app,
            lifespan="off",
            ws=_WebSocketProtocol,
            # Audio is base64 PCM: deflate costs CPU and latency on every frame for little gain,
            # and SDK clients offer it by default (websockets' compression="deflate").
            ws_per_message_deflate=False,
            ws_max_size=self.config.max_event_bytes + _FRAME_SLACK_BYTES,
            ws_ping_interval=None,
            log_config=None,  # a library must not reconfigure the process's logging
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(uv_config, handle_signals=self._handle_signals)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self._server.started:
            await self._task  # raises the startup error, if any
            raise RuntimeError("the emulator's server stopped during startup")

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        self._server.stop_requested.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
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
        """Run (starting if needed) until cancelled or, with ``handle_signals``, until Ctrl+C."""
        if self._task is None:
            await self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        finally:
            await self.stop()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
