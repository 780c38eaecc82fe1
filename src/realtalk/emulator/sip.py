"""Simulated phone calls (§5): the incoming-call webhook, call control, and the caller's phone line.

Theory of operation. :func:`place_call` plays the phone network and the caller. It creates a
ringing SIP call (``calls.py``), sends the signed ``realtime.call.incoming`` webhook
(``webhook_signing.py``) and waits for the app's answer on the REST endpoints this module serves:

- ``POST /openai/v1/realtime/calls/{call_id}/accept`` (and ``/v1/...``): the body is a session
  object (``type: "realtime"`` required, checked like a client secret's session; ``model``
  defaults to the first deployment). Audio formats it leaves out are G.711 µ-law (``audio/pcmu``),
  the telephone's codec. The call's session starts before the 200, so the sideband
  (``?call_id=``) can attach as soon as the app has its answer.
- ``/reject``: ``{"status_code": 486}`` optional (default 603 Decline).
- ``/refer``: ``{"target_uri": "tel:..." | "sip:..."}``; on a ringing call it answers it with a
  transfer, on an active call it transfers the caller mid-call (the call leaves the agent).

All three answer 200 with an empty body; an unknown call 404; accept and reject on a call that is
not ringing 400. Auth: a configured key or bearer, never an ``ek_`` key.

Once the call is accepted, the *phone leg* runs one 20 ms tick at a time in real time, both
directions through G.711 µ-law at 8 kHz as a telephone line carries them: the caller's audio
(then silence) goes in with ``Call.feed_pcm24``; the agent's audio comes out of
``Call.next_output_frame`` (which is the call's playout clock) and is recorded as the caller heard
it. Scripted DTMF digits are pressed at their times. The call ends when the app hangs up (or the
session ends), or ``hangup_after_s`` after the caller's script (audio and digits) is over.

``POST /_emulator/calls`` lets a client of a running emulator (``realtalk emulate call``) place a
call and get its :class:`CallResult` back as JSON, the agent's audio as a base64 WAV.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import secrets
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from openai.types.realtime import RealtimeSessionCreateRequest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from realtalk.audio.g711 import G711_SAMPLE_RATE_HZ, ulaw_decode, ulaw_encode
from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ, pcm16_to_int16, read_wav, wav_bytes
from realtalk.audio.resample import StreamingResampler, resample
from realtalk.emulator import errors
from realtalk.emulator.calls import FRAME_BYTES, FRAME_MS, Call, CallDecision
from realtalk.emulator.errors import RealtimeApiError
from realtalk.emulator.session_config import apply_update, default_session
from realtalk.emulator.validation import check_value
from realtalk.emulator.webhook_signing import (
    WebhookDelivery,
    deliver_webhook,
    incoming_call_event,
    signing_key,
)

if TYPE_CHECKING:
    from realtalk.emulator.server import EmulatorState

__all__ = ["DTMF_DIGITS", "CallOutcome", "CallResult", "DtmfPress", "place_call", "routes"]

logger = logging.getLogger(__name__)

CallOutcome = Literal["accepted", "rejected", "referred", "no_answer", "webhook_failed"]

DTMF_DIGITS = "0123456789*#ABCD"
_DEFAULT_REJECT_STATUS = 603  # §5.5: Decline
_MAX_CATCH_UP_FRAMES = 5  # behind by more: skip ahead, as a jitter buffer would drop late frames
_MAX_CONTROL_BODY_BYTES = 64 * 1024 * 1024
_WEBHOOK_GRACE_S = 5.0  # a decided call waits this long for the webhook's answer in flight
_SIP_DOMAIN = "sip.example.com"

# Calls transferred mid-call (refer on an active call): the target, for place_call's result.
_MID_CALL_REFERS: weakref.WeakKeyDictionary[Call, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class DtmfPress:
    """A key the caller presses ``at_s`` seconds after the call is answered."""

    digit: str
    at_s: float

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DTMF_DIGITS:
            raise ValueError(f"a DTMF digit is one of {DTMF_DIGITS}, got {self.digit!r}")
        if not self.at_s >= 0:
            raise ValueError(f"a DTMF time must be >= 0 s, got {self.at_s}")


@dataclass(frozen=True)
class CallResult:
    """How a simulated phone call went.

    ``outcome``: what the app decided (``accepted``, ``rejected``, ``referred``), or that it did
    not answer in time (``no_answer``) or never took the webhook (``webhook_failed``).
    ``status_code``: the SIP status of a rejection. ``refer_target``: where a refer sent the caller
    (also mid-call, after an accept). ``ended_by``: what ended the call: ``hangup`` (the app's
    REST call), ``session`` (its limit, or it closed), ``caller`` (hung up, or gave up ringing),
    ``reject``, ``refer``. ``agent_audio``: 24 kHz PCM16 mono, what the
    caller heard (after G.711). ``duration_s``: from the answer to the end (0 when never answered).
    ``webhook_attempts``/``webhook_status``: deliveries tried, and the last HTTP status.
    """

    call_id: str
    outcome: CallOutcome
    status_code: int | None
    refer_target: str | None
    ended_by: str | None
    agent_audio: bytes
    duration_s: float
    webhook_attempts: int
    webhook_status: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as JSON, the agent's audio as ``agent_wav_base64`` (a 24 kHz mono WAV)."""
        return {
            "call_id": self.call_id,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "refer_target": self.refer_target,
            "ended_by": self.ended_by,
            "duration_s": round(self.duration_s, 3),
            "webhook_attempts": self.webhook_attempts,
            "webhook_status": self.webhook_status,
            "agent_audio_ms": len(self.agent_audio) // (WIRE_SAMPLE_RATE_HZ * 2 // 1000),
            "agent_wav_base64": base64.b64encode(wav_bytes(self.agent_audio)).decode("ascii"),
        }


