"""Shared machinery of the gateway tests: an emulator upstream, a gateway in front of it, clients.

Everything runs on 127.0.0.1 with port 0. Clients are the official SDK, unmodified, or a raw
``websockets`` connection where a test must see close codes or send exact frames (the browser
UI's shapes). Negatives ("never forwarded", "no upstream connection") are read from the
emulator's own records (``emu.stats``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtalk.audio.pcm import read_wav
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines
from realtalk.gateway import Gateway, create_app
from realtalk.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures"
MODEL = "gpt-realtime-1.5"
EVENT_TIMEOUT_S = 15.0
TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"
SECRET = "s" * 40


def fixture_pcm(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def text_turn(text: str = "hello") -> list[dict[str, Any]]:
    return [
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        },
        {"type": "response.create"},
    ]


class Client:
    """A raw WebSocket client of the gateway: exact frames out, decoded events in, the close seen."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cursor = 0

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event, separators=(",", ":")))

    async def next(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout_s)
        assert isinstance(raw, str)
        self.raw.append(raw)
        event: dict[str, Any] = json.loads(raw)
        self.events.append(event)
        return event

    async def until(
        self,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout_s: float = EVENT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """The next event of ``event_type`` matching ``where`` after the last one returned."""
        async with asyncio.timeout(timeout_s):
            while True:
                while self._cursor >= len(self.events):
                    await self.next()
                event = self.events[self._cursor]
                self._cursor += 1
                if event["type"] == event_type and where(event):
                    return event

    async def error(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        event = await self.until("error", timeout_s=timeout_s)
        return event["error"]  # type: ignore[no-any-return]

    async def closed(self, timeout_s: float = EVENT_TIMEOUT_S) -> tuple[int | None, str]:
        """Read until the gateway closes the connection; its close code and reason."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    await self.next()
                except ConnectionClosed:
                    break
        close = self.ws.protocol.close_rcvd
        return (close.code, close.reason) if close is not None else (None, "")

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test may leave an error in the log: no traceback of the gateway, uvicorn or asyncio."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    errors += [r for r in caplog.get_records("teardown") if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture(scope="session")
def fast_engines() -> Engines:
    """Energy VAD, no recogniser, tone synthesiser: real engines that cost next to nothing."""
    return load_engines("energy", "none", "tone")


@pytest.fixture
def emulator(fast_engines: Engines) -> Callable[..., Any]:
    """``async with emulator(pace=..., ...) as emu``: the upstream, with fast engines."""

    @asynccontextmanager
    async def start(**config: Any) -> AsyncIterator[Emulator]:
        config.setdefault("pace", 40.0)
        async with Emulator(EmulatorConfig(**config), engines=fast_engines) as emu:
            yield emu

    return start


def gateway_settings(emu: Emulator | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "azure_openai_endpoint": emu.http_base_url if emu is not None else None,
        "azure_openai_deployment_name": MODEL,
        "gateway_port": 0,
        "connect_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class AsgiGateway(Gateway):
    """The gateway as under another ASGI server: client frames through ASGI messages."""

    direct_websockets = False


@pytest.fixture(params=["direct", "python", "asgi"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path, fast_engines: Engines) -> Callable[..., Any]:
    """``async with gateway(emu, **settings) as gw``: a gateway in front of ``emu``.

    Every test runs three times: the way ``realtalk serve`` runs (direct WebSocket, audio frames
    through the compiled fast path where it was built), the same with the compiled path off (what
    an install without a C compiler runs), and the plain-ASGI fallback the app takes under another
    ASGI server.
    """
    runner = AsgiGateway if request.param == "asgi" else Gateway

    @asynccontextmanager
    async def start(emu: Emulator | None, **overrides: Any) -> AsyncIterator[Gateway]:
        static = tmp_path / "static"
        static.mkdir(exist_ok=True)
        (static / "index.html").write_text("<!doctype html><title>realtalk</title>")
        app = create_app(gateway_settings(emu, **overrides), static_dir=static, emulator_engines=fast_engines)
        app.state.gateway.compiled_fast_path = request.param == "direct"
        async with runner(app) as gw:
            yield gw

    return start


@pytest.fixture
def client() -> Callable[..., Any]:
    """``async with client(gw, token=..., ui=True, origin=...) as c``: a raw WebSocket client."""

    @asynccontextmanager
    async def open_client(
        gw: Gateway,
        *,
        token: str | None = None,
        ui: bool = False,
        origin: str | None = None,
        subprotocols: list[str] | None = None,
        path: str = "/realtime",
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[Client]:
        url = f"{gw.websocket_base_url}{path}?model={MODEL}" + ("&realtalk_ui=1" if ui else "")
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=subprotocols,  # type: ignore[arg-type]
            max_size=16 * 1024 * 1024,
            close_timeout=1.0,
        ) as ws:
            yield Client(ws)

    return open_client


@pytest.fixture
def sdk() -> Callable[..., Any]:
    """``async with sdk(gw, token) as conn``: the official SDK's connection, unmodified."""

    @asynccontextmanager
    async def open_sdk(gw: Gateway, token: str = "unused-in-open-mode") -> AsyncIterator[Any]:
        openai_client = AsyncOpenAI(websocket_base_url=gw.websocket_base_url, api_key=token)
        try:
            async with openai_client.realtime.connect(
                model=MODEL, websocket_connection_options={"close_timeout": 1.0, "max_size": 16 * 1024 * 1024}
            ) as conn:
                yield conn
        finally:
            await openai_client.close()

    return open_sdk
