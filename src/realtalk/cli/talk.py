"""``realtalk talk``: a full-duplex voice conversation in the terminal.

Thin by design. This module declares the command line; ``talk_options`` checks it into an
``AgentProfile`` and ``TalkOptions``; ``talk_startup`` opens the two ends (the sound card or WAV
files, the configured deployment or the embedded emulator); ``talk_conversation`` runs
``RealtimeSession`` + ``VoiceLoop`` to the end and prints the summary (``talk_screen`` collects,
``views`` renders). Barge-in, truncation, transcripts, latency and cost are decided in
``realtalk.protocol``.

Exit status: 0 when the conversation ended normally (Ctrl+C, ``--duration``, ``--exit-after-turns``);
1 when it could not start or broke off (connection refused, HTTP 401/404, an unrecoverable close);
2 for a usage or configuration error found before connecting (a bad option, a missing variable,
a malformed .env line, an unreadable WAV file, no sound card).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.cli.talk_conversation import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, converse
from realtalk.cli.talk_options import (
    Eagerness,
    TalkOptions,
    Transport,
    VadMode,
    build_profile,
    check_devices,
    check_transport,
    merge_profile,
    read_instructions,
    voice_name,
)
from realtalk.cli.views import render_failure
from realtalk.client.agent_file import load_agent_file
from realtalk.errors import ConfigError
from realtalk.protocol.session_config import DEFAULT_TRANSCRIPTION_MODEL, VOICES, ServerVad
from realtalk.settings import environment_secret

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "talk"]

_SERVER_VAD = ServerVad()  # the defaults --vad-threshold, --silence-ms and --prefix-ms state


def talk(
    ctx: typer.Context,
    profile_path: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            dir_okay=False,
            help="An agent profile (TOML, as `realtalk serve --profile` reads): instructions, voice, "
            "turn detection, the tools realtalk runs (Python functions or HTTP endpoints) and "
            "delegation to a text model. Options given on the command line override it. Loading it "
            "imports the tools' Python modules: use profiles you trust.",
        ),
    ] = None,
    voice: Annotated[
        str,
        typer.Option(
            "--voice",
            callback=voice_name,
            help=f"The agent's voice: {', '.join(VOICES)}. Fixed once the agent has spoken.",
        ),
    ] = "marin",
    instructions: Annotated[
        str | None,
        typer.Option(
            "--instructions",
            callback=read_instructions,
            help='System instructions, as text ("Answer briefly.") or @FILE to read them from a file.',
        ),
    ] = None,
    transcription_model: Annotated[
        str,
        typer.Option(
            "--transcription-model",
            help="Model (on Azure: deployment) that transcribes what you say, for the transcript; "
            "'none' turns transcription off.",
        ),
    ] = DEFAULT_TRANSCRIPTION_MODEL,
    vad: Annotated[
        VadMode,
        typer.Option(
            "--vad",
            case_sensitive=False,
            help="Turn detection: 'server' answers after a silence; 'semantic' lets a model judge "
            "whether you have finished.",
        ),
    ] = VadMode.server,
    eagerness: Annotated[
        Eagerness | None,
        typer.Option(
            "--eagerness",
            case_sensitive=False,
            show_default=Eagerness.auto.value,
            help="With --vad semantic: how quickly the agent takes its turn.",
        ),
    ] = None,
    vad_threshold: Annotated[
        float | None,
        typer.Option(
            "--vad-threshold",
            min=0.0,
            max=1.0,
            show_default=f"{_SERVER_VAD.threshold:g}",
            help="With --vad server: speech detection threshold; raise it in noisy rooms.",
        ),
    ] = None,
    silence_ms: Annotated[
        int | None,
        typer.Option(
            "--silence-ms",
            min=0,
            show_default=str(_SERVER_VAD.silence_duration_ms),
            help="With --vad server: silence that ends your turn, in ms.",
        ),
    ] = None,
    prefix_ms: Annotated[
        int | None,
        typer.Option(
            "--prefix-ms",
            min=0,
            show_default=str(_SERVER_VAD.prefix_padding_ms),
            help="With --vad server: audio kept from before speech was detected, in ms.",
        ),
    ] = None,
    ptt: Annotated[
        bool,
        typer.Option(
            "--ptt",
            help="Push-to-talk instead of turn detection: Space (on an empty input line) starts your "
            "turn, Space again ends it and asks for the reply. Toggle only: terminals report key "
            "presses, not releases, so holding a key cannot be told from tapping it.",
        ),
    ] = False,
    input_device: Annotated[
        str | None,
        typer.Option(
            "--input-device", help="Microphone: index or part of the name (see `realtalk devices`)."
        ),
    ] = None,
    output_device: Annotated[
        str | None,
        typer.Option("--output-device", help="Speaker: index or part of the name (see `realtalk devices`)."),
    ] = None,
    input_wav: Annotated[
        Path | None,
        typer.Option(
            "--input-wav",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Use a WAV file as the microphone: streamed at real-time pace, then silence. "
            "With --input-wav or --output-wav no sound card is used.",
        ),
    ] = None,
    output_wav: Annotated[
        Path | None,
        typer.Option(
            "--output-wav",
            dir_okay=False,
            help="Write what would go to the speaker to a WAV file (24 kHz mono, silence included, "
            "sample-accurate).",
        ),
    ] = None,
    headphones: Annotated[
        bool,
        typer.Option(
            "--headphones",
            help="You wear headphones: turn off the echo gate that mutes the microphone while the "
            "agent speaks (unless you are louder than its echo). WAV files have no echo: no gate.",
        ),
    ] = False,
    aec: Annotated[
        bool,
        typer.Option(
            "--aec",
            # Rich markup: "\[" is a literal bracket (else "[aec]" would be read as a style tag).
            help="Cancel the agent's echo with WebRTC's acoustic echo canceller (AEC3) instead of "
            "the echo gate, so you can interrupt at normal loudness on laptop speakers. Needs the "
            "'aec' extra: pip install 'realtalk\\[aec]'.",
        ),
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            dir_okay=False,
            help="Record the conversation to a stereo WAV file: you on the left, the agent on the right.",
        ),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            dir_okay=False,
            help="Log every Realtime event sent and received to a JSONL file, with timestamps "
            "(audio payloads elided).",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.01, help="Stop after this many seconds."),
    ] = None,
    exit_after_turns: Annotated[
        int | None,
        typer.Option(
            "--exit-after-turns",
            min=1,
            help="Stop once the agent has answered this many times and its reply has been played.",
        ),
    ] = None,
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            case_sensitive=False,
            help="How audio and events travel: 'websocket' (JSON events) or 'webrtc' (Opus media "
            "tracks and a data channel; the server tracks playback and truncates by itself).",
        ),
    ] = Transport.websocket,
    speed: Annotated[
        float,
        typer.Option(
            "--speed",
            min=0.1,
            max=50.0,
            hidden=True,
            help="Pace factor of the WAV device and the embedded emulator (tests); --duration "
            "counts conversation seconds.",
        ),
    ] = 1.0,
) -> None:
    """Talk with the agent: microphone → model → speaker, with barge-in, a live transcript, latency and cost.

    With no AZURE_OPENAI_ENDPOINT configured, the emulator is started in-process and says so. Type a
    line and press Enter to send it as text (from a pipe, every line of stdin is sent). Ctrl+C ends
    the conversation and prints the summary. Exit status: 0 normal end; 1 the session could not start
    or broke off (the line printed says what to fix); 2 a usage or configuration error.
    """
    check_devices(
        input_device=input_device, output_device=output_device, input_wav=input_wav, output_wav=output_wav
    )
    check_transport(transport, speed=speed)
    cli_profile = build_profile(
        voice=voice,
        instructions=instructions,
        transcription_model=transcription_model,
        vad=vad,
        eagerness=eagerness,
        vad_threshold=vad_threshold,
        silence_ms=silence_ms,
        prefix_ms=prefix_ms,
        push_to_talk=ptt,
    )
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    agent_file = None
    if profile_path is not None:
        try:
            agent_file = load_agent_file(profile_path, secret=environment_secret)
        except ConfigError as exc:
            errors.print(render_failure(f"profile: {exc}"))
            raise typer.Exit(EXIT_USAGE) from None
    given = {name for name in ctx.params if _on_command_line(ctx, name)}
    profile = merge_profile(agent_file.agent, cli_profile, given) if agent_file is not None else cli_profile
    options = TalkOptions(
        profile=profile,
        agent_file=agent_file,
        push_to_talk=ptt,
        input_device=input_device,
        output_device=output_device,
        input_wav=input_wav,
        output_wav=output_wav,
        headphones=headphones,
        aec=aec,
        record=record,
        events=events,
        duration_s=duration,
        exit_after_turns=exit_after_turns,
        speed=speed,
        transport=transport,
    )
    console = Console(highlight=False)
    try:
        settings = load_checked_settings()
    except ConfigError as exc:
        errors.print(render_failure(f"configuration: {exc}"))
        raise typer.Exit(EXIT_USAGE) from None
    code = asyncio.run(converse(options, settings, console, errors))
    if code != EXIT_OK:
        raise typer.Exit(code)


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    # By the source's name: typer may carry its own copy of click's ParameterSource enum.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
