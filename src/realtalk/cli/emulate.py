"""``realtalk emulate``: run the local Realtime API emulator and say how to point clients at it.

The command is thin: options → ``EmulatorConfig`` → ``Emulator`` → a banner. ``render_banner`` is
pure (plain data in, a Rich renderable out) so it can be snapshot-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from realtalk.emulator import (
    DEFAULT_DEPLOYMENTS,
    Emulator,
    EmulatorConfig,
    Faults,
    ScenarioError,
    load_scenario,
)
from realtalk.emulator.config import AsrEngineName, TtsEngineName, VadEngineName

__all__ = ["emulate", "render_banner"]


def _keys_fact(keys: tuple[str, ...]) -> str:
    """Where the accepted keys come from and their lengths, never their values (they are secrets)."""
    if not keys:
        return "any non-empty key"
    lengths = ", ".join(str(len(k)) for k in keys)
    count = "1 key" if len(keys) == 1 else f"{len(keys)} keys"
    return f"{count} from --key ({lengths} characters)"


def render_banner(emu: Emulator, engines: str) -> Group:
    """What to set so that realtalk, the SDK or any Realtime client talks to this emulator.

    The banner never shows a configured key: the user who passed ``--key`` has it, and is told to
    put it in ``AZURE_OPENAI_API_KEY`` (terminal scroll-back and CI logs keep what is printed).
    """
    config = emu.config
    deployment = config.deployments[0] if config.deployments else "gpt-realtime-1.5"
    pace = "as fast as possible" if config.pace is None else f"{config.pace:g}x real time"
    facts = Table.grid(padding=(0, 2))
    facts.add_row("WebSocket", f"{emu.websocket_base_url}/realtime?model={deployment}")
    facts.add_row("REST", f"{emu.http_base_url}/openai/v1/realtime/client_secrets")
    facts.add_row("Deployments", ", ".join(config.deployments) if config.deployments else "any name")
    facts.add_row("Keys", _keys_fact(config.keys))
    facts.add_row("Engines", engines)
    facts.add_row("Replies", "scenario" if config.scenario is not None else "spoken echo", style="")
    facts.add_row("Pace", pace)
    facts.add_row("Session limit", f"{config.effective_session_limit_s:g} s")
    env = Text()
    env.append(f"export AZURE_OPENAI_ENDPOINT={emu.http_base_url}\n")
    env.append(f"export AZURE_OPENAI_DEPLOYMENT_NAME={deployment}\n")
    if config.keys:
        env.append("export AZURE_OPENAI_API_KEY=<a key you passed with --key>")
        api_key = 'os.environ["AZURE_OPENAI_API_KEY"]'
    else:
        env.append("export AZURE_OPENAI_API_KEY=any-non-empty-key")
        api_key = '"any-non-empty-key"'
    sdk = Text(
        f'AsyncOpenAI(websocket_base_url="{emu.websocket_base_url}", api_key={api_key})\n'
        f'    .realtime.connect(model="{deployment}")'
    )
    return Group(
        Text("realtalk emulator: the Azure OpenAI GA Realtime protocol, served locally", style="bold"),
        facts,
        Text("\nPoint realtalk (talk, serve, doctor) at it:", style="bold"),
        env,
        Text("\nOr the official SDK:", style="bold"),
        sdk,
        Text("\nCtrl+C stops it.", style="dim"),
    )


def emulate(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")
    ] = 8765,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key", help="Accepted API key (repeatable). None given: any non-empty key is accepted."
        ),
    ] = None,
    deployment: Annotated[
        list[str] | None,
        typer.Option(
            "--deployment",
            help="Accepted deployment name for ?model= (repeatable). "
            f"Default: {', '.join(DEFAULT_DEPLOYMENTS)}.",
        ),
    ] = None,
    session_limit: Annotated[
        float,
        typer.Option(
            "--session-limit", min=1, help="Maximum session duration in seconds (Azure: 30 minutes)."
        ),
    ] = 1800,
    pace: Annotated[
        float,
        typer.Option(
            "--pace", min=0, help="Real-time speed factor of streamed replies; 0 sends them at once."
        ),
    ] = 1.0,
    vad: Annotated[
        VadEngineName,
        typer.Option("--vad", help="Voice activity detector: silero when installed, else energy."),
    ] = "auto",
    asr: Annotated[
        AsrEngineName,
        typer.Option("--asr", help="Speech recogniser for transcripts: pocketsphinx when installed."),
    ] = "auto",
    tts: Annotated[
        TtsEngineName, typer.Option("--tts", help="Voice of the replies: espeak-ng when present, else tones.")
    ] = "auto",
    phrase: Annotated[
        list[str] | None,
        typer.Option(
            "--phrase", help="A sentence users are expected to say (repeatable); sharpens recognition."
        ),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(
            "--scenario", exists=True, dir_okay=False, help="YAML or JSON file of scripted turns and faults."
        ),
    ] = None,
    first_audio_delay_ms: Annotated[
        int,
        typer.Option("--first-audio-delay-ms", min=0, help="Fault: delay before each reply's first audio."),
    ] = 0,
    drop_after: Annotated[
        float | None,
        typer.Option(
            "--drop-after", min=0, help="Fault: abort every connection this many seconds after it opens."
        ),
    ] = None,
    rate_limit_from: Annotated[
        int | None,
        typer.Option(
            "--rate-limit-from", min=1, help="Fault: refuse the Nth response of a session and later ones."
        ),
    ] = None,
    reject_from: Annotated[
        int | None,
        typer.Option(
            "--reject-from", min=1, help="Fault: answer the Nth handshake and later ones with HTTP 401."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each connection and error.")] = False,
) -> None:
    """Run a local server that speaks the Azure OpenAI GA Realtime protocol.

    Develop and test voice agents without an Azure account: the official openai SDK, realtalk's
    own client and gateway, and the browser UI work against it unchanged. It hears you (VAD and an
    offline recogniser), answers with a spoken echo or a scripted scenario, and can inject the
    faults production meets (session limit, drops, rate limits, slow audio, expired tokens).
    """
    console = Console(highlight=False, soft_wrap=True)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        loaded = load_scenario(scenario) if scenario is not None else None
        config = EmulatorConfig(
            host=host,
            port=port,
            keys=tuple(key or ()),
            deployments=tuple(deployment) if deployment else DEFAULT_DEPLOYMENTS,
            session_limit_s=session_limit,
            pace=pace or None,
            vad=vad,
            asr=asr,
            tts=tts,
            phrases=tuple(phrase or ()),
            scenario=loaded,
            faults=Faults(
                first_audio_delay_ms=first_audio_delay_ms,
                drop_after_s=drop_after,
                rate_limit_from_response=rate_limit_from,
                reject_from_connection=reject_from,
            ),
        )
    except (ScenarioError, ValueError) as exc:
        console.print(Text(f"Cannot start the emulator: {exc}", style="red"))
        raise typer.Exit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, console))


async def _serve(config: EmulatorConfig, console: Console) -> None:
    emulator = Emulator(config, handle_signals=True)
    with console.status("Loading the speech engines..."):
        try:
            await emulator.start()
        except OSError as exc:
            console.print(Text(f"Cannot listen on {config.host}:{config.port}: {exc.strerror}", style="red"))
            raise typer.Exit(1) from None
    console.print(render_banner(emulator, emulator.engines.description))
    try:
        await emulator.serve_forever()
    finally:
        await emulator.stop()
