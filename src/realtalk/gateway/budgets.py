"""Daily budgets beyond the session: per user, per deployment and in total, from the usage ledger.

Issue 15, item 2. A session's own budget (``REALTALK_GATEWAY_BUDGET_USD``) only sees that session;
these see every session of the day (UTC), on every replica that writes to the same ledger
database, because they are sums the database computes over the ledger's rows:

* **At connect**, what each scope has spent today is read from the ledger. A scope already at its
  cap refuses the connection with HTTP 429 (``daily_budget_exceeded``), a sentence naming the
  scope, the cap and when it resets, and ``Retry-After`` until midnight UTC; nothing is opened
  upstream.
* **After each response**, that spend plus what this session has spent since is compared with the
  caps; a session that reaches one ends with the notice the UI shows for the session budget.

Between those two moments, sessions on other replicas are seen at their next connect: a cap can
be overrun by what the sessions open at the same time spend before their next response. Reading
the ledger per response would close that gap at a database round trip per turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from realtalk.ledger import Ledger, spend_usd

__all__ = ["DailyBudgets", "DailySpend", "day_start", "seconds_to_midnight"]


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: daily budgets reset then."""
    utc = now.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def seconds_to_midnight(now: datetime) -> int:
    """Whole seconds until the daily budgets reset (at least 1)."""
    return max(1, int((day_start(now) + timedelta(days=1) - now.astimezone(UTC)).total_seconds()))


@dataclass(frozen=True)
class Scope:
    """One cap: which spend it limits (``"user alice"``, ``"deployment rt"``, ``"the gateway"``)."""

    name: str
    cap_usd: Decimal
    spent_usd: Decimal  # today, when the session started


@dataclass(frozen=True)
class DailySpend:
    """What each capped scope had spent today when a session started."""

    scopes: tuple[Scope, ...]
    checked_at: datetime

    def exceeded(self, session_usd: Decimal = Decimal(0)) -> Scope | None:
        """The first scope whose cap is reached with ``session_usd`` more spent, if any."""
        for scope in self.scopes:
            if scope.spent_usd + session_usd >= scope.cap_usd:
                return scope
        return None

    def sentence(self, scope: Scope) -> str:
        """What the client is told: the scope, its cap, and when it resets."""
        hours = seconds_to_midnight(self.checked_at) / 3600
        return (
            f"The daily budget of ${scope.cap_usd} for {scope.name} is reached; it resets at midnight "
            f"UTC, in {hours:.1f} hours."
        )


@dataclass(frozen=True)
class DailyBudgets:
    """The daily caps in USD; ``None`` (or 0) means no cap for that scope."""

    user_usd: Decimal | None = None
    deployment_usd: Decimal | None = None
    total_usd: Decimal | None = None

    @property
    def configured(self) -> bool:
        return any(cap for cap in (self.user_usd, self.deployment_usd, self.total_usd))

    async def spend_today(self, ledger: Ledger, *, user: str, deployment: str, now: datetime) -> DailySpend:
        """Read today's spend of every capped scope from the ledger (one query per scope)."""
        since = day_start(now)
        scopes: list[Scope] = []
        if self.user_usd:
            spent = await spend_usd(ledger, since=since, user=user)
            scopes.append(Scope(f"user {user}", self.user_usd, spent))
        if self.deployment_usd:
            spent = await spend_usd(ledger, since=since, deployment=deployment)
            scopes.append(Scope(f"deployment {deployment}", self.deployment_usd, spent))
        if self.total_usd:
            spent = await spend_usd(ledger, since=since)
            scopes.append(Scope("the gateway", self.total_usd, spent))
        return DailySpend(tuple(scopes), now)
