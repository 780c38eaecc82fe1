"""Which database a ledger URL names, and the async engine that talks to it.

Two drivers are supported: ``sqlite+aiosqlite:///path/to/ledger.db`` (the default, a file) and
``postgresql+asyncpg://user:password@host/db``. ``sqlite:///`` and ``postgresql://`` (or
``postgres://``) are read as those. A URL is shown to people only through ``redact_url``, which
hides the password.

A PostgreSQL URL without a password on Azure (``<server>.postgres.database.azure.com``), or with
``?azure_auth=entra``, logs in with a Microsoft Entra ID token per new connection; the rules are in
``realtalk.ledger.entra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import URL, event, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from realtalk.errors import ConfigError
from realtalk.ledger.entra import AUTH_OPTION, EntraTokenPassword, postgres_auth

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

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


def create_ledger_engine(url: str | URL, *, credential: AsyncTokenCredential | None = None) -> AsyncEngine:
    """An async engine for the ledger at ``url``; for a SQLite file, its folder is created.

    A PostgreSQL URL that logs in with a Microsoft Entra ID token (``realtalk.ledger.entra``) gets
    one from ``credential`` for each new connection; ``None`` uses a ``DefaultAzureCredential``
    made for each fetch. ``credential`` stays the caller's to close, and is unused otherwise.

    Raises:
        ConfigError: an unsupported URL, an unknown ``azure_auth`` value, or a SQLite folder
            that cannot be created.
    """
    parsed = ledger_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, credential)
    if AUTH_OPTION in parsed.query:
        raise ConfigError(
            f"{AUTH_OPTION} applies to PostgreSQL ledger URLs; remove it from the SQLite URL",
            variable=_VARIABLE,
        )
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


def _postgres_engine(url: URL, credential: AsyncTokenCredential | None) -> AsyncEngine:
    auth = postgres_auth(url)
    if not auth.entra_id:
        # pool_pre_ping: after a server restart the pool's old connections are found dead before
        # a batch is sent on them, rather than failing the batch.
        return create_async_engine(auth.url, pool_pre_ping=True)
    # asyncpg calls a callable password for each new connection: a token per login, refreshed
    # before it expires (the DBAPI-neutral alternative is a do_connect listener setting
    # cparams["password"], but it is synchronous).
    password = EntraTokenPassword(credential, url=redact_url(auth.url))
    engine = create_async_engine(auth.url, pool_pre_ping=True, connect_args={"password": password})

    def login_refused(context: ExceptionContext) -> BaseException | None:
        if context.connection is not None:  # a statement's error: the login went through
            return None
        return password.login_refused(auth.url.username, context.original_exception)

    event.listen(engine.sync_engine, "handle_error", login_refused)
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
