"""Migrations: an empty database is upgraded to the schema module's tables, upgrading again changes
nothing, SQLite ledgers upgrade themselves, PostgreSQL ledgers are only checked."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text

from realtalk.errors import ConfigError
from realtalk.ledger import Ledger, head_revision, responses_between, upgrade
from realtalk.ledger.database import create_ledger_engine
from realtalk.ledger.schema import VERSION_TABLE, metadata, responses, sessions

from .conftest import T0, PostgresServer, response, session

DB_PASSWORD_SECRET = "ledger-db-secret-4567"


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return list(compare_metadata(context, metadata))


async def test_upgrade_creates_the_ledger_on_an_empty_database(empty_db_url: str) -> None:
    result = await upgrade(empty_db_url)

    assert (result.from_revision, result.to_revision, result.changed) == (None, head_revision(), True)
    engine = create_ledger_engine(empty_db_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert {"sessions", "responses", VERSION_TABLE} <= tables
            assert await connection.run_sync(_schema_differences) == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_keeps_the_rows(empty_db_url: str) -> None:
    await upgrade(empty_db_url)
    async with await Ledger.open(empty_db_url) as ledger:
        ledger.response_done(response())

    again = await upgrade(empty_db_url)

    assert (again.from_revision, again.to_revision, again.changed) == (
        head_revision(),
        head_revision(),
        False,
    )
    async with await Ledger.open(empty_db_url) as ledger:
        assert len(await responses_between(ledger, T0, None)) == 1


async def test_a_new_sqlite_ledger_is_created_with_its_folder_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "data" / "realtalk" / "ledger.db"
    async with await Ledger.open(f"sqlite+aiosqlite:///{path}") as ledger:
        ledger.response_done(response())
    assert path.is_file()
    assert not (await upgrade(f"sqlite:///{path}")).changed  # plain sqlite:// means aiosqlite


@pytest.mark.system_package("postgresql")
async def test_a_postgresql_ledger_is_not_upgraded_on_open_and_the_error_names_the_command(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    with pytest.raises(ConfigError, match=r"has no ledger tables yet.*realtalk ledger upgrade") as raised:
        await Ledger.open(url)
    assert raised.value.variable == "REALTALK_LEDGER_URL"

    await upgrade(url)
    async with await Ledger.open(url.replace("postgresql+asyncpg://", "postgresql://")):
        pass


async def test_a_ledger_migrated_by_a_newer_realtalk_is_refused(empty_db_url: str) -> None:
    await upgrade(empty_db_url)
    engine = create_ledger_engine(empty_db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        await engine.dispose()

    with pytest.raises(ConfigError, match="newer"):
        await Ledger.open(empty_db_url)
    with pytest.raises(ConfigError, match="newer"):
        await upgrade(empty_db_url)


@pytest.mark.system_package("postgresql")
async def test_an_unreachable_database_is_a_config_error_that_hides_the_password(
    postgres: PostgresServer,
) -> None:
    url = postgres.url("ledger", password=DB_PASSWORD_SECRET).replace(f":{postgres.port}/", ":1/")
    for attempt in (upgrade, Ledger.open):
        with pytest.raises(ConfigError, match="cannot use the ledger database") as raised:
            await attempt(url)
        assert DB_PASSWORD_SECRET not in str(raised.value)
        assert "postgres:***@127.0.0.1:1/ledger" in str(raised.value)


@pytest.mark.parametrize("url", ["mysql://u:p@db/ledger", "postgresql+psycopg://db/ledger", "not a url"])
async def test_a_database_the_ledger_does_not_support_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="REALTALK_LEDGER_URL") as raised:
        await upgrade(url)
    assert raised.value.variable == "REALTALK_LEDGER_URL"


async def test_a_ledger_of_the_previous_revision_is_upgraded_with_its_rows_kept(empty_db_url: str) -> None:
    # The database as realtalk of revision 0001 left it: its tables, with a session and a response.
    at_previous = await upgrade(empty_db_url, to="0001")
    assert (at_previous.from_revision, at_previous.to_revision) == (None, "0001")
    before = response(cost_usd="0.123456789")
    engine = create_ledger_engine(empty_db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(sessions).values(asdict(session()) | {"ended_at": None, "end_reason": None})
            )
            await connection.execute(insert(responses).values(asdict(before)))
            assert "session_leases" not in await connection.run_sync(
                lambda sync: inspect(sync).get_table_names()
            )
        if empty_db_url.startswith("postgresql"):  # a shared database is not upgraded on open
            with pytest.raises(ConfigError, match=r"is at revision 0001.*realtalk ledger upgrade"):
                await Ledger.open(empty_db_url)

        result = await upgrade(empty_db_url)

        assert (result.from_revision, result.to_revision) == ("0001", head_revision())
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
    finally:
        await engine.dispose()
    async with await Ledger.open(empty_db_url) as ledger:
        (row,) = await responses_between(ledger, T0, None)
        assert (row.session_id, row.response_id, row.cost_usd) == ("sess_1", "resp_1", Decimal("0.123456789"))