def _sip_uri(number: str) -> str:
    return number if number.startswith(("sip:", "sips:", "tel:")) else f"sip:{number}@{_SIP_DOMAIN}"


async def place_call(
    state: EmulatorState,
    *,
    webhook_url: str,
    webhook_secret: str,
    caller_pcm24: bytes,
    from_number: str,
    to_number: str,
    dtmf: Sequence[DtmfPress] = (),
    answer_timeout_s: float = 30,
    hangup_after_s: float | None = None,
    max_recording_s: float = 600,
) -> CallResult:
    """Ring the app at ``webhook_url`` and, once it accepts, be the caller (see the module doc).

    ``caller_pcm24``: what the caller says, 24 kHz PCM16 mono. Raises ``ValueError`` for an
    unusable webhook secret, before anything is sent.
    """
    signing_key(webhook_secret)  # an unusable secret: ValueError, and no call rings
    sip_headers = [
        {"name": "From", "value": _sip_uri(from_number)},
        {"name": "To", "value": _sip_uri(to_number)},
        {"name": "Call-ID", "value": f"{secrets.token_hex(12)}@{_SIP_DOMAIN}"},
    ]
    call = state.calls.create("sip", sip_headers=sip_headers)
    event = incoming_call_event(call.id, sip_headers, created_at=int(time.time()))
    progress = _DeliveryProgress()
    delivery_task = asyncio.create_task(
        deliver_webhook(
            webhook_url,
            webhook_secret,
            event,
            should_retry=lambda: not call.decision.done() and not call.ended.is_set(),
            on_attempt=progress.update,
        )
    )
    deliveries = _Deliveries(delivery_task, progress)
    try:
        decision = await _wait_for_decision(call, delivery_task, answer_timeout_s)
        if decision is None:
            delivery = delivery_task.result() if delivery_task.done() else None
            failed = delivery is not None and not delivery.delivered
            outcome: CallOutcome = "webhook_failed" if failed else "no_answer"
            await call.hangup("caller")
            return await _result(call, outcome, deliveries, grace_s=0)
        if decision.kind == "reject":
            await call.hangup("reject")
            return await _result(call, "rejected", deliveries, status_code=decision.status_code)
        if decision.kind == "refer":
            await call.hangup("refer")
            return await _result(call, "referred", deliveries, refer_target=decision.target_uri)
        leg = _PhoneLeg(call, caller_pcm24, dtmf, hangup_after_s, max_recording_s)
        answered_at = time.monotonic()
        await leg.run()
        target = _MID_CALL_REFERS.get(call)
        return await _result(
            call,
            "referred" if target is not None else "accepted",
            deliveries,
            refer_target=target,
            agent_audio=bytes(leg.recording),
            duration_s=time.monotonic() - answered_at,
        )
    finally:
        if not call.ended.is_set():  # cancelled or failed: leave nothing running
            await call.hangup("caller")
        if not delivery_task.done():
            delivery_task.cancel()
            await asyncio.gather(delivery_task, return_exceptions=True)


