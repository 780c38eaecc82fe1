"""The emulator's ASGI application: the Realtime WebSocket, the REST endpoints, and the handshake.

Routes (§1, §4.1 of the protocol notes):

- ``GET /openai/v1/realtime?model=<deployment>`` (Azure GA) and ``/v1/realtime?model=`` (OpenAI
  form): the Realtime WebSocket. Auth by an ``api-key`` header, an ``api-key`` query parameter or
  ``Authorization: Bearer`` (a configured key, or an ``ek_`` key minted here). Refusals are HTTP
  responses to the upgrade request (the ASGI "websocket.http.response" extension), with Azure's
  JSON bodies: 401 for missing or bad credentials, 404 ``DeploymentNotFound``, and 400 for the
  retired preview path ``/openai/realtime?api-version=...`` or an ``OpenAI-Beta`` header, naming the
  GA path.
- ``POST /openai/v1/realtime/client_secrets`` (and ``/v1/...``): mint an ephemeral key.
- ``POST /openai/v1/responses``, ``GET`` and ``DELETE /openai/v1/responses/{id}`` (and ``/v1/...``):
  the Responses API, stateful (``responses_api.py``); auth as for the handshake, ``ek_`` keys
  excepted; 404 ``DeploymentNotFound`` for an unknown ``model``.
- ``GET /openai/v1/realtime?call_id=rtc_...`` (and ``/v1/...``): a sideband WebSocket on a WebRTC
  or SIP call (``calls.py``): ``session.created`` with the call's current session, then every event
  of the call; its client events go to the call. Auth as the handshake, ``ek_`` keys excepted; 404
  ``CallNotFound`` for an unknown call, 400 for one still ringing or ended.
- ``POST /openai/v1/realtime/calls`` (and ``/v1/...``): a WebRTC call (``webrtc.py``): an SDP offer
  as ``application/sdp`` with ``Authorization: Bearer ek_...`` (the minted key's model and session),
  or ``multipart/form-data`` with parts ``sdp`` and ``session`` (JSON) and a configured key. 201,
  the SDP answer, ``Location: /v1/realtime/calls/rtc_...``; ``?webrtcfilter=on`` narrows what the
  data channel carries (§4.2). ``POST .../calls/{call_id}/hangup``
  ends a call (200).
- ``GET /healthz``.

The WebSocket loop runs two tasks per connection: a reader that hands each frame to the
:class:`RealtimeSession`, and a writer that drains its :class:`Outbox`. When either ends (the
client left; the session closed or dropped the connection) the other is cancelled and the
session's own tasks are stopped.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from openai.types.realtime import RealtimeSessionCreateRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtalk.emulator import errors, sip
from realtalk.emulator.calls import Call, CallRegistry
from realtalk.emulator.client_secrets import MAX_TTL_S, MIN_TTL_S, ClientSecrets, MintedSecret
from realtalk.emulator.config import DEFAULT_DEPLOYMENTS, EmulatorConfig
from realtalk.emulator.engines import Engines
from realtalk.emulator.errors import RealtimeApiError
from realtalk.emulator.events import new_id
from realtalk.emulator.outbox import Close, Drop, Outbox
from realtalk.emulator.responder import EchoResponder, Responder
from realtalk.emulator.responses_api import (
    DEFAULT_TEXT_DEPLOYMENTS,
    ResponsesApi,
    Turn,
    closing_events,
    encode_sse,
    opening_events,
)
from realtalk.emulator.responses_request import ResponsesApiError, invalid_json_body, parse_request
from realtalk.emulator.session import RealtimeSession
from realtalk.emulator.session_config import apply_update, default_session
from realtalk.emulator.stats import EmulatorStats, SessionRecord
from realtalk.emulator.validation import check_value

__all__ = ["EmulatorState", "build_app"]

logger = logging.getLogger(__name__)

_ABORT_KEY = "realtalk.emulator.abort"
GA_PATH = "/openai/v1/realtime?model=<deployment>"

# Azure's bodies for refused requests (§1.5; the 401 texts are Azure API Management's).
_MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when making "
    "requests to an API."
)
_INVALID_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
_EXPIRED_TOKEN = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)
_DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)


@dataclass
class EmulatorState:
    """What the app of one emulator instance shares between its connections (read-mostly)."""

    config: EmulatorConfig
    engines: Engines
    stats: EmulatorStats
    secrets: ClientSecrets
    responder_factory: Callable[[], Responder]
    responses: ResponsesApi
    calls: CallRegistry


def _azure_error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"apim-request-id": str(uuid.uuid4()), "x-ms-region": "local-emulator"}
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _openai_error(status: int, error: RealtimeApiError) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=status)


Credential = tuple[str, Literal["api-key", "bearer", "query"]]


def _credential(headers: Any, query: Any) -> Credential | None:
    if headers.get("api-key"):
        return headers["api-key"], "api-key"
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer " and authorization[7:].strip():
        return authorization[7:].strip(), "bearer"
    if query.get("api-key"):
        return query["api-key"], "query"
    return None


def _credential_bytes(value: str) -> bytes:
    # Header values arrive decoded as latin-1 and query values as UTF-8: any str encodes (lone
    # surrogates included), so any bytes a client sends end in a comparison, never an exception.
    return value.encode("utf-8", "surrogatepass")


def _is_configured_key(keys: tuple[str, ...], value: str) -> bool:
    """Whether ``value`` is one of ``keys``, in time independent of where they differ."""
    candidate = _credential_bytes(value)
    found = False
    for key in keys:  # every key is compared: which one matched does not show in the timing
        found |= hmac.compare_digest(candidate, key.encode("utf-8"))
    return found


def _authenticate(
    state: EmulatorState, headers: Any, query: Any, *, allow_ephemeral: bool
) -> tuple[str, MintedSecret | None] | JSONResponse:
    """(credential kind, minted secret if ``ek_``) or the 401 to send."""
    found = _credential(headers, query)
    if found is None:
        return _azure_error(401, "401", _MISSING_KEY)
    value, kind = found
    if value.startswith("ek_"):
        minted = state.secrets.lookup(_credential_bytes(value)) if allow_ephemeral else None
        return ("ephemeral", minted) if minted is not None else _azure_error(401, "401", _INVALID_KEY)
    if state.config.keys and not _is_configured_key(state.config.keys, value):
        return _azure_error(401, "401", _INVALID_KEY)
    return kind, None


# --- the WebSocket -------------------------------------------------------------------------------


async def _realtime(websocket: WebSocket) -> None:
    state: EmulatorState = websocket.app.state.emulator
    connection_number = state.stats.handshake()
    if websocket.query_params.get("call_id"):
        await _sideband(websocket, state, connection_number)
        return
    refusal = _refuse_handshake(state, websocket, connection_number)
    if isinstance(refusal, JSONResponse):
        state.stats.reject(refusal.status_code)
        await websocket.send_denial_response(refusal)
        return
    kind, minted, model = refusal
    await websocket.accept()
    record = state.stats.open_session(SessionRecord(new_id("sess"), model, kind))
    outbox = Outbox()
    session = RealtimeSession(
        model=model,
        config=state.config,
        engines=state.engines,
        responder=state.responder_factory(),
        outbox=outbox,
        record=record,
        notify=state.stats.notify,
        initial_update=minted.session_update if minted is not None else None,
    )
    try:
        await _pump(websocket, session, outbox, record)
    finally:
        state.stats.close_session(record)


def _refuse_upgrade(
    state: EmulatorState, websocket: WebSocket, connection_number: int
) -> JSONResponse | None:
    """What every Realtime upgrade is refused for first: the beta header, a scripted 401."""
    if websocket.headers.get("openai-beta"):
        return _azure_error(
            400,
            "beta_api_shape_disabled",
            f"The Realtime Beta API is no longer supported (OpenAI-Beta header). Use the GA API: {GA_PATH}.",
        )
    if state.config.effective_faults.rejects(connection_number):
        return _azure_error(401, "401", _EXPIRED_TOKEN)
    return None


def _refuse_handshake(
    state: EmulatorState, websocket: WebSocket, connection_number: int
) -> tuple[str, MintedSecret | None, str] | JSONResponse:
    refused = _refuse_upgrade(state, websocket, connection_number)
    if refused is not None:
        return refused
    auth = _authenticate(state, websocket.headers, websocket.query_params, allow_ephemeral=True)
    if isinstance(auth, JSONResponse):
        return auth
    kind, minted = auth
    model = websocket.query_params.get("model") or (minted.model if minted is not None else "")
    if not model:
        return _azure_error(
            400, "BadRequest", f"Missing required query parameter 'model'. Connect with {GA_PATH}."
        )
    if not state.config.accepts_deployment(model):
        return _azure_error(404, "DeploymentNotFound", _DEPLOYMENT_NOT_FOUND)
    return kind, minted, model


# --- the sideband of a call (?call_id=) ----------------------------------------------------------


def _refuse_sideband(
    state: EmulatorState, websocket: WebSocket, connection_number: int
) -> Call | JSONResponse:
    refused = _refuse_upgrade(state, websocket, connection_number)
    if refused is not None:
        return refused
    # A sideband is the server's: an ek_ key (the browser's) does not open one.
    auth = _authenticate(state, websocket.headers, websocket.query_params, allow_ephemeral=False)
    if isinstance(auth, JSONResponse):
        return auth
    call_id = websocket.query_params["call_id"]
    call = state.calls.get(call_id)
    if call is None:
        return _azure_error(
            404,
            "CallNotFound",
            f"Call '{call_id}' not found. Use the call id from the Location header of POST /realtime/calls "
            "or from the realtime.call.incoming webhook.",
        )
    if call.state == "ringing":
        return _azure_error(
            400, "BadRequest", f"Call '{call_id}' is still ringing: accept it before attaching a sideband."
        )
    if call.session is None or call.ended.is_set() or call.state != "active":
        return _azure_error(400, "BadRequest", f"Call '{call_id}' has ended ({call.state}).")
    return call


class _SocketChannel:
    """A sideband WebSocket as a :class:`CallChannel`: a bounded queue drained by one writer."""

    MAX_QUEUED_EVENTS = 4096

    def __init__(self) -> None:
        self._queue: deque[dict[str, Any]] = deque()
        self._closing: tuple[int, str] | None = None
        self._wake = asyncio.Event()

    def send_event(self, event: dict[str, Any]) -> None:
        if self._closing is not None:
            return
        if len(self._queue) >= self.MAX_QUEUED_EVENTS:
            # Dropping events would leave the server with a wrong picture of the call: close instead.
            self.close(1008, "The sideband did not read its events; closing it.")
            return
        self._queue.append(event)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._wake.set()

    async def drain(self, websocket: WebSocket) -> None:
        try:
            while True:
                while self._queue:
                    event = self._queue.popleft()
                    await websocket.send_text(json.dumps(event, separators=(",", ":")))
                if self._closing is not None:
                    await websocket.close(*self._closing)
                    return
                self._wake.clear()
                await self._wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return


async def _sideband(websocket: WebSocket, state: EmulatorState, connection_number: int) -> None:
    found = _refuse_sideband(state, websocket, connection_number)
    if isinstance(found, JSONResponse):
        state.stats.reject(found.status_code)
        await websocket.send_denial_response(found)
        return
    call = found
    await websocket.accept()
    state.stats.sideband_attached()
    channel = _SocketChannel()
    call.attach_sideband(channel)
    writer = asyncio.create_task(channel.drain(websocket))
    reader = asyncio.create_task(_read_sideband(websocket, call))
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        call.detach(channel)
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)


async def _read_sideband(websocket: WebSocket, call: Call) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await call.receive(message["text"])
        elif message.get("bytes") is not None and call.session is not None:
            await call.session.receive_bytes()


async def _preview(websocket: WebSocket) -> None:
    state: EmulatorState = websocket.app.state.emulator
    state.stats.handshake()
    state.stats.reject(400)
    await websocket.send_denial_response(
        _azure_error(
            400,
            "beta_api_shape_disabled",
            "The preview Realtime API (/openai/realtime?api-version=...&deployment=...) is not supported. "
            f"Use the GA path {GA_PATH}, without api-version.",
        )
    )


async def _pump(
    websocket: WebSocket, session: RealtimeSession, outbox: Outbox, record: SessionRecord
) -> None:
    writer = asyncio.create_task(_write(websocket, outbox, record))
    reader: asyncio.Task[None] | None = None
    try:
        await session.start()
        reader = asyncio.create_task(_read(websocket, session, record))
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        tasks = [t for t in (reader, writer) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.aclose()


async def _read(websocket: WebSocket, session: RealtimeSession, record: SessionRecord) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            if record.close_code is None:
                record.close_code = message.get("code")
                record.close_reason = message.get("reason") or ""
            return
        if message.get("text") is not None:
            await session.receive(message["text"])
        elif message.get("bytes") is not None:
            await session.receive_bytes()


async def _write(websocket: WebSocket, outbox: Outbox, record: SessionRecord) -> None:
    try:
        while True:
            message = await outbox.get()
            if isinstance(message, Close):
                record.close_code, record.close_reason = message.code, message.reason
                await websocket.close(message.code, message.reason)
                return
            if isinstance(message, Drop):
                record.dropped = True
                _abort(websocket)
                return
            await websocket.send_text(json.dumps(message, separators=(",", ":")))
            record.server_event(message["type"])
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the client went away while we were sending: nothing more to do


def _abort(websocket: WebSocket) -> None:
    abort = websocket.scope.get(_ABORT_KEY)
    if callable(abort):
        abort()


class _TransportAccess:
    """Outermost ASGI layer: lets a connection be aborted without a close frame (the drop fault).

    ASGI has no "abort" message, so this reaches the server's transport through the ``receive``
    callable uvicorn passes (a bound method of its protocol object). Without it the drop degrades
    to nothing (the writer returns and the app ends the connection normally).
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(receive, "__self__", None)
            transport = getattr(protocol, "transport", None)
            if transport is not None and hasattr(transport, "abort"):
                scope = {**scope, _ABORT_KEY: transport.abort}
        await self.app(scope, receive, send)


