"""``realtalk emulate``: run the local Realtime API emulator and say how to point clients at it;
``realtalk emulate call``: place a simulated phone call through a running one.

The commands are thin: options → ``EmulatorConfig`` → ``Emulator`` → a banner; options → ``POST
/_emulator/calls`` → the outcome. ``render_banner`` and ``render_call_result`` are pure (plain
data in, a Rich renderable out) so they can be snapshot-tested. ``emulate_app`` is the group:
``realtalk emulate [options]`` serves (its callback), ``realtalk emulate call ...`` calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from realtalk.audio.pcm import read_wav
from realtalk.cli.help_format import RealtalkCommand, RealtalkGroup
from realtalk.emulator import (
    DEFAULT_DEPLOYMENTS,
    Emulator,
    EmulatorConfig,
    Faults,
    ScenarioError,
    load_scenario,
)
from realtalk.emulator.config import AsrEngineName, TtsEngineName, VadEngineName
from realtalk.emulator.sip import DtmfPress
from realtalk.settings import LOCAL_PLACEHOLDER_KEY, environment_secret

__all__ = [
    "call",
    "emulate",
    "emulate_app",
    "parse_dtmf",
    "parse_mishear",
    "render_banner",
    "render_call_result",
]

WEBHOOK_URL_ENV = "REALTALK_EMULATOR_WEBHOOK_URL"
WEBHOOK_SECRET_ENV = "REALTALK_EMULATOR_WEBHOOK_SECRET"


def _keys_fact(keys: tuple[str, ...]) -> str:
    """Where the accepted keys come from and their lengths, never their values (they are secrets)."""
    if not keys:
        return "any non-empty key"
    lengths = ", ".join(str(len(k)) for k in keys)
    count = "1 key" if len(keys) == 1 else f"{len(keys)} keys"
    return f"{count} from --key ({lengths} characters)"


def _without_query(url: str) -> str:
    """``url`` without its query and fragment: a webhook URL may carry a token there."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return shown + ("?…" if parts.query else "")


def _calls_fact(url: str | None, secret: str | None) -> str:
    """Where phone calls ring, and whether a secret signs them (its length, never its value)."""
    if url is None:
        return "no webhook (pass --webhook-url and --webhook-secret, or give them to each call)"
    signed = f"signed, secret of {len(secret)} characters" if secret else "no secret yet (--webhook-secret)"
    return f"webhook {_without_query(url)} ({signed})"


