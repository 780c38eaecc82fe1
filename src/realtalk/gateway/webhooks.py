"""Verifying the upstream's webhooks (Standard Webhooks, §5.4), and refusing a replayed one.

``WebhookVerifier.verify(body, headers)`` checks, in this order, each failure a
``WebhookRefused`` with the HTTP status to answer and a short ``reason`` for the log and metrics:

1. the three headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` are there
   (names case-insensitive) and the timestamp is a whole number: else **400** ``malformed``;
2. the timestamp is within ``TOLERANCE_S`` (300 s) of now: else **401** ``stale_timestamp`` or
   ``future_timestamp``; a signature alone proves who signed, not when: without this an old
   captured delivery could be sent again for ever;
3. the signature is an HMAC-SHA256 of ``f"{id}.{timestamp}.{raw body}"`` with the secret, checked
   by the maintained ``standardwebhooks`` package (constant-time, any of several ``v1,``
   entries): else **401** ``bad_signature``;
4. the ``webhook-id`` was not seen in the last ``2 * TOLERANCE_S``: else **409** ``replayed``.
   Only ids of deliveries that passed 1-3 are remembered (an unsigned request cannot fill the
   store or block a real id). A delivery whose timestamp was accepted can only be replayed while
   its timestamp is still fresh, at most ``2 * TOLERANCE_S`` after it first arrived, so that is
   how long an id is kept; the store is bounded (``max_ids``), the oldest id going first.
5. the body is a JSON object: else **400** ``not_json``.

Why 409 for a replay, not 2xx: the brief is to refuse it (nothing is done twice), and a
``Conflict`` says "already have it" apart from a forgery in the logs; a sender that really
retried gets a non-2xx, retries a few more times, and gives up, harmlessly, since its first
delivery was taken. (The store is per process: with several replicas a replay could reach
another one inside the 300 s window; the timestamp still bounds it.)

The secret (``whsec_<base64>`` as Azure gives it; any other string is used as its UTF-8 bytes,
as openai-python does, §5.4 step 3) is never logged, repeated in an error, or kept in a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = [
    "TOLERANCE_S",
    "SeenWebhookIds",
    "VerifiedWebhook",
    "WebhookRefused",
    "WebhookVerifier",
    "webhook_key",
]

TOLERANCE_S: Final = 300  # §5.4 step 2, and the standardwebhooks package's own (fixed) tolerance
DEFAULT_MAX_IDS: Final = 10_000
_SECRET_PREFIX: Final = "whsec_"
_MIN_KEY_BYTES: Final = 16


class WebhookRefused(Exception):
    """A delivery the gateway refuses: ``status`` to answer, ``reason`` (a short code) and
    ``detail`` (a sentence) for the log. Neither ever holds the secret."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class VerifiedWebhook:
    """A delivery that passed every check."""

    webhook_id: str
    timestamp: int
    event: dict[str, Any]

    @property
    def event_type(self) -> str | None:
        kind = self.event.get("type")
        return kind if isinstance(kind, str) else None


def webhook_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: ``base64decode(secret[6:])`` for ``whsec_…``, else its UTF-8
    bytes (§5.4 step 3). Raises ``ValueError`` saying what is wrong (never quoting it)."""
    if not secret.startswith(_SECRET_PREFIX):
        key = secret.encode("utf-8")
    else:
        try:
            key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "the secret starts with whsec_ but the rest is not base64: copy the signing secret "
                "exactly as the webhook endpoint's creation returned it"
            ) from None
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"the secret is too short: its key must be at least {_MIN_KEY_BYTES} bytes")
    return key


class SeenWebhookIds:
    """A bounded set of webhook ids, each kept ``ttl_s`` (``clock`` is monotonic seconds)."""

    def __init__(
        self,
        *,
        ttl_s: float = 2 * TOLERANCE_S,
        max_ids: int = DEFAULT_MAX_IDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_ids < 1:
            raise ValueError("max_ids must be at least 1")
        self._ttl_s = ttl_s
        self._max_ids = max_ids
        self._clock = clock
        self._expires: OrderedDict[str, float] = OrderedDict()  # in insertion order = expiry order
        self.evicted = 0  # ids dropped before their time because the store was full

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._expires)

    def __contains__(self, webhook_id: object) -> bool:
        self._expire(self._clock())
        return webhook_id in self._expires

    def add(self, webhook_id: str) -> bool:
        """Remember ``webhook_id``; ``False`` when it is already remembered (a replay)."""
        now = self._clock()
        self._expire(now)
        if webhook_id in self._expires:
            return False
        while len(self._expires) >= self._max_ids:
            self._expires.popitem(last=False)
            self.evicted += 1
        self._expires[webhook_id] = now + self._ttl_s
        return True

    def _expire(self, now: float) -> None:
        expires = self._expires
        while expires:
            oldest = next(iter(expires))
            if expires[oldest] > now:
                return
            del expires[oldest]


@dataclass
class WebhookVerifier:
    """Checks deliveries signed with one secret (see the module docstring)."""

    secret: str = field(repr=False)
    seen: SeenWebhookIds = field(default_factory=SeenWebhookIds)

    def __post_init__(self) -> None:
        # A str would be base64-decoded by the package even without the prefix: give it the key.
        self._webhook = Webhook(webhook_key(self.secret))

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        """The delivery, checked; raises ``WebhookRefused``. ``body`` is the raw request body."""
        lowered = {name.lower(): value for name, value in headers.items()}
        webhook_id = lowered.get("webhook-id", "").strip()
        stamp = lowered.get("webhook-timestamp", "").strip()
        signature = lowered.get("webhook-signature", "").strip()
        missing = [
            name
            for name, value in (
                ("webhook-id", webhook_id),
                ("webhook-timestamp", stamp),
                ("webhook-signature", signature),
            )
            if not value
        ]
        if missing:
            raise WebhookRefused(400, "malformed", f"missing header {', '.join(missing)}")
        if not stamp.isdigit() or len(stamp) > 12:
            raise WebhookRefused(400, "malformed", "webhook-timestamp is not a Unix time in seconds")
        timestamp = int(stamp)
        skew_s = time.time() - timestamp  # the package checks again, on the same clock
        if skew_s > TOLERANCE_S:
            raise WebhookRefused(401, "stale_timestamp", f"the timestamp is {skew_s:.0f} s old")
        if skew_s < -TOLERANCE_S:
            raise WebhookRefused(401, "future_timestamp", f"the timestamp is {-skew_s:.0f} s ahead")
        try:
            self._webhook.verify(
                body,
                {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": signature},
                json_parse=False,
            )
        except WebhookVerificationError as exc:
            reason = "bad_signature" if "signature" in str(exc).lower() else "stale_timestamp"
            raise WebhookRefused(401, reason, f"not verified ({exc})") from None
        if not self.seen.add(webhook_id):
            raise WebhookRefused(409, "replayed", f"webhook-id {webhook_id[:64]!r} was already delivered")
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            raise WebhookRefused(400, "not_json", "the body is not a JSON object")
        return VerifiedWebhook(webhook_id, timestamp, event)
