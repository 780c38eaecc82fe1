"""Open sessions counted in the ledger database, so a per-user limit holds across gateway replicas.

Issue 15, item 2: "concurrent-session limits per user are shared" the way the daily budgets are.
Each open session holds a *lease*, a row of ``session_leases``: whose session it is, which gateway
process holds it (``holder``) and until when (``expires_at``).

* ``acquire`` takes a lease only if the user holds fewer than ``limit`` live ones. The count and
  the insert are one statement that no other replica can interleave with: PostgreSQL takes a
  transaction-scoped advisory lock on the user first (``pg_advisory_xact_lock``), so two replicas
  admitting the same user at the same instant are served one after the other; SQLite's single
  writer does the same for every process on the file. Different users never wait for each other
  on PostgreSQL.
* ``release`` deletes the row when the session ends.
* **Stale sessions.** A replica that dies (``kill -9``, a lost node) cannot release its leases, so
  each lease lives ``ttl_s`` and the holder renews its own every ``ttl_s / 3`` (``run``). Leases
  nobody renewed are expired: skipped by the count, and deleted by every renewal round and by an
  ``acquire`` they would otherwise have refused. A dead replica's sessions therefore stop counting at most
  ``ttl_s`` after it died, and the ledger rows of those sessions, which nobody else would end,
  are ended at the lease's expiry with the reason ``gateway_lost``. Times are the replicas' own
  UTC clocks: skew between replicas shortens or lengthens that grace by the skew, which is why
  ``ttl_s`` is tens of seconds, not one.

The database is asked on every admission (one short transaction); a database that cannot be
reached raises ``LeaseUnavailable``, and the gateway refuses the client with 503 rather than let
an unmetered session through.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import and_, delete, func, insert, literal, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from realtalk.ledger.database import redact_url
from realtalk.ledger.schema import session_leases, sessions

__all__ = ["DEFAULT_TTL_S", "LOST_REASON", "Lease", "LeaseUnavailable", "SessionLeases", "holder_name"]

logger = logging.getLogger("realtalk.ledger")

DEFAULT_TTL_S: Final = 60.0
_LOCK_NAMESPACE: Final = b"realtalk.session_leases:"
# The end reason of a session whose gateway stopped renewing its lease (killed, lost its node).
LOST_REASON: Final = "gateway_lost"


class LeaseUnavailable(Exception):
    """The ledger database could not be asked (unreachable, or it refused the statement)."""


@dataclass(frozen=True)
class Lease:
    """One open session's place in the count: release it when the session ends."""

    session_id: str
    user: str


def holder_name() -> str:
    """This process, as a lease's ``holder``: host, pid and a random part (a restarted container
    may reuse the host name and pid)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


def _lock_key(user: str) -> int:
    """A signed 64-bit advisory-lock key for ``user`` (a collision only serialises two users)."""
    digest = hashlib.blake2b(_LOCK_NAMESPACE + user.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def _expire(connection: AsyncConnection, now: datetime, user: str | None = None) -> None:
    """Delete the expired leases (of ``user``, or of everyone). Their sessions' ledger rows, left
    open by a gateway that died, are ended at the lease's expiry with ``LOST_REASON``."""
    expired = session_leases.c.expires_at <= now
    if user is not None:
        expired = and_(session_leases.c.user == user, expired)
    lease_of_session = session_leases.c.session_id == sessions.c.session_id
    await connection.execute(
        update(sessions)
        .where(
            sessions.c.ended_at.is_(None),
            sessions.c.session_id.in_(select(session_leases.c.session_id).where(expired)),
        )
        .values(
            ended_at=select(session_leases.c.expires_at).where(lease_of_session).scalar_subquery(),
            end_reason=LOST_REASON,
        )
    )
    await connection.execute(delete(session_leases).where(expired))


