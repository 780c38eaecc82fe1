"""Operations: ``/healthz`` (the process answers), ``/readyz`` (credential and upstream reachable,
by a real handshake, cached a few seconds), ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from realtalk.gateway.metrics import CONTENT_TYPE_LATEST
from realtalk.gateway.routes import state_of

__all__ = ["router"]

router = APIRouter()

NOT_READY = "The upstream Realtime service is not reachable."


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    state = state_of(request)
    return JSONResponse({"status": "ok", "sessions": len(state.sessions), "draining": state.draining})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    if state.draining or state.probe is None:
        return JSONResponse({"ready": False, "detail": "The gateway is shutting down."}, status_code=503)
    ready, _logged = await state.probe.check()  # the detail names the upstream: the log has it
    if ready:
        return JSONResponse({"ready": True, "detail": "ready"})
    return JSONResponse({"ready": False, "detail": NOT_READY}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
