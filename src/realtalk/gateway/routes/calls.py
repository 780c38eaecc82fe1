"""WebRTC calls through the gateway (issue 17, item 1): the offer goes through, the media does not.

``POST /api/realtime/webrtc`` takes the browser's (or ``realtalk.client.webrtc``'s) SDP offer as
``application/sdp`` and answers ``201`` with the upstream's SDP answer and a ``Location`` whose
last segment is the call id, the shape of the upstream's own ``/realtime/calls`` (§4.2), so a
client written for Azure needs only another URL and its gateway token.

Why the gateway proxies the offer instead of handing the page a client secret: the ``ek_`` secret
would let the page open its *own* sessions with any instructions for as long as it lives, and the
gateway would not know their call ids, so it could not watch, meter or hang them up. Here the
gateway mints the secret with the profile's session, posts the offer itself, learns the call id
from the answer and attaches the sideband before the page has its answer; the secret never leaves
the server. The price is one HTTP round trip on setup, none on the audio path.

Authenticated and admitted exactly like the WebSocket (Origin, credentials, the session limits,
the per-user lease and the daily budget, in that order, before anything is opened upstream).

``GET /api/realtime/calls/{id}/events``: server-sent events with the gateway's ``realtalk.*``
messages for that call (cost, tools, notices, the ending); ``GET /api/realtime/calls/{id}``: its
state; ``DELETE``: hang it up. Only the call's own user gets any of them (others get 404).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from realtalk.gateway import extension
from realtalk.gateway.auth import REFUSAL, AuthFailure
from realtalk.gateway.call_control import CallControlError
from realtalk.gateway.calls import CallSession, call_session_config
from realtalk.gateway.endings import UPSTREAM_UNAVAILABLE_SENTENCE, Ending
from realtalk.gateway.routes import state_of
from realtalk.gateway.state import HandshakeRefusal

__all__ = ["MAX_OFFER_BYTES", "router"]

logger = logging.getLogger("realtalk.gateway.calls")

router = APIRouter(prefix="/api/realtime")

# A browser's offer is 3-8 KiB; anything far larger is not one.
MAX_OFFER_BYTES: Final = 64 * 1024
RETRY_AFTER_S: Final = 5
_SSE_KEEPALIVE_S: Final = 15.0
_tasks: set[asyncio.Task[None]] = set()
WEBRTC_UNAVAILABLE: Final = (
    "The service behind this gateway does not take WebRTC calls; connect over the WebSocket "
    "(/openai/v1/realtime) instead."
)


def _error(status: int, code: str, message: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _refused(request: Request, refusal: HandshakeRefusal) -> JSONResponse:
    state_of(request).metrics.refused(refusal.code)
    retry_after = refusal.retry_after_s or (RETRY_AFTER_S if refusal.status == 503 else None)
    return _error(refusal.status, refusal.code, refusal.message, retry_after)


@router.post("/webrtc")
async def start_webrtc_call(request: Request) -> Response:
    state = state_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        return _error(
            415,
            "unsupported_media_type",
            "Send the SDP offer as the body, with Content-Type: application/sdp.",
        )
    body = await request.body()
    if not body.strip() or len(body) > MAX_OFFER_BYTES:
        return _error(
            400,
            "invalid_offer",
            f"The body must be an SDP offer (v=0 ...) of at most {MAX_OFFER_BYTES // 1024} KiB.",
        )
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "invalid_offer", "The SDP offer is not UTF-8 text.")
    if not offer.lstrip().startswith("v=0"):
        return _error(400, "invalid_offer", "The body is not an SDP offer: it must start with v=0.")
    admission = state.admit_connection(request, ui=request.query_params.get("realtalk_ui") == "1")
    if isinstance(admission, HandshakeRefusal):
        return _refused(request, admission)
    reservation = await state.reserve(admission)
    if isinstance(reservation, HandshakeRefusal):
        return _refused(request, reservation)
    services = state.services
    assert services is not None and state.call_control is not None
    try:
        answer, call_id = await state.call_control.create_call(offer, call_session_config(services))
    except CallControlError as exc:
        await state.give_back(admission, reservation)
        logger.warning("WebRTC call for %s not started: %s", admission.principal.subject, exc)
        if exc.status == 400:  # the upstream refused the offer itself: the client can fix that
            return _error(400, "invalid_offer", f"The service refused the SDP offer: {exc.detail}")
        if exc.status in (404, 405):  # an upstream without the WebRTC door
            return _error(501, "webrtc_unavailable", WEBRTC_UNAVAILABLE)
        state.metrics.refused("upstream_unavailable")
        return _error(502, "upstream_unavailable", UPSTREAM_UNAVAILABLE_SENTENCE, RETRY_AFTER_S)
    except BaseException:
        await state.give_back(admission, reservation)
        raise
    session = state.call_session(call_id, admission, reservation, transport="webrtc")
    task = asyncio.get_running_loop().create_task(state.serve_call(session, admission, reservation))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return Response(
        answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/api/realtime/calls/{call_id}", "Cache-Control": "no-store"},
    )


def _own_call(request: Request) -> CallSession | Response:
    state = state_of(request)
    principal = state.authenticate(request)
    if isinstance(principal, AuthFailure):
        state.log_refusal(request, principal)
        return _error(401, "unauthorized", REFUSAL)
    session = state.calls.get(request.path_params["call_id"])
    if session is None or session.subject != principal.subject:
        return _error(
            404, "call_not_found", "No such call of yours (calls are kept a minute after they end)."
        )
    return session


def _call_state(session: CallSession) -> dict[str, object]:
    ending = session.feed.ended
    return {
        "call_id": session.call_id,
        "transport": session.transport,
        "session_id": session.id,
        "state": "ended" if session.closed.is_set() else "active",
        "ended": ending,
        "cost_usd": extension.usd(session.cost_usd),
        "locked_changes": session.locked_changes,
    }


@router.get("/calls/{call_id}")
async def call_state(request: Request) -> Response:
    session = _own_call(request)
    if isinstance(session, Response):
        return session
    return JSONResponse(_call_state(session), headers={"Cache-Control": "no-store"})


@router.delete("/calls/{call_id}")
async def hang_up(request: Request) -> Response:
    session = _own_call(request)
    if isinstance(session, Response):
        return session
    if not state_of(request).origin_ok(request):
        return _error(403, "origin_not_allowed", "this web origin may not use the gateway")
    session.end(Ending("client_closed", 1000, "hung up", 1000, "the client hung up"))
    await session.closed.wait()
    return JSONResponse(_call_state(session))


@router.get("/calls/{call_id}/events")
async def call_events(request: Request) -> Response:
    session = _own_call(request)
    if isinstance(session, Response):
        return session
    return StreamingResponse(
        _sse(session),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(session: CallSession) -> AsyncIterator[bytes]:
    async for text in session.feed.subscribe(keepalive_s=_SSE_KEEPALIVE_S):
        # A comment line now and then: proxies close streams that stay silent.
        yield b": keepalive\n\n" if text is None else f"data: {text}\n\n".encode()
