"""``POST /webhooks/realtime``: the upstream's incoming-call webhook (issue 17, item 2; §5.3).

Glue only: read the raw body (bounded), verify it (``webhooks.py``: signature, timestamp, replay),
hand a ``realtime.call.incoming`` to ``SipCalls.ring`` (``sip.py``), and answer at once: the call is
decided in a task, so the upstream gets its 200 within milliseconds (§5.3: answer 2xx quickly; a
slow or non-2xx answer is retried). Other verified event types are answered 200 and ignored.

Refusals: 404 when phone calls are not configured; 503 (``Retry-After``) while the gateway shuts
down, before anything is verified or remembered, so the upstream's retry reaches a replica that
serves; 413 for a body far larger than any webhook; 400/401/409 from the verifier. A refusal is
logged with its reason and counted (``realtalk_gateway_sip_webhooks``); never the secret, the
signature or the body.
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from realtalk.gateway.routes import state_of
from realtalk.gateway.sip import sip_calls
from realtalk.gateway.webhooks import WebhookRefused

__all__ = ["MAX_WEBHOOK_BYTES", "router"]

logger = logging.getLogger("realtalk.gateway.sip")

router = APIRouter()

# An incoming-call event is a few hundred bytes plus its SIP headers.
MAX_WEBHOOK_BYTES: Final = 256 * 1024
RETRY_AFTER_S: Final = 5


def _error(status: int, code: str, message: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _body(request: Request) -> bytes | None:
    """The raw body, or ``None`` past ``MAX_WEBHOOK_BYTES`` (not read further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BYTES:
            return None
    return bytes(body)


@router.post("/webhooks/realtime")
async def incoming_webhook(request: Request) -> Response:
    state = state_of(request)
    door = sip_calls(state, request.app.state)
    if door is None:
        return _error(
            404,
            "sip_not_configured",
            "This gateway takes no phone calls: REALTALK_GATEWAY_SIP_WEBHOOK_SECRET is not set.",
        )
    if state.draining or state.services is None:
        door.webhooks.labels("unavailable").inc()
        return _error(503, "shutting_down", "The gateway is shutting down; retry shortly.", RETRY_AFTER_S)
    body = await _body(request)
    if body is None:
        door.webhooks.labels("too_large").inc()
        return _error(413, "too_large", f"A webhook body is at most {MAX_WEBHOOK_BYTES // 1024} KiB.")
    try:
        webhook = door.verifier.verify(body, request.headers)
    except WebhookRefused as refused:
        door.log_refusal(request.client.host if request.client is not None else "unknown", refused)
        door.webhooks.labels(refused.reason).inc()
        return _error(refused.status, refused.reason, "The webhook was refused.")
    result = door.ring(webhook)
    door.webhooks.labels("taken" if result == "ringing" else "ignored").inc()
    if result == "ignored":
        logger.info("webhook %s (%s) ignored", webhook.webhook_id, webhook.event_type)
    return Response(status_code=200)
