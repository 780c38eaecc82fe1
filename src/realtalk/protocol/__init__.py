"""The sans-I/O protocol core: session config, conversation state, barge-in, cost and retry policy.

Nothing in this package does I/O, reads a clock or the environment, or needs an event loop; time
and "how much was played" are arguments. ``ClientProtocol`` is the object applications use.
"""

from __future__ import annotations

from .app_events import (
    AppEvent,
    AudioChunk,
    AudioCut,
    FlushPlayback,
    LatencyMeasured,
    ProtocolViolation,
    RawServerEvent,
    ResponseFinished,
    ResponseStarted,
    ServerErrorEvent,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolCallFinished,
    ToolCallRequested,
    ToolCallsCancelled,
    ToolCallStarted,
    TranscriptUpdated,
)
from .client import ClientProtocol
from .conversation import Conversation, ItemView, ResponseState, ResponseView, TranscriptLine
from .cost import PRICE_TABLE, CostBreakdown, CostTracker, Prices, TurnCost, Usage, prices_for, turn_cost
from .events import ServerEvent, UnknownServerEvent, parse_server_event, serialize_client_event
from .retry import (
    RetryDecision,
    backoff_delays_s,
    classify_close,
    classify_error,
    classify_http_status,
    classify_server_error,
)
from .session_config import (
    AUDIO_FORMATS,
    VOICES,
    AgentProfile,
    AudioFormatSpec,
    InputTranscription,
    SemanticVad,
    ServerVad,
    check_ga_session,
)
from .truncation import samples_to_ms, truncate_audio_end_ms

__all__ = [
    "AUDIO_FORMATS",
    "PRICE_TABLE",
    "VOICES",
    "AgentProfile",
    "AppEvent",
    "AudioChunk",
    "AudioCut",
    "AudioFormatSpec",
    "ClientProtocol",
    "Conversation",
    "CostBreakdown",
    "CostTracker",
    "FlushPlayback",
    "InputTranscription",
    "ItemView",
    "LatencyMeasured",
    "Prices",
    "ProtocolViolation",
    "RawServerEvent",
    "ResponseFinished",
    "ResponseStarted",
    "ResponseState",
    "ResponseView",
    "RetryDecision",
    "SemanticVad",
    "ServerErrorEvent",
    "ServerEvent",
    "ServerVad",
    "SessionReady",
    "SpeechStarted",
    "SpeechStopped",
    "ToolCallFinished",
    "ToolCallRequested",
    "ToolCallStarted",
    "ToolCallsCancelled",
    "TranscriptLine",
    "TranscriptUpdated",
    "TurnCost",
    "UnknownServerEvent",
    "Usage",
    "backoff_delays_s",
    "check_ga_session",
    "classify_close",
    "classify_error",
    "classify_http_status",
    "classify_server_error",
    "parse_server_event",
    "prices_for",
    "samples_to_ms",
    "serialize_client_event",
    "truncate_audio_end_ms",
    "turn_cost",
]
