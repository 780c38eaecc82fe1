"""Where the gateway's sessions go: Azure (or the OpenAI platform), or the embedded emulator.

With no ``AZURE_OPENAI_ENDPOINT`` configured, the emulator runs in-process and is the upstream
(issue 5, item 8: the embedded default, like SQLite for a database); the log and every UI session
say so. The server's credential never leaves this module's connections: clients authenticate to
the gateway with their own tokens.

Upstream sockets are ``picows`` connections: frames arrive as synchronous callbacks on a
``WSListener`` and are sent without a task switch, masked in C, which is what lets the relay cost
less than half of a naive one per frame (bench/gateway.py). Handshake refusals become
``HandshakeRejected`` with the same sentence ``realtalk talk`` and ``realtalk doctor`` give; a proxy
is taken from the environment (``HTTPS_PROXY``, ``NO_PROXY``), never for a loopback upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from picows import WSError, WSFrame, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.client.handshake import describe_refusal
from realtalk.client.transport import MAX_MESSAGE_BYTES
from realtalk.emulator import Emulator, EmulatorConfig, Engines
from realtalk.errors import HandshakeRejected, RealtalkError
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.settings import Settings, resolve_connection

__all__ = [
    "EMULATOR_DEPLOYMENT",
    "UPSTREAM_ERRORS",
    "ReadinessProbe",
    "Upstream",
    "UpstreamKind",
    "start_upstream",
]

logger = logging.getLogger("realtalk.gateway")
# picows' own messages. It logs every connection and disconnection at INFO, with no session id
# (the session logs its own start and end); only its warnings and errors are worth a line.
_socket_logger = logging.getLogger("realtalk.gateway.upstream")
_socket_logger.setLevel(logging.WARNING)

EMULATOR_DEPLOYMENT = "gpt-realtime-1.5"
UpstreamKind = Literal["emulator", "azure", "openai"]
# What opening an upstream socket may raise besides a refusal (RealtalkError, HandshakeRejected).
UPSTREAM_ERRORS = (RealtalkError, OSError, TimeoutError, WSError)
L = TypeVar("L", bound=WSListener)


@dataclass(frozen=True)
class Upstream:
    """The upstream Realtime endpoint and the server's credential for it."""

    endpoint: ResolvedEndpoint
    credential: Credential
    kind: UpstreamKind
    embedded: bool = False  # the emulator this process started (no endpoint configured)

    @property
    def description(self) -> str:
        """For the log (never for clients): which upstream, and where."""
        if self.embedded:
            return f"the embedded emulator at {self.endpoint.host}"
        if self.endpoint.provider == "local":
            return f"{self.endpoint.deployment} at {self.endpoint.host} (a local endpoint)"
        return f"{self.endpoint.deployment} at {self.endpoint.host}"

    async def connect(
        self, listener: Callable[[], L], timeout_s: float, *, call_id: str | None = None
    ) -> tuple[WSTransport, L]:
        """Open one upstream session's WebSocket (a fresh credential header per connect); its
        frames go to the listener ``listener()`` makes. With ``call_id``, the socket attaches to
        that WebRTC or SIP call (the sideband, §4.3) instead of opening a new session.

        Raises:
            HandshakeRejected: the upstream answered the upgrade with an HTTP error (401, 404, ...).
            OSError, TimeoutError, picows.WSError: it could not be reached or did not speak WebSocket.
        """
        headers = await self.credential.headers()
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(timeout_s):
                transport, made = await ws_connect(
                    listener,
                    endpoint.url if call_id is None else self.call_url(call_id),
                    websocket_handshake_timeout=timeout_s,
                    extra_headers=headers,
                    max_frame_size=MAX_MESSAGE_BYTES,
                    max_redirects=0,
                    proxy=self._proxy(),
                    disconnect_on_exception=False,
                    use_aiofastnet=False,
                    logger_name=_socket_logger,  # the event loop's own transports (uvloop's under serve)
                )
        except WSHandshakeError as exc:
            response = exc.response
            if response is None or int(response.status) < 300:
                raise
            status = int(response.status)
            body = response.body or exc.raw_body or b""
            reason = describe_refusal(status, body, response.headers.get("apim-request-id"), endpoint)
            raise HandshakeRejected(status, body.decode("utf-8", "replace"), reason) from None
        return transport, made  # type: ignore[return-value]  # picows returns what listener() made

    def call_url(self, call_id: str) -> str:
        """The sideband WebSocket URL of a call (``wss://<host>/openai/v1/realtime?call_id=rtc_…``)."""
        return f"{self.endpoint.websocket_base_url}/realtime?{urllib.parse.urlencode({'call_id': call_id})}"

    def _proxy(self) -> str | None:
        if self.endpoint.provider == "local":
            return None
        proxies = urllib.request.getproxies()
        proxy = proxies.get("wss") or proxies.get("https") or proxies.get("all")
        if proxy is None or urllib.request.proxy_bypass(self.endpoint.host):
            return None
        return proxy


