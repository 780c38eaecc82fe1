"""Where the gateway's sessions go: Azure (or the OpenAI platform), or the embedded emulator.

With no ``AZURE_OPENAI_ENDPOINT`` configured, the emulator runs in-process and is the upstream
(issue 5, item 8: the embedded default, like SQLite for a database); the log and every UI session
say so. The server's credential never leaves this module's connections: clients authenticate to
the gateway with their own tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake
from websockets.exceptions import WebSocketException as WsError

from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.client.transport import open_websocket
from realtalk.emulator import Emulator, EmulatorConfig, Engines
from realtalk.errors import RealtalkError
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.settings import Settings, resolve_connection

__all__ = ["EMULATOR_DEPLOYMENT", "ReadinessProbe", "Upstream", "UpstreamKind", "start_upstream"]

logger = logging.getLogger("realtalk.gateway")

EMULATOR_DEPLOYMENT = "gpt-realtime-1.5"
UpstreamKind = Literal["emulator", "azure", "openai"]


@dataclass(frozen=True)
class Upstream:
    """The upstream Realtime endpoint and the server's credential for it."""

    endpoint: ResolvedEndpoint
    credential: Credential
    kind: UpstreamKind

    @property
    def description(self) -> str:
        if self.kind == "emulator":
            return f"the embedded emulator at {self.endpoint.host}"
        return f"{self.endpoint.deployment} at {self.endpoint.host}"

    async def open(self, timeout_s: float) -> ClientConnection:
        """Open one upstream session's WebSocket (a fresh credential header per connect)."""
        return await open_websocket(self.endpoint, self.credential, timeout_s=timeout_s, close_timeout_s=2.0)


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
        upstream = Upstream(endpoint, ApiKeyCredential(key, style="bearer", source=None), "emulator")
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


class ReadinessProbe:
    """``/readyz``: a real handshake with the upstream (credential obtained, socket opened, first
    event received), cached for ``cache_s`` and shared by concurrent callers."""

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
            self._result = (self._clock(), ready, detail)
            return ready, detail

    async def _probe(self) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self._timeout_s):
                ws = await self._upstream.open(self._timeout_s)
                try:
                    await ws.recv()
                finally:
                    with contextlib.suppress(WsError, OSError):
                        await ws.close(1000, "readiness probe")
        except RealtalkError as exc:
            return False, f"upstream refused the session: {exc}"
        except TimeoutError:
            return False, f"upstream did not answer within {self._timeout_s:g} s"
        except (OSError, InvalidHandshake, WsError) as exc:
            return False, f"upstream unreachable: {exc}"
        return True, f"upstream reachable: {self._upstream.description}"