def parse_mishear(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--mishear HEARD=WRITTEN`` values as ``EmulatorConfig.mishear`` pairs, in order (the first
    ``=`` splits; WRITTEN may be empty, which drops the words)."""
    pairs: list[tuple[str, str]] = []
    for value in values or ():
        heard, sep, written = value.partition("=")
        if not sep or not heard.strip():
            raise typer.BadParameter(
                f"{value!r} is not HEARD=WRITTEN, e.g. --mishear B=P or --mishear 'four two=for two'",
                param_hint="'--mishear'",
            )
        pairs.append((heard.strip(), written.strip()))
    return tuple(pairs)


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
    if config.effective_mishear:
        facts.add_row("Mishears", ", ".join(f"{h} → {w or '(nothing)'}" for h, w in config.effective_mishear))
    facts.add_row("Pace", pace)
    facts.add_row("Session limit", f"{config.effective_session_limit_s:g} s")
    facts.add_row("Phone calls", _calls_fact(config.webhook_url, config.webhook_secret))
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
        Text("\nPlace a phone call (the app answers the webhook):", style="bold"),
        Text(f"realtalk emulate call --wav caller.wav --emulator {emu.http_base_url}"),
        Text("\nCtrl+C stops it.", style="dim"),
    )


def emulate(
    ctx: typer.Context,
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
    mishear: Annotated[
        list[str] | None,
        typer.Option(
            "--mishear",
            metavar="HEARD=WRITTEN",
            help="Scripted recognition error (repeatable, applied in order): whole words, any case, "
            "in transcripts and echoes; B=P leaves Bob alone, 4=for also changes four.",
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
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            help="Where simulated phone calls send their signed realtime.call.incoming webhook.",
            show_default=f"({WEBHOOK_URL_ENV})",
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            help="The webhook signing secret (whsec_...); never printed. Prefer the variable: a command "
            "line is visible to other users of the machine.",
            show_default=f"({WEBHOOK_SECRET_ENV})",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each connection and error.")] = False,
) -> None:
    """Run a local server that speaks the Azure OpenAI GA Realtime protocol.

    Develop and test voice agents without an Azure account: the official openai SDK, realtalk's
    own client and gateway, and the browser UI work against it unchanged. It hears you (VAD and an
    offline recogniser), answers with a spoken echo or a scripted scenario, mishears on purpose
    when told to (--mishear: to show that scoring catches errors), and can inject the faults
    production meets (session limit, drops, rate limits, slow audio, expired tokens).
    Given a webhook URL and secret it also rings your app with simulated phone calls
    (`realtalk emulate call`).
    """
    if ctx.invoked_subcommand is not None:
        return  # `realtalk emulate call ...`: the subcommand does the work
    console = Console(highlight=False, soft_wrap=True)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    substitutions = parse_mishear(mishear)
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
            mishear=substitutions,
            scenario=loaded,
            faults=Faults(
                first_audio_delay_ms=first_audio_delay_ms,
                drop_after_s=drop_after,
                rate_limit_from_response=rate_limit_from,
                reject_from_connection=reject_from,
            ),
            webhook_url=webhook_url or environment_secret(WEBHOOK_URL_ENV),
            webhook_secret=webhook_secret or environment_secret(WEBHOOK_SECRET_ENV),
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


# --- realtalk emulate call -----------------------------------------------------------------------


def parse_dtmf(spec: str) -> list[DtmfPress]:
    """``"1@2.5,#@3"`` → the presses (digit at seconds after the answer). Raises ``ValueError``."""
    presses: list[DtmfPress] = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        digit, at, seconds = entry.rpartition("@")
        if not at or not digit or not seconds:
            raise ValueError(f"--dtmf: {entry!r} is not DIGIT@SECONDS, e.g. 1@2.5,#@3")
        try:
            presses.append(DtmfPress(digit, float(seconds)))
        except ValueError as exc:
            raise ValueError(f"--dtmf: {entry!r}: {exc}") from None
    return presses


def render_call_result(result: dict[str, Any], recorded_to: Path | None) -> Group:
    """What happened to the call, from the JSON ``POST /_emulator/calls`` answers."""
    call_id, outcome = result["call_id"], result["outcome"]
    attempts = result["webhook_attempts"]
    webhook = f"webhook delivered after {attempts} attempt{'s' if attempts != 1 else ''}"
    lines = Text()
    if outcome == "accepted":
        lines.append(f"Call {call_id}: accepted", style="bold green")
        lines.append(f", {result['duration_s']:.1f} s, ended by {result['ended_by']} ({webhook}).\n")
    elif outcome == "rejected":
        lines.append(f"Call {call_id}: rejected", style="bold yellow")
        lines.append(f" with SIP status {result['status_code']} ({webhook}).\n")
    elif outcome == "referred":
        lines.append(f"Call {call_id}: referred", style="bold yellow")
        lines.append(f" to {result['refer_target']} ({webhook}).\n")
    elif outcome == "no_answer":
        lines.append(f"Call {call_id}: no answer", style="bold red")
        lines.append(
            f" ({webhook}): the app never called /accept, /reject or /refer for this call_id in time.\n"
        )
    else:
        status = result.get("webhook_status")
        answer = f"HTTP {status}" if status is not None else "no answer"
        lines.append(f"Call {call_id}: the webhook failed", style="bold red")
        lines.append(
            f" ({answer} after {attempts} attempts): check the URL, that the app is running, and that "
            "its signing secret is the one the emulator signs with.\n"
        )
    if result.get("agent_audio_ms") and outcome in ("accepted", "referred"):
        seconds = result["agent_audio_ms"] / 1000
        where = f" → {recorded_to}" if recorded_to is not None else " (--record FILE keeps it)"
        lines.append(f"Agent audio: {seconds:.1f} s as the caller heard it{where}\n")
    return Group(lines)


def _call_timeout_s(
    wav: bytes, presses: list[DtmfPress], answer_timeout: float, hangup_after: float
) -> float:
    pcm, rate_hz, channels = read_wav(wav)
    script_s = max(len(pcm) / (2 * rate_hz * channels), *(p.at_s for p in presses), 0.0)
    return answer_timeout + script_s + hangup_after + 30.0


def call(
    wav: Annotated[
        Path,
        typer.Option(
            "--wav", exists=True, dir_okay=False, help="What the caller says: a 16-bit PCM WAV file."
        ),
    ],
    emulator: Annotated[
        str, typer.Option("--emulator", help="The running emulator's URL (realtalk emulate prints it).")
    ] = "http://127.0.0.1:8765",
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="A key the emulator accepts; never printed.",
            show_default="(AZURE_OPENAI_API_KEY, else any non-empty key)",
        ),
    ] = None,
    from_number: Annotated[
        str, typer.Option("--from", help="The caller's number (SIP From).")
    ] = "+14255550123",
    to_number: Annotated[str, typer.Option("--to", help="The number dialled (SIP To).")] = "+18005550100",
    dtmf: Annotated[
        str | None,
        typer.Option("--dtmf", help="Keys the caller presses, DIGIT@SECONDS after the answer: 1@2.5,#@3."),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option("--record", dir_okay=False, help="Write the agent's audio (as heard) to this WAV."),
    ] = None,
    hangup_after: Annotated[
        float,
        typer.Option(
            "--hangup-after",
            min=0,
            help="The caller hangs up this long after its audio and keys (unless the app does first).",
        ),
    ] = 10.0,
    answer_timeout: Annotated[
        float,
        typer.Option("--answer-timeout", min=1, help="Seconds the phone rings before the caller gives up."),
    ] = 30.0,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            help="Ring this webhook instead of the emulator's own.",
            show_default=f"({WEBHOOK_URL_ENV}, else the emulator's --webhook-url)",
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            help="Sign with this secret instead of the emulator's own; never printed.",
            show_default=f"({WEBHOOK_SECRET_ENV}, else the emulator's --webhook-secret)",
        ),
    ] = None,
) -> None:
    """Place a simulated phone call through a running emulator and say how it went.

    The emulator sends your app the signed realtime.call.incoming webhook, waits for it to accept,
    reject or refer the call, then plays the WAV as the caller over G.711 µ-law in real time,
    presses the --dtmf keys, and records what the agent says. Exit status 0 when the app decided
    (accepted, rejected or referred), 1 when it did not (no answer, webhook failed) or the emulator
    could not be reached.
    """
    console = Console(highlight=False, soft_wrap=True)
    try:
        presses = parse_dtmf(dtmf or "")
        wav_data = wav.read_bytes()
        timeout_s = _call_timeout_s(wav_data, presses, answer_timeout, hangup_after)
    except ValueError as exc:
        console.print(Text(f"Cannot place the call: {exc}", style="red"))
        raise typer.Exit(2) from None
    body: dict[str, Any] = {
        "wav_base64": base64.b64encode(wav_data).decode("ascii"),
        "from": from_number,
        "to": to_number,
        "dtmf": [{"digit": p.digit, "at_s": p.at_s} for p in presses],
        "hangup_after_s": hangup_after,
        "answer_timeout_s": answer_timeout,
    }
    url = webhook_url or environment_secret(WEBHOOK_URL_ENV)
    secret = webhook_secret or environment_secret(WEBHOOK_SECRET_ENV)
    if url:
        body["webhook_url"] = url
    if secret:
        body["webhook_secret"] = secret
    credential = key or environment_secret("AZURE_OPENAI_API_KEY") or LOCAL_PLACEHOLDER_KEY
    endpoint = emulator.rstrip("/") + "/_emulator/calls"
    try:
        with console.status(f"Calling {to_number} from {from_number} through {emulator}..."):
            response = httpx.post(
                endpoint,
                json=body,
                headers={"api-key": credential},
                timeout=httpx.Timeout(10.0, read=timeout_s),
                trust_env=False,
            )
    except httpx.HTTPError as exc:
        console.print(
            Text(
                f"Cannot reach the emulator at {emulator} ({type(exc).__name__}): start it with "
                "`realtalk emulate --webhook-url URL --webhook-secret whsec_...`, or pass --emulator.",
                style="red",
            )
        )
        raise typer.Exit(1) from None
    if response.status_code != 200:
        console.print(Text(_refusal(response, emulator), style="red"))
        raise typer.Exit(1)
    result = response.json()
    if record is not None:
        record.write_bytes(base64.b64decode(result["agent_wav_base64"]))
    console.print(render_call_result(result, record))
    if result["outcome"] in ("no_answer", "webhook_failed"):
        raise typer.Exit(1)


def _refusal(response: httpx.Response, emulator: str) -> str:
    if response.status_code == 401:
        return (
            f"The emulator at {emulator} refused the key: pass --key with a key given to "
            "`realtalk emulate --key` (or set AZURE_OPENAI_API_KEY)."
        )
    if response.status_code == 404:
        return f"{emulator} has no /_emulator/calls: is it a realtalk emulator (realtalk emulate)?"
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code}"
    return f"The emulator refused the call: {message}"


emulate_app = typer.Typer(
    name="emulate",
    cls=RealtalkGroup,
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode="rich",
)
emulate_app.callback(invoke_without_command=True)(emulate)
emulate_app.command(name="call", cls=RealtalkCommand)(call)