async def _wait_for_decision(
    call: Call, delivery_task: asyncio.Task[Any], answer_timeout_s: float
) -> CallDecision | None:
    """The app's decision; ``None`` when the webhook failed or nobody answered in time.

    The app may answer before its webhook response (it calls /accept, then returns 200), so the
    decision is awaited alongside the delivery, not after it.
    """
    deadline = time.monotonic() + answer_timeout_s
    waiting: set[asyncio.Future[Any]] = {call.decision, delivery_task}
    while not call.decision.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if delivery_task in waiting and delivery_task.done():
            waiting.discard(delivery_task)
            if not call.decision.done() and not delivery_task.result().delivered:
                return None
    return call.decision.result()


class _DeliveryProgress:
    """How far the webhook's delivery got, also when it is cancelled mid-attempt."""

    def __init__(self) -> None:
        self.attempts = 0
        self.status_code: int | None = None

    def update(self, attempt: int, status_code: int | None) -> None:
        self.attempts = attempt
        self.status_code = status_code


@dataclass(frozen=True)
class _Deliveries:
    task: asyncio.Task[WebhookDelivery]
    progress: _DeliveryProgress

    async def finish(self, grace_s: float) -> tuple[int, int | None]:
        """(attempts, last status): the attempt in flight gets ``grace_s`` to end, then is dropped.

        It stops retrying once the call is decided or over; an app that answers its webhook only
        after deciding has a moment to do so.
        """
        if not self.task.done() and grace_s > 0:
            await asyncio.wait({self.task}, timeout=grace_s)
        if self.task.done() and not self.task.cancelled() and self.task.exception() is None:
            delivery = self.task.result()
            return delivery.attempts, delivery.status_code
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return self.progress.attempts, self.progress.status_code


async def _result(
    call: Call,
    outcome: CallOutcome,
    deliveries: _Deliveries,
    *,
    grace_s: float = _WEBHOOK_GRACE_S,
    status_code: int | None = None,
    refer_target: str | None = None,
    agent_audio: bytes = b"",
    duration_s: float = 0.0,
) -> CallResult:
    attempts, webhook_status = await deliveries.finish(grace_s)
    return CallResult(
        call_id=call.id,
        outcome=outcome,
        status_code=status_code,
        refer_target=refer_target,
        ended_by=call.ended_by,
        agent_audio=agent_audio,
        duration_s=duration_s,
        webhook_attempts=attempts,
        webhook_status=webhook_status,
    )