async def start_upstream(
    settings: Settings, stack: AsyncExitStack, *, engines: Engines | None = None
) -> Upstream:
    """The configured upstream; with no endpoint, start the emulator (closed with ``stack``)."""
    if settings.azure_openai_endpoint is None:
        # A random key: nothing else on this machine can use the emulator behind our back.
        key = secrets.token_urlsafe(24)
        emulator = Emulator(EmulatorConfig(keys=(key,), pace=1.0), engines=engines)
        await stack.enter_async_context(emulator)
        endpoint = resolve_endpoint(
            emulator.http_base_url, settings.azure_openai_deployment_name or EMULATOR_DEPLOYMENT
        )
        upstream = Upstream(
            endpoint, ApiKeyCredential(key, style="bearer", source=None), "emulator", embedded=True
        )
        logger.warning(
            "no AZURE_OPENAI_ENDPOINT configured: sessions go to the embedded emulator at %s "
            "(echo replies, no cost); set AZURE_OPENAI_ENDPOINT to use Azure",
            endpoint.host,
        )
        return upstream
    endpoint, credential = resolve_connection(settings)
    stack.push_async_callback(credential.close)
    for warning in endpoint.warnings:
        logger.warning("%s", warning)
    kind: UpstreamKind = "emulator" if endpoint.provider == "local" else endpoint.provider
    upstream = Upstream(endpoint, credential, kind)
    logger.info("upstream: %s (%s)", upstream.description, credential.describe())
    return upstream


_READINESS: Final = {True: "ready", False: "not ready"}


class ReadinessProbe:
    """``/readyz``: a real handshake with the upstream (credential obtained, socket opened, first
    event received), cached for ``cache_s`` and shared by concurrent callers. ``check`` returns the
    detail for the log (it names the upstream); the route tells probes only ready or not."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        cache_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._result: tuple[float, bool, str] | None = None

    async def check(self) -> tuple[bool, str]:
        """``(ready, detail)``."""
        async with self._lock:
            now = self._clock()
            if self._result is not None and now - self._result[0] < self._cache_s:
                return self._result[1], self._result[2]
            ready, detail = await self._probe()
            if self._result is None or (ready, detail) != self._result[1:]:
                # Probes come every few seconds: the log hears of a change, not of each.
                logger.log(logging.INFO if ready else logging.WARNING, "%s: %s", _READINESS[ready], detail)
            self._result = (self._clock(), ready, detail)
            return ready, detail

    async def _probe(self) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self._timeout_s):
                transport, listener = await self._upstream.connect(_FirstFrame, self._timeout_s)
                try:
                    await listener.first
                finally:
                    with contextlib.suppress(WSError, OSError):
                        transport.send_close(close_message=b"readiness probe")
                        transport.disconnect()
        except RealtalkError as exc:
            return False, f"upstream refused the session: {exc}"
        except TimeoutError:
            return False, f"upstream did not answer within {self._timeout_s:g} s"
        except (OSError, WSError, ConnectionError) as exc:
            return False, f"upstream unreachable: {exc}"
        return True, f"upstream reachable: {self._upstream.description}"


class _FirstFrame(WSListener):
    """Waits for the upstream's first event (``session.created``)."""

    def __init__(self) -> None:
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self.first.done():
            if frame.msg_type is WSMsgType.CLOSE:
                self.first.set_exception(ConnectionError(f"closed at once ({frame.get_close_code()})"))
            else:
                self.first.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError("the connection closed before the first event"))
