"""The browser UI: ``/`` (``static/index.html``) and ``/static/*`` (plain files, no build step).

Behind Azure Container Apps authentication with ``REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER=true``,
``/`` also sets the session cookie for the signed-in user, so the page's WebSocket is
authenticated without a token prompt.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from realtalk.gateway.routes import state_of
from realtalk.gateway.routes.tokens import set_session_cookie

__all__ = ["router"]

router = APIRouter()


@router.get("/")
async def index(request: Request) -> Response:
    state = state_of(request)
    page = state.static_dir / "index.html"
    if not page.is_file():
        return PlainTextResponse(
            "The browser UI is not installed (gateway/static/index.html).", status_code=404
        )
    response: Response = FileResponse(page, media_type="text/html", headers={"cache-control": "no-cache"})
    principal = state.auth.trusted_principal(request.headers)
    if principal is not None:
        set_session_cookie(response, request, state, principal)
    return response
