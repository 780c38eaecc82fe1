"""One ``realtalk talk`` conversation, from its start to its summary.

``converse`` opens the two ends (``talk_startup``), starts the session and the voice loop, then
runs the loop below ten times a second: refresh the screen (``talk_screen`` collects, ``views``
renders) and check the stop conditions (Ctrl+C, ``--duration``, ``--exit-after-turns``, a
failure). Whatever stopped it, everything is closed in reverse order and one summary is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import secrets
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack

from rich.console import Console, RenderableType
from rich.live import Live
from rich.logging import RichHandler

from realtalk.cli.eventlog import EventLog
from realtalk.cli.keyboard import KeyReader, LineEditor, LineReader, stdin_is_terminal
from realtalk.cli.talk_options import TalkOptions
from realtalk.cli.talk_screen import NoticeLogHandler, PlainPrinter, TalkScreen
from realtalk.cli.talk_startup import Audio, open_audio, open_target, start_failure
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
from realtalk.client.agent_file import ToolSettings
from realtalk.client.credentials import Credential
from realtalk.client.delegation import DelegationTool
from realtalk.client.session import RealtimeSession
from realtalk.client.tools import Tool, ToolRunner
from realtalk.client.voice import VoiceLoop
from realtalk.errors import ConfigError, RealtalkError
from realtalk.ledger import Ledger
from realtalk.ledger.meter import SessionMeter
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import ResolvedEndpoint
from realtalk.settings import Settings, ledger_target

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "converse"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

REFRESH_S = 0.1  # the live display and the stop conditions are checked ten times a second
TRANSCRIPT_SETTLE_S = 2.0  # at a scripted exit, wait this long (at most) for user transcriptions


async def converse(options: TalkOptions, settings: Settings, console: Console, errors: Console) -> int:
    """Run one conversation to its end; returns the exit status."""
    stop = asyncio.Event()
    with _stop_on_sigint(stop):
        async with AsyncExitStack() as stack:
            log: EventLog | None = None
            try:
                prices = prices_for(settings.pricing_model, settings.prices)
                audio = open_audio(options, stack)
                if options.events is not None:
                    log = EventLog(options.events)
                    stack.callback(log.close)  # runs after the session closed: its last frames are logged
                target = await open_target(options, settings, stack, console)
            except ConfigError as exc:
                errors.print(render_failure(str(exc)))
                return EXIT_USAGE
            except OSError as exc:  # an output file that cannot be written (no such folder, no permission)
                errors.print(
                    render_failure(f"cannot write {exc.filename or 'a file'}: {exc.strerror or exc}")
                )
                return EXIT_USAGE
            try:
                ledger = await open_ledger(settings, errors)
            except ConfigError as exc:
                errors.print(render_failure(f"ledger: {exc}"))
                return EXIT_USAGE
            if ledger is not None:
                stack.push_async_callback(ledger.aclose)  # after the session and its meter closed
            tools = session_tools(options, target.endpoint, target.credential, stack)
            settings_of_tools = options.agent_file.tool_settings if options.agent_file else ToolSettings()
            session = target.session_class(
                target.endpoint,
                target.credential,
                profile=options.profile,
                prices=prices,
                connect_timeout_s=settings.connect_timeout_s,
                tools=tools,
                tool_filler=settings_of_tools.filler,
                tool_filler_after_s=settings_of_tools.filler_after_s,
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
            if ledger is not None:
                meter = SessionMeter(
                    ledger,
                    session_id="talk_" + secrets.token_hex(8),
                    user=_os_user(),
                    deployment=target.endpoint.deployment,
                    pricing_model=settings.pricing_model,
                    transport="terminal",
                    client="talk",
                )
                session.on_event(lambda event: meter.observe(event, session.protocol.conversation))
                stack.callback(lambda: meter.close(session.status.reason or "ended"))
            stack.enter_context(_log_to(screen, settings, errors))
            try:
                await session.start()
            except RealtalkError as exc:
                errors.print(render_failure(start_failure(exc, target.endpoint)))
                return EXIT_FAILURE
            stack.push_async_callback(session.close)
            return await _run(options, session, voice, audio, screen, stop, console, errors)
    return EXIT_OK  # pragma: no cover - the block above always returns


async def open_ledger(settings: Settings, errors: Console) -> Ledger | None:
    """The usage ledger this conversation is written to (``None``: turned off, or the default one
    cannot be opened, which is said and does not stop the conversation).

    Raises:
        ConfigError: a configured ``REALTALK_LEDGER_URL`` that cannot be used.
    """
    url = ledger_target(settings)
    if url is None:
        return None
    try:
        return await Ledger.open(url)
    except ConfigError as exc:
        if settings.ledger_url:
            raise
        errors.print(render_notice(Notice("warning", f"usage is not recorded: {exc}")))
        return None


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container with an unknown uid)
        return None


def session_tools(
    options: TalkOptions, endpoint: ResolvedEndpoint, credential: Credential, stack: AsyncExitStack
) -> ToolRunner | None:
    """The runner of ``--profile``'s tools and delegation (``None``: the profile has none)."""
    agent = options.agent_file
    if agent is None or not agent.server_tool_names:
        return None
    tools: list[Tool] = list(agent.tools)
    if agent.delegate is not None:
        delegation = DelegationTool(
            agent.delegate, rest_base_url=endpoint.rest_base_url, credential=credential
        )
        stack.push_async_callback(delegation.aclose)
        tools.append(delegation)
    return ToolRunner(tools, default_timeout_s=agent.tool_settings.timeout_s)


async def _run(
    options: TalkOptions,
    session: RealtimeSession,
    voice: VoiceLoop,
    audio: Audio,
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


def _turns_done(options: TalkOptions, screen: TalkScreen, audio: Audio) -> bool:
    wanted = options.exit_after_turns
    return wanted is not None and screen.turns >= wanted and not audio.playback.is_playing


async def _settle(screen: TalkScreen) -> None:
    # A user's transcription may complete after the reply it caused (§2.5 B): give it a moment.
    if screen.pending_transcripts():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(screen.transcripts_complete.wait(), TRANSCRIPT_SETTLE_S)


def _plain(item: ViewLine | Notice) -> RenderableType:
    return render_notice(item) if isinstance(item, Notice) else render_line(item)


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
