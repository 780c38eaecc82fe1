"""``realtalk doctor``: check configuration, credentials and the deployment; say what is wrong.

The command is thin: settings → endpoint and credential → probe → render. With no
``AZURE_OPENAI_ENDPOINT`` configured (the README's default set-up), the target is the embedded
emulator that ``talk`` and ``serve`` would use: it is started here and probed the same way, and
the last line says how to point realtalk at Azure instead. The ``render_*`` functions are pure
(plain data in, Rich renderables out) so they can be snapshot-tested.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.text import Text

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.cli.embedded import AZURE_HINT, EmbeddedEmulator, start_embedded_emulator
from realtalk.client.credentials import Credential
from realtalk.client.handshake import ProbeResult, probe
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import ResolvedEndpoint
from realtalk.settings import resolve_connection

__all__ = ["doctor", "render_config_error", "render_configuration", "render_probe"]

_PROVIDERS = {
    "azure": "Azure OpenAI",
    "openai": "OpenAI platform",
    "local": "local server (loopback)",
}
EMBEDDED_TARGET = "the embedded emulator (no AZURE_OPENAI_ENDPOINT configured)"


def doctor(
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            show_default="REALTALK_CONNECT_TIMEOUT_S, else 10",
            help="Seconds to wait at each step.",
        ),
    ] = None,
) -> None:
    """Check the configuration, the credentials and the deployment, and say exactly what is wrong.

    Shows the GA Realtime URL built from AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT_NAME,
    which credential is used (never the secret) and any warnings; then resolves the host, connects,
    upgrades to a WebSocket and waits for session.created. With no AZURE_OPENAI_ENDPOINT configured
    it checks the embedded emulator that talk and serve use. Exits with status 1 at the first failure.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        settings = load_checked_settings()
        connection = None if settings.azure_openai_endpoint is None else resolve_connection(settings)
    except ConfigError as exc:
        console.print(render_config_error(exc))
        raise typer.Exit(1) from None

    timeout_s = timeout if timeout is not None else settings.connect_timeout_s
    if connection is None:
        ok = asyncio.run(_check_embedded(console, timeout_s))
    else:
        endpoint, credential = connection
        console.print(render_configuration(endpoint, credential.describe(), timeout_s))
        result = asyncio.run(_probe_then_close(endpoint, credential, timeout_s))
        console.print(render_probe(result))
        ok = result.ok
    if not ok:
        raise typer.Exit(1)


async def _probe_then_close(
    endpoint: ResolvedEndpoint, credential: Credential, timeout_s: float
) -> ProbeResult:
    try:
        return await probe(endpoint, credential, timeout_s)
    finally:
        await credential.close()


async def _check_embedded(console: Console, timeout_s: float) -> bool:
    async with AsyncExitStack() as stack:
        try:
            emulator = await start_embedded_emulator(stack)
        except (OSError, RuntimeError, ValueError) as exc:  # no free port, an engine that fails to load
            console.print(
                Text.assemble(("✗ ", "bold red"), ("emulator", "bold"), f": it did not start: {exc}")
            )
            console.print(Text("FAILED at step 'emulator'.", "bold red"))
            return False
        console.print(render_embedded_configuration(emulator, timeout_s))
        result = await probe(emulator.endpoint, emulator.credential, timeout_s)
        console.print(render_probe(result, target="the embedded emulator"))
        if result.ok:
            console.print(Text(AZURE_HINT))
        return result.ok


def render_config_error(error: ConfigError) -> Text:
    """One line: the configuration problem, naming the variable, with an example."""
    return Text.assemble(("✗ configuration: ", "bold red"), str(error))


def render_configuration(endpoint: ResolvedEndpoint, credential_description: str, timeout_s: float) -> Group:
    """What realtalk will connect to and with which credential; warnings last."""
    rows = [
        ("endpoint", endpoint.url),
        ("deployment", endpoint.deployment),
        ("provider", _PROVIDERS.get(endpoint.provider, endpoint.provider)),
        ("credential", credential_description),
        ("timeout", f"{timeout_s:g} s per step"),
    ]
    return _configuration(rows, endpoint.warnings)


def render_embedded_configuration(emulator: EmbeddedEmulator, timeout_s: float) -> Group:
    """The embedded emulator as the target: where it listens, its engines, the key it was given."""
    rows = [
        ("target", EMBEDDED_TARGET),
        ("endpoint", emulator.endpoint.url),
        ("deployment", emulator.endpoint.deployment),
        ("engines", emulator.engines),
        ("credential", emulator.credential.describe()),
        ("timeout", f"{timeout_s:g} s per step"),
    ]
    return _configuration(rows, ())


def _configuration(rows: list[tuple[str, str]], warnings: tuple[str, ...]) -> Group:
    lines = [Text("realtalk doctor", style="bold")]
    lines += [Text.assemble((f"  {label:<11}", "dim"), value) for label, value in rows]
    lines += [Text.assemble(("⚠ warning: ", "bold yellow"), warning) for warning in warnings]
    return Group(*lines)


def render_probe(result: ProbeResult, *, target: str = "the deployment") -> Group:
    """One line per step taken, then a one-line verdict naming the failed step."""
    lines = [
        Text.assemble(
            ("✓ " if step.ok else "✗ ", "green" if step.ok else "bold red"),
            (step.name, "bold"),
            ": ",
            step.detail,
        )
        for step in result.steps
    ]
    failure = result.failure
    if result.ok:
        lines.append(Text(f"OK: {target} answered the WebSocket handshake with session.created.", "green"))
    elif failure is not None:
        lines.append(Text(f"FAILED at step '{failure.name}'.", "bold red"))
    else:
        lines.append(Text("FAILED: the probe stopped before session.created.", "bold red"))
    return Group(*lines)