class _PhoneLeg:
    """The caller's telephone line of one accepted call: 20 ms frames each way, in real time."""

    def __init__(
        self,
        call: Call,
        caller_pcm24: bytes,
        dtmf: Sequence[DtmfPress],
        hangup_after_s: float | None,
        max_recording_s: float,
    ) -> None:
        self.call = call
        # The caller's side as the network carries it: 8 kHz µ-law, back to 24 kHz at the far end.
        narrowband = ulaw_decode(
            ulaw_encode(resample(caller_pcm24, WIRE_SAMPLE_RATE_HZ, G711_SAMPLE_RATE_HZ))
        )
        self._caller = resample(narrowband, G711_SAMPLE_RATE_HZ, WIRE_SAMPLE_RATE_HZ)
        self._presses = sorted(dtmf, key=lambda p: p.at_s)
        script_end_s = max(len(self._caller) / (WIRE_SAMPLE_RATE_HZ * 2), *(p.at_s for p in dtmf), 0.0)
        self._hangup_at_s = None if hangup_after_s is None else script_end_s + hangup_after_s
        self._down = StreamingResampler(WIRE_SAMPLE_RATE_HZ, G711_SAMPLE_RATE_HZ)
        self._up = StreamingResampler(G711_SAMPLE_RATE_HZ, WIRE_SAMPLE_RATE_HZ)
        self._max_recording_bytes = int(max_recording_s * WIRE_SAMPLE_RATE_HZ) * 2
        self.recording = bytearray()
        call.recorded_output_pcm24 = self.recording

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        frame = 0
        pressed = 0
        while not self.call.ended.is_set():
            late_s = loop.time() - (start + frame * FRAME_MS / 1000)
            if late_s < 0:
                await asyncio.sleep(-late_s)
                continue
            if late_s > _MAX_CATCH_UP_FRAMES * FRAME_MS / 1000:
                start += late_s  # the event loop stalled: carry on from now rather than burst
            elapsed_s = frame * FRAME_MS / 1000
            while pressed < len(self._presses) and self._presses[pressed].at_s <= elapsed_s:
                await self.call.dtmf(self._presses[pressed].digit)
                pressed += 1
            if self._hangup_at_s is not None and elapsed_s >= self._hangup_at_s:
                await self.call.hangup("caller")
                return
            await self._tick(frame)
            frame += 1

    async def _tick(self, frame: int) -> None:
        offset = frame * FRAME_BYTES
        heard = self._caller[offset : offset + FRAME_BYTES]
        await self.call.feed_pcm24(heard + bytes(FRAME_BYTES - len(heard)))
        played = self.call.next_output_frame()
        line = ulaw_decode(ulaw_encode(self._down.process(played)))
        if len(self.recording) < self._max_recording_bytes:
            self.recording += self._up.process(line)[: self._max_recording_bytes - len(self.recording)]


# --- call control (REST) --------------------------------------------------------------------------


def _error(status: int, error: RealtimeApiError) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=status)


def _authorized(request: Request) -> EmulatorState | JSONResponse:
    # Imported here: server.py imports this module to register its routes.
    from realtalk.emulator.server import _authenticate

    state: EmulatorState = request.app.state.emulator
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=False)
    return auth if isinstance(auth, JSONResponse) else state


def _call_not_found(call_id: str) -> JSONResponse:
    return _error(
        404,
        RealtimeApiError("call_not_found", f"Call '{call_id}' not found.", param="call_id"),
    )


def _not_ringing(call: Call, action: str) -> JSONResponse:
    return _error(
        400,
        RealtimeApiError(
            "call_not_ringing",
            f"Call '{call.id}' is {call.state}: only a ringing call can be {action}.",
            param="call_id",
        ),
    )


