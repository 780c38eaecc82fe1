"""The ``realtime.call.incoming`` webhook the emulator sends for a simulated phone call (§5.3, §5.4).

Signing follows the Standard Webhooks scheme as the openai SDK verifies it (§5.4): the headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``f"{id}.{timestamp}.{raw body}"``; the key is ``base64decode(secret[6:])`` for a ``whsec_``
secret (what Azure hands out), else the secret's UTF-8 bytes. (The ``standardwebhooks`` package
base64-decodes a secret without the prefix too: the two agree on ``whsec_`` secrets only.)

Delivery retries a non-2xx answer, a timeout or a refused connection with exponential backoff
(§5.3: "a non-200 response is retried"). Every attempt carries the same ``webhook-id`` (so the
receiver can deduplicate) and a fresh timestamp and signature. Nothing here logs or returns the
secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "WEBHOOK_USER_AGENT",
    "WebhookDelivery",
    "deliver_webhook",
    "incoming_call_event",
    "sign_webhook",
    "signed_headers",
    "signing_key",
]

logger = logging.getLogger(__name__)

WEBHOOK_USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
_SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret`` (§5.4 step 3). Raises ``ValueError`` naming the problem."""
    if not secret:
        raise ValueError("the webhook secret is empty: pass the endpoint's signing secret (whsec_...)")
    if not secret.startswith(_SECRET_PREFIX):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "the webhook secret starts with whsec_ but the rest is not base64; "
            "copy the signing secret exactly as it was given"
        ) from None
    if not key:
        raise ValueError("the webhook secret whsec_ has no key after its prefix")
    return key


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, f"{webhook_id}.{timestamp}.{body}")>`` (§5.4 step 4)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, body: bytes, *, webhook_id: str, timestamp: int) -> dict[str, str]:
    """The headers of one delivery attempt of ``body`` (§5.3)."""
    return {
        "user-agent": WEBHOOK_USER_AGENT,
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
    }


def incoming_call_event(
    call_id: str, sip_headers: Sequence[dict[str, str]], *, created_at: int
) -> dict[str, Any]:
    """The ``realtime.call.incoming`` event body (§5.3)."""
    return {
        "object": "event",
        "id": f"evt_{secrets.token_hex(16)}",
        "type": "realtime.call.incoming",
        "created_at": created_at,
        "data": {"call_id": call_id, "sip_headers": [dict(h) for h in sip_headers]},
    }


@dataclass(frozen=True)
class WebhookDelivery:
    """How the delivery of one webhook went.

    ``delivered``: an attempt was answered 2xx. ``attempts``: how many were made.
    ``status_code``: the last HTTP status (``None`` when the last attempt got no answer).
    ``error``: why the last attempt failed, for people (never the secret).
    """

    webhook_id: str
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


async def deliver_webhook(
    url: str,
    secret: str,
    event: dict[str, Any],
    *,
    max_attempts: int = 4,
    first_backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    client: httpx.AsyncClient | None = None,
    should_retry: Callable[[], bool] = lambda: True,
    on_attempt: Callable[[int, int | None], None] = lambda attempt, status_code: None,
) -> WebhookDelivery:
    """POST ``event`` to ``url``, signed with ``secret``, until a 2xx or ``max_attempts`` attempts.

    The wait between attempts doubles from ``first_backoff_s``; no retry is made once
    ``should_retry()`` is false (the call was answered meanwhile). ``on_attempt(n, None)`` is
    called as attempt ``n`` starts and ``on_attempt(n, status)`` when it ends (so a caller that
    cancels the delivery still knows how far it got). Raises ``ValueError`` for an unusable secret
    before anything is sent.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    signing_key(secret)  # an unusable secret fails here, not on every attempt
    body = json.dumps(event, separators=(",", ":")).encode()
    webhook_id = f"wh_{secrets.token_hex(16)}"
    owned = client is None
    http = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)
    status: int | None = None
    error: str | None = None
    attempt = 0
    try:
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(first_backoff_s * 2 ** (attempt - 2))
                if not should_retry():
                    attempt -= 1
                    break
            headers = signed_headers(secret, body, webhook_id=webhook_id, timestamp=int(time.time()))
            on_attempt(attempt, None)
            try:
                response = await http.post(url, content=body, headers=headers, timeout=timeout_s)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = response.status_code
                on_attempt(attempt, status)
                if 200 <= status < 300:
                    return WebhookDelivery(webhook_id, True, attempt, status, None)
                error = f"the webhook endpoint answered HTTP {status}"
            logger.info("webhook %s: attempt %d failed: %s", webhook_id, attempt, error)
    finally:
        if owned:
            await http.aclose()
    return WebhookDelivery(webhook_id, False, attempt, status, error)
