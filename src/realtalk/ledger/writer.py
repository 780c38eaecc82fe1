"""The ledger's writer: records go into a bounded queue at once, a background task commits them.

Theory of operation. ``session_started``, ``response_done`` and ``session_ended`` are plain
(non-async) calls made from the audio path: they append to a bounded queue and return, never
awaiting and never blocking. When the queue is full the row is dropped and counted
(``dropped_rows``): losing a ledger row is better than delaying audio, and the count says how
many were lost.

One task drains the queue. After the first row arrives it waits up to ``flush_interval_s`` for
more (or until a batch is full, or ``flush()`` asks), then writes the batch in one transaction.
So a row is committed within ``flush_interval_s`` plus one write of ``response_done``, well
inside the second the issue allows, and a busy gateway commits a few times a second rather than
once per response.

A database error never loses the batch in hand: it is logged (without the URL's password) and
retried with capped exponential backoff, while the callers keep queueing (and, once the queue
is full, dropping). A row the database refuses outright (a constraint or data error) is written
alone and, if refused again, rejected and counted (``rejected_rows``), so one bad row cannot hold
back the rows behind it. Replays are harmless: inserts skip rows already there (the unique
``(session_id, response_id)`` index), and a response whose session row was lost gets a stand-in
session row made from the response.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import datetime
from types import TracebackType
from typing import Any, Final

from sqlalchemy import URL, Insert, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from realtalk.ledger.database import create_ledger_engine, redact_url
from realtalk.ledger.migrate import prepare
from realtalk.ledger.records import ResponseHeard, ResponseRecord, SessionEnd, SessionRecord
from realtalk.ledger.schema import responses, sessions
from realtalk.protocol.retry import backoff_delays_s

__all__ = ["Ledger"]

logger = logging.getLogger("realtalk.ledger")

Item = SessionRecord | ResponseRecord | SessionEnd | ResponseHeard

_DROP_LOG_EVERY: Final = 1000
_FAILURE_LOG_EVERY_S: Final = 10.0
_KNOWN_SESSIONS: Final = 10_000  # session ids known to have a row; bounded, oldest forgotten first
_SESSION_FIELDS: Final = tuple(f.name for f in fields(SessionRecord))
_RESPONSE_FIELDS: Final = tuple(f.name for f in fields(ResponseRecord))


class Ledger:
    """Writes sessions and responses to the ledger database without ever blocking the caller.

    Open with ``await Ledger.open(url)``; close with ``await ledger.aclose()`` (or use
    ``async with``). The read side is in ``realtalk.ledger.queries``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_queue: int = 10_000,
        flush_interval_s: float = 0.25,
        max_batch: int = 1000,
    ) -> None:
        """Wrap an engine whose schema is ready (``Ledger.open`` does both); starts the writer task,
        so it must be called with an event loop running."""
        if max_queue < 1 or max_batch < 1 or not 0 <= flush_interval_s <= 1:
            raise ValueError("need max_queue >= 1, max_batch >= 1 and 0 <= flush_interval_s <= 1")
        self._engine = engine
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._flush_interval_s = flush_interval_s
        self._queue: deque[Item] = deque()
        self._in_flight = 0
        self._accepted = 0  # rows ever accepted into the queue
        self._settled = 0  # of those, rows written or rejected
        self._flush_target = 0
        self._dropped = 0
        self._rejected = 0
        self._closing = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._known_sessions: OrderedDict[str, None] = OrderedDict()
        self._dialect = engine.dialect.name
        self._task = asyncio.get_running_loop().create_task(self._run(), name="realtalk-ledger-writer")

    @classmethod
    async def open(
        cls, url: str | URL, *, max_queue: int = 10_000, flush_interval_s: float = 0.25, max_batch: int = 1000
    ) -> Ledger:
        """Connect to the ledger at ``url`` and start writing.

        A SQLite ledger is created or migrated on the spot; a PostgreSQL one must already be at
        this realtalk's revision (``realtalk ledger upgrade``). ``max_batch`` bounds the rows of
        one commit, and so the time the event loop spends preparing it.

        Raises:
            ConfigError: an unsupported URL, an unreachable database, or a PostgreSQL schema
                that is behind (run ``realtalk ledger upgrade``) or ahead.
        """
        engine = create_ledger_engine(url)
        try:
            await prepare(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, max_queue=max_queue, flush_interval_s=flush_interval_s, max_batch=max_batch)

    @property
    def engine(self) -> AsyncEngine:
        """The async engine, for the read side (``realtalk.ledger.queries``)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return redact_url(self._engine.url)

    @property
    def dropped_rows(self) -> int:
        """Rows dropped because the queue was full (or the ledger closed)."""
        return self._dropped

    @property
    def rejected_rows(self) -> int:
        """Rows the database refused (constraint or data errors), logged and skipped."""
        return self._rejected

    @property
    def written_rows(self) -> int:
        """Rows committed since the ledger was opened."""
        return self._settled - self._rejected

    @property
    def max_queue(self) -> int:
        """How many rows may wait to be written before new ones are dropped."""
        return self._max_queue

    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet committed (queued or being written)."""
        return self._accepted - self._settled

    def session_started(self, record: SessionRecord) -> None:
        """Queue the start of a session. Never blocks."""
        self._put(record)

    def response_done(self, record: ResponseRecord) -> None:
        """Queue one billed response; committed within about ``flush_interval_s``. Never blocks."""
        self._put(record)

    def response_heard(self, heard: ResponseHeard) -> None:
        """Queue what was heard of a response already queued or written. Never blocks."""
        self._put(heard)

    def session_ended(self, session_id: str, ended_at: datetime, reason: str | None) -> None:
        """Queue the end of a session. Never blocks."""
        self._put(SessionEnd(session_id, ended_at, reason))

    def _put(self, item: Item) -> None:
        if self._closing or len(self._queue) >= self._max_queue:
            self._dropped += 1
            if self._dropped % _DROP_LOG_EVERY == 1:
                why = (
                    "the ledger is closed" if self._closing else f"its queue is full ({self._max_queue} rows)"
                )
                logger.warning("ledger: dropped a row because %s; %d dropped so far", why, self._dropped)
            return
        self._queue.append(item)
        self._accepted += 1
        if len(self._queue) == 1 or len(self._queue) >= self._max_batch:
            self._wakeup.set()

    async def flush(self) -> None:
        """Wait until every row queued before this call is committed (or rejected).

        While the database is unreachable this waits for it; bound it with ``asyncio.timeout``.
        """
        target = self._accepted
        self._flush_target = max(self._flush_target, target)
        self._wakeup.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._settled >= target or self._task.done())
        if self._settled < target:
            raise RuntimeError("the ledger's writer stopped before the rows were written")

    async def aclose(self, *, timeout_s: float = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout_s``), stop the writer and close the
        database connections. Rows not written by then are logged as lost."""
        if not self._closing:
            self._closing = True
            self._wakeup.set()
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
                logger.error(
                    "ledger: closed with %d rows not written (the database %s did not accept them in %.1f s)",
                    self.pending_rows,
                    self.url,
                    timeout_s,
                )
        await self._engine.dispose()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # The writer task.

    def _urgent(self) -> bool:
        return self._closing or self._flush_target > self._settled or len(self._queue) >= self._max_batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = loop.time() + self._flush_interval_s
            while not self._urgent() and (remaining := deadline - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            await self._write_until_done(batch)
            self._settled += len(batch)
            async with self._progress:
                self._progress.notify_all()

    async def _write_until_done(self, batch: Sequence[Item]) -> None:
        delays: Iterator[float] | None = None
        failures = 0
        last_logged = float("-inf")
        while True:
            try:
                await self._write(batch)
            except Exception as exc:
                if not _row_at_fault(exc):
                    failures += 1
                    delays = delays or backoff_delays_s(random=random.random, initial_s=0.05, max_s=2.0)
                    last_logged = self._log_failure(exc, len(batch), failures, last_logged)
                    await asyncio.sleep(next(delays))
                    continue
                if len(batch) > 1:
                    # Find the row at fault: each row alone, so the others are still written.
                    for item in batch:
                        await self._write_until_done([item])
                else:
                    self._rejected += 1
                    logger.error(
                        "ledger: the database refused a row, skipped: %s (%r)", _describe(exc), *batch
                    )
                return
            if failures:
                logger.warning(
                    "ledger: %s is back; wrote %d rows after %d failed attempts",
                    self.url,
                    len(batch),
                    failures,
                )
            return

    def _log_failure(self, exc: Exception, rows: int, failures: int, last_logged: float) -> float:
        # At most one line per _FAILURE_LOG_EVERY_S while the database stays away.
        if time.monotonic() - last_logged < _FAILURE_LOG_EVERY_S:
            return last_logged
        logger.warning(
            "ledger: writing %d rows to %s failed (attempt %d), retrying: %s",
            rows,
            self.url,
            failures,
            _describe(exc, self._engine.url),
            exc_info=not isinstance(exc, DBAPIError | OSError),
        )
        return time.monotonic()

    async def _write(self, batch: Sequence[Item]) -> None:
        started = [item for item in batch if isinstance(item, SessionRecord)]
        done = [item for item in batch if isinstance(item, ResponseRecord)]
        ended = [item for item in batch if isinstance(item, SessionEnd)]
        heard = [item for item in batch if isinstance(item, ResponseHeard)]
        # Stand-ins for sessions whose own row was lost, so a response row always has its session.
        starting = {item.session_id for item in started}
        stand_ins: dict[str, dict[str, Any]] = {}
        for response in done:
            if response.session_id not in self._known_sessions and response.session_id not in starting:
                stand_ins.setdefault(response.session_id, _stand_in(response))
        async with self._engine.begin() as connection:
            if started:
                await connection.execute(
                    self._insert_ignoring(sessions), [_row(s, _SESSION_FIELDS) for s in started]
                )
            if stand_ins:
                await connection.execute(self._insert_ignoring(sessions), list(stand_ins.values()))
            if done:
                await connection.execute(
                    self._insert_ignoring(responses), [_row(r, _RESPONSE_FIELDS) for r in done]
                )
            if heard:  # after the inserts: a row and what was heard of it may share a batch
                await connection.execute(
                    update(responses)
                    .where(
                        responses.c.session_id == bindparam("heard_session_id"),
                        responses.c.response_id == bindparam("heard_response_id"),
                    )
                    .values(
                        audio_heard_ms=bindparam("heard_ms"), unheard_audio_usd=bindparam("heard_unheard_usd")
                    ),
                    [
                        {
                            "heard_session_id": h.session_id,
                            "heard_response_id": h.response_id,
                            "heard_ms": h.audio_heard_ms,
                            "heard_unheard_usd": h.unheard_audio_usd,
                        }
                        for h in heard
                    ],
                )
            if ended:
                statement = (
                    update(sessions)
                    .where(sessions.c.session_id == bindparam("end_session_id"))
                    .values(ended_at=bindparam("end_at"), end_reason=bindparam("end_reason"))
                )
                await connection.execute(
                    statement,
                    [
                        {"end_session_id": e.session_id, "end_at": e.ended_at, "end_reason": e.reason}
                        for e in ended
                    ],
                )
        for session_id in (*starting, *stand_ins):
            self._known_sessions[session_id] = None
            if len(self._known_sessions) > _KNOWN_SESSIONS:
                self._known_sessions.popitem(last=False)

    def _insert_ignoring(self, table: Table) -> Insert:
        # Skip rows already there (a replayed batch): ON CONFLICT DO NOTHING on both databases.
        if self._dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()


def _row(item: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(item, name) for name in names}


def _stand_in(response: ResponseRecord) -> dict[str, Any]:
    return {
        "session_id": response.session_id,
        "user": response.user,
        "deployment": response.deployment,
        "pricing_model": response.pricing_model,
        "transport": None,
        "client": None,
        "started_at": response.created_at,
    }


def _row_at_fault(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (a constraint or data error, SQLSTATE
    classes 23 and 22), which no retry fixes; anything else (no connection, a restart, a lock)
    may pass."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    # asyncpg's data errors reach SQLAlchemy as a plain DBAPIError; its SQLSTATE tells.
    sqlstate = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    return isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23")


def _describe(exc: BaseException, url: URL | None = None) -> str:
    """An error for a log line: the driver's own message (not the SQL and its parameters), with
    the URL's password blanked should a driver ever quote it."""
    detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = f"{type(detail).__name__}: {detail}"
    password = url.password if url is not None else None
    return text.replace(str(password), "***") if password else text
