"""Schema migrations (Alembic): bring a ledger database to the schema this realtalk writes.

Alembic runs on the ledger's own async engine: the migration commands are synchronous, so they
run inside ``AsyncConnection.run_sync`` on a connection handed to ``migrations/env.py``. The same
code path serves SQLite and PostgreSQL, and no second (synchronous) driver is needed.

SQLite ledgers are upgraded on first use (``prepare``); a PostgreSQL ledger is shared by every
replica of the gateway, so it is only checked there, and upgraded by whoever runs
``realtalk ledger upgrade`` (once, before the new version is deployed).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from realtalk.errors import ConfigError
from realtalk.ledger.database import create_ledger_engine, redact_url
from realtalk.ledger.schema import VERSION_TABLE

__all__ = [
    "MIGRATIONS_DIR",
    "UpgradeResult",
    "current_revision",
    "head_revision",
    "prepare",
    "upgrade",
    "upgrade_engine",
]

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_UPGRADE_HINT: Final = "realtalk ledger upgrade"
_UPGRADE_LOCK: Final = 0x7265616C74616C6B  # "realtalk": the advisory lock migrations hold on PostgreSQL


@dataclass(frozen=True)
class UpgradeResult:
    """What an upgrade did: the revision before (``None``: an empty database) and after."""

    url: str  # with the password hidden
    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        """Whether any migration ran."""
        return self.from_revision != self.to_revision


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The revision this realtalk's schema is at (the newest migration)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the ledger ships at least one migration"
    return head


def _revision_of(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _upgrade_sync(connection: Connection, target: str) -> str | None:
    if connection.dialect.name == "postgresql":
        # Replicas that upgrade on start do it one at a time: the others wait here, then find the
        # database at head and change nothing (PostgreSQL's DDL is transactional, so a failed
        # upgrade leaves the previous revision whole).
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    before = _revision_of(connection)
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, target)
    return before


def unreachable(engine: AsyncEngine, exc: BaseException) -> ConfigError:
    """The error for a ledger database that could not be reached or used (never shows a password)."""
    detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return ConfigError(
        f"cannot use the ledger database {redact_url(engine.url)}: {type(detail).__name__}: {detail}",
        variable="REALTALK_LEDGER_URL",
    )


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database at ``engine`` is at; ``None`` for a database never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(_revision_of)


_UPGRADE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _upgrade_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _UPGRADE_LOCKS.get(loop)
    if lock is None:
        lock = _UPGRADE_LOCKS[loop] = asyncio.Lock()
    return lock


async def upgrade_engine(engine: AsyncEngine, *, to: str = "head") -> UpgradeResult:
    """Run every migration the database at ``engine`` lacks; a database at head is left as is.

    ``to`` stops at an earlier revision (tests build a database of the previous revision).

    Raises:
        ConfigError: the database is unreachable, or at a revision this realtalk does not know
            (migrated by a newer version).
    """
    try:
        # Alembic's migration context is process-global: one upgrade at a time in this process
        # (the advisory lock in _upgrade_sync orders processes).
        async with _upgrade_lock(), engine.begin() as connection:
            before = await connection.run_sync(_upgrade_sync, to)
    except CommandError as exc:
        raise ConfigError(
            f"the ledger {redact_url(engine.url)} is at a revision this realtalk does not know ({exc}); "
            "it was migrated by a newer realtalk: upgrade realtalk",
            variable="REALTALK_LEDGER_URL",
        ) from None
    except (OSError, DBAPIError) as exc:
        raise unreachable(engine, exc) from None
    return UpgradeResult(redact_url(engine.url), before, head_revision() if to == "head" else to)


async def upgrade(url: str | URL, *, to: str = "head") -> UpgradeResult:
    """Migrate the ledger at ``url`` to the newest schema (idempotent); what ``realtalk ledger
    upgrade`` runs.

    Raises:
        ConfigError: an unsupported URL, an unreachable database, or an unknown revision.
    """
    engine = create_ledger_engine(url)
    try:
        return await upgrade_engine(engine, to=to)
    finally:
        await engine.dispose()


async def prepare(engine: AsyncEngine) -> None:
    """Make sure the ledger at ``engine`` has this realtalk's schema before it is written.

    SQLite is upgraded in place. PostgreSQL is only checked: a shared database is migrated on
    purpose, by ``realtalk ledger upgrade``.

    Raises:
        ConfigError: PostgreSQL behind or ahead of this realtalk; an unreachable database.
    """
    if engine.dialect.name == "sqlite":
        await upgrade_engine(engine)
        return
    try:
        found = await current_revision(engine)
    except (OSError, DBAPIError) as exc:
        raise unreachable(engine, exc) from None
    head = head_revision()
    if found == head:
        return
    where = redact_url(engine.url)
    known = {script.revision for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if found is not None and found not in known:
        raise ConfigError(
            f"the ledger {where} is at revision {found}, newer than this realtalk knows ({head}): "
            "upgrade realtalk",
            variable="REALTALK_LEDGER_URL",
        )
    state = "has no ledger tables yet" if found is None else f"is at revision {found}"
    raise ConfigError(
        f"the ledger {where} {state}; this realtalk needs revision {head}. Run `{_UPGRADE_HINT}` "
        "(with the same REALTALK_LEDGER_URL) once, then start again.",
        variable="REALTALK_LEDGER_URL",
        example=f"{_UPGRADE_HINT} --url 'postgresql+asyncpg://…'",
    )
