"""One spoken turn in a fresh session: a case's WAV in, the input transcript and the reply out.

``speak_turn`` opens a ``RealtimeSession`` with the given profile, sends the WAV paced like a
microphone (in real time, or ``ctx.speed`` times faster for an emulator), then silence, until the
turn is complete: the input transcript and the reply's transcript are in, or the model called a
tool (its calls are collected and nobody answers them: the case only asks which call was made).
The alphanumeric, instructions and tools suites are built on it; the suites that time playback
(``timing.py``) drive a virtual sound card instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from realtalk.audio.pcm import read_wav
from realtalk.client.session import ConnectionStatus, RealtimeSession, SessionEvent
from realtalk.errors import HandshakeRejected
from realtalk.eval.suite import CaseContext, CaseFailed, RateLimited
from realtalk.protocol import AgentProfile
from realtalk.protocol.app_events import (
    AudioChunk,
    ResponseFinished,
    ServerErrorEvent,
    SessionReady,
    ToolCallRequested,
    TranscriptUpdated,
)

__all__ = ["SpokenTurn", "speak_turn", "strip_prefix"]

_CHUNK_MS = 100
_WIRE_RATE = 24_000
_BYTES_PER_MS = _WIRE_RATE * 2 // 1000


@dataclass
class SpokenTurn:
    """What one turn gave: the transcripts, the tool calls, timings (``time.monotonic()``), errors."""

    transcript: str | None = None
    reply: str | None = None
    reply_done: bool = False
    tool_calls: list[ToolCallRequested] = field(default_factory=list)
    first_audio_s: float | None = None
    speech_end_s: float | None = None  # when the WAV's last sample was sent
    error: str | None = None
    rate_limited: bool = False
    cost_usd: Decimal = Decimal(0)
    server_model: str | None = None  # the model version the server says it runs (session.created)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def latency_ms(self) -> float | None:
        """From the WAV's last sample sent to the reply's first audio received."""
        if self.first_audio_s is None or self.speech_end_s is None:
            return None
        return (self.first_audio_s - self.speech_end_s) * 1000

    @property
    def complete(self) -> bool:
        if self.transcript is None:
            return False
        return bool(self.tool_calls) or (self.reply_done and self.reply is not None)

    def on_event(self, event: SessionEvent) -> None:
        if isinstance(event, SessionReady):
            self.server_model = event.model
        elif isinstance(event, TranscriptUpdated):
            for line in event.lines:
                if line.role == "user" and line.final:
                    self.transcript = line.text
                elif line.role == "assistant" and line.final:
                    self.reply = line.text
        elif isinstance(event, AudioChunk):
            if self.first_audio_s is None:
                self.first_audio_s = time.monotonic()
        elif isinstance(event, ToolCallRequested):
            self.tool_calls.append(event)
        elif isinstance(event, ResponseFinished):
            self.reply_done = True
            if event.status not in (None, "completed"):
                self.error = f"the response ended {event.status}" + (
                    f" ({event.reason})" if event.reason else ""
                )
        elif isinstance(event, ServerErrorEvent) and not event.harmless:
            if event.error.code == "rate_limit_exceeded":
                self.rate_limited = True
            self.error = f"server error: {event.error}"
        elif isinstance(event, ConnectionStatus) and event.state == "closed" and event.error is not None:
            self.error = f"connection closed: {event.error}"
        self.changed.set()


def _missing(turn: SpokenTurn) -> str:
    missing = [
        name
        for name, value in (("input transcript", turn.transcript), ("reply", turn.reply))
        if value is None
    ]
    return " and the ".join(missing) or "end of the reply"


async def speak_turn(audio: Path, ctx: CaseContext, profile: AgentProfile) -> SpokenTurn:
    """Speak ``audio`` (24 kHz mono PCM16 WAV) to a fresh session with ``profile``; see the module
    docstring. Raises ``RateLimited`` (HTTP 429 or ``rate_limit_exceeded``) and ``CaseFailed``
    (a WAV of the wrong shape, the turn not complete within ``ctx.timeout_s``); any other server
    error ends the turn with ``SpokenTurn.error`` set."""
    pcm, rate, channels = read_wav(audio)
    if rate != _WIRE_RATE or channels != 1:
        raise CaseFailed(f"{audio}: {rate} Hz, {channels} channel(s); eval cases need 24 kHz mono")
    turn = SpokenTurn()
    chunk = _CHUNK_MS * _BYTES_PER_MS
    interval_s = _CHUNK_MS / 1000 / ctx.speed
    session = RealtimeSession(
        ctx.endpoint, ctx.credential, profile=profile, prices=ctx.prices, reconnect=False
    )
    session.on_event(turn.on_event)
    try:
        await session.start()
    except HandshakeRejected as exc:
        if exc.status == 429:
            raise RateLimited(str(exc)) from exc
        raise
    try:
        deadline = time.monotonic() + ctx.timeout_s
        next_at = time.monotonic()
        for start in range(0, len(pcm), chunk):
            session.append_audio(pcm[start : start + chunk])
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if turn.error is not None:
                break
        turn.speech_end_s = time.monotonic()
        quiet = bytes(chunk)
        while not turn.complete and turn.error is None:
            if time.monotonic() >= deadline:
                raise CaseFailed(
                    f"timed out after {ctx.timeout_s:g} s waiting for the {_missing(turn)}",
                    cost_usd=session.total_cost_usd,
                )
            session.append_audio(quiet)
            next_at += interval_s
            turn.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.changed.wait(), max(0.0, next_at - time.monotonic()))
        if turn.rate_limited:
            raise RateLimited(turn.error or "rate limited")
        turn.cost_usd = session.total_cost_usd
        return turn
    finally:
        await session.close("eval case done")


def strip_prefix(reply: str, prefix: str | None) -> str:
    """``reply`` without a fixed preamble (``ctx.reply_prefix``, case-insensitive), stripped."""
    stripped = reply.strip()
    if prefix and stripped.casefold().startswith(prefix.casefold()):
        return stripped[len(prefix) :].strip()
    return stripped
