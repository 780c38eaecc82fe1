"""The ``realtalk.*`` extension events between the gateway and our browser UI (pure).

A client opts in with ``?realtalk_ui=1`` on the WebSocket URL; without it these events are neither
sent nor accepted. Gateway → UI:

* ``realtalk.session``: once the session is configured: our session id, the upstream kind
  (``emulator``/``azure``/``openai``), the deployment, the budget and the sample rate.
* ``realtalk.transcript``: the whole visible transcript, on every change (the assistant's lines
  cut to what was heard).
* ``realtalk.cost``: running and per-turn dollars, cache hit ratio, unheard audio, tokens; after
  every ``response.done``.
* ``realtalk.latency``: voice-to-voice latency of a turn.
* ``realtalk.notice``: something the UI should show (budget, shutdown, upstream lost, limits).
* ``realtalk.tool``: a tool the gateway runs started (``status: "running"``) or ended (``ok``,
  ``error``, ``timeout``, ``invalid_arguments``, ``unknown_tool``, ``cancelled``), with its name,
  ``duration_ms`` and what it cost on its own (``cost_usd``: a delegated question). Never its
  arguments or output: those stay between the gateway and the model.

UI → gateway (consumed by the gateway's protocol core, never forwarded):

* ``realtalk.playback`` ``{item_id, played_samples}``: the running total of samples of an item
  actually played (24 kHz), about every 100 ms.
* ``realtalk.flushed`` ``{item_id, played_samples}``: playback was flushed after
  ``input_audio_buffer.speech_started``; the core decides the ``conversation.item.truncate``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from realtalk.gateway.policy import Refusal
from realtalk.protocol import CostTracker, TranscriptLine, TurnCost

__all__ = [
    "PlaybackReport",
    "cost_message",
    "latency_message",
    "notice_message",
    "parse_playback_report",
    "session_message",
    "tool_message",
    "transcript_message",
]

PLAYBACK: Final = "realtalk.playback"
FLUSHED: Final = "realtalk.flushed"
_MAX_ITEM_ID_CHARS: Final = 128
_USD: Final = Decimal("0.000001")

NoticeLevel = Literal["info", "warning", "error"]


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def usd(value: Decimal) -> str:
    """Dollars as a string with 6 decimals (JSON numbers would lose Decimal precision)."""
    return str(value.quantize(_USD))


def session_message(
    *,
    session_id: str,
    upstream: str,
    deployment: str,
    budget_usd: Decimal,
    sample_rate_hz: int,
    upstream_session_id: str | None,
) -> str:
    return _dumps(
        {
            "type": "realtalk.session",
            "session_id": session_id,
            "upstream": upstream,
            "deployment": deployment,
            "budget_usd": str(budget_usd.quantize(Decimal("0.01"))),
            "sample_rate_hz": sample_rate_hz,
            "upstream_session_id": upstream_session_id,
        }
    )


def transcript_message(lines: Iterable[TranscriptLine]) -> str:
    return _dumps({"type": "realtalk.transcript", "lines": [asdict(line) for line in lines]})


def cost_message(costs: CostTracker, turn: TurnCost | None) -> str:
    ratio = costs.cache_hit_ratio
    return _dumps(
        {
            "type": "realtalk.cost",
            "total_usd": usd(costs.total_usd),
            "turn_usd": usd(turn.cost_usd) if turn is not None else usd(Decimal(0)),
            "cache_hit_ratio": round(ratio, 4) if ratio is not None else None,
            "unheard_usd": usd(costs.unheard_audio_usd),
            "tokens": asdict(costs.tokens),
        }
    )


def latency_message(response_id: str, voice_to_voice_ms: float, first_audio_received_ms: float | None) -> str:
    return _dumps(
        {
            "type": "realtalk.latency",
            "response_id": response_id,
            "voice_to_voice_ms": round(voice_to_voice_ms, 1),
            "first_audio_received_ms": round(first_audio_received_ms, 1)
            if first_audio_received_ms is not None
            else None,
        }
    )


def tool_message(
    call_id: str, name: str, status: str, *, duration_ms: float | None = None, cost_usd: Decimal | None = None
) -> str:
    return _dumps(
        {
            "type": "realtalk.tool",
            "call_id": call_id,
            "name": name,
            "status": status,
            "duration_ms": round(duration_ms, 1) if duration_ms is not None else None,
            "cost_usd": usd(cost_usd) if cost_usd is not None else None,
        }
    )


def notice_message(level: NoticeLevel, code: str, message: str) -> str:
    return _dumps({"type": "realtalk.notice", "level": level, "code": code, "message": message})


@dataclass(frozen=True)
class PlaybackReport:
    """A decoded ``realtalk.playback`` or ``realtalk.flushed``."""

    flushed: bool
    item_id: str
    played_samples: int


def parse_playback_report(event: Mapping[str, Any]) -> PlaybackReport | Refusal:
    """Check a UI playback report; a malformed one is refused like any invalid event."""
    kind = event.get("type")
    for name in event:
        if name not in ("type", "event_id", "item_id", "played_samples"):
            return Refusal("field_not_allowed", f"{kind} has no field {name!r}.", name)
    item_id = event.get("item_id")
    if not isinstance(item_id, str) or not 0 < len(item_id) <= _MAX_ITEM_ID_CHARS:
        return Refusal("invalid_value", f"{kind} needs the 'item_id' of an assistant item.", "item_id")
    played = event.get("played_samples")
    if not isinstance(played, int) or isinstance(played, bool) or played < 0:
        return Refusal(
            "invalid_value",
            f"{kind}: 'played_samples' must be the running total of samples played (>= 0).",
            "played_samples",
        )
    return PlaybackReport(kind == FLUSHED, item_id, played)
