"""Running the emulator in-process: ``async with Emulator(config) as emu: ...``.

The server is uvicorn, started on the running event loop (``realtalk.embedded_server``; port 0
picks a free port, so parallel test runs never collide). ``realtalk emulate``, ``talk`` and ``serve`` (when
no Azure endpoint is configured) and the tests all use this class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from realtalk.embedded_server import EmbeddedApp
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


class Emulator(EmbeddedApp):
    """A local Realtime API server, as an async context manager.

    ``engines`` replaces the speech engines named in the config (tests pass light fakes);
    ``responder_factory`` replaces the echo/scenario responder (one responder per session).
    """

    name = "emulator"

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        engines: Engines | None = None,
        responder_factory: Callable[[], Responder] | None = None,
        handle_signals: bool = False,
    ) -> None:
        self.config = config or EmulatorConfig()
        super().__init__(self.config.host, self.config.port, handle_signals=handle_signals, stop_timeout_s=5)
        self.stats = EmulatorStats()
        self._engines = engines
        self._responder_factory = responder_factory

    @property
    def engines(self) -> Engines:
        if self._engines is None:
            raise RuntimeError("the emulator's engines are loaded when it starts")
        return self._engines

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._engines is None:
            config = self.config
            self._engines = await asyncio.to_thread(
                load_engines, config.vad, config.asr, config.tts, config.phrases
            )
        app = build_app(
            self.config, self._engines, stats=self.stats, responder_factory=self._responder_factory
        )
        await self._serve(
            app,
            lifespan="off",
            ws_max_size=self.config.max_event_bytes + _FRAME_SLACK_BYTES,
            ws_ping_interval=None,
            timeout_graceful_shutdown=2,
            # Live WebRTC and SIP calls end with the server (their peer connections close).
            before_shutdown=app.app.state.emulator.calls.hangup_all,
        )
