"""Phone calls in ``realtalk serve`` (issue 17, item 2; §5): from the ringing webhook to the hangup.

Theory of operation. The upstream announces a call with a signed ``realtime.call.incoming``
webhook (``routes/sip.py`` verifies it, ``webhooks.py``) and waits for the app to ``accept``,
``reject`` or ``refer`` it over REST. The webhook is answered at once (Azure retries an answer that
is not 2xx, or is slow); ``SipCalls.ring`` only starts a task, and the task decides:

1. **who is calling** (``sip_policy.caller_from_headers``), masked from here on (``+1425…12``) in
   the log, the ledger (the session's user is ``sip:+1425…12``) and nowhere in metric labels;
2. **the profile's policy** (``sip_policy.SipPolicy.decide``): the blocklist, then the opening
   hours; a refusal is a ``reject`` with that reason's SIP status;
3. **the gateway's admission**, exactly as for a WebSocket client: its session limits (a full
   gateway answers *busy*), the caller's open calls and the daily budgets through the ledger (a
   spent budget answers *over budget*), a shutdown or an unreachable ledger (*unavailable*);
4. ``accept`` with the profile's session in G.711 µ-law (the phone network's codec, so the upstream
   transcodes nothing), the call's own tool added when the policy names a ``transfer_to``; then a
   ``SipCallSession`` runs on the call's sideband to the end: the profile's tools, pricing per turn,
   the session and daily budgets (a call over budget is hung up; the log and the ledger say why),
   the ledger with transport ``sip``, metrics and logs (``calls.py``).

What a SIP call adds to a ``CallSession``:

* **the greeting**: once the session is configured the gateway asks for the first response
  (§5.5: "a common first move"), with the policy's greeting as that response's extra instruction;
  the caller hears the agent first, as on any phone line;
* **DTMF** (``input_audio_buffer.dtmf_event_received``, SIP only): the keys reach the model as a
  user message, ``[The caller pressed 1 2 3 4 # on the phone keypad.]``, then a response. Keys
  are collected until ``#`` or ``dtmf_timeout_s`` without a key, the way a phone menu reads them:
  one message and one reply per entry, not a reply per digit talking over the next key press.
  The model decides what the keys mean (it has the instructions); the log and metrics count
  keys, never log them (they may be a PIN or a card number);
* **transfer_to_human**: a tool the model can call; it waits until the agent's current words have
  been played to the caller (``output_audio_buffer.stopped``; at most ``TRANSFER_WAIT_S``), then
  ``refer``s the call to the configured SIP or tel URI, and tells the model the transfer started.
  The upstream ends the agent's leg once the phone network has moved the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import Counter, Histogram

from realtalk.client.tools import Tool
from realtalk.gateway.auth import Principal
from realtalk.gateway.budgets import DailySpend
from realtalk.gateway.call_control import CallControl, CallControlError
from realtalk.gateway.calls import CallSession, call_session_config
from realtalk.gateway.sip_policy import Accept, CallerId, RejectReason, SipPolicy, caller_from_headers
from realtalk.gateway.state import GatewayState, HandshakeRefusal
from realtalk.gateway.webhooks import SeenWebhookIds, VerifiedWebhook, WebhookRefused, WebhookVerifier
from realtalk.protocol import SessionReady

__all__ = [
    "INCOMING_CALL",
    "TRANSFER_TOOL_NAME",
    "TRANSFER_WAIT_S",
    "SipCallSession",
    "SipCalls",
    "TransferToHuman",
    "sip_calls",
]

logger = logging.getLogger("realtalk.gateway.sip")

INCOMING_CALL: Final = "realtime.call.incoming"
TRANSFER_TOOL_NAME: Final = "transfer_to_human"
# How long a transfer waits for the agent's last words to be played before it refers anyway.
TRANSFER_WAIT_S: Final = 10.0
# After a function call, the playout of the same response's audio may start a moment later.
_PLAYOUT_GRACE_S: Final = 0.3
_CALL_IDS_KEPT_S: Final = 3600.0
_MAX_DTMF_DIGITS: Final = 64
_REFUSALS_LOGGED_PER_MINUTE: Final = 10
_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
_REFUSAL_REASONS: Final[Mapping[str, RejectReason]] = {
    "too_many_sessions": "busy",
    "daily_budget_exceeded": "over_budget",
}


class _Playout:
    """Which responses' audio the caller is hearing now (the sideband's ``output_audio_buffer.*``)."""

    def __init__(self) -> None:
        self._playing: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self, response_id: str) -> None:
        self._playing.add(response_id)
        self._idle.clear()

    def ended(self, response_id: str | None) -> None:
        if response_id is None:
            self._playing.clear()
        else:
            self._playing.discard(response_id)
        if not self._playing:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Whether playout went idle within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.sleep(_PLAYOUT_GRACE_S)
                await self._idle.wait()
                return True
        return False


class TransferToHuman:
    """The ``transfer_to_human`` tool of one call (a ``realtalk.client.tools.Tool``)."""

    name = TRANSFER_TOOL_NAME
    description = (
        "Transfer the caller to a human colleague. Use it when the caller asks for a person, or when "
        "you cannot help. Before calling it, tell the caller in one short sentence that you are "
        "putting them through."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "Why the caller is transferred, in a few words."}
        },
        "additionalProperties": False,
    }

    def __init__(
        self, call_id: str, target_uri: str, control: CallControl, playout: _Playout, calls: SipCalls
    ) -> None:
        self._call_id = call_id
        self._target = target_uri
        self._control = control
        self._playout = playout
        self._calls = calls
        self._referring: asyncio.Future[str] | None = None

    @property
    def timeout_s(self) -> float:
        return TRANSFER_WAIT_S + 30.0

    async def invoke(self, arguments: dict[str, Any]) -> str:
        if self._referring is None:
            reason = arguments.get("reason")
            # Shielded: the upstream may end the call (and this tool call with it) before it
            # answers the refer; the transfer is still seen through, logged and counted.
            self._referring = asyncio.ensure_future(self._refer(reason if isinstance(reason, str) else ""))
        elif self._referring.done():
            return "The transfer has already started; say nothing more."
        return await asyncio.shield(self._referring)

    async def _refer(self, reason: str) -> str:
        if not await self._playout.wait_idle(TRANSFER_WAIT_S):
            logger.info("call %s: transferring while the agent is still heard", self._call_id)
        try:
            await self._control.refer(self._call_id, self._target)
        except CallControlError as exc:
            logger.warning("call %s: the transfer failed: %s", self._call_id, exc)
            self._calls.count("failed", "refer_failed")
            self._referring = None  # the model may try again
            return (
                "The transfer failed: no colleague can be reached this way right now. Apologise, "
                "and offer to help further or to take a message."
            )
        logger.info("call %s referred to a human%s", self._call_id, f" ({reason[:200]})" if reason else "")
        self._calls.count("referred", "transfer_to_human")
        return "The transfer has started: the caller is being put through to a colleague. Say nothing more."


class SipCallSession(CallSession):
    """A ``CallSession`` for a phone call: the greeting and the keypad (see the module docstring)."""

    def __init__(
        self,
        state: GatewayState,
        call_id: str,
        subject: str,
        *,
        policy: SipPolicy,
        calls: SipCalls,
        playout: _Playout,
        caller: str,
        call_tools: Sequence[Tool],
        daily: DailySpend | None,
        session_id: str,
    ) -> None:
        assert state.services is not None and state.call_control is not None
        super().__init__(
            state.services,
            call_id,
            subject,
            control=state.call_control,
            transport="sip",
            daily=daily,
            session_id=session_id,
            caller=caller,
            call_tools=call_tools,
            audio_format="pcmu",
        )
        self._policy = policy
        self._sip_calls = calls
        self._playout = playout
        self._greeted = False
        self._digits: list[str] = []
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self.dtmf_keys = 0

    # -- the upstream's events (after CallSession's own handling) ---------------------------------

    def _upstream_event(self, data: bytes, received_s: float) -> None:
        if b'"input_audio_buffer.dtmf_event_received"' in data or b'"output_audio_buffer.' in data:
            self._sip_event(data)
        super()._upstream_event(data, received_s)

    def _sip_event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        response_id = event.get("response_id") if isinstance(event.get("response_id"), str) else None
        if kind == "output_audio_buffer.started" and response_id is not None:
            self._playout.started(response_id)
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self._playout.ended(response_id)
        elif kind == "input_audio_buffer.dtmf_event_received":
            self._key(event.get("event"))

    def _on_core_event(self, event: object) -> None:
        super()._on_core_event(event)
        if isinstance(event, SessionReady) and not self._greeted and self._ending is None:
            self._greeted = True
            self._greet()

    def _greet(self) -> None:
        greeting = self._policy.greeting
        if greeting is False:
            return
        if isinstance(greeting, str):
            base = self.agent.instructions or ""
            self._core.create_response(instructions=f"{base}\n\nFor this first turn of the call: {greeting}")
        else:
            self._core.create_response()
        self._flush_core_messages()
        self.log.info("call %s: greeting the caller", self.call_id)

    def _start_tool(self, call_id: str, name: str, arguments: str) -> None:
        super()._start_tool(call_id, name, arguments)
        if name == TRANSFER_TOOL_NAME:
            # The transfer waits for the agent's own words to be heard; a "one moment" filler in
            # that wait would be said to a caller being put through.
            self._stop_timer(call_id)

    # -- DTMF ---------------------------------------------------------------------------------------

    def _key(self, digit: object) -> None:
        if not isinstance(digit, str) or digit.upper() not in _DTMF_DIGITS or self._ending is not None:
            self._log_some(
                logging.WARNING, "bad dtmf", "call %s: a DTMF event without a key; ignored", self.call_id
            )
            return
        self.dtmf_keys += 1
        self._sip_calls.metrics.dtmf_digits.inc()
        if len(self._digits) < _MAX_DTMF_DIGITS:
            self._digits.append(digit.upper())
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        if digit == "#":
            self._send_keys()
        else:
            self._dtmf_timer = asyncio.get_running_loop().call_later(
                self._policy.dtmf_timeout_s, self._send_keys
            )

    def _send_keys(self) -> None:
        self._dtmf_timer = None
        keys, self._digits = self._digits, []
        if not keys or self._ending is not None:
            return
        self.log.info("call %s: the caller pressed %d keys; sent to the agent", self.call_id, len(keys))
        self._core.send_text(f"[The caller pressed {' '.join(keys)} on the phone keypad.]")
        self._flush_core()

    async def _close(self) -> None:
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        self._playout.ended(None)
        await super()._close()


class SipCalls:
    """The phone door of one gateway: the verifier, the policy, the calls' tasks, the metrics."""

    def __init__(self, state: GatewayState) -> None:
        config = state.config
        assert config.sip_webhook_secret is not None and config.sip is not None
        self.state = state
        self.policy = config.sip
        self.verifier = WebhookVerifier(config.sip_webhook_secret)
        self._call_ids = SeenWebhookIds(ttl_s=_CALL_IDS_KEPT_S)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusal_minute = -1
        self._refusals_logged = 0
        self.metrics = state.metrics
        registry = state.metrics.registry
        self.webhooks = Counter(
            "realtalk_gateway_sip_webhooks",
            "Webhook deliveries on /webhooks/realtime, by result (taken, ignored, or why refused).",
            ["result"],
            registry=registry,
        )
        self.answer_seconds = Histogram(
            "realtalk_gateway_sip_answer_seconds",
            "From the incoming-call webhook to the upstream's answer to accept or reject.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    def log_refusal(self, client: str, refused: WebhookRefused) -> None:
        """Log a refused delivery: the first ``_REFUSALS_LOGGED_PER_MINUTE`` of each minute (a
        sender of junk cannot flood the log; the metric counts every one)."""
        minute = int(time.monotonic() // 60)
        if minute != self._refusal_minute:
            self._refusal_minute, self._refusals_logged = minute, 0
        self._refusals_logged += 1
        if self._refusals_logged <= _REFUSALS_LOGGED_PER_MINUTE:
            more = (
                " (more this minute are counted, not logged)"
                if self._refusals_logged == _REFUSALS_LOGGED_PER_MINUTE
                else ""
            )
            logger.warning("webhook from %s refused: %s%s", client, refused, more)

    def count(self, decision: str, reason: str = "") -> None:
        """One call's decision (accepted, rejected, referred, failed) and its reason."""
        self.metrics.sip_decisions.labels(decision, reason).inc()

    def ring(self, webhook: VerifiedWebhook) -> str:
        """Take a verified delivery: ``"ringing"`` (a task decides the call) or ``"ignored"``."""
        data = webhook.event.get("data")
        call_id = data.get("call_id") if isinstance(data, dict) else None
        headers = data.get("sip_headers") if isinstance(data, dict) else None
        if webhook.event_type != INCOMING_CALL or not isinstance(call_id, str) or not call_id:
            return "ignored"
        if not self._call_ids.add(call_id):
            logger.info("call %s: announced again (webhook %s); already taken", call_id, webhook.webhook_id)
            return "ignored"
        sip_headers = [h for h in headers if isinstance(h, dict)] if isinstance(headers, list) else []
        task = asyncio.get_running_loop().create_task(self._answer(call_id, sip_headers, time.perf_counter()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "ringing"

    async def _answer(self, call_id: str, sip_headers: list[dict[str, Any]], rang_s: float) -> None:
        try:
            await self._decide(call_id, sip_headers, rang_s)
        except Exception:
            logger.exception("call %s: answering failed", call_id)
            self.count("failed", "error")

    async def _reject(self, call_id: str, caller: CallerId, reason: RejectReason, rang_s: float) -> None:
        control = self.state.call_control
        status = self.policy.reject_status[reason]
        logger.info("call %s from %s: rejected (%s, SIP %d)", call_id, caller.masked, reason, status)
        if control is None:
            return
        try:
            await control.reject(call_id, status)
        except CallControlError as exc:
            logger.warning("call %s: the rejection failed: %s", call_id, exc)
            self.count("failed", "reject_failed")
            return
        self.answer_seconds.observe(time.perf_counter() - rang_s)
        self.count("rejected", reason)

    async def _decide(self, call_id: str, sip_headers: list[dict[str, Any]], rang_s: float) -> None:
        state = self.state
        caller = caller_from_headers(sip_headers)
        decision = self.policy.decide(caller, datetime.now(UTC))
        if not isinstance(decision, Accept):
            await self._reject(call_id, caller, decision.reason, rang_s)
            return
        admission = state.admit_principal(Principal(f"sip:{caller.masked}", "signed"))
        if isinstance(admission, HandshakeRefusal):
            state.metrics.refused(admission.code)
            await self._reject(call_id, caller, _REFUSAL_REASONS.get(admission.code, "unavailable"), rang_s)
            return
        reservation = await state.reserve(admission)
        if isinstance(reservation, HandshakeRefusal):
            state.metrics.refused(reservation.code)
            await self._reject(call_id, caller, _REFUSAL_REASONS.get(reservation.code, "unavailable"), rang_s)
            return
        services, control = state.services, state.call_control
        try:
            if services is None or control is None or state.draining:
                raise CallControlError("accepting a call", None, "the gateway is shutting down")
            playout = _Playout()
            tools: list[TransferToHuman] = []
            if self.policy.transfer_to is not None:
                tools.append(TransferToHuman(call_id, self.policy.transfer_to, control, playout, self))
            await control.accept(
                call_id, call_session_config(services, call_tools=tools, audio_format="pcmu")
            )
        except CallControlError as exc:
            await state.give_back(admission, reservation)
            logger.warning("call %s from %s: not accepted: %s", call_id, caller.masked, exc)
            self.count("failed", "accept_failed")
            return
        except BaseException:
            await state.give_back(admission, reservation)
            raise
        self.answer_seconds.observe(time.perf_counter() - rang_s)
        self.count("accepted")
        logger.info("call %s from %s: accepted", call_id, caller.masked)
        try:
            session = SipCallSession(
                state,
                call_id,
                admission.principal.subject,
                policy=self.policy,
                calls=self,
                playout=playout,
                caller=caller.masked,
                call_tools=tools,
                daily=reservation.daily,
                session_id=admission.session_id,
            )
        except BaseException:
            # An answered call nobody watches would go unmetered: it is hung up.
            await state.give_back(admission, reservation)
            with contextlib.suppress(CallControlError):
                await control.hangup(call_id)
            raise
        state.track_call(session)
        await state.serve_call(session, admission, reservation)


def sip_calls(state: GatewayState, holder: Any) -> SipCalls | None:
    """The phone door of the gateway whose state is ``state``, made on first use and kept on
    ``holder`` (the app's ``state``); ``None`` when phone calls are not configured."""
    if state.config.sip is None or state.config.sip_webhook_secret is None:
        return None
    door = getattr(holder, "sip_calls", None)
    if not isinstance(door, SipCalls):
        door = SipCalls(state)
        holder.sip_calls = door
    return door