# --- REST ----------------------------------------------------------------------------------------


async def _client_secrets(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=False)
    if isinstance(auth, JSONResponse):
        return auth
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _openai_error(400, errors.invalid_json(str(exc)))
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return _openai_error(400, errors.not_an_object())
    try:
        ttl_s, model, update = _check_mint_request(state, body)
        session = apply_update(default_session(new_id("sess"), model, 0), update, audio_produced=False)
    except RealtimeApiError as exc:
        return _openai_error(400, exc)
    if not state.config.accepts_deployment(model):
        return _azure_error(404, "DeploymentNotFound", _DEPLOYMENT_NOT_FOUND)
    secret = state.secrets.mint(ttl_s=ttl_s, model=model, session_update=update)
    state.stats.client_secrets_minted += 1
    state.stats.notify()
    return JSONResponse({"value": secret.value, "expires_at": secret.expires_at, "session": session})


def _check_mint_request(state: EmulatorState, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    for key in body:
        if key not in ("expires_after", "session"):
            raise errors.unknown_parameter(key)
    ttl_s = state.config.client_secret_ttl_s
    expires_after = body.get("expires_after")
    if expires_after is not None:
        if not isinstance(expires_after, dict):
            raise errors.invalid_type("expires_after", "an object", "another type")
        for key in expires_after:
            if key not in ("anchor", "seconds"):
                raise errors.unknown_parameter(f"expires_after.{key}")
        if expires_after.get("anchor", "created_at") != "created_at":
            raise errors.invalid_value("expires_after.anchor", expires_after["anchor"], ("created_at",))
        seconds = expires_after.get("seconds", ttl_s)
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise errors.invalid_type("expires_after.seconds", "an integer", "another type")
        if seconds < MIN_TTL_S:
            raise errors.below_min_value("expires_after.seconds", MIN_TTL_S, seconds, integer=True)
        if seconds > MAX_TTL_S:
            raise errors.above_max_value("expires_after.seconds", MAX_TTL_S, seconds, integer=True)
        ttl_s = seconds
    session = body.get("session") or {"type": "realtime"}
    if not isinstance(session, dict):
        raise errors.invalid_type("session", "an object", "another type")
    if "type" not in session:
        raise errors.missing_required_parameter("session.type")
    check_value(session, RealtimeSessionCreateRequest, "session")
    default_model = state.config.deployments[0] if state.config.deployments else "gpt-realtime-1.5"
    model = str(session.get("model") or default_model)
    update = {k: v for k, v in session.items() if k != "model"}
    return ttl_s, model, update


# --- calls: WebRTC (§4.2) and hangup -------------------------------------------------------------


def _bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> JSONResponse:
    return _openai_error(400, RealtimeApiError(code, message, param=param))


async def _create_call(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=True)
    if isinstance(auth, JSONResponse):
        return auth
    kind, minted = auth
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        if minted is not None:
            return _bad_request(
                "A multipart offer (sdp + session) is authenticated with the server's key, not an "
                "ephemeral ek_ key; send the SDP alone as application/sdp with the ek_ key instead."
            )
        try:
            async with request.form(max_files=2, max_fields=4) as form:
                sdp_part = form.get("sdp")
                session_part = form.get("session")
                offer = await _form_text(sdp_part)
                session_text = await _form_text(session_part)
        except Exception as exc:  # a malformed multipart body
            return _bad_request(
                f"The multipart body could not be read ({type(exc).__name__}): "
                "send parts 'sdp' and 'session'."
            )
        if session_text is None:
            return _openai_error(400, errors.missing_required_parameter("session"))
        try:
            session_body = json.loads(session_text)
        except ValueError as exc:
            return _openai_error(400, errors.invalid_json(str(exc)))
        if not isinstance(session_body, dict):
            return _openai_error(400, errors.not_an_object())
        try:
            _, model, update = _check_mint_request(state, {"session": session_body})
            apply_update(default_session(new_id("sess"), model, 0), update, audio_produced=False)
        except RealtimeApiError as exc:
            return _openai_error(400, exc)
    elif content_type == "application/sdp":
        offer = (await request.body()).decode("utf-8", "replace")
        if minted is not None:
            model, update = minted.model, minted.session_update
        else:  # the server's own key and a bare offer: the default session
            model = request.query_params.get("model") or (
                state.config.deployments[0] if state.config.deployments else "gpt-realtime-1.5"
            )
            update = {}
    else:
        return _bad_request(
            f"Unsupported Content-Type '{content_type or '(none)'}': send the SDP offer as application/sdp "
            "(with an ek_ key), or multipart/form-data with parts 'sdp' and 'session'.",
        )
    if not offer or not offer.strip():
        return _bad_request("Missing SDP offer: the request body (or its 'sdp' part) is empty.", "sdp")
    if not offer.lstrip().startswith("v=0"):
        return _bad_request(
            "Invalid SDP offer: it must start with 'v=0' (an SDP session description).", "sdp", "invalid_sdp"
        )
    if not state.config.accepts_deployment(model):
        return _azure_error(404, "DeploymentNotFound", _DEPLOYMENT_NOT_FOUND)
    try:
        from realtalk.emulator import webrtc
    except ImportError as exc:  # aiortc is an optional dependency of the emulator's WebRTC door
        logger.warning("emulator: WebRTC unavailable: %r", exc)
        return _openai_error(
            501,
            RealtimeApiError(
                "webrtc_unavailable",
                "This emulator has no WebRTC support: install aiortc (pip install aiortc).",
            ),
        )
    call = state.calls.create("webrtc")
    try:
        await call.start_session(model, update or None, credential_kind=kind)
        filtered = request.query_params.get("webrtcfilter", "").lower() == "on"
        answer = await webrtc.answer(call, offer, filtered=filtered)
    except webrtc.BadOffer as exc:
        await call.hangup("session")
        return _bad_request(f"Invalid SDP offer: {exc}", "sdp", "invalid_sdp")
    except BaseException:
        await call.hangup("session")
        raise
    return Response(
        answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def _form_text(part: Any) -> str | None:
    if part is None:
        return None
    if isinstance(part, str):
        return part
    data = await part.read()
    return bytes(data).decode("utf-8", "replace")


async def _hangup(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=False)
    if isinstance(auth, JSONResponse):
        return auth
    call_id = request.path_params["call_id"]
    call = state.calls.get(call_id)
    if call is None:
        return _openai_error(
            404, RealtimeApiError("call_not_found", f"Call '{call_id}' not found.", param="call_id")
        )
    await call.hangup("hangup")  # an ended call: nothing to do, and still 200
    return Response(status_code=200)


# --- the Responses API (§7) -----------------------------------------------------------------------


def _responses_error(error: ResponsesApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _accepts_responses_model(config: EmulatorConfig, model: str) -> bool:
    # The default deployments are realtime models: a default emulator also takes the usual text-model
    # deployment names here. A configured list is exact, as for the handshake.
    if config.deployments == DEFAULT_DEPLOYMENTS and model in DEFAULT_TEXT_DEPLOYMENTS:
        return True
    return config.accepts_deployment(model)


async def _responses_create(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    state.stats.responses_request()
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=False)
    if isinstance(auth, JSONResponse):
        return auth
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _responses_error(invalid_json_body())
    model = body.get("model") if isinstance(body, dict) else None
    if isinstance(model, str) and model and not _accepts_responses_model(state.config, model):
        return _azure_error(404, "DeploymentNotFound", _DEPLOYMENT_NOT_FOUND)
    try:
        turn = state.responses.begin(parse_request(body), created_at=int(time.time()))
    except ResponsesApiError as exc:
        return _responses_error(exc)
    if turn.request.stream and turn.error is None:
        return StreamingResponse(
            _response_events(state.responses, turn),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )
    if not await _client_waits(request, turn.delay_ms):
        return Response(status_code=499)  # the client left: nobody reads this
    if turn.error is not None:  # a scripted failure: an HTTP error, streamed or not
        return _responses_error(turn.error)
    return JSONResponse(state.responses.finish(turn, completed_at=int(time.time())))


async def _response_events(responses: ResponsesApi, turn: Turn) -> AsyncIterator[bytes]:
    for event in opening_events(turn):
        yield encode_sse(event)
    if turn.delay_ms > 0:
        # The model's time to first token. A client that leaves cancels this (Starlette listens).
        await asyncio.sleep(turn.delay_ms / 1000)
    finished = responses.finish(turn, completed_at=int(time.time()))
    for event in closing_events(turn, finished):
        yield encode_sse(event)


async def _client_waits(request: Request, delay_ms: int) -> bool:
    """Wait ``delay_ms``; False as soon as the client has gone, so a timed-out call frees its handler."""
    if delay_ms <= 0:
        return True

    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(client_left())
    done, _ = await asyncio.wait({watcher}, timeout=delay_ms / 1000)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    return not done


async def _response_by_id(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    auth = _authenticate(state, request.headers, request.query_params, allow_ephemeral=False)
    if isinstance(auth, JSONResponse):
        return auth
    response_id = request.path_params["response_id"]
    try:
        if request.method == "DELETE":
            return JSONResponse(state.responses.delete(response_id))
        return JSONResponse(state.responses.retrieve(response_id))
    except ResponsesApiError as exc:
        return _responses_error(exc)


async def _healthz(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    return JSONResponse(
        {
            "status": "ok",
            "active_sessions": state.stats.active_sessions,
            "sessions": state.stats.connections_accepted,
            "deployments": list(state.config.deployments),
        }
    )


def build_app(
    config: EmulatorConfig,
    engines: Engines,
    *,
    stats: EmulatorStats | None = None,
    responder_factory: Callable[[], Responder] | None = None,
) -> _TransportAccess:
    """The ASGI app of one emulator instance."""
    if responder_factory is None:
        scenario = config.scenario
        responder_factory = scenario.responder if scenario is not None else EchoResponder
    app = Starlette(
        routes=[
            WebSocketRoute("/openai/v1/realtime", _realtime),
            WebSocketRoute("/v1/realtime", _realtime),
            WebSocketRoute("/openai/realtime", _preview),
            Route("/openai/v1/realtime/client_secrets", _client_secrets, methods=["POST"]),
            Route("/v1/realtime/client_secrets", _client_secrets, methods=["POST"]),
            Route("/openai/v1/realtime/calls", _create_call, methods=["POST"]),
            Route("/v1/realtime/calls", _create_call, methods=["POST"]),
            Route("/openai/v1/realtime/calls/{call_id}/hangup", _hangup, methods=["POST"]),
            Route("/v1/realtime/calls/{call_id}/hangup", _hangup, methods=["POST"]),
            *sip.routes(),
            Route("/openai/v1/responses", _responses_create, methods=["POST"]),
            Route("/v1/responses", _responses_create, methods=["POST"]),
            Route("/openai/v1/responses/{response_id}", _response_by_id, methods=["GET", "DELETE"]),
            Route("/v1/responses/{response_id}", _response_by_id, methods=["GET", "DELETE"]),
            Route("/healthz", _healthz, methods=["GET"]),
        ]
    )
    stats = stats or EmulatorStats()
    app.state.emulator = EmulatorState(
        config=config,
        engines=engines,
        stats=stats,
        secrets=ClientSecrets(),
        responder_factory=responder_factory,
        responses=ResponsesApi(config.scenario.responses if config.scenario is not None else ()),
        calls=CallRegistry(config=config, engines=engines, stats=stats, responder_factory=responder_factory),
    )
    return _TransportAccess(app)
