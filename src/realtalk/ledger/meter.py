"""``SessionMeter``: one session's billed responses, from the protocol core's events to the ledger.

``realtalk talk`` and ``realtalk serve`` make one per session and show it every event the core
emits; it writes the session's start, one row per ``response.done`` (``ResponseFinished`` with its
``TurnCost``, cancelled responses included: they are billed), and the session's end. Nothing here
waits: ``Ledger`` queues and commits in the background.

What a row can know at ``response.done`` is what it holds: the usage and cost exactly as the core
priced them, the audio generated, the voice-to-voice latency if it was measured by then, and what
tools cost since the previous row (a delegated question). How much of the audio was heard is only
known once a barge-in cuts it: a cut before ``response.done`` is in the row; a cut after it (the
usual case: the model generates faster than real time) updates the row's ``audio_heard_ms`` and
``unheard_audio_usd`` (``AudioCut``). A row whose audio was never cut keeps ``audio_heard_ms``
empty: played to the end, or the session ended first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from realtalk.ledger.records import ResponseHeard, ResponseRecord, SessionRecord
from realtalk.ledger.writer import Ledger
from realtalk.protocol.app_events import AudioCut, LatencyMeasured, ResponseFinished, ToolCallFinished
from realtalk.protocol.conversation import Conversation

__all__ = ["SessionMeter"]

logger = logging.getLogger(__name__)

_LATENCIES_KEPT: Final = 64


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SessionMeter:
    """Writes one session to the ledger as its events come (see the module docstring)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        session_id: str,
        user: str | None,
        deployment: str,
        pricing_model: str,
        transport: str,
        client: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.ledger = ledger
        self.session_id = session_id
        self._user = user
        self._deployment = deployment
        self._pricing_model = pricing_model
        self._clock = clock
        self._latency_ms: OrderedDict[str, float] = OrderedDict()
        self._written: OrderedDict[str, None] = OrderedDict()  # response ids with a row (recent)
        self._tools_usd = Decimal(0)
        self._ended = False
        self.responses_written = 0
        ledger.session_started(
            SessionRecord(session_id, user, deployment, pricing_model, transport, client, clock())
        )

    def tool_cost(self, cost_usd: Decimal) -> None:
        """What a tool cost on its own; it goes into the next response's row."""
        self._tools_usd += cost_usd

    def observe(self, event: object, conversation: Conversation) -> None:
        """Show the meter one event of the session's core (any other event is ignored)."""
        match event:
            case LatencyMeasured():
                self._latency_ms[event.response_id] = event.voice_to_voice_ms
                while len(self._latency_ms) > _LATENCIES_KEPT:
                    self._latency_ms.popitem(last=False)
            case ToolCallFinished():
                self.tool_cost(event.cost_usd)
            case ResponseFinished(turn_cost=turn) if turn is not None:
                generated_ms, heard_ms = _audio_ms(conversation, turn.response_id)
                record = ResponseRecord.from_turn(
                    turn,
                    session_id=self.session_id,
                    user=self._user,
                    deployment=self._deployment,
                    pricing_model=self._pricing_model,
                    created_at=self._clock(),
                    audio_generated_ms=generated_ms,
                    audio_heard_ms=heard_ms,
                    voice_to_voice_ms=self._latency_ms.pop(turn.response_id, None)
                    if turn.response_id
                    else None,
                    tools_usd=self._tools_usd,
                )
                self._tools_usd = Decimal(0)
                self.ledger.response_done(record)
                self.responses_written += 1
                if turn.response_id:
                    self._written[turn.response_id] = None
                    while len(self._written) > _LATENCIES_KEPT:
                        self._written.popitem(last=False)
            case AudioCut(turn_cost=turn) if turn is not None and event.response_id in self._written:
                _, heard_ms = _audio_ms(conversation, event.response_id)
                self.ledger.response_heard(
                    ResponseHeard(
                        self.session_id,
                        event.response_id,
                        audio_heard_ms=heard_ms if heard_ms is not None else event.heard_ms,
                        unheard_audio_usd=turn.unheard_audio_usd,
                    )
                )
            case _:
                pass

    def close(self, reason: str | None) -> None:
        """The session ended (once; later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        if self._tools_usd:
            logger.info("tool spend of $%s after the last response is not in the ledger", self._tools_usd)
        self.ledger.session_ended(self.session_id, self._clock(), reason)


def _audio_ms(conversation: Conversation, response_id: str | None) -> tuple[int, int | None]:
    """Audio generated by a response's items, and how much of it was heard if that is known yet."""
    generated = heard = 0
    known = False
    for item in conversation.items_of_response(response_id) if response_id else ():
        if item.audio_received_samples <= 0:
            continue
        rate = item.sample_rate_hz
        generated += item.audio_received_samples * 1000 // rate
        heard += item.audio_played_samples * 1000 // rate
        known = known or item.cut
    return generated, (heard if known else None)
