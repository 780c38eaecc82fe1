"""``realtalk talk``: a full-duplex voice conversation in the terminal.

Thin by design: options → an ``AgentProfile`` and a target (the configured deployment, or the
emulator started in-process when none is configured) → ``RealtimeSession`` + ``VoiceLoop`` on a
sound card or on WAV files → the screen (``talk_screen.py`` collects, ``views.py`` renders).
Barge-in, truncation, transcripts, latency and cost are decided in ``realtalk.protocol``.

Exit status: 0 when the conversation ended normally (Ctrl+C, ``--duration``, ``--exit-after-turns``);
1 when it could not start or broke off (connection refused, HTTP 401/404, an unrecoverable close);
2 for a usage or configuration error found before connecting (a bad option, a missing variable,
an unreadable WAV file, no sound card).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.logging import RichHandler

from realtalk.audio.devices import SoundDeviceDuplex
from realtalk.audio.duplex import DuplexDevice, VirtualDuplex
from realtalk.audio.echo import EchoGate, EchoProcessor
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import AudioSource, SilenceSource, StereoRecorder, WavSink, WavSource
from realtalk.cli.eventlog import EventLog
from realtalk.cli.keyboard import KeyReader, LineEditor, LineReader, stdin_is_terminal
from realtalk.cli.talk_screen import NoticeLogHandler, PlainPrinter, TalkScreen
from realtalk.cli.views import (
    Notice,
    TalkView,
    ViewLine,
    render_failure,
    render_line,
    render_notice,
    render_summary,
    render_talk,
)
from realtalk.client.credentials import ApiKeyCredential, Credential
from realtalk.client.session import RealtimeSession
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.emulator import Emulator, EmulatorConfig
from realtalk.errors import ConfigError, ConnectionClosed, HandshakeRejected, RealtalkError
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint
from realtalk.protocol.session_config import (
    DEFAULT_TRANSCRIPTION_MODEL,
    VOICES,
    AgentProfile,
    InputTranscription,
    SemanticVad,
    ServerVad,
)
from realtalk.settings import Settings, load_settings, resolve_connection

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "talk"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EMULATOR_MODEL = "gpt-realtime-1.5"
REFRESH_S = 0.1  # the live display and the stop conditions are checked ten times a second
TRANSCRIPT_SETTLE_S = 2.0  # at a scripted exit, wait this long (at most) for user transcriptions

logger = logging.getLogger(__name__)


class VadMode(enum.StrEnum):
    server = "server"
    semantic = "semantic"


class Eagerness(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    auto = "auto"


@dataclass(frozen=True)
class TalkOptions:
    """The command line, checked; built by ``talk`` and used by ``converse``."""

    profile: AgentProfile
    push_to_talk: bool = False
    input_device: str | None = None
    output_device: str | None = None
    input_wav: Path | None = None
    output_wav: Path | None = None
    headphones: bool = False
    aec: bool = False
    record: Path | None = None
    events: Path | None = None
    duration_s: float | None = None
    exit_after_turns: int | None = None
    speed: float = 1.0

    @property
    def virtual_device(self) -> bool:
        """WAV files stand in for the sound card (both sides) when either WAV option is given."""
        return self.input_wav is not None or self.output_wav is not None


# -- option parsing (usage errors: exit 2) ----------------------------------------------------------


def _voice(value: str) -> str:
    voice = value.strip().lower()
    if voice not in VOICES:
        raise typer.BadParameter(f"{value!r} is not a Realtime voice; choose one of {', '.join(VOICES)}.")
    return voice


def _instructions(value: str | None) -> str | None:
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read the instructions file {path}: {exc}") from None


def build_profile(
    *,
    voice: str,
    instructions: str | None,
    transcription_model: str,
    vad: VadMode,
    eagerness: Eagerness | None,
    vad_threshold: float | None,
    silence_ms: int | None,
    prefix_ms: int | None,
    push_to_talk: bool,
) -> AgentProfile:
    """The session configuration the options describe; option combinations that cannot work are refused."""
    server_options = {
        "--vad-threshold": vad_threshold,
        "--silence-ms": silence_ms,
        "--prefix-ms": prefix_ms,
    }
    given = [name for name, value in server_options.items() if value is not None]
    turn_detection: ServerVad | SemanticVad | None
    if push_to_talk:
        if given or eagerness is not None or vad is not VadMode.server:
            raise typer.BadParameter(
                "push-to-talk turns are manual: --vad, --eagerness, --vad-threshold, --silence-ms and "
                "--prefix-ms do not apply with --ptt.",
                param_hint="'--ptt'",
            )
        turn_detection = None
    elif vad is VadMode.semantic:
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} only apply to --vad server; semantic VAD takes --eagerness.",
                param_hint="'--vad'",
            )
        turn_detection = SemanticVad(eagerness=(eagerness or Eagerness.auto).value)
    else:
        if eagerness is not None:
            raise typer.BadParameter(
                "--eagerness tunes --vad semantic; server VAD takes --vad-threshold, --silence-ms and "
                "--prefix-ms.",
                param_hint="'--eagerness'",
            )
        defaults = ServerVad()
        turn_detection = ServerVad(
            threshold=defaults.threshold if vad_threshold is None else vad_threshold,
            prefix_padding_ms=defaults.prefix_padding_ms if prefix_ms is None else prefix_ms,
            silence_duration_ms=defaults.silence_duration_ms if silence_ms is None else silence_ms,
        )
    model = transcription_model.strip()
    transcription = None if model.lower() in ("none", "off", "") else InputTranscription(model=model)
    try:
        return AgentProfile(
            instructions=instructions,
            voice=voice,  # type: ignore[arg-type]  # checked against VOICES by _voice
            turn_detection=turn_detection,
            transcription=transcription,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def talk(
    voice: Annotated[
        str,
        typer.Option(
            "--voice",
            callback=_voice,
            help=f"The agent's voice: {', '.join(VOICES)}. Fixed once the agent has spoken.",
        ),
    ] = "marin",
    instructions: Annotated[
        str | None,
        typer.Option(
            "--instructions",
            callback=_instructions,
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
            help="With --vad semantic: how quickly the agent takes its turn (default auto).",
        ),
    ] = None,
    vad_threshold: Annotated[
        float | None,
        typer.Option(
            "--vad-threshold",
            min=0.0,
            max=1.0,
            help="With --vad server: speech detection threshold, 0.0-1.0 (default 0.5; raise it in "
            "noisy rooms).",
        ),
    ] = None,
    silence_ms: Annotated[
        int | None,
        typer.Option(
            "--silence-ms",
            min=0,
            help="With --vad server: silence that ends your turn, in ms (default 500).",
        ),
    ] = None,
    prefix_ms: Annotated[
        int | None,
        typer.Option(
            "--prefix-ms",
            min=0,
            help="With --vad server: audio kept from before speech was detected, in ms (default 300).",
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
            help="Cancel the agent's echo with WebRTC's acoustic echo canceller (AEC3) instead of "
            "the echo gate, so you can interrupt at normal loudness on laptop speakers. Needs the "
            "'aec' extra: pip install 'realtalk[aec]'.",
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
    wav_device = input_wav is not None or output_wav is not None
    if wav_device and (input_device is not None or output_device is not None):
        raise typer.BadParameter(
            "--input-device/--output-device choose a sound card; --input-wav/--output-wav replace it. "
            "Use one or the other.",
            param_hint="'--input-wav/--output-wav'",
        )
    profile = build_profile(
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
    options = TalkOptions(
        profile=profile,
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
    )
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors.print(render_failure(f"configuration: {exc}"))
        raise typer.Exit(EXIT_USAGE) from None
    code = asyncio.run(converse(options, settings, console, errors))
    if code != EXIT_OK:
        raise typer.Exit(code)


# -- the conversation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    endpoint: ResolvedEndpoint
    credential: Credential
    description: str


@dataclass
class _Audio:
    playback: PlaybackBuffer
    device: DuplexDevice
    driver: PacedDriver | None
    sink: WavSink | None
    echo_gate: EchoGate | None
    recorder: StereoRecorder | None
    echo_canceller: EchoProcessor | None = None


async def converse(options: TalkOptions, settings: Settings, console: Console, errors: Console) -> int:
    """Run one conversation to its end; returns the exit status."""
    stop = asyncio.Event()
    with _stop_on_sigint(stop):
        async with AsyncExitStack() as stack:
            log: EventLog | None = None
            try:
                prices = prices_for(settings.pricing_model, settings.prices)
                audio = _open_audio(options, stack)
                if options.events is not None:
                    log = EventLog(options.events)
                    stack.callback(log.close)  # runs after the session closed: its last frames are logged
                target = await _open_target(options, settings, stack, console)
            except ConfigError as exc:
                errors.print(render_failure(str(exc)))
                return EXIT_USAGE
            except OSError as exc:  # an output file that cannot be written (no such folder, no permission)
                errors.print(
                    render_failure(f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}")
                )
                return EXIT_USAGE
            session = RealtimeSession(
                target.endpoint,
                target.credential,
                profile=options.profile,
                prices=prices,
                connect_timeout_s=settings.connect_timeout_s,
            )
            screen = TalkScreen(
                session,
                audio.playback,
                transcribing=options.profile.transcription is not None,
                push_to_talk=options.push_to_talk,
                target=target.description,
            )
            session.on_event(screen.on_event)
            if log is not None:
                session.on_frame(log)
            voice = VoiceLoop(
                session,
                audio.device,
                audio.playback,
                echo_gate=audio.echo_gate,
                echo_canceller=audio.echo_canceller,
                recorder=audio.recorder,
                push_to_talk=options.push_to_talk,
            )
            screen.voice = voice
            stack.enter_context(_log_to(screen, settings, errors))
            try:
                await session.start()
            except RealtalkError as exc:
                errors.print(render_failure(_start_failure(exc, target.endpoint)))
                return EXIT_FAILURE
            stack.push_async_callback(session.close)
            return await _run(options, session, voice, audio, screen, stop, console, errors)
    return EXIT_OK  # pragma: no cover - the block above always returns


async def _run(
    options: TalkOptions,
    session: RealtimeSession,
    voice: VoiceLoop,
    audio: _Audio,
    screen: TalkScreen,
    stop: asyncio.Event,
    console: Console,
    errors: Console,
) -> int:
    loop = asyncio.get_running_loop()

    def send_line(line: str) -> None:
        if audio.playback.is_playing:
            session.interrupt()  # typing over the agent is a barge-in, like speaking over it
        session.send_text(line)

    def toggle_talk() -> None:
        if voice.talking:
            voice.ptt_release()
        else:
            voice.ptt_press()

    live_display = console.is_terminal
    keys: KeyReader | None = None
    editor: LineEditor | None = None
    # Keys one by one only under the live display: elsewhere the terminal's own line editing echoes.
    if live_display and stdin_is_terminal():
        editor = LineEditor(
            send_line, on_space=toggle_talk if options.push_to_talk else None, on_eof=stop.set
        )
        keys = KeyReader(editor.feed, loop)
        screen.typed = ""
    else:
        LineReader(send_line, loop).start()
        if options.push_to_talk:
            screen.notice(
                "warning", "push-to-talk needs a terminal (the Space key): the microphone stays muted"
            )

    printer = PlainPrinter(lambda item: console.print(_plain(item), soft_wrap=True))
    live = Live(console=console, auto_refresh=False, transient=True) if live_display else None
    deadline = None if options.duration_s is None else loop.time() + options.duration_s / options.speed
    code = EXIT_OK
    try:
        voice.start()
        if audio.driver is not None:
            audio.driver.start()
        if keys is not None:
            keys.start()
        if live is not None:
            live.start()
        shown: TalkView | None = None
        while True:
            await asyncio.sleep(REFRESH_S)
            if editor is not None:
                screen.typed = editor.text
            if live is not None:
                view = screen.snapshot()
                if view != shown:  # rendering is most of the screen's CPU: skip it when nothing changed
                    live.update(render_talk(view, max_lines=max(4, console.height - 8)), refresh=True)
                    shown = view
            else:
                printer.poll(screen)
            if stop.is_set():
                break
            if screen.failure is not None:
                code = EXIT_FAILURE
                break
            if deadline is not None and loop.time() >= deadline:
                break
            if _turns_done(options, screen, audio):
                await _settle(screen)
                break
    finally:
        if keys is not None:
            keys.stop()
        if audio.driver is not None:
            await audio.driver.stop()
        voice.stop()
        if audio.sink is not None:
            audio.sink.close()
        if live is not None:
            live.stop()
        await session.close("the user ended the conversation")
    if live is not None:
        for line in screen.snapshot().lines:
            console.print(render_line(line), soft_wrap=True)
    else:
        printer.poll(screen, final=True)
    if screen.failure is not None:
        errors.print(render_failure(screen.failure))
        code = EXIT_FAILURE
    console.print(render_summary(screen.summary()))
    return code


def _turns_done(options: TalkOptions, screen: TalkScreen, audio: _Audio) -> bool:
    wanted = options.exit_after_turns
    return wanted is not None and screen.turns >= wanted and not audio.playback.is_playing


async def _settle(screen: TalkScreen) -> None:
    # A user's transcription may complete after the reply it caused (§2.5 B): give it a moment.
    if screen.pending_transcripts():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(screen.transcripts_complete.wait(), TRANSCRIPT_SETTLE_S)


def _plain(item: ViewLine | Notice) -> RenderableType:
    return render_notice(item) if isinstance(item, Notice) else render_line(item)


# -- wiring ------------------------------------------------------------------------------------


def _check_writable(*paths: Path | None) -> None:
    # Opened here first: a file that cannot be created fails with a plain OSError, before the wave
    # module (whose half-built writer then fails again in __del__) or any connection is involved.
    for path in paths:
        if path is not None:
            with path.open("ab"):
                pass


def _open_audio(options: TalkOptions, stack: AsyncExitStack) -> _Audio:
    _check_writable(options.output_wav, options.record, options.events)
    playback = PlaybackBuffer()
    recorder = StereoRecorder.to_wav(options.record) if options.record is not None else None
    if recorder is not None:
        stack.callback(recorder.close)  # VoiceLoop.stop closes it too; closing twice is harmless
    if options.virtual_device:
        source: AudioSource = SilenceSource()
        if options.input_wav is not None:
            try:
                source = WavSource(options.input_wav)
            except ValueError as exc:
                raise ConfigError(str(exc), variable="--input-wav") from None
        sink = WavSink(options.output_wav) if options.output_wav is not None else None
        if sink is not None:
            stack.callback(sink.close)
        device = VirtualDuplex(source, sink, playback)
        return _Audio(playback, device, PacedDriver(device, speed=options.speed), sink, None, recorder)
    sound_card = SoundDeviceDuplex(
        playback, input_device=options.input_device, output_device=options.output_device
    )
    if options.headphones:
        return _Audio(playback, sound_card, None, None, None, recorder)
    if options.aec:
        return _Audio(playback, sound_card, None, None, None, recorder, _echo_canceller())
    return _Audio(playback, sound_card, None, None, EchoGate(), recorder)


def _echo_canceller() -> EchoProcessor:
    from realtalk.audio.aec import EchoCanceller  # optional dependency: imported only for --aec

    return EchoCanceller()


async def _open_target(
    options: TalkOptions, settings: Settings, stack: AsyncExitStack, console: Console
) -> _Target:
    if settings.azure_openai_endpoint is None:
        return await _start_emulator(options, settings, stack, console)
    endpoint, credential = resolve_connection(settings)
    stack.push_async_callback(credential.close)
    for warning in endpoint.warnings:
        console.print(render_notice(Notice("warning", warning)), soft_wrap=True)
    return _Target(endpoint, credential, f"{endpoint.deployment} at {endpoint.host}")


async def _start_emulator(
    options: TalkOptions, settings: Settings, stack: AsyncExitStack, console: Console
) -> _Target:
    # A random key: nothing else on this machine can use the emulator while we talk to it.
    key = secrets.token_urlsafe(24)
    emulator = Emulator(EmulatorConfig(keys=(key,), pace=options.speed))
    await stack.enter_async_context(emulator)
    voice_name = emulator.engines.synthesizer.name
    console.print(
        render_notice(
            Notice(
                "info",
                "No AZURE_OPENAI_ENDPOINT configured: talking to the local emulator "
                f"({voice_name} voice, echo replies)",
            )
        ),
        soft_wrap=True,
    )
    if settings.openai_api_key is not None:
        console.print(
            render_notice(
                Notice(
                    "info",
                    "OPENAI_API_KEY is set; to talk to the OpenAI platform instead, set "
                    "AZURE_OPENAI_ENDPOINT=https://api.openai.com/v1 and "
                    "AZURE_OPENAI_DEPLOYMENT_NAME=gpt-realtime",
                )
            ),
            soft_wrap=True,
        )
    endpoint = resolve_endpoint(emulator.http_base_url, EMULATOR_MODEL)
    return _Target(
        endpoint, ApiKeyCredential(key, style="bearer", source=None), f"local emulator at {endpoint.host}"
    )


def _start_failure(exc: RealtalkError, endpoint: ResolvedEndpoint) -> str:
    """One line: why the first connection failed and what to do about it."""
    if isinstance(exc, HandshakeRejected):
        message = f"{endpoint.host} refused the session: {exc.reason}"
    elif isinstance(exc, ConnectionClosed) and exc.code is None:
        message = (
            f"cannot connect to {endpoint.host}: {exc.reason}. Check AZURE_OPENAI_ENDPOINT, "
            "or run `realtalk doctor`"
        )
    else:
        message = f"the session could not start: {exc}"
    return " ".join(message.split())


@contextlib.contextmanager
def _stop_on_sigint(stop: asyncio.Event) -> Iterator[None]:
    """First Ctrl+C: end the conversation cleanly. Second: stop waiting (KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    pressed = 0

    def on_sigint() -> None:
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            stop.set()
        else:
            loop.remove_signal_handler(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


@contextlib.contextmanager
def _log_to(screen: TalkScreen, settings: Settings, errors: Console) -> Iterator[None]:
    """realtalk's log warnings become notices; with REALTALK_LOG_LEVEL=INFO/DEBUG, records go to stderr too.

    The live display owns the terminal, so nothing may write to it behind Rich's back: the stderr
    handler writes through the (redirected) error console.
    """
    package = logging.getLogger("realtalk")
    level = logging.getLevelName(settings.log_level)
    handlers: list[logging.Handler] = [NoticeLogHandler(screen, max(logging.WARNING, level))]
    if level < logging.WARNING:
        handlers.append(RichHandler(level, console=errors, show_path=False))
    saved = package.level, package.propagate
    package.setLevel(level)
    package.propagate = False
    for handler in handlers:
        package.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]
