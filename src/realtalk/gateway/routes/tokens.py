"""Client tokens and the browser session cookie.

* ``POST /api/token``: mint a short-lived signed token. Allowed for a static-token holder
  (``Authorization: Bearer <static token>`` or ``api-key: <static token>``; it may name the
  ``subject``, e.g. a backend minting for its users) or, with
  ``REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER=true``, for the user Azure Container Apps
  authentication signed in (its own name only). Body (optional): ``{"ttl_s": 300, "subject": "alice"}``.
* ``POST /api/session``: exchange a token (``Authorization: Bearer``, ``api-key`` or
  ``{"token": ...}``) for the HttpOnly ``realtalk_session`` cookie the browser UI's WebSocket
  then carries.
* ``GET /api/session``: whether this browser is signed in, and whether it needs to be.
* ``DELETE /api/session``: sign out (clears the cookie).

Every one of them checks ``Origin`` (a cross-site page must not mint or set anything). A refusal
tells the client ``REFUSAL`` only; the log line says which check failed (never the credential).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from realtalk.gateway.auth import COOKIE_NAME, REFUSAL, AuthFailure, Principal, header_token
from realtalk.gateway.routes import state_of
from realtalk.gateway.state import GatewayState

__all__ = ["router", "set_session_cookie"]

router = APIRouter(prefix="/api")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def set_session_cookie(
    response: Response, request: Request, state: GatewayState, principal: Principal
) -> int:
    """Set the HttpOnly session cookie for ``principal``; returns its expiry (unix seconds)."""
    token, max_age_s, expires_at = _cookie_token(state, principal)
    _attach_cookie(response, request, token, max_age_s)
    return expires_at


def _cookie_token(state: GatewayState, principal: Principal) -> tuple[str, int, int]:
    # A cookie never outlives the token it was exchanged for.
    now = time.time()
    ttl = state.auth.token_ttl_s
    if principal.expires_at_s is not None:
        ttl = max(1, min(ttl, principal.expires_at_s - int(now)))
    token, expires_at = state.auth.mint(principal.subject, now, ttl)
    return token, ttl, expires_at


def _attach_cookie(response: Response, request: Request, token: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


async def _json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


@router.post("/token")
async def mint_token(request: Request) -> JSONResponse:
    state = state_of(request)
    if not state.origin_ok(request):
        return _error(403, "origin_not_allowed", "this web origin may not use the gateway")
    body = await _json_body(request)
    if body is None:
        return _error(400, "invalid_json", "the body must be a JSON object")
    found = header_token(request.headers)
    subject: str
    if found is not None and state.auth.is_static(found[0]):
        principal = state.auth.verify(found[0], time.time())
        assert isinstance(principal, Principal)
        requested = body.get("subject")
        subject = requested if isinstance(requested, str) and requested else principal.subject
    else:
        trusted = state.auth.trusted_principal(request.headers)
        if trusted is None:
            state.metrics.refused("mint_unauthorized")
            sent = f"a token that is not a static one in {found[1]}" if found is not None else "no token"
            why = f"minting needs a static gateway token or a signed-in user; {sent} was sent"
            state.log_refusal(request, AuthFailure(why))
            return _error(401, "unauthorized", REFUSAL)
        subject = trusted.subject
    ttl = body.get("ttl_s")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
        return _error(400, "invalid_value", "ttl_s must be a whole number of seconds >= 1")
    try:
        token, expires_at = state.auth.mint(subject, time.time(), ttl)
    except ValueError as exc:
        return _error(400, "invalid_value", str(exc))
    return JSONResponse(
        {"token": token, "token_type": "Bearer", "expires_at": expires_at, "subject": subject}
    )


@router.post("/session")
async def open_session(request: Request) -> JSONResponse:
    state = state_of(request)
    if not state.origin_ok(request):
        return _error(403, "origin_not_allowed", "this web origin may not use the gateway")
    if not state.auth.configured:
        return JSONResponse(
            {"authenticated": True, "auth_required": False, "subject": None, "expires_at": None}
        )
    body = await _json_body(request)
    if body is None:
        return _error(400, "invalid_json", "the body must be a JSON object")
    found = header_token(request.headers)
    if found is None and isinstance(body.get("token"), str) and body["token"]:
        found = (body["token"], "the body's token")
    principal: Principal | AuthFailure | None
    if found is not None:
        principal = state.auth.verify(found[0], time.time())
        if isinstance(principal, AuthFailure):
            principal = AuthFailure(f"{principal.reason} (sent in {found[1]})")
    else:
        principal = state.auth.trusted_principal(request.headers)
    if principal is None or isinstance(principal, AuthFailure):
        state.metrics.refused("session_unauthorized")
        failure = principal if isinstance(principal, AuthFailure) else AuthFailure("no credential was sent")
        state.log_refusal(request, failure)
        return _error(401, "unauthorized", REFUSAL)
    token, max_age_s, expires_at = _cookie_token(state, principal)
    response = JSONResponse(
        {"authenticated": True, "auth_required": True, "subject": principal.subject, "expires_at": expires_at}
    )
    _attach_cookie(response, request, token, max_age_s)
    return response


@router.get("/session")
async def session_status(request: Request) -> JSONResponse:
    """Whether the caller may start a session; to one who may, the upstream's kind too (the page
    shows the emulator badge before Start). Nothing about the upstream to anyone else."""
    state = state_of(request)
    upstream = state.upstream.kind if state.upstream is not None else None
    if not state.auth.configured:
        return JSONResponse(
            {
                "authenticated": True,
                "auth_required": False,
                "subject": None,
                "expires_at": None,
                "upstream": upstream,
            }
        )
    principal = state.authenticate(request)
    if isinstance(principal, AuthFailure):
        return JSONResponse(
            {"authenticated": False, "auth_required": True, "subject": None, "expires_at": None}
        )
    return JSONResponse(
        {
            "authenticated": True,
            "auth_required": True,
            "subject": principal.subject,
            "expires_at": principal.expires_at_s,
            "upstream": upstream,
        }
    )


@router.delete("/session")
async def close_session(request: Request) -> Response:
    state = state_of(request)
    if not state.origin_ok(request):
        return _error(403, "origin_not_allowed", "this web origin may not use the gateway")
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
