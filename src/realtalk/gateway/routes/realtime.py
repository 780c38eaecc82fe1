"""``/openai/v1/realtime`` (and ``/v1/realtime``): the Realtime protocol, through the gateway.

The official SDK points here unchanged (``AsyncOpenAI(websocket_base_url="ws://HOST:PORT/openai/v1",
api_key=<gateway token>)``). ``?model=`` is accepted and ignored: the gateway serves one agent on
its configured deployment. A refused upgrade is an HTTP answer (403 Origin, 401 credentials, 429
limits, 503 shutting down or the ledger unreachable) and nothing is opened upstream. The retired preview path
(``/openai/realtime?api-version=...&deployment=...``) gets the 400 the emulator gives, which says
where to go instead (a bare 403 left users guessing).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from realtalk.gateway.routes import state_of
from realtalk.gateway.state import HandshakeRefusal

__all__ = ["router"]

router = APIRouter()

# While the gateway drains (a restart, a scale-in), a new client is told to come back after this.
RETRY_AFTER_S = 5


@router.websocket("/openai/v1/realtime")
@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    state = state_of(websocket)
    admission = state.admit(websocket)
    if isinstance(admission, HandshakeRefusal):
        await _refuse(websocket, admission)
        return
    reservation = await state.reserve(admission)
    if isinstance(reservation, HandshakeRefusal):
        await _refuse(websocket, reservation)
        return
    await state.serve(websocket, admission, reservation)


async def _refuse(websocket: WebSocket, refusal: HandshakeRefusal) -> None:
    state_of(websocket).metrics.refused(refusal.code)
    body = {"error": {"code": refusal.code, "message": refusal.message}}
    retry_after = refusal.retry_after_s or (RETRY_AFTER_S if refusal.status == 503 else None)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    await websocket.send_denial_response(JSONResponse(body, status_code=refusal.status, headers=headers))


PREVIEW_REFUSAL = (
    "The preview Realtime API (/openai/realtime?api-version=...&deployment=...) is not supported. "
    "Use the GA path /openai/v1/realtime?model=<deployment>, without api-version."
)


@router.websocket("/openai/realtime")
async def preview(websocket: WebSocket) -> None:
    state = state_of(websocket)
    state.metrics.refused("preview_api")
    body = {"error": {"code": "beta_api_shape_disabled", "message": PREVIEW_REFUSAL}}
    await websocket.send_denial_response(JSONResponse(body, status_code=400))
