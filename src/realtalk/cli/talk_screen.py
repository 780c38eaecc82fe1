"""What ``realtalk talk`` knows about the conversation, for the screen: events in, ``TalkView`` out.

``TalkScreen`` is a session event handler (it runs in the receive task, so it only records) plus
``snapshot()``, which the display task calls about ten times a second. It decides nothing about the
protocol: the transcript's order, what was heard of a cut reply and the costs come from the core
(``session.protocol``); this module only arranges them for the eye.

``PlainPrinter`` is the display when stdout is not a terminal: each line is printed once, when it
is final, in conversation order (a user line whose transcription is still coming holds back the
reply printed after it, for at most ``hold_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from realtalk.audio.echo import GateState
from realtalk.audio.pcm import SILENCE_DBFS
from realtalk.audio.playback import PlaybackBuffer
from realtalk.cli.views import GateShown, Notice, Status, TalkSummary, TalkView, ViewLine
from realtalk.client.session import ConnectionStatus, RealtimeSession, SessionEvent
from realtalk.client.voice import VoiceLoop
from realtalk.protocol.app_events import (
    FlushPlayback,
    LatencyMeasured,
    ProtocolViolation,
    ResponseFinished,
    ResponseStarted,
    ServerErrorEvent,
    SpeechStarted,
    SpeechStopped,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptUpdated,
)
from realtalk.protocol.conversation import ResponseState, TranscriptLine

__all__ = ["NoticeLogHandler", "PlainPrinter", "TalkScreen"]

_MAX_NOTICES = 20
_BUSY = (ResponseState.REQUESTED, ResponseState.ACTIVE, ResponseState.CANCELLING)


@dataclass(frozen=True)
class _Line:
    key: str
    view: ViewLine


class TalkScreen:
    """Collects session events; ``snapshot()`` gives the ``TalkView`` to render."""

    def __init__(
        self,
        session: RealtimeSession,
        playback: PlaybackBuffer,
        *,
        transcribing: bool,
        push_to_talk: bool = False,
        target: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.playback = playback
        self.voice: VoiceLoop | None = None
        self.transcribing = transcribing
        self.push_to_talk = push_to_talk
        self.target = target
        self.typed: str | None = None
        self._clock = clock
        self.started_s = clock()
        self.turns = 0
        """Replies finished (completed, cancelled or failed): what --exit-after-turns counts."""
        self.interruptions = 0
        # Replies started and not finished yet: one cut off by the end of the conversation (Ctrl+C
        # mid-reply, --duration) or by a dropped connection is still a turn the user saw begin.
        self._open_replies: set[str] = set()
        self.latencies_ms: list[float] = []
        self._latency_by_response: dict[str, float] = {}
        self._tools_running: dict[str, tuple[str, float]] = {}  # call id → (tool name, started at)
        self._lines: tuple[TranscriptLine, ...] = ()
        self._history: tuple[_Line, ...] = ()  # lines of earlier connections (a reconnect starts anew)
        self._notices: deque[Notice] = deque(maxlen=_MAX_NOTICES)
        self.notices_added = 0
        self._connection: ConnectionStatus = ConnectionStatus("connecting")
        self._user_speaking = False
        self._awaiting_reply = False
        self.transcripts_complete = asyncio.Event()
        """Set while no user line waits for its transcription."""
        self.failure: str | None = None
        """Why the session ended, when it ended on its own (an unrecoverable failure)."""

    # -- events (in the receive task: record only) -----------------------------------------------

    def on_event(self, event: SessionEvent) -> None:
        match event:
            case ConnectionStatus():
                self._on_status(event)
            case TranscriptUpdated():
                self._lines = event.lines
                if any(line.role == "user" and not line.final for line in event.lines):
                    self.transcripts_complete.clear()
                else:
                    self.transcripts_complete.set()
            case SpeechStarted():
                self._user_speaking = True
            case SpeechStopped():
                self._user_speaking = False
                self._awaiting_reply = True
            case ResponseStarted():
                self._awaiting_reply = False
                self._open_replies.add(event.response_id)
            case ResponseFinished():
                self.turns += 1
                if event.response_id is not None:
                    self._open_replies.discard(event.response_id)
                if event.status == "failed":
                    self.notice("error", f"the response failed: {event.reason or 'no reason given'}")
            case FlushPlayback():
                self.interruptions += 1
            case LatencyMeasured():
                self.latencies_ms.append(event.voice_to_voice_ms)
                self._latency_by_response[event.response_id] = event.voice_to_voice_ms
            case ServerErrorEvent() if not event.harmless:
                error = event.error
                self.notice(
                    "error", f"server error {error.code or error.type or ''}: {error.message}".strip()
                )
            case ProtocolViolation():
                self.notice("warning", f"the server sent something invalid (skipped): {event.error}")
            case ToolCallStarted():
                self._tools_running[event.call_id] = (event.name, self._clock())
            case ToolCallFinished():
                self._tools_running.pop(event.call_id, None)
                # Every call gets its line: two bookings are two events, not one repeated.
                self.notice(*tool_notice(event), merge=False)
            case _:
                pass

    def _on_status(self, status: ConnectionStatus) -> None:
        previous, self._connection = self._connection, status
        if status.state == "reconnecting":
            if previous.state == "connected":
                # The next connection is a new server session: keep what was said so far on screen.
                self._history = self._all_lines()
                self._lines = ()
            if status.delay_s:
                self.notice(
                    "warning",
                    f"connection lost ({status.reason}); reconnecting, attempt {status.attempt} "
                    f"in {status.delay_s:.1f} s",
                )
        elif status.state == "connected" and previous.state == "reconnecting":
            self.notice("info", "reconnected: a new session, with the conversation so far replayed as text")
        elif status.state == "closed" and status.error is not None:
            self.failure = f"the session ended: {status.reason}"

    def notice(self, level: Literal["info", "warning", "error"], text: str, *, merge: bool = True) -> None:
        """Add a notice; the same text twice in a row is counted, not repeated (``merge``)."""
        text = " ".join(text.split())
        last_notice = self._notices[-1] if self._notices else None
        if merge and last_notice is not None and last_notice.text == text and last_notice.level == level:
            last = self._notices.pop()
            self._notices.append(replace(last, count=last.count + 1))
        else:
            self._notices.append(Notice(level, text))
            self.notices_added += 1

    # -- the view (on the loop, ~10 Hz) --------------------------------------------------------

    @property
    def status(self) -> Status:
        state = self._connection.state
        if state != "connected":
            return state
        if self.playback.is_playing:
            return "speaking"
        if self._awaiting_reply or self.session.protocol.conversation.response_state in _BUSY:
            return "thinking"
        if self.push_to_talk and self.voice is not None and not self.voice.talking:
            return "muted"
        return "listening"

    def lines(self) -> tuple[_Line, ...]:
        return self._all_lines()

    def _all_lines(self) -> tuple[_Line, ...]:
        current = [self._view_line(line) for line in self._lines]
        # After a reconnect the core replays the conversation as text items: skip those copies.
        seen = {(line.view.role, line.view.text) for line in self._history}
        skip = 0
        while skip < len(current) and (current[skip].view.role, current[skip].view.text) in seen:
            skip += 1
        return self._history + tuple(current[skip:])

    def _view_line(self, line: TranscriptLine) -> _Line:
        latency: float | None = None
        if line.role == "assistant":
            item = self.session.protocol.conversation.item(line.item_id)
            if item is not None and item.response_id is not None:
                latency = self._latency_by_response.get(item.response_id)
        untranscribed = line.role == "user" and not self.transcribing and not line.text
        return _Line(
            line.item_id,
            ViewLine(line.role, line.text, line.final or untranscribed, line.cut, latency, untranscribed),
        )

    def _gate(self) -> tuple[float, GateShown]:
        voice = self.voice
        if voice is None:
            return SILENCE_DBFS, "off"
        gate = voice.echo_gate
        shown: GateShown = "off"
        if gate is not None:
            shown = "muted" if gate.last_decision.state is GateState.ECHO else "open"
        return voice.stats.mic_level_dbfs, shown

    def snapshot(self) -> TalkView:
        costs = self.session.protocol.costs
        mic_dbfs, gate = self._gate()
        status = self.status
        detail = ""
        if status == "reconnecting" and self._connection.attempt:
            detail = f"attempt {self._connection.attempt}"
        elif self._tools_running:
            now = self._clock()
            detail = "running " + ", ".join(
                f"{name} {now - started_s:.1f} s" for name, started_s in self._tools_running.values()
            )
        return TalkView(
            lines=tuple(line.view for line in self._all_lines()),
            status=status,
            status_detail=detail,
            user_speaking=self._user_speaking,
            mic_level_dbfs=float(round(mic_dbfs)),  # the meter's resolution: 1 dB
            gate=gate,
            latencies_ms=tuple(self.latencies_ms),
            cost_usd=costs.total_usd,
            input_tokens=costs.tokens.input_tokens,
            output_tokens=costs.tokens.output_tokens,
            cache_hit_ratio=costs.cache_hit_ratio,
            notices=tuple(self._notices),
            target=self.target,
            push_to_talk=self.push_to_talk,
            typed=self.typed,
        )

    def pending_transcripts(self) -> bool:
        """Whether a user line is still waiting for its transcription."""
        return self.transcribing and any(
            line.role == "user" and not line.final
            for line in self.session.protocol.conversation.transcript_lines()
        )

    def summary(self) -> TalkSummary:
        costs = self.session.protocol.costs
        return TalkSummary(
            turns=self.turns + len(self._open_replies),
            unfinished=len(self._open_replies),
            duration_s=self._clock() - self.started_s,
            latencies_ms=tuple(self.latencies_ms),
            cost_usd=costs.total_usd,
            unheard_audio_usd=costs.unheard_audio_usd,
            input_tokens=costs.tokens.input_tokens,
            output_tokens=costs.tokens.output_tokens,
            cache_hit_ratio=costs.cache_hit_ratio,
            low_cache_reason=costs.low_cache_reason(),
            connections=max(1, self.session.connections),
            interruptions=self.interruptions,
        )

    @property
    def notices(self) -> tuple[Notice, ...]:
        return tuple(self._notices)


class PlainPrinter:
    """Prints final transcript lines and new notices once each, for a non-terminal stdout."""

    def __init__(
        self,
        emit: Callable[[ViewLine | Notice], None],
        *,
        hold_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._hold_s = hold_s
        self._clock = clock
        self._printed: set[str] = set()
        self._first_seen: dict[str, float] = {}
        self._notices_printed = 0

    def poll(self, screen: TalkScreen, *, final: bool = False) -> None:
        """Print what became ready since the last poll; ``final``: print everything left."""
        now = self._clock()
        for line in screen.lines():
            if line.key in self._printed:
                continue
            view = line.view
            if not (final or view.final or view.cut):
                first = self._first_seen.setdefault(line.key, now)
                if view.role == "user" and now - first >= self._hold_s:
                    continue  # held long enough: go on, and print it whenever it arrives
                break  # keep conversation order: later lines wait for this one
            if view.text or view.untranscribed:
                self._emit(view)
            self._printed.add(line.key)
        self._poll_notices(screen)

    def _poll_notices(self, screen: TalkScreen) -> None:
        # Repeats merged into an earlier notice (its count) are not printed again.
        new = screen.notices_added - self._notices_printed
        if new > 0:
            for notice in screen.notices[-new:]:
                self._emit(notice)
        self._notices_printed = screen.notices_added


class NoticeLogHandler(logging.Handler):
    """Shows realtalk's log warnings as notices (the live display owns the terminal).

    Records that the screen already shows from events (server errors, reconnects) are skipped.
    """

    _SHOWN_FROM_EVENTS = frozenset({"realtalk.client.session", "realtalk.protocol.client"})

    def __init__(self, screen: TalkScreen, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in self._SHOWN_FROM_EVENTS and record.levelno < logging.ERROR:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not break the conversation
            message = str(record.msg)
        self._screen.notice("error" if record.levelno >= logging.ERROR else "warning", message)


def tool_notice(event: ToolCallFinished) -> tuple[Literal["info", "warning"], str]:
    """The line a finished tool call leaves on screen: which tool, how it ended, how long, what it cost."""
    cost = f", ${event.cost_usd:.4f}" if event.cost_usd else ""
    note = f", {event.note}" if event.note else ""
    text = (
        f"tool {event.name}: {event.status.replace('_', ' ')} in {event.duration_ms / 1000:.1f} s{cost}{note}"
    )
    return ("info" if event.status == "ok" else "warning"), text
