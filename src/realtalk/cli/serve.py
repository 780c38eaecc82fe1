"""``realtalk serve``: the Realtime gateway and the browser voice UI.

Thin: settings (+ options) → ``create_app`` → ``Gateway`` with signal handling, JSON logs on
stderr. With no ``AZURE_OPENAI_ENDPOINT`` configured, the emulator runs in-process and the log says
so. SIGTERM (a container stop, a deploy) is graceful: connected clients are told, in-flight replies
finish for up to ``REALTALK_GATEWAY_DRAIN_S``, then every session is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from realtalk.errors import ConfigError
from realtalk.gateway import Gateway, create_app
from realtalk.gateway.logs import JsonFormatter
from realtalk.settings import load_settings

__all__ = ["event_loop_factory", "serve"]


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own loggers propagate to the root: one format for every line.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def serve(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Interface to listen on (default REALTALK_GATEWAY_HOST or 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port (default REALTALK_GATEWAY_PORT or 8000)."),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            exists=True,
            dir_okay=False,
            help="Agent profile (TOML): instructions, voice, tools, turn detection, client_adjustable.",
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO (default), WARNING or ERROR.")
    ] = None,
) -> None:
    """Run the Realtime gateway: the browser voice UI at /, the Realtime API at /openai/v1/realtime.

    Clients (the UI, the official SDK, other frameworks) connect here instead of Azure: the gateway
    authenticates them, applies the agent profile, forwards audio, meters cost and enforces limits.
    Without client authentication it only listens on 127.0.0.1; set REALTALK_GATEWAY_TOKENS or
    REALTALK_GATEWAY_SECRET to listen elsewhere. See docs/gateway.md.
    """
    try:
        settings = load_settings()
        updates: dict[str, Any] = {}
        if host is not None:
            updates["gateway_host"] = host
        if port is not None:
            updates["gateway_port"] = port
        if profile is not None:
            updates["gateway_profile"] = profile
        settings = settings.model_copy(update=updates)
        app = create_app(settings)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"Cannot start the gateway: {exc}", err=True)
        raise typer.Exit(2) from None
    level = (log_level or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        typer.echo(
            f"Cannot start the gateway: --log-level {log_level!r} is not DEBUG, INFO, WARNING or ERROR",
            err=True,
        )
        raise typer.Exit(2)
    _configure_logging(level)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(_serve(Gateway(app, handle_signals=True, freeze_gc=True)))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it halves the loop's own cost per relayed
    frame), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(gateway: Gateway) -> None:
    try:
        await gateway.start()
    except OSError as exc:
        typer.echo(f"Cannot listen on {gateway.host}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except RuntimeError as exc:
        typer.echo(f"The gateway did not start: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"realtalk gateway: {gateway.http_base_url}/ (Realtime API at {gateway.websocket_base_url}/realtime)",
        err=True,
    )
    await gateway.serve_forever()
