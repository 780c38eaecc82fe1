"""Which database a ledger URL names, and the async engine that talks to it.

Two drivers are supported: ``sqlite+aiosqlite:///path/to/ledger.db`` (the default, a file) and
``postgresql+asyncpg://user:password@host/db``. ``sqlite:///`` and ``postgresql://`` (or
``postgres://``) are read as those. A URL is shown to people only through ``redact_url``, which
hides the password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from realtalk.errors import ConfigError

__all__ = ["create_ledger_engine", "ledger_url", "redact_url"]

_VARIABLE: Final = "REALTALK_LEDGER_URL"
_EXAMPLE: Final = "REALTALK_LEDGER_URL=postgresql+asyncpg://realtalk:secret@db.example.com:5432/realtalk"
_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def ledger_url(url: str | URL) -> URL:
    """``url`` parsed, with its async driver filled in.

    Raises:
        ConfigError: not a URL, or a database or driver the ledger does not support.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        # The text may hold a password: name the problem, not the value.
        raise ConfigError(
            "the ledger URL is not a database URL", variable=_VARIABLE, example=_EXAMPLE
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"the ledger runs on SQLite (sqlite+aiosqlite) or PostgreSQL (postgresql+asyncpg), "
            f"not {parsed.drivername!r}",
            variable=_VARIABLE,
            example=_EXAMPLE,
        )
    return parsed.set(drivername=driver)


def redact_url(url: str | URL) -> str:
    """``url`` as text with any password shown as ``***``; safe to print and log."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<not a database URL>"
    return parsed.render_as_string(hide_password=True)


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_ledger_engine(url: str | URL) -> AsyncEngine:
    """An async engine for the ledger at ``url``; for a SQLite file, its folder is created.

    Raises:
        ConfigError: an unsupported URL, or a SQLite folder that cannot be created.
    """
    parsed = ledger_url(url)
    if parsed.get_backend_name() == "postgresql":
        # pool_pre_ping: after a server restart the pool's old connections are found dead before
        # a batch is sent on them, rather than failing the batch.
        return create_async_engine(parsed, pool_pre_ping=True)
    options: dict[str, Any] = {}
    if _is_memory(parsed):
        # One connection for the process, or each connection would see its own empty database.
        options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        folder = Path(str(parsed.database)).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the ledger's folder {folder}: {exc.strerror}",
                variable=_VARIABLE,
                example="REALTALK_LEDGER_URL=sqlite+aiosqlite:////var/lib/realtalk/ledger.db",
            ) from None
    engine = create_async_engine(parsed, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (reports, budget checks, another process) never wait for the writer.
    # synchronous=NORMAL: in WAL mode a commit survives the process being killed (only a power
    # cut can lose the last commits), at a fraction of FULL's fsyncs.
    # busy_timeout: a second writer (another process) waits for the lock instead of failing.
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
