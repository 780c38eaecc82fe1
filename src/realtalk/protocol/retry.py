"""When to reconnect, and how long to wait: a pure policy for the connection layer.

A reconnect opens a *new* server session (§1.4): the conversation is gone and the client must
replay its state. So only failures that another attempt can fix are retried; a wrong key, a
missing deployment or a rejected payload fail fast with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from realtalk.errors import (
    ConfigError,
    ConnectionClosed,
    HandshakeRejected,
    LocalProtocolError,
    RemoteProtocolError,
    ServerError,
)

__all__ = [
    "RetryDecision",
    "backoff_delays_s",
    "classify_close",
    "classify_error",
    "classify_http_status",
    "classify_server_error",
]


@dataclass(frozen=True)
class RetryDecision:
    """Whether a reconnect is worth trying, and why (written for a log line or a status bar)."""

    retry: bool
    reason: str


def backoff_delays_s(
    *,
    random: Callable[[], float],
    initial_s: float = 0.5,
    factor: float = 2.0,
    max_s: float = 30.0,
    jitter: float = 0.5,
    max_attempts: int | None = None,
) -> Iterator[float]:
    """Delays before each reconnect attempt: exponential, capped, with jitter.

    Attempt ``n`` waits between ``(1 - jitter) * c`` and ``c``, where ``c = min(max_s,
    initial_s * factor ** n)``; jitter spreads the clients of a restarted server apart.

    Args:
        random: returns a float in ``[0, 1)``, e.g. ``random.random``; injected so tests are
            deterministic and the core needs no global random state.
        max_attempts: stop after this many delays; ``None`` never stops.
    """
    if initial_s < 0 or max_s < 0 or factor < 1 or not 0 <= jitter <= 1:
        # Checked here, not on the first next(): a generator body would report it too late.
        raise ValueError("need initial_s >= 0, max_s >= 0, factor >= 1 and 0 <= jitter <= 1")
    return _delays(random, min(max_s, initial_s), factor, max_s, jitter, max_attempts)


def _delays(
    random: Callable[[], float],
    ceiling_s: float,
    factor: float,
    max_s: float,
    jitter: float,
    max_attempts: int | None,
) -> Iterator[float]:
    attempt = 0
    while max_attempts is None or attempt < max_attempts:
        yield ceiling_s * (1.0 - jitter * random())
        attempt += 1
        # Grow from the previous ceiling instead of factor ** attempt: no float overflow however
        # long a client keeps retrying.
        ceiling_s = min(max_s, ceiling_s * factor)


# RFC 6455 §7.4.1 close codes. 1001 also ends a session at its maximum duration (§1.6:
# session_expired); a new session is the remedy. The SDK's own reconnect list is 1001, 1005, 1006,
# 1011, 1012, 1013, 1015 (§1.4); 1015 (TLS handshake failure) is left out here because a certificate
# or proxy problem does not go away by retrying.
_RETRY_CLOSE: dict[int, str] = {
    1001: "the server went away (restart, or the session reached its maximum duration)",
    1005: "the connection closed without a status code",
    1006: "the connection dropped without a close frame (network failure)",
    1011: "the server hit an internal error",
    1012: "the server is restarting",
    1013: "the server is overloaded; try again later",
    1014: "a gateway received an invalid response from upstream",
}
_NO_RETRY_CLOSE: dict[int, str] = {
    1000: "the connection closed normally",
    1002: "the server reported a protocol error; a new connection would repeat it",
    1003: "the server refused a kind of data we sent (unsupported data)",
    1007: "the server refused a message payload as invalid",
    1008: "the server closed the connection for a policy violation (authentication or quota)",
    1009: "a message was too big for the other side",
    1010: "the server did not offer a required extension",
    1015: "the TLS handshake failed; check certificates and proxies",
}


def classify_close(code: int | None, reason: str = "") -> RetryDecision:
    """Classify a WebSocket close by its code (``None``: no close frame, treated like 1006)."""
    if code is None:
        code = 1006
    suffix = f" ({reason})" if reason else ""
    if code == 1001 and ("maximum duration" in reason or "session_expired" in reason):
        return RetryDecision(True, f"the session expired{suffix}; a new session starts an empty conversation")
    if code in _RETRY_CLOSE:
        return RetryDecision(True, f"close {code}: {_RETRY_CLOSE[code]}{suffix}")
    if code in _NO_RETRY_CLOSE:
        return RetryDecision(False, f"close {code}: {_NO_RETRY_CLOSE[code]}{suffix}")
    return RetryDecision(False, f"close {code}: not a transient condition{suffix}")


def classify_http_status(status: int) -> RetryDecision:
    """Classify an HTTP status that refused the WebSocket upgrade (§1.5)."""
    if status == 429:
        return RetryDecision(True, "HTTP 429: rate limit exceeded; retrying with backoff")
    if status == 408:
        return RetryDecision(True, "HTTP 408: the server timed out waiting for the request")
    if 500 <= status <= 599:
        return RetryDecision(True, f"HTTP {status}: the server failed; retrying")
    reasons = {
        400: "the request was refused (wrong model kind for realtime, or a beta-shaped request)",
        401: "authentication failed: check the API key or the Entra ID credentials",
        403: "the credentials are not allowed to use this resource or deployment",
        404: "not found: check the endpoint and the deployment name",
    }
    return RetryDecision(False, f"HTTP {status}: {reasons.get(status, 'the request was refused')}")


def classify_server_error(error: ServerError) -> RetryDecision:
    """Classify an ``error`` event. Most leave the session usable, so they are not reconnect reasons."""
    if error.code == "session_expired":
        return RetryDecision(True, "the session reached its maximum duration; a new session starts empty")
    if error.type == "server_error":
        return RetryDecision(True, f"the server failed: {error.message}")
    return RetryDecision(False, f"the server refused a request ({error.code or error.type}): {error.message}")


def classify_error(exc: BaseException) -> RetryDecision:
    """Classify any failure of a connection attempt or of a running connection."""
    if isinstance(exc, HandshakeRejected):
        return classify_http_status(exc.status)
    if isinstance(exc, ConnectionClosed):
        return classify_close(exc.code, exc.reason)
    if isinstance(exc, ServerError):
        return classify_server_error(exc)
    if isinstance(exc, ConfigError):
        return RetryDecision(False, f"configuration error: {exc}")
    if isinstance(exc, LocalProtocolError | RemoteProtocolError):
        return RetryDecision(False, f"protocol error: {exc}")
    if isinstance(exc, TimeoutError | ConnectionError):
        return RetryDecision(True, f"network error: {exc or type(exc).__name__}")
    if isinstance(exc, OSError):
        # DNS failures and unreachable hosts surface as OSError; they are often transient.
        return RetryDecision(True, f"network error: {exc}")
    return RetryDecision(False, f"unexpected error: {type(exc).__name__}: {exc}")