class SessionLeases:
    """The per-user count of open sessions in the ledger database, shared by every replica.

    ``await acquire(...)`` / ``await release(...)`` around each session; ``run()`` as a task for
    the renewals (``aclose()`` stops it and releases what is still held).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        holder: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"a lease must live a positive time, got ttl_s={ttl_s!r}")
        self._engine = engine
        self.ttl_s = ttl_s
        self.holder = holder or holder_name()
        self._clock = clock
        self._held: dict[str, Lease] = {}
        # Releases still being written, per user: this replica's next acquire for that user waits
        # for them, so a client that reconnects the moment its session ended is not refused.
        self._releasing: dict[str, set[asyncio.Future[None]]] = {}
        self._postgres = engine.dialect.name == "postgresql"
        self._sqlite_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Leases this process holds now."""
        return len(self._held)

    # -- one session -------------------------------------------------------------------------------

    async def acquire(self, *, session_id: str, user: str, limit: int) -> Lease | None:
        """Take a lease for ``user``'s new session ``session_id``; ``None`` when ``user`` already
        holds ``limit`` live leases (on any replica).

        Raises:
            LeaseUnavailable: the database could not be asked.
        """
        pending = self._releasing.get(user)
        if pending:
            await asyncio.wait(set(pending))
        now = self._clock()
        expires = now + timedelta(seconds=self.ttl_s)
        live_of_user = and_(session_leases.c.user == user, session_leases.c.expires_at > now)
        held = select(func.count()).select_from(session_leases).where(live_of_user).scalar_subquery()
        # INSERT ... SELECT ... WHERE (count of live leases) < limit: one statement, so SQLite's
        # writer lock covers the count; PostgreSQL's advisory lock covers it across replicas.
        take = insert(session_leases).from_select(
            ["session_id", "user", "holder", "started_at", "expires_at"],
            select(
                literal(session_id),
                literal(user),
                literal(self.holder),
                literal(now, session_leases.c.started_at.type),
                literal(expires, session_leases.c.expires_at.type),
            ).where(held < limit),
        )
        try:
            async with self._writing(), self._engine.begin() as connection:
                if self._postgres:
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(user)}
                    )
                taken = (await connection.execute(take)).rowcount == 1
                if not taken:
                    # Refused: tidy the user's expired leases (the count skipped them already),
                    # ending their sessions' rows. Renewal rounds do it for everyone else.
                    await _expire(connection, now, user)
        except (OSError, DBAPIError) as exc:
            raise self._unavailable("take a session lease", exc) from None
        if not taken:
            return None
        lease = Lease(session_id, user)
        self._held[session_id] = lease
        return lease

    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back (its session ended). A failure is logged, not raised: the lease is
        no longer renewed, so it expires within ``ttl_s`` anyway."""
        self._held.pop(lease.session_id, None)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = self._releasing.setdefault(lease.user, set())
        pending.add(done)
        try:
            async with self._writing(), self._engine.begin() as connection:
                await connection.execute(
                    delete(session_leases).where(session_leases.c.session_id == lease.session_id)
                )
        except (OSError, DBAPIError) as exc:
            logger.warning(
                "ledger: could not release the lease of session %s (%s); it expires within %g s",
                lease.session_id,
                type(exc).__name__,
                self.ttl_s,
            )
        finally:
            done.set_result(None)
            pending.discard(done)
            if not pending:
                self._releasing.pop(lease.user, None)

    async def open_sessions(self, user: str) -> int:
        """How many live leases ``user`` holds, on every replica.

        Raises:
            LeaseUnavailable: the database could not be asked.
        """
        now = self._clock()
        statement = (
            select(func.count())
            .select_from(session_leases)
            .where(session_leases.c.user == user, session_leases.c.expires_at > now)
        )
        try:
            async with self._engine.connect() as connection:
                return int(await connection.scalar(statement) or 0)
        except (OSError, DBAPIError) as exc:
            raise self._unavailable("count open sessions", exc) from None

    # -- renewals ----------------------------------------------------------------------------------

    async def renew(self) -> int:
        """Extend every lease this process holds by ``ttl_s`` and delete expired leases of any
        holder; returns how many of ours were renewed (fewer than held: some had expired and were
        taken away, e.g. after the event loop or the database stalled for longer than ``ttl_s``).

        Raises:
            LeaseUnavailable: the database could not be asked.
        """
        now = self._clock()
        ids = list(self._held)
        try:
            async with self._writing(), self._engine.begin() as connection:
                renewed = await self._renew_in(connection, ids, now)
                await _expire(connection, now)
        except (OSError, DBAPIError) as exc:
            raise self._unavailable("renew session leases", exc) from None
        # A session released while this round ran is not a lost lease.
        lost = [session_id for session_id in ids if session_id not in renewed and session_id in self._held]
        if lost:
            logger.warning(
                "ledger: %d of this gateway's %d session leases had expired before renewal; "
                "those sessions went uncounted for a while",
                len(lost),
                len(ids),
            )
        return len(renewed)

    async def _renew_in(self, connection: AsyncConnection, ids: list[str], now: datetime) -> set[str]:
        renewed: set[str] = set()
        expires = now + timedelta(seconds=self.ttl_s)
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[start : start + 500]
            result = await connection.execute(
                update(session_leases)
                .where(
                    session_leases.c.session_id.in_(chunk),
                    session_leases.c.holder == self.holder,
                    session_leases.c.expires_at > now,
                )
                .values(expires_at=expires)
                .returning(session_leases.c.session_id)
            )
            renewed.update(result.scalars())
        return renewed

    def _writing(self) -> AbstractAsyncContextManager[object]:
        """SQLite has one writer per file: this process's lease transactions queue here instead
        of each polling the file lock (``busy_timeout``), which measured p99 0.5-1.8 s at 50
        concurrent admissions. PostgreSQL needs no such queue."""
        return self._sqlite_lock if self._sqlite_lock is not None else nullcontext()

    def start(self) -> None:
        """Start renewing in the background (every ``ttl_s / 3``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="realtalk-session-leases")

    async def run(self) -> None:
        """Renew every ``ttl_s / 3`` until cancelled; a failed round is logged and retried next time."""
        interval = self.ttl_s / 3
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except LeaseUnavailable as exc:
                if not failing:
                    logger.warning("%s; retrying every %g s", exc, interval)
                failing = True
            else:
                if failing:
                    logger.info("ledger: session leases renewed again")
                failing = False

    async def aclose(self) -> None:
        """Stop renewing and release the leases still held (their sessions are over)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for lease in list(self._held.values()):
            await self.release(lease)

    def _unavailable(self, doing: str, exc: BaseException) -> LeaseUnavailable:
        detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        return LeaseUnavailable(
            f"ledger: could not {doing} in {redact_url(self._engine.url)}: {type(detail).__name__}: {detail}"
        )
