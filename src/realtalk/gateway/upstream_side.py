"""The upstream's side of a gateway session: its events, through the protocol core, to the client.

Audio deltas in the documented shape are forwarded as the bytes that came (framing.py); every
other event is parsed once, shown to the session's ``ClientProtocol`` (which prices each
``response.done`` against the budget, keeps the audio timeline, and answers ``session.created``
with the profile's authoritative ``session.update``), and forwarded, ``session.created`` and
``session.updated`` redacted. An upstream that stays unwritable for ``upstream_stall_s`` ends the
session: while the client's reading is paused for it, the gateway could not see the client leave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from picows import WSMsgType, WSTransport

from realtalk.gateway import extension
from realtalk.gateway.endings import LIMIT_SENTENCES, RESERVED_CLOSE_CODES, Ending
from realtalk.gateway.extension import NoticeLevel
from realtalk.gateway.framing import match_audio_delta
from realtalk.gateway.metrics import UPSTREAM_TO_CLIENT
from realtalk.gateway.policy import Refusal, SessionView, redact_session_event
from realtalk.protocol import (
    AUDIO_FORMATS,
    LatencyMeasured,
    ProtocolViolation,
    ResponseFinished,
    SessionReady,
    ToolCallRequested,
    ToolCallsCancelled,
    TranscriptUpdated,
)

if TYPE_CHECKING:
    from realtalk.gateway.budgets import DailySpend
    from realtalk.gateway.channels import ClientChannel
    from realtalk.gateway.fastpath import FastPath
    from realtalk.gateway.limits import Limits
    from realtalk.gateway.logs import SessionLog
    from realtalk.gateway.metrics import Traffic
    from realtalk.gateway.relay import SessionServices
    from realtalk.ledger.meter import SessionMeter
    from realtalk.protocol import ClientProtocol

__all__ = ["UpstreamSide"]

_TEXT: Final = WSMsgType.TEXT


class UpstreamSide:
    """``GatewaySession``'s upstream half (a mixin: the session's state is declared in relay.py)."""

    if TYPE_CHECKING:
        id: str
        ui: bool
        log: SessionLog
        _svc: SessionServices
        _limits: Limits
        _client: ClientChannel | None
        _upstream: WSTransport | None
        _upstream_close: tuple[int, str] | None
        _core: ClientProtocol
        _traffic: Traffic
        _fast: FastPath | None
        _ending: Ending | None
        _configured: bool
        _upstream_stall_timer: asyncio.TimerHandle | None
        _view: SessionView
        _core_event_ids: deque[str]
        _server_tools: frozenset[str]
        _meter: SessionMeter | None
        _daily: DailySpend | None

        def failed(self, exc: Exception) -> None: ...
        def _end(self, ending: Ending) -> None: ...
        def _fast_state(self) -> None: ...
        def _check_idle(self) -> None: ...
        def _log_some(self, level: int, kind: str, msg: str, *args: object) -> None: ...
        def _pause_client(self, why: str) -> None: ...
        def _resume_client(self, why: str) -> None: ...
        def _release_held(self) -> None: ...
        def _send_client(self, text: str) -> None: ...
        def _tool_filter(self, event: dict[str, Any], event_type: str, outgoing: bytes) -> bytes | None: ...
        def _start_tool(self, call_id: str, name: str, arguments: str) -> None: ...
        def _cancel_tools(self, call_ids: tuple[str, ...], reason: str) -> None: ...

    def _upstream_send(self, data: bytes) -> None:
        upstream = self._upstream
        if upstream is not None and not upstream.is_close_frame_sent:
            upstream.send(_TEXT, data)

    def upstream_connected(self, transport: WSTransport) -> None:
        self._upstream = transport
        if self._fast is not None:
            self._fast.set_upstream(transport)

    def upstream_text(self, data: bytes) -> None:
        if self._ending is not None:
            return
        try:
            received_s = perf_counter()
            delta = match_audio_delta(data)
            if delta is None:
                self._upstream_event(data, received_s)
                return
            # The fast path: an audio delta, forwarded as the bytes that came. UI sessions do not get
            # audio the core already flushed or cut (it would be played late).
            if self._core.receive_audio_delta(*delta, received_s) or not self.ui:
                client = self._client
                if client is not None:
                    client.send_text(data)
                self._traffic.delta(len(data), perf_counter() - received_s)
            else:
                self._traffic.delta(len(data), None)
        except Exception as exc:  # a bug must end this session, not the server
            self.failed(exc)

    def upstream_closed(self, code: int | None, reason: str) -> None:
        """The upstream sent a close frame (``code``), or the connection was lost (``None``)."""
        if self._upstream_close is None:
            self._upstream_close = (code or 1006, reason)
        self._end(self._upstream_ending())

    def upstream_writable(self, writable: bool) -> None:
        """The upstream's send buffer crossed its high-water mark (``False``) or drained (``True``).

        Full: the client's reading pauses (what it sends would only add to it), and a timer starts:
        an upstream that stays full for ``upstream_stall_s`` is not reading, and the session ends
        (client 1011). While reading is paused the gateway cannot see the client leave, so
        without this a stalled upstream would hold the session, and the client's slot, for ever."""
        if writable:
            if self._upstream_stall_timer is not None:
                self._upstream_stall_timer.cancel()
                self._upstream_stall_timer = None
            self._resume_client("upstream")
        else:
            self._pause_client("upstream")
            if self._upstream_stall_timer is None and self._ending is None:
                self._upstream_stall_timer = asyncio.get_running_loop().call_later(
                    self._limits.upstream_stall_s, self._upstream_stalled
                )

    def _upstream_stalled(self) -> None:
        self._upstream_stall_timer = None
        text = LIMIT_SENTENCES["upstream_not_reading"].format(limit=self._limits.upstream_stall_s)
        self.log.warning("upstream not reading for %g s: session ended", self._limits.upstream_stall_s)
        self._end(
            Ending(
                "upstream_not_reading",
                1011,
                text,
                1001,
                "the gateway stopped waiting for the service to read",
                error=Refusal("upstream_not_reading", text),
                notice=("error", "upstream_not_reading", text),
            )
        )

    def _upstream_ending(self) -> Ending:
        code, reason = self._upstream_close or (1006, "")
        if code in RESERVED_CLOSE_CODES:
            text = f"upstream connection lost ({code})"
            return Ending("upstream_lost", 1011, text, notice=("error", "upstream_lost", text))
        text = reason or f"upstream closed the session ({code})"
        level: NoticeLevel = "info" if code == 1000 else "warning"
        return Ending("upstream_closed", code, text, notice=(level, "upstream_closed", text))

    def _upstream_event(self, data: bytes, received_s: float) -> None:
        traffic = self._traffic
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            self._log_some(
                logging.WARNING, "upstream not JSON", "upstream sent a frame that is not UTF-8 JSON; dropped"
            )
            return
        if not isinstance(event, dict):
            self._log_some(
                logging.WARNING, "upstream not an object", "upstream sent JSON that is not an object; dropped"
            )
            return
        event_type = event.get("type")
        outgoing: bytes | None = data
        if event_type in ("session.created", "session.updated"):
            redacted = redact_session_event(event, self._server_tools)
            outgoing = json.dumps(redacted, separators=(",", ":")).encode()
            session = event.get("session")
            if isinstance(session, dict):
                self._view.current = session  # what a client may echo back as a no-op
                if isinstance(model := session.get("model"), str):
                    self._view.models.add(model)
        elif event_type == "error":
            outgoing = self._upstream_error(event, data)
        elif outgoing is not None and isinstance(event_type, str):
            outgoing = self._tool_filter(event, event_type, outgoing)
        self._core.receive_event(event, received_s)
        created = event_type == "session.created"
        if created:
            self.log.upstream_session_id = self._core.session_id
            self.log.info("upstream session created")
            self._flush_core_messages()
            self._configured = True
            self._fast_state()
        if outgoing is not None:
            self._client_send_bytes(outgoing)
            traffic.latency(1, perf_counter() - received_s)
        traffic.event(UPSTREAM_TO_CLIENT, event_type)
        traffic.bytes[1] += len(data)
        self._flush_core()
        if created:
            self._release_held()
        self._check_idle()

    def _client_send_bytes(self, data: bytes) -> None:
        client = self._client
        if client is not None:
            client.send_text(data)

    def _upstream_error(self, event: dict[str, Any], data: bytes) -> bytes | None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        assert isinstance(error, dict)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        self._svc.metrics.upstream_error(code)
        if error.get("event_id") in self._core_event_ids:
            # An answer to the gateway's own event (its session.update, a truncate): the client did
            # not send it, and some SDKs treat an unknown error as fatal. Logged, not forwarded.
            self.log.warning("upstream refused the gateway's own event: %s: %s", code, error.get("message"))
            return None
        return data

    # -- the core's outputs -------------------------------------------------------------------------

    def _flush_core(self) -> None:
        self._flush_core_messages()
        for event in self._core.events_received():
            self._on_core_event(event)
            if self._ending is not None:
                return

    def _flush_core_messages(self) -> None:
        for frame in self._core.messages_to_send():
            event_id = json.loads(frame).get("event_id")
            if isinstance(event_id, str):
                self._core_event_ids.append(event_id)
            self._upstream_send(frame.encode())

    def _on_core_event(self, event: object) -> None:
        metrics = self._svc.metrics
        if self._meter is not None:
            self._meter.observe(event, self._core.conversation)
        match event:
            case SessionReady():
                self.log.info("session configured")
                if self.ui:
                    config = self._svc.config
                    self._send_client(
                        extension.session_message(
                            session_id=self.id,
                            upstream=self._svc.upstream.kind,
                            deployment=self._svc.upstream.endpoint.deployment,
                            budget_usd=config.limits.budget_usd,
                            sample_rate_hz=AUDIO_FORMATS[config.profile.agent.output_format].sample_rate_hz,
                            upstream_session_id=self._core.session_id,
                        )
                    )
            case TranscriptUpdated(lines=lines) if self.ui:
                self._send_client(extension.transcript_message(lines))
            case ResponseFinished(turn_cost=turn):
                if turn is not None:
                    metrics.turn(turn)
                if self.ui:
                    self._send_client(extension.cost_message(self._core.costs, turn))
                self._check_budget()
            case LatencyMeasured():
                metrics.voice_to_voice.observe(event.voice_to_voice_ms / 1000)
                if self.ui:
                    self._send_client(
                        extension.latency_message(
                            event.response_id, event.voice_to_voice_ms, event.first_audio_received_ms
                        )
                    )
            case ToolCallRequested():
                self._start_tool(event.call_id, event.name, event.arguments)
            case ToolCallsCancelled():
                self._cancel_tools(event.call_ids, event.reason)
            case ProtocolViolation():
                self._log_some(
                    logging.WARNING, "upstream violation", "upstream protocol violation: %s", event.error
                )
            case _:
                pass

    def _check_budget(self) -> None:
        budget = self._limits.budget_usd
        spent = self._core.costs.total_usd
        daily = self._daily.exceeded(spent) if self._daily is not None else None
        if daily is not None:
            assert self._daily is not None
            text = self._daily.sentence(daily)
            self.log.warning("daily budget of %s reached: session ended", daily.name)
            self._end(
                Ending(
                    "daily_budget",
                    1008,
                    text,
                    1000,
                    "daily budget reached",
                    error=Refusal("daily_budget_exceeded", text),
                    notice=("error", "daily_budget_exceeded", text),
                )
            )
            return
        if budget <= 0 or spent < budget:
            return
        text = f"session budget of ${budget} reached (spent ${extension.usd(spent)})"
        self.log.warning("%s", text)
        self._end(
            Ending(
                "budget",
                1008,
                text,
                1000,
                "session budget reached",
                error=Refusal("budget_exceeded", f"The {text}; the session ends."),
                notice=("error", "budget_exceeded", f"The {text}."),
            )
        )
