"""``GET /api/usage``: the caller's own spend today, against the daily budgets (issue 15, item 5).

Authenticated like the WebSocket (bearer token, ``api-key``, the session cookie, or the trusted
principal header); it answers for the authenticated subject only, and takes no parameter naming
anyone else. A refused caller gets the same 401 and sentence as every other refusal.

Figures are sums the ledger database computes over committed rows (the day is the UTC day the
daily budgets count): a response is in them within about a second of its ``response.done``
(the writer's batch interval), not at once. Waiting for the writer here would make a request
wait on the audio path's queue, so the answer is what the database holds.

At most four indexed queries per request, whatever the ledger holds: the user's spend, their
sessions, and the deployment's and the gateway's spend when those scopes have a cap.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError
from starlette.responses import JSONResponse

from realtalk.gateway.auth import REFUSAL, AuthFailure
from realtalk.gateway.budgets import day_start, seconds_to_midnight
from realtalk.gateway.routes import state_of
from realtalk.gateway.state import GatewayState
from realtalk.ledger import Ledger, session_count, spend_usd

__all__ = ["USAGE_TIMEOUT_S", "router"]

logger = logging.getLogger("realtalk.gateway")

# A page polls this; a database that does not answer gets a 503 rather than a hanging request.
USAGE_TIMEOUT_S: Final = 5.0
RETRY_AFTER_S: Final = 5


router = APIRouter(prefix="/api")


def _error(status: int, code: str, message: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _usd(value: Decimal | None) -> str | None:
    # Fixed-point, exact: never a float, never an exponent ("0E-9").
    return None if value is None else format(value, "f")


def _cap(value: Decimal | None) -> Decimal | None:
    # 0 turns a cap off, as the settings document.
    return value if value else None


@router.get("/usage")
async def usage(request: Request) -> JSONResponse:
    state = state_of(request)
    if not state.origin_ok(request):
        return _error(403, "origin_not_allowed", "this web origin may not use the gateway")
    principal = state.authenticate(request)
    if isinstance(principal, AuthFailure):
        state.metrics.refused("usage_unauthorized")
        state.log_refusal(request, principal)
        return _error(401, "unauthorized", REFUSAL)
    user = principal.subject
    now = datetime.now(UTC)
    midnight = day_start(now) + timedelta(days=1)
    body: dict[str, Any] = {
        "ledger": state.ledger is not None,
        "user": user,
        "day": day_start(now).date().isoformat(),
        "spent_usd": None,
        "sessions": None,
        "daily_cap_usd": None,
        "remaining_usd": None,
        "limited_by": None,
        "resets_at": midnight.isoformat().replace("+00:00", "Z"),
        "resets_in_s": seconds_to_midnight(now),
        "session_budget_usd": _usd(_cap(state.config.limits.budget_usd)),
    }
    if state.ledger is None:
        return JSONResponse(body, headers={"cache-control": "no-store"})
    try:
        async with asyncio.timeout(USAGE_TIMEOUT_S):
            body.update(await _today(state, state.ledger, user, now))
    except (OSError, DBAPIError, TimeoutError) as exc:
        logger.warning("could not read %s's usage from the ledger: %s", user, type(exc).__name__)
        return _error(
            503, "ledger_unavailable", "usage accounting is unavailable; try again shortly", RETRY_AFTER_S
        )
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def _today(state: GatewayState, ledger: Ledger, user: str, now: datetime) -> dict[str, Any]:
    """The user's spend and sessions today, and what is left of the tightest daily cap."""
    since = day_start(now)
    budgets = state.config.daily_budgets
    spent = await spend_usd(ledger, since=since, user=user)
    sessions = await session_count(ledger, since=since, user=user)
    # (scope, cap, spent today), in the order the gateway checks them; only capped scopes.
    scopes: list[tuple[str, Decimal, Decimal]] = []
    user_cap = _cap(budgets.user_usd)
    if user_cap is not None:
        scopes.append(("user", user_cap, spent))
    deployment_cap = _cap(budgets.deployment_usd)
    if deployment_cap is not None and state.upstream is not None:
        deployment = state.upstream.endpoint.deployment
        scopes.append(
            ("deployment", deployment_cap, await spend_usd(ledger, since=since, deployment=deployment))
        )
    total_cap = _cap(budgets.total_usd)
    if total_cap is not None:
        scopes.append(("gateway", total_cap, await spend_usd(ledger, since=since)))
    remaining: Decimal | None = None
    limited_by: str | None = None
    for scope, cap, scope_spent in scopes:
        left = max(Decimal(0), cap - scope_spent)
        if remaining is None or left < remaining:
            remaining, limited_by = left, scope
    return {
        "spent_usd": _usd(spent),
        "sessions": sessions,
        "daily_cap_usd": _usd(user_cap),
        "remaining_usd": _usd(remaining),
        "limited_by": limited_by,
    }
