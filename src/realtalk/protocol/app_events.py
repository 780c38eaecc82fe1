"""What ``ClientProtocol.events_received()`` hands to applications: small frozen dataclasses.

They say what the application has to do or show (play this audio, flush the player, show this
transcript, run this tool), in our terms rather than the wire's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from realtalk.errors import RemoteProtocolError, ServerError

from .conversation import TranscriptLine
from .cost import TurnCost
from .events import ServerEvent, UnknownServerEvent

__all__ = [
    "AppEvent",
    "AudioChunk",
    "AudioCut",
    "FlushPlayback",
    "LatencyMeasured",
    "ProtocolViolation",
    "RawServerEvent",
    "ResponseFinished",
    "ResponseStarted",
    "ServerErrorEvent",
    "SessionReady",
    "SpeechStarted",
    "SpeechStopped",
    "ToolCallFinished",
    "ToolCallRequested",
    "ToolCallStarted",
    "ToolCallsCancelled",
    "TranscriptUpdated",
]


@dataclass(frozen=True)
class SessionReady:
    """The session is configured (our ``session.update`` acknowledged) and can be used."""

    session_id: str | None
    model: str | None
    expires_at_s: int | None


@dataclass(frozen=True)
class AudioChunk:
    """Assistant audio to play, in the session output format (PCM16 24 kHz unless G.711 is set).

    Report what was actually played with ``ClientProtocol.audio_played(item_id, samples, now_s)``.
    """

    item_id: str
    response_id: str
    pcm: bytes = field(repr=False)
    samples: int
    sample_rate_hz: int


@dataclass(frozen=True)
class FlushPlayback:
    """Stop playing ``item_id`` now and drop what is buffered, then call ``playback_flushed``."""

    item_id: str


@dataclass(frozen=True)
class AudioCut:
    """A reply's audio was cut off: ``heard_ms`` of its ``generated_ms`` were heard.

    Emitted when this client's playback stopped early (a barge-in, an interrupt) and when the
    server confirms a truncate sent by someone else (the client of a gateway). ``turn_cost`` is the
    response's cost with the unheard share priced, when the response was already billed (a VAD
    barge-in usually comes after ``response.done``); ``None`` when it was not yet, in which case
    its ``ResponseFinished`` carries the cut.
    """

    response_id: str
    item_id: str
    heard_ms: int
    generated_ms: int
    turn_cost: TurnCost | None


@dataclass(frozen=True)
class TranscriptUpdated:
    """The visible transcript changed; ``lines`` is all of it, in conversation order."""

    lines: tuple[TranscriptLine, ...]


@dataclass(frozen=True)
class SpeechStarted:
    """Server VAD heard the user start speaking (``audio_start_ms`` into the session's input audio)."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """Server VAD heard the user stop speaking."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ResponseStarted:
    """The model started a response."""

    response_id: str


@dataclass(frozen=True)
class ToolCallRequested:
    """The model called a function; answer with ``ClientProtocol.submit_tool_output(call_id, output)``."""

    call_id: str
    name: str
    arguments: str
    item_id: str
    response_id: str


@dataclass(frozen=True)
class ToolCallsCancelled:
    """Stop running these calls: the user spoke over their response (``reason`` "barge_in"), the app
    interrupted ("interrupted") or the conversation moved to a new connection ("reconnected"). Their
    outputs would be stale: ``submit_tool_output`` drops them, and no follow-up response is created."""

    call_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool runner started a call (emitted by the session that runs tools, not by the core)."""

    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallFinished:
    """A tool call ended: ``status`` is ok, error, timeout, invalid_arguments, unknown_tool or
    cancelled; ``cost_usd`` is what the tool itself cost (a delegated question), already in the
    session's total. Emitted by the session that runs tools."""

    call_id: str
    name: str
    status: str
    duration_ms: float
    cost_usd: Decimal = Decimal(0)
    note: str | None = None


@dataclass(frozen=True)
class ResponseFinished:
    """A response ended (``status``: completed, cancelled, failed or incomplete) and what it cost."""

    response_id: str | None
    status: str | None
    reason: str | None
    turn_cost: TurnCost | None


@dataclass(frozen=True)
class ServerErrorEvent:
    """The server sent an ``error`` event. ``harmless`` errors are expected races, not failures."""

    error: ServerError
    harmless: bool = False


@dataclass(frozen=True)
class LatencyMeasured:
    """Voice-to-voice latency of one turn: from the end of the user's speech to the first reply audio played.

    ``first_audio_received_ms`` is the part until the first reply audio arrived (the rest is playback
    buffering). Both are on the client clock given to ``append_audio``/``receive_message``/``audio_played``.
    """

    response_id: str
    voice_to_voice_ms: float
    first_audio_received_ms: float | None


@dataclass(frozen=True)
class ProtocolViolation:
    """The server sent something invalid; it was skipped and the session goes on."""

    error: RemoteProtocolError


@dataclass(frozen=True)
class RawServerEvent:
    """Every parsed server event, when the protocol was created with ``include_raw_events=True``."""

    event: ServerEvent | UnknownServerEvent


AppEvent = (
    SessionReady
    | AudioChunk
    | FlushPlayback
    | AudioCut
    | TranscriptUpdated
    | SpeechStarted
    | SpeechStopped
    | ResponseStarted
    | ToolCallRequested
    | ToolCallsCancelled
    | ToolCallStarted
    | ToolCallFinished
    | ResponseFinished
    | ServerErrorEvent
    | LatencyMeasured
    | ProtocolViolation
    | RawServerEvent
)
"""Any event ``ClientProtocol.events_received()`` returns."""
