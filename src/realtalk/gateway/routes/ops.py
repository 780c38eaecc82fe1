"""Operations: ``/healthz`` (the process answers), ``/readyz`` (credential and upstream reachable,
by a real handshake, cached a few seconds), ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from realtalk.gateway.auth import REFUSAL, header_token
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
    state = state_of(request)
    expected = state.config.metrics_token
    if expected is not None:
        # A scraper's own token (REALTALK_GATEWAY_METRICS_TOKEN), not a user's: counts of sessions,
        # refusals and dollars are the operator's business.
        found = header_token(request.headers)
        # Header values arrive latin-1 decoded: their bytes are what the scraper sent.
        sent = found[0].encode("latin-1", "replace") if found else b""
        if not hmac.compare_digest(sent, expected.encode("utf-8")):
            state.metrics.refused("metrics_unauthorized")
            body = {"error": {"code": "unauthorized", "message": REFUSAL}}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
