"""Limits on what one gateway serves (issue 5, item 5): pure bookkeeping, time passed in.

* ``Admissions``: concurrent sessions, globally and per user, on this replica. A refused client is
  answered with HTTP 429 before anything is opened upstream. With a ledger, the per-user count is
  also kept in its database for every replica (``realtalk.ledger.leases``, used by ``state.py``).
* ``EventRateLimiter``: a token bucket per connection (events per second with a burst).
* Session duration, idle time, message size, the dollar budget and the client's send buffer are
  checked by the relay with the values in ``Limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Admissions", "EventRateLimiter", "Limits", "per_user_refusal"]


@dataclass(frozen=True)
class Limits:
    """Every limit, with safe defaults (each is a ``REALTALK_GATEWAY_*`` setting)."""

    max_sessions: int = 50
    max_sessions_per_user: int = 3
    session_lease_s: float = 60.0  # with a ledger: see realtalk.ledger.leases
    max_session_s: float = 1800.0
    idle_timeout_s: float = 120.0
    max_message_bytes: int = 1024 * 1024
    max_events_per_s: float = 100.0
    event_burst: int = 200
    budget_usd: Decimal = Decimal("1.00")
    client_buffer_bytes: int = 1024 * 1024
    client_stall_s: float = 15.0
    upstream_stall_s: float = 15.0
    head_timeout_s: float = 10.0


def per_user_refusal(limit: int) -> str:
    """What a client over the per-user limit is told (by this replica's count or the shared one)."""
    return f"you already have {limit} open sessions (the per-user limit)"


class Admissions:
    """Counts open sessions per user; ``admit`` says why a new one is refused, or takes a slot."""

    def __init__(self, max_sessions: int, max_sessions_per_user: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_user = max_sessions_per_user
        self._per_user: dict[str, int] = {}
        self.active = 0

    def admit(self, user: str) -> str | None:
        """Take a slot for ``user``; returns the refusal reason when none is free."""
        if self.active >= self.max_sessions:
            return f"the gateway is at its limit of {self.max_sessions} concurrent sessions; try again later"
        if self._per_user.get(user, 0) >= self.max_per_user:
            return per_user_refusal(self.max_per_user)
        self.active += 1
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return None

    def release(self, user: str) -> None:
        """Give back the slot ``admit`` took."""
        count = self._per_user.get(user, 0)
        if count <= 1:
            self._per_user.pop(user, None)
        else:
            self._per_user[user] = count - 1
        self.active = max(0, self.active - 1)


class EventRateLimiter:
    """A token bucket: ``rate_per_s`` events a second on average, at most ``burst`` at once."""

    __slots__ = ("_burst", "_last_s", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: int, now_s: float) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last_s = now_s

    def allow(self, now_s: float) -> bool:
        """Whether one more event may pass at ``now_s`` (it is counted if so)."""
        elapsed = now_s - self._last_s
        self._last_s = now_s
        tokens = self._tokens + elapsed * self._rate if elapsed > 0 else self._tokens
        if tokens > self._burst:
            tokens = self._burst
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
