"""Running the gateway: ``async with Gateway(app) as gw: ...`` (tests), or ``serve_forever`` (CLI).

uvicorn serves the app on a socket bound here (port 0 picks a free one). Its shutdown is replaced
so that SIGTERM is graceful for live calls (issue 5, item 6): stop accepting, tell connected
clients, let in-flight responses finish up to ``REALTALK_GATEWAY_DRAIN_S``, close every session
with 1001 and why (an `error` event first), then stop. It keeps listening while it drains, so a new
client gets a 503 with Retry-After and `/readyz` a 503, not a refused connection.
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from realtalk.embedded_server import EmbeddedApp
from realtalk.gateway.state import GatewayState

__all__ = ["Gateway"]

_FRAME_SLACK_BYTES = 64 * 1024


class Gateway(EmbeddedApp):
    """The gateway app served by uvicorn on ``host``:``port`` (from the app's configuration)."""

    name = "gateway"

    def __init__(self, app: FastAPI, *, handle_signals: bool = False, freeze_gc: bool = False) -> None:
        """``handle_signals``: SIGTERM and Ctrl+C stop it gracefully. ``freeze_gc``: once started,
        the objects alive then (FastAPI, pydantic, the SDK's types: most of the heap) leave the
        garbage collector's generations (``gc.freeze``), so its full collections walk only what
        sessions made: a full collection of the startup heap stops every session for about 70 ms,
        frozen it takes nothing. For a process that is the gateway (``realtalk serve``), not for
        one that starts many (tests)."""
        self.app = app
        self._freeze_gc = freeze_gc
        self.state: GatewayState = app.state.gateway
        config = self.state.config
        super().__init__(
            config.host, config.port, handle_signals=handle_signals, stop_timeout_s=config.drain_s + 15
        )

    async def start(self) -> None:
        config = self.state.config
        await self._serve(
            self.app,
            backlog=1024,
            before_shutdown=self.state.drain,
            lifespan="on",
            # Frames above the gateway's limit get an `error` event; far above it, uvicorn closes 1009.
            ws_max_size=config.limits.max_message_bytes * 2 + _FRAME_SLACK_BYTES,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            proxy_headers=True,
            timeout_graceful_shutdown=5,
            head_timeout_s=config.limits.head_timeout_s,
        )
        if self._freeze_gc:
            gc.freeze()