async def _json_object(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise errors.not_an_object()
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.invalid_json(str(exc)) from None
    if not isinstance(body, dict):
        raise errors.not_an_object()
    return body


async def _lookup(request: Request) -> tuple[EmulatorState, Call] | JSONResponse:
    state = _authorized(request)
    if isinstance(state, JSONResponse):
        return state
    call_id = request.path_params["call_id"]
    call = state.calls.get(call_id)
    if call is None or call.transport != "sip":
        return _call_not_found(call_id)
    return state, call


def _telephone_session(state: EmulatorState, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model, session update) of an accept body; raises the API's error for a bad one."""
    if "type" not in body:
        raise errors.missing_required_parameter("type")
    check_value(body, RealtimeSessionCreateRequest, "")
    default_model = state.config.deployments[0] if state.config.deployments else "gpt-realtime-1.5"
    model = str(body.get("model") or default_model)
    update = copy.deepcopy({k: v for k, v in body.items() if k != "model"})
    audio = update.setdefault("audio", {}) or {}
    update["audio"] = audio
    for direction in ("input", "output"):
        side = audio.setdefault(direction, {}) or {}
        audio[direction] = side
        if side.get("format") is None:
            side["format"] = {"type": "audio/pcmu"}  # the telephone's codec, unless the app says otherwise
    apply_update(default_session("sess_check", model, 0), update, audio_produced=False)
    return model, update


async def _accept(request: Request) -> Response:
    found = await _lookup(request)
    if isinstance(found, JSONResponse):
        return found
    state, call = found
    if call.state != "ringing":
        return _not_ringing(call, "accepted")
    try:
        body = await _json_object(request, required=True)
        model, update = _telephone_session(state, body)
    except RealtimeApiError as exc:
        return _error(400, exc)
    if not state.config.accepts_deployment(model):
        from realtalk.emulator.server import _DEPLOYMENT_NOT_FOUND, _azure_error

        return _azure_error(404, "DeploymentNotFound", _DEPLOYMENT_NOT_FOUND)
    if call.state != "ringing" or call.decision.done():  # decided while the body was read
        return _not_ringing(call, "accepted")
    await call.start_session(model, update)
    call.decision.set_result(CallDecision("accept", session=body))
    return Response(status_code=200)


async def _reject(request: Request) -> Response:
    found = await _lookup(request)
    if isinstance(found, JSONResponse):
        return found
    _, call = found
    if call.state != "ringing":
        return _not_ringing(call, "rejected")
    try:
        body = await _json_object(request, required=False)
        for key in body:
            if key != "status_code":
                raise errors.unknown_parameter(key)
        status = body.get("status_code", _DEFAULT_REJECT_STATUS)
        if not isinstance(status, int) or isinstance(status, bool):
            raise errors.invalid_type("status_code", "an integer", "another type")
        if not 400 <= status <= 699:
            raise errors.invalid_value_message(
                "status_code", f"status_code must be a SIP failure status (400-699), got {status}."
            )
    except RealtimeApiError as exc:
        return _error(400, exc)
    if call.decision.done():
        return _not_ringing(call, "rejected")
    call.state = "rejected"
    call.decision.set_result(CallDecision("reject", status_code=status))
    return Response(status_code=200)


def _check_target_uri(body: dict[str, Any]) -> str:
    for key in body:
        if key != "target_uri":
            raise errors.unknown_parameter(key)
    if "target_uri" not in body:
        raise errors.missing_required_parameter("target_uri")
    target = body["target_uri"]
    if not isinstance(target, str):
        raise errors.invalid_type("target_uri", "a string", "another type")
    scheme, _, rest = target.partition(":")
    if scheme not in ("tel", "sip", "sips") or not rest.strip():
        raise errors.invalid_value_message(
            "target_uri", f"target_uri must be a tel: or sip: URI, like tel:+14155550123, got '{target}'."
        )
    return target


async def _refer(request: Request) -> Response:
    found = await _lookup(request)
    if isinstance(found, JSONResponse):
        return found
    _, call = found
    if call.state not in ("ringing", "active"):
        return _not_ringing(call, "referred (or, when active, transferred)")
    try:
        target = _check_target_uri(await _json_object(request, required=True))
    except RealtimeApiError as exc:
        return _error(400, exc)
    if call.state == "ringing" and not call.decision.done():
        call.state = "referred"
        call.decision.set_result(CallDecision("refer", target_uri=target))
    elif call.state == "active":
        _MID_CALL_REFERS[call] = target  # the caller is transferred: the agent's leg ends
        await call.hangup("refer")
        call.state = "referred"
    else:
        return _not_ringing(call, "referred")
    return Response(status_code=200)


# --- placing a call on a running emulator ---------------------------------------------------------


def _parse_control_body(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    known = {"webhook_url", "webhook_secret", "wav_base64", "from", "to", "dtmf"}
    known |= {"hangup_after_s", "answer_timeout_s"}
    for key in body:
        if key not in known:
            raise errors.unknown_parameter(key)
    url = body.get("webhook_url") or state.config.webhook_url
    secret = body.get("webhook_secret") or state.config.webhook_secret
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise errors.invalid_value_message(
            "webhook_url",
            "No webhook URL: send webhook_url (http:// or https://), or start the emulator with "
            "--webhook-url (REALTALK_EMULATOR_WEBHOOK_URL).",
        )
    if not isinstance(secret, str) or not secret:
        raise errors.invalid_value_message(
            "webhook_secret",
            "No webhook secret: send webhook_secret, or start the emulator with --webhook-secret "
            "(REALTALK_EMULATOR_WEBHOOK_SECRET).",
        )
    if not isinstance(body.get("wav_base64"), str):
        raise errors.missing_required_parameter("wav_base64")
    try:
        pcm, rate_hz, channels = read_wav(base64.b64decode(body["wav_base64"], validate=True))
    except (binascii.Error, ValueError, EOFError) as exc:
        message = str(exc) if isinstance(exc, ValueError) and "16-bit" in str(exc) else "not a WAV file"
        raise errors.invalid_value_message("wav_base64", f"wav_base64: {message}.") from None
    if channels > 1:  # the caller has one mouth: mix down
        frames = pcm16_to_int16(pcm)[: len(pcm) // (2 * channels) * channels].reshape(-1, channels)
        pcm = frames.mean(axis=1).astype("<i2").tobytes()
    presses: list[DtmfPress] = []
    for index, press in enumerate(body.get("dtmf") or []):
        if not isinstance(press, dict) or not isinstance(press.get("at_s", 0), int | float):
            raise errors.invalid_type(f"dtmf[{index}]", 'an object {"digit", "at_s"}', "another type")
        try:
            presses.append(DtmfPress(str(press.get("digit", "")), float(press.get("at_s", 0))))
        except ValueError as exc:
            raise errors.invalid_value_message(f"dtmf[{index}]", f"{exc}.") from None
    options: dict[str, Any] = {}
    for name in ("hangup_after_s", "answer_timeout_s"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise errors.invalid_value_message(name, f"{name} must be a number of seconds >= 0.")
            options[name] = float(value)
    return {
        "webhook_url": url,
        "webhook_secret": secret,
        "caller_pcm24": resample(pcm, rate_hz, WIRE_SAMPLE_RATE_HZ),
        "from_number": str(body.get("from") or "+14255550123"),
        "to_number": str(body.get("to") or "+18005550100"),
        "dtmf": presses,
        **options,
    }


async def _place_call_endpoint(request: Request) -> Response:
    state = _authorized(request)
    if isinstance(state, JSONResponse):
        return state
    if int(request.headers.get("content-length") or 0) > _MAX_CONTROL_BODY_BYTES:
        return _error(
            413, errors.invalid_value_message("wav_base64", "The WAV is too large (64 MiB at most).")
        )
    try:
        arguments = _parse_control_body(state, await _json_object(request, required=True))
        result = await place_call(state, **arguments)
    except RealtimeApiError as exc:
        return _error(400, exc)
    except ValueError as exc:  # the webhook secret is unusable (the message never quotes it)
        return _error(400, errors.invalid_value_message("webhook_secret", f"{exc}."))
    return JSONResponse(result.to_json())


def routes() -> list[BaseRoute]:
    """The call-control endpoints and ``POST /_emulator/calls``, for ``build_app``."""
    found: list[BaseRoute] = []
    for prefix in ("/openai/v1", "/v1"):
        for action, handler in (("accept", _accept), ("reject", _reject), ("refer", _refer)):
            found.append(Route(f"{prefix}/realtime/calls/{{call_id}}/{action}", handler, methods=["POST"]))
    found.append(Route("/_emulator/calls", _place_call_endpoint, methods=["POST"]))
    return found
