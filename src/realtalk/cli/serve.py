"""``realtalk serve``: the Realtime gateway and the browser voice UI.

Thin: settings (+ options) → ``create_app`` → ``Gateway`` with signal handling, JSON logs on
stderr (``--log-level`` sets realtalk's and uvicorn's detail; other libraries log warnings only).
With no ``AZURE_OPENAI_ENDPOINT`` configured, the emulator runs in-process and the log says so.
The last line printed at start-up says which page to open and what to do there. SIGTERM (a
container stop, a deploy) is graceful: connected clients are told, in-flight replies finish for
up to ``REALTALK_GATEWAY_DRAIN_S``, then every session is closed with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.errors import ConfigError
from realtalk.gateway import Gateway, create_app
from realtalk.gateway.logs import JsonFormatter

__all__ = ["LogLevel", "event_loop_factory", "serve", "what_to_do"]


class LogLevel(enum.StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


SERVE_LOG_LEVEL = "INFO"  # a server's default: its sessions are logged (talk's is WARNING)
_OWN_LOGGERS = ("realtalk", "uvicorn")


def _configure_logging(level: str) -> None:
    """One JSON line per record on stderr. ``level`` applies to realtalk's loggers and uvicorn's;
    every other library stays at WARNING, so --log-level DEBUG is realtalk's detail, not every
    dependency's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # uvicorn's own loggers propagate to the root: one format for every line.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            show_default="REALTALK_GATEWAY_HOST, else 127.0.0.1",
            help="Interface to listen on.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            show_default="REALTALK_GATEWAY_PORT, else 8000",
            help="Port to listen on; 0 picks a free one.",
        ),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            exists=True,
            dir_okay=False,
            help="Agent profile (TOML): instructions, voice, turn detection, client_adjustable, and the "
            "tools the gateway runs itself (Python functions or HTTP endpoints, and [delegate] to a text "
            "model); their definitions, calls and outputs never reach a client. See docs/tools.md.",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level",
            case_sensitive=False,
            show_default=f"REALTALK_LOG_LEVEL, else {SERVE_LOG_LEVEL}",
            help="Detail of realtalk's log (JSON lines on stderr); other libraries log warnings only.",
        ),
    ] = None,
) -> None:
    """Run the Realtime gateway: the browser voice UI at /, the Realtime API at /openai/v1/realtime.

    Clients (the UI, the official SDK, other frameworks) connect here instead of Azure: the gateway
    authenticates them, applies the agent profile, forwards audio, meters cost and enforces limits.
    WebRTC calls (POST /api/realtime/webrtc, the UI's default) and phone calls (POST
    /webhooks/realtime, with REALTALK_GATEWAY_SIP_WEBHOOK_SECRET) go straight to the service and are
    watched, metered and hung up by the gateway. Without client authentication it only listens on
    127.0.0.1; set REALTALK_GATEWAY_TOKENS or REALTALK_GATEWAY_SECRET to listen elsewhere. See
    docs/gateway.md.
    """
    try:
        settings = load_checked_settings()
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
    if log_level is not None:
        level = log_level.value
    elif "log_level" in settings.model_fields_set:  # REALTALK_LOG_LEVEL, from the environment or .env
        level = settings.log_level
    else:
        level = SERVE_LOG_LEVEL
    _configure_logging(level)
    signed_in = settings.gateway_tokens is not None or settings.gateway_secret is not None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(_serve(Gateway(app, handle_signals=True, freeze_gc=True), signed_in=signed_in))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it halves the loop's own cost per relayed
    frame), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(gateway: Gateway, *, signed_in: bool) -> None:
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
    typer.echo(what_to_do(gateway.host, gateway.port, signed_in=signed_in), err=True)
    await gateway.serve_forever()


def what_to_do(host: str, port: int, *, signed_in: bool) -> str:
    """The last line at start-up: the page to open and what to do there (``make run`` ends with it)."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::", ""):  # every interface: this machine's name or address, not the wildcard
        url = f"http://<this machine's address>:{port}/"
    else:
        url = f"http://{f'[{bare}]' if ':' in bare else bare}:{port}/"
    sign_in = ", sign in with a client token," if signed_in else ""
    return f"Open {url} in a browser{sign_in} and press Start to talk; Ctrl-C stops."
