"""``create_app(settings)``: the gateway as a FastAPI app with a lifespan.

The lifespan opens the upstream: the configured Azure (or OpenAI) endpoint with the server's
credential, or, with no ``AZURE_OPENAI_ENDPOINT``, the emulator started in-process (the embedded
default). Everything else is checked when the app is created, so ``realtalk serve`` fails before
it listens when a setting, the profile or the exposure rule is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from realtalk.emulator import Engines
from realtalk.errors import ConfigError
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.relay import COMPILED_FAST_PATH
from realtalk.gateway.routes import calls, ops, realtime, sip, tokens, ui, usage
from realtalk.gateway.state import GatewayState
from realtalk.gateway.upstream import start_upstream
from realtalk.ledger import Ledger, upgrade
from realtalk.settings import Settings

__all__ = ["STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"

logger = logging.getLogger("realtalk.gateway")


async def open_ledger(config: GatewayConfig) -> Ledger | None:
    """The usage ledger sessions are written to (``None``: turned off, or the default one cannot
    be opened: logged, and the gateway serves without it).

    Raises:
        ConfigError: a configured ``REALTALK_LEDGER_URL`` that cannot be used.
    """
    if config.ledger_url is None:
        return None
    try:
        if config.ledger_upgrade_on_start:
            result = await upgrade(config.ledger_url)
            if result.changed:
                logger.warning(
                    "usage ledger migrated from revision %s to %s",
                    result.from_revision or "(empty)",
                    result.to_revision,
                )
        ledger = await Ledger.open(config.ledger_url)
    except ConfigError as exc:
        if config.ledger_required:
            raise
        logger.warning("usage is not recorded: the default ledger cannot be opened: %s", exc)
        return None
    logger.info("usage ledger: %s", ledger.url)
    return ledger


def create_app(
    settings: Settings,
    *,
    static_dir: Path | None = None,
    emulator_engines: Engines | None = None,
) -> FastAPI:
    """The gateway app for ``settings``.

    ``static_dir`` replaces the browser UI's folder (tests); ``emulator_engines`` replaces the
    embedded emulator's speech engines (tests pass light fakes).

    Raises:
        ConfigError: a setting, the profile file, or the exposure rule (no client authentication
            on a non-loopback address) is wrong.
    """
    config = GatewayConfig.from_settings(settings)
    state = GatewayState(config, static_dir or STATIC_DIR)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            ledger = await open_ledger(config)
            if ledger is not None:
                stack.push_async_callback(ledger.aclose)  # last: after every session has ended
            state.set_upstream(await start_upstream(settings, stack, engines=emulator_engines), ledger)
            stack.push_async_callback(state.aclose)
            if not COMPILED_FAST_PATH:
                logger.warning(
                    "the compiled per-frame path is not built, so audio frames are relayed in Python "
                    "(more CPU per frame); reinstall realtalk where a C compiler is available"
                )
            if not config.auth_configured:
                logger.warning(
                    "no client authentication configured: anyone who can reach %s may use the gateway "
                    "(allowed on a loopback address only; see REALTALK_GATEWAY_TOKENS)",
                    config.host,
                )
            yield
            # The runner drains before the server stops; this covers servers that do not.
            await state.drain(0)

    app = FastAPI(
        title="realtalk gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = state
    app.include_router(realtime.router)
    app.include_router(calls.router)
    app.include_router(sip.router)
    app.include_router(ops.router)
    app.include_router(tokens.router)
    app.include_router(ui.router)
    app.include_router(usage.router)
    app.mount("/static", StaticFiles(directory=state.static_dir, check_dir=False), name="static")
    return app
