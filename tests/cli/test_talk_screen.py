"""``TalkScreen`` and ``PlainPrinter``: session events in, what the user sees out (no socket opened)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from realtalk.audio.playback import PlaybackBuffer
from realtalk.cli.talk_screen import NoticeLogHandler, PlainPrinter, TalkScreen
from realtalk.cli.views import Notice, ViewLine
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.session import ConnectionStatus, RealtimeSession
from realtalk.errors import ConnectionClosed, ServerError
from realtalk.protocol.app_events import (
    FlushPlayback,
    LatencyMeasured,
    ResponseFinished,
    ServerErrorEvent,
    SpeechStarted,
    SpeechStopped,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptUpdated,
)
from realtalk.protocol.conversation import TranscriptLine
from realtalk.protocol.endpoint import resolve_endpoint


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def make_screen(*, transcribing: bool = True) -> TalkScreen:
    session = RealtimeSession(
        resolve_endpoint("http://127.0.0.1:9", "gpt-realtime-1.5"), ApiKeyCredential("k", style="bearer")
    )
    return TalkScreen(session, PlaybackBuffer(), transcribing=transcribing)


def connected(screen: TalkScreen) -> TalkScreen:
    screen.on_event(ConnectionStatus("connected"))
    return screen


def printed(printer_output: list[ViewLine | Notice]) -> list[str]:
    return [
        f"{item.role}: {item.text}" if isinstance(item, ViewLine) else item.text for item in printer_output
    ]


def test_a_reply_is_printed_after_the_user_line_whose_transcription_came_later() -> None:
    screen = connected(make_screen())
    out: list[ViewLine | Notice] = []
    printer = PlainPrinter(out.append, clock=Clock())
    screen.on_event(
        TranscriptUpdated(
            (TranscriptLine("u1", "user", "", False), TranscriptLine("a1", "assistant", "You said: hi", True))
        )
    )
    printer.poll(screen)
    assert out == []  # the reply waits for the line it answers
    screen.on_event(
        TranscriptUpdated(
            (
                TranscriptLine("u1", "user", "hi", True),
                TranscriptLine("a1", "assistant", "You said: hi", True),
            )
        )
    )
    printer.poll(screen)
    printer.poll(screen)
    assert printed(out) == ["user: hi", "assistant: You said: hi"]


def test_a_transcription_that_never_comes_holds_the_reply_back_only_for_a_while() -> None:
    screen = connected(make_screen())
    clock = Clock()
    out: list[ViewLine | Notice] = []
    printer = PlainPrinter(out.append, hold_s=5.0, clock=clock)
    lines = (TranscriptLine("u1", "user", "", False), TranscriptLine("a1", "assistant", "Hello", True))
    screen.on_event(TranscriptUpdated(lines))
    printer.poll(screen)
    clock.now_s = 4.9
    printer.poll(screen)
    assert out == []
    clock.now_s = 5.0
    printer.poll(screen)
    assert printed(out) == ["assistant: Hello"]
    screen.on_event(TranscriptUpdated((TranscriptLine("u1", "user", "hi", True), lines[1])))
    printer.poll(screen)
    assert printed(out) == ["assistant: Hello", "user: hi"]  # late, but not lost


def test_without_transcription_a_user_turn_is_shown_as_untranscribed_speech() -> None:
    screen = connected(make_screen(transcribing=False))
    screen.on_event(TranscriptUpdated((TranscriptLine("u1", "user", "", False),)))
    (line,) = screen.snapshot().lines
    assert line.untranscribed and line.final


def test_the_status_follows_the_turns() -> None:
    screen = make_screen()
    seen = [screen.status]
    connected(screen)
    seen.append(screen.status)
    screen.on_event(SpeechStarted("u1", 100))
    assert screen.snapshot().user_speaking
    screen.on_event(SpeechStopped("u1", 900))
    seen.append(screen.status)
    screen.playback.write("a1", b"\x01\x00" * 480)
    seen.append(screen.status)
    screen.on_event(ConnectionStatus("reconnecting", "connection lost"))
    seen.append(screen.status)
    assert seen == ["connecting", "listening", "thinking", "speaking", "reconnecting"]


def test_turns_interruptions_and_latencies_are_counted_for_the_summary() -> None:
    screen = connected(make_screen())
    screen.on_event(LatencyMeasured("r1", 640.0, 500.0))
    screen.on_event(FlushPlayback("a1"))
    screen.on_event(ResponseFinished("r1", "cancelled", "turn_detected", None))
    summary = screen.summary()
    assert (summary.turns, summary.interruptions, summary.latencies_ms) == (1, 1, (640.0,))
    assert summary.cost_usd == Decimal(0)


def test_a_server_error_is_shown_with_its_code_and_repeats_are_counted_not_repeated() -> None:
    screen = connected(make_screen())
    out: list[ViewLine | Notice] = []
    printer = PlainPrinter(out.append)
    error = ServerErrorEvent(ServerError("audio_end_ms is too large", code="invalid_value"))
    screen.on_event(error)
    printer.poll(screen)
    screen.on_event(error)
    screen.on_event(
        ServerErrorEvent(ServerError("late cancel", code="response_cancel_not_active"), harmless=True)
    )
    printer.poll(screen)
    assert screen.notices == (Notice("error", "server error invalid_value: audio_end_ms is too large", 2),)
    assert printed(out) == ["server error invalid_value: audio_end_ms is too large"]


def test_an_unrecoverable_close_becomes_the_failure_line() -> None:
    screen = connected(make_screen())
    screen.on_event(ConnectionStatus("reconnecting", "connection lost"))
    screen.on_event(ConnectionStatus("reconnecting", "close 1006", attempt=1, delay_s=0.4))
    screen.on_event(
        ConnectionStatus("closed", "HTTP 401: authentication failed", error=ConnectionClosed(None, "401"))
    )
    assert screen.failure == "the session ended: HTTP 401: authentication failed"
    assert screen.notices[-1].text == "connection lost (close 1006); reconnecting, attempt 1 in 0.4 s"


def test_the_transcript_survives_a_reconnect_without_the_replayed_copies() -> None:
    screen = connected(make_screen())
    before = (TranscriptLine("u1", "user", "hi", True), TranscriptLine("a1", "assistant", "Hello", True))
    screen.on_event(TranscriptUpdated(before))
    screen.on_event(ConnectionStatus("reconnecting", "connection lost"))
    screen.on_event(ConnectionStatus("connected"))
    replayed = (TranscriptLine("x1", "user", "hi", True), TranscriptLine("x2", "assistant", "Hello", True))
    screen.on_event(TranscriptUpdated((*replayed, TranscriptLine("u2", "user", "again", True))))
    assert [line.text for line in screen.snapshot().lines] == ["hi", "Hello", "again"]
    assert "reconnected" in screen.notices[-1].text


def test_log_warnings_become_notices_except_those_shown_from_events(caplog: pytest.LogCaptureFixture) -> None:
    screen = make_screen()
    handler = NoticeLogHandler(screen)
    package = logging.getLogger("realtalk")
    package.addHandler(handler)
    try:
        logging.getLogger("realtalk.client.voice").warning("the event loop fell behind: %d blocks", 3)
        logging.getLogger("realtalk.client.session").warning("reconnecting in 0.5 s")
    finally:
        package.removeHandler(handler)
    assert screen.notices == (Notice("warning", "the event loop fell behind: 3 blocks"),)


def test_each_tool_call_gets_its_own_line_and_a_running_one_shows_in_the_status() -> None:
    clock = Clock()
    session = RealtimeSession(
        resolve_endpoint("http://127.0.0.1:9", "gpt-realtime-1.5"), ApiKeyCredential("k", style="bearer")
    )
    screen = connected(TalkScreen(session, PlaybackBuffer(), transcribing=True, clock=clock))
    output: list[ViewLine | Notice] = []
    printer = PlainPrinter(output.append)
    screen.on_event(ToolCallStarted("call_1", "book_room"))
    clock.now_s = 1.5
    assert screen.snapshot().status_detail == "running book_room 1.5 s"
    for call_id in ("call_1", "call_2"):  # the same tool, the same outcome, twice
        screen.on_event(ToolCallFinished(call_id, "book_room", "ok", 40.0))
    screen.on_event(ToolCallFinished("call_3", "ask_expert", "timeout", 20_000.0, Decimal("0.0021")))
    printer.poll(screen)
    assert printed(output) == [
        "tool book_room: ok in 0.0 s",
        "tool book_room: ok in 0.0 s",
        "tool ask_expert: timeout in 20.0 s, $0.0021",
    ]
    assert screen.snapshot().status_detail == ""
    assert [notice.level for notice in screen.notices] == ["info", "info", "warning"]
