"""Microsoft Entra ID tokens as the ledger's PostgreSQL password (Azure Database for PostgreSQL).

The PostgreSQL tests run a cluster of their own where the role ``ledger_entra`` logs in with a
SCRAM password over TLS only, so a login succeeds only with the right "token" (the role's
password), and only over TLS. Tokens come from a fake async credential, or, for the default path,
from ``DefaultAzureCredential`` talking to a managed identity endpoint served on 127.0.0.1 (the
App Service / Container Apps protocol).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from realtalk.errors import ConfigError
from realtalk.ledger import Ledger, responses_between, session_count
from realtalk.ledger.database import create_ledger_engine
from realtalk.ledger.entra import (
    AUTH_CHOICES,
    AZURE_POSTGRES_SCOPE,
    EntraLoginError,
    EntraTokenPassword,
    is_azure_postgres_host,
    postgres_auth,
)
from realtalk.ledger.leases import LeaseUnavailable, SessionLeases
from realtalk.ledger.migrate import prepare, upgrade_engine

from .conftest import _NEEDS, T0, PostgresServer, response, session

ROLE = "ledger_entra"
RIGHT_TOKEN = "entra-token-right-0123456789"
ROTATED_TOKEN = "entra-token-rotated-0123456789"
WRONG_TOKEN = "entra-token-wrong-0123456789"
DB_PASSWORD_SECRET = "ledger-db-password-4567"
IDENTITY_HEADER_SECRET = "identity-header-secret-8642"
CLIENT_ID = "00000000-0000-0000-0000-00000000c1d0"
START_S = 1_800_000_000.0

# Only the role's logins are checked: over TLS with its password, never in clear. The superuser
# keeps the cluster's trust lines, to set the role up.
HBA_LINES = (
    f"hostssl all {ROLE} 127.0.0.1/32 scram-sha-256",
    f"hostnossl all {ROLE} 127.0.0.1/32 reject",
)
# What DefaultAzureCredential would otherwise pick up from the developer's shell.
IDENTITY_VARIABLES = (
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_PASSWORD",
    "AZURE_TENANT_ID",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_USERNAME",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


class FakeClock:
    """Unix time that only moves when the test says so."""

    def __init__(self, now_s: float = START_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Grant:
    """What the fake identity answers to one ``get_token``: a token and its lifetime, or an error."""

    token: str = RIGHT_TOKEN
    lifetime_s: float = 3600
    error: Exception | None = None


class FakeTokenCredential:
    """An async token credential answering with ``grants`` in turn (the last one repeats)."""

    def __init__(self, *grants: Grant, clock: FakeClock | None = None) -> None:
        self.grants = list(grants) or [Grant()]
        self.clock = clock
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    @property
    def calls(self) -> int:
        return len(self.scopes)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        await asyncio.sleep(0)  # a real fetch yields to the event loop
        grant = self.grants[min(self.calls, len(self.grants)) - 1]
        if grant.error is not None:
            raise grant.error
        now_s = self.clock() if self.clock is not None else time.time()
        return AccessToken(grant.token, int(now_s + grant.lifetime_s))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()


def scram_verifier(password: str) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802, RFC 7677): setting the role's
    password from it keeps the token itself out of every SQL statement (and statement log)."""
    salt, iterations = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@pytest.fixture(scope="module")
def entra_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server where ``ledger_entra`` logs in with a password, over TLS only."""
    try:
        server = PostgresServer(hba_lines=HBA_LINES, tls=True)
    except FileNotFoundError:
        pytest.skip(_NEEDS)
    try:
        server.start()
        yield server
    finally:
        server.remove()


class EntraDatabase:
    """A database owned by ``ledger_entra``, whose password the test sets (to rotate a "token")."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name

    def url(self, query: str = "?azure_auth=entra") -> str:
        return f"postgresql+asyncpg://{ROLE}@127.0.0.1:{self.server.port}/{self.name}{query}"

    async def set_password(self, password: str) -> None:
        admin = create_ledger_engine(self.server.url(self.name))
        try:
            async with admin.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                if not await autocommit.scalar(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE}
                ):
                    await autocommit.execute(text(f"CREATE ROLE {ROLE} LOGIN"))
                # Sent as is: the verifier's colons are not bind parameters.
                await autocommit.exec_driver_sql(f"ALTER ROLE {ROLE} PASSWORD '{scram_verifier(password)}'")
                await autocommit.execute(text(f"ALTER DATABASE {self.name} OWNER TO {ROLE}"))
        finally:
            await admin.dispose()


@pytest.fixture
async def entra_db(entra_postgres: PostgresServer) -> EntraDatabase:
    url = entra_postgres.create_database()
    database = EntraDatabase(entra_postgres, str(make_url(url).database))
    await database.set_password(RIGHT_TOKEN)
    return database


async def uses_tls(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool(await connection.scalar(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")))


def assert_no_token_in(text_: str, caplog: pytest.LogCaptureFixture) -> None:
    for token in (RIGHT_TOKEN, ROTATED_TOKEN, WRONG_TOKEN):
        assert token not in text_
        for record in caplog.records:
            assert token not in record.getMessage()
            assert token not in (record.exc_text or "")


# --- Which URLs log in with a token (no connection) ----------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "myledger.postgres.database.azure.com",
        "myledger.privatelink.postgres.database.azure.com",
        "MyLedger.Postgres.Database.Azure.COM.",
    ],
)
def test_an_azure_host_without_a_password_logs_in_with_a_token_over_tls(host: str) -> None:
    auth = postgres_auth(make_url(f"postgresql+asyncpg://realtalk-gateway@{host}:5432/realtalk"))
    assert auth.entra_id
    assert auth.url.query == {"ssl": "require"}
    assert is_azure_postgres_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "db.example.com",
        "127.0.0.1",
        "postgres.database.azure.com.example.com",
        "evilpostgres.database.azure.com",
    ],
)
def test_any_other_host_without_a_password_is_left_as_it_was(host: str) -> None:
    url = make_url(f"postgresql+asyncpg://realtalk@{host}:5432/realtalk")
    auth = postgres_auth(url)
    assert not auth.entra_id
    assert auth.url == url
    assert not is_azure_postgres_host(host)


def test_a_url_with_a_password_never_uses_a_token_even_on_azure() -> None:
    url = make_url(
        f"postgresql+asyncpg://realtalk:{DB_PASSWORD_SECRET}@myledger.postgres.database.azure.com/realtalk"
    )
    auth = postgres_auth(url)
    assert not auth.entra_id
    assert auth.url.password == DB_PASSWORD_SECRET
    assert auth.url.query == {"ssl": "require"}  # Azure's server requires TLS whatever the login


def test_azure_auth_entra_forces_a_token_for_a_custom_name_and_is_not_passed_to_the_driver() -> None:
    auth = postgres_auth(make_url("postgresql+asyncpg://gw@ledger.corp.example/realtalk?azure_auth=entra"))
    assert auth.entra_id
    assert auth.url.query == {"ssl": "require"}
    assert auth.url.host == "ledger.corp.example"


def test_azure_auth_password_turns_tokens_off_for_an_azure_host() -> None:
    auth = postgres_auth(
        make_url("postgresql+asyncpg://gw@myledger.postgres.database.azure.com/realtalk?azure_auth=password")
    )
    assert not auth.entra_id
    assert auth.url.query == {"ssl": "require"}


@pytest.mark.parametrize(
    "query", ["azure_auth=managed", "azure_auth=ENTRA", "azure_auth=entra&azure_auth=password"]
)
def test_an_unknown_azure_auth_value_is_a_config_error_naming_the_choices(query: str) -> None:
    with pytest.raises(ConfigError) as raised:
        postgres_auth(make_url(f"postgresql+asyncpg://gw@db.example.com/realtalk?{query}"))
    assert raised.value.variable == "REALTALK_LEDGER_URL"
    assert all(choice in str(raised.value) for choice in AUTH_CHOICES)
    assert AUTH_CHOICES == ("entra", "password")


def test_asking_for_a_token_in_a_url_with_a_password_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as raised:
        postgres_auth(
            make_url(f"postgresql+asyncpg://gw:{DB_PASSWORD_SECRET}@db.example.com/realtalk?azure_auth=entra")
        )
    assert "remove the password" in str(raised.value)
    assert DB_PASSWORD_SECRET not in str(raised.value)


def test_azure_auth_on_a_sqlite_url_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        create_ledger_engine(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}?azure_auth=entra")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?ssl=disable", {"ssl": "disable"}),
        ("?ssl=verify-full", {"ssl": "verify-full"}),
        ("?sslmode=verify-full", {"ssl": "verify-full"}),  # libpq's name, as Azure's docs write it
        ("?azure_auth=entra&sslmode=prefer", {"ssl": "prefer"}),
    ],
)
def test_a_tls_mode_in_the_url_is_kept(query: str, expected: dict[str, str]) -> None:
    auth = postgres_auth(
        make_url(f"postgresql+asyncpg://gw@myledger.postgres.database.azure.com/realtalk{query}")
    )
    assert auth.entra_id
    assert auth.url.query == expected


# --- The token: scope, cache, refresh, failures (no connection) ----------------------------------


async def test_the_token_is_asked_for_the_azure_database_for_postgresql_scope() -> None:
    credential = FakeTokenCredential()
    password = EntraTokenPassword(credential, url="postgresql+asyncpg://gw@x/realtalk")
    assert await password() == RIGHT_TOKEN
    assert credential.scopes == [("https://ossrdbms-aad.database.windows.net/.default",)]
    assert AZURE_POSTGRES_SCOPE == "https://ossrdbms-aad.database.windows.net/.default"


async def test_the_token_is_reused_until_five_minutes_before_it_expires_then_fetched_again() -> None:
    clock = FakeClock()
    credential = FakeTokenCredential(Grant(RIGHT_TOKEN, 3600), Grant(ROTATED_TOKEN, 3600), clock=clock)
    password = EntraTokenPassword(credential, url="u", clock=clock)
    assert await password() == RIGHT_TOKEN
    clock.now_s += 3600 - 300 - 1
    assert await password() == RIGHT_TOKEN
    assert credential.calls == 1
    clock.now_s += 1
    assert await password() == ROTATED_TOKEN
    assert credential.calls == 2


async def test_connections_opened_together_share_one_fetch() -> None:
    credential = FakeTokenCredential()
    password = EntraTokenPassword(credential, url="u")
    assert await asyncio.gather(*(password() for _ in range(10))) == [RIGHT_TOKEN] * 10
    assert credential.calls == 1


async def test_no_identity_is_a_config_error_that_says_what_to_set_up() -> None:
    refused = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n\tManagedIdentityCredential: no managed identity endpoint"
    )
    credential = FakeTokenCredential(Grant(error=refused))
    password = EntraTokenPassword(
        credential, url="postgresql+asyncpg://gw@myledger.postgres.database.azure.com/realtalk"
    )
    with pytest.raises(EntraLoginError) as raised:
        await password()
    message = str(raised.value)
    assert isinstance(raised.value, ConfigError)
    assert raised.value.variable == "REALTALK_LEDGER_URL"
    assert "postgresql+asyncpg://gw@myledger.postgres.database.azure.com/realtalk has no password" in message
    assert (
        "Microsoft Entra ID token (FakeTokenCredential, scope https://ossrdbms-aad.database.windows.net/.default)"
        in message
    )
    assert "(DefaultAzureCredential failed to retrieve a token from the included credentials)" in message
    for option in ("managed identity", "AZURE_CLIENT_ID", "`az login`", "put a password in the URL"):
        assert option in message
    # The next connection tries again.
    with pytest.raises(EntraLoginError):
        await password()
    assert credential.calls == 2


def test_the_description_and_repr_name_the_credential_and_scope_only() -> None:
    password = EntraTokenPassword(FakeTokenCredential(), url="u")
    assert password.describe() == (
        "Microsoft Entra ID token from FakeTokenCredential (scope https://ossrdbms-aad.database.windows.net/.default)"
    )
    assert repr(password) == (
        "EntraTokenPassword(credential='FakeTokenCredential', scope='https://ossrdbms-aad.database.windows.net/.default')"
    )


# --- Against PostgreSQL --------------------------------------------------------------------------


@pytest.mark.system_package("postgresql")
async def test_the_right_token_logs_in_over_tls_and_the_ledger_writes_and_reads_back(
    entra_db: EntraDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credential = FakeTokenCredential()
    engine = create_ledger_engine(entra_db.url(), credential=credential)
    assert "azure_auth" not in str(engine.url)
    assert engine.url.query == {"ssl": "require"}
    try:
        assert (await upgrade_engine(engine)).changed
        await prepare(engine)
        assert await uses_tls(engine)  # TLS by default: the server refuses this role in clear
        ledger = Ledger(engine)
        ledger.session_started(session("sess_entra"))
        ledger.response_done(response("sess_entra", cost_usd="0.125"))
        await ledger.flush()
        rows = await responses_between(ledger, T0, T0 + timedelta(days=1))
        assert [(row.session_id, row.cost_usd) for row in rows] == [("sess_entra", Decimal("0.125"))]
        assert await session_count(ledger, since=T0) == 1
        await ledger.aclose()  # disposes the engine
    finally:
        await engine.dispose()
    assert credential.scopes and set(credential.scopes) == {(AZURE_POSTGRES_SCOPE,)}
    assert not credential.closed  # the caller's credential: the caller closes it
    assert_no_token_in(ledger.url, caplog)


@pytest.mark.system_package("postgresql")
async def test_a_wrong_token_is_refused_with_a_config_error_that_never_shows_it(
    entra_db: EntraDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = create_ledger_engine(entra_db.url(), credential=FakeTokenCredential(Grant(WRONG_TOKEN)))
    try:
        with pytest.raises(EntraLoginError) as refused:
            async with engine.connect():
                pass
        with pytest.raises(ConfigError) as upgrading:
            await upgrade_engine(engine)
    finally:
        await engine.dispose()
    message = str(refused.value)
    assert f"refused the Microsoft Entra ID token of FakeTokenCredential for the role '{ROLE}'" in message
    assert f'password authentication failed for user "{ROLE}"' in message
    assert "pgaadauth_create_principal('<identity name>', false, false)" in message
    assert "refused the Microsoft Entra ID token" in str(upgrading.value)
    assert_no_token_in(message + str(upgrading.value), caplog)


@pytest.mark.system_package("postgresql")
async def test_a_new_pool_connection_after_the_token_expired_logs_in_with_a_fresh_one(
    entra_db: EntraDatabase,
) -> None:
    # The first token is inside the five-minute margin at once, so it serves one login only;
    # meanwhile the "identity" moves on to a new token (the role's password changes to it).
    credential = FakeTokenCredential(Grant(RIGHT_TOKEN, lifetime_s=60), Grant(ROTATED_TOKEN, lifetime_s=3600))
    engine = create_ledger_engine(entra_db.url(), credential=credential)
    try:
        async with engine.connect() as first:
            assert await first.scalar(text("SELECT current_user")) == ROLE
            await entra_db.set_password(ROTATED_TOKEN)
            async with engine.connect() as second:  # a second connection: a new login
                assert await second.scalar(text("SELECT current_user")) == ROLE
            assert await first.scalar(text("SELECT 1")) == 1  # the old login is still good
        assert credential.calls == 2
        async with engine.connect() as third, engine.connect() as fourth:
            assert await third.scalar(text("SELECT 1")) == await fourth.scalar(text("SELECT 1")) == 1
        assert credential.calls == 2  # the fresh token served the new login too
    finally:
        await engine.dispose()


@pytest.mark.system_package("postgresql")
async def test_a_url_with_a_password_logs_in_with_it_and_never_asks_the_credential(
    entra_db: EntraDatabase,
) -> None:
    credential = FakeTokenCredential(Grant(WRONG_TOKEN))
    url = f"postgresql+asyncpg://{ROLE}:{RIGHT_TOKEN}@127.0.0.1:{entra_db.server.port}/{entra_db.name}"
    engine = create_ledger_engine(url, credential=credential)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT current_user")) == ROLE
    finally:
        await engine.dispose()
    assert credential.calls == 0


@pytest.mark.system_package("postgresql")
async def test_without_an_identity_the_session_leases_see_an_unavailable_ledger(
    entra_db: EntraDatabase,
) -> None:
    # The gateway answers 503 and keeps renewing, as for a database that is down, rather than
    # failing on an unexpected error.
    no_identity = ClientAuthenticationError("ManagedIdentityCredential: no managed identity endpoint found")
    engine = create_ledger_engine(entra_db.url(), credential=FakeTokenCredential(Grant(error=no_identity)))
    try:
        leases = SessionLeases(engine)
        with pytest.raises(LeaseUnavailable, match="Microsoft Entra ID token"):
            await leases.acquire(session_id="s1", user="alice", limit=1)
        with pytest.raises(LeaseUnavailable):
            await leases.renew()
    finally:
        await engine.dispose()


@pytest.mark.system_package("postgresql")
async def test_the_writer_keeps_its_rows_while_no_token_can_be_had_and_writes_them_once_one_can(
    entra_db: EntraDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    setup = create_ledger_engine(entra_db.url(), credential=FakeTokenCredential())
    try:
        await upgrade_engine(setup)
    finally:
        await setup.dispose()
    no_identity = ClientAuthenticationError("ManagedIdentityCredential: no managed identity endpoint found")
    credential = FakeTokenCredential(Grant(error=no_identity), Grant(error=no_identity), Grant(RIGHT_TOKEN))
    async with Ledger(
        create_ledger_engine(entra_db.url(), credential=credential), flush_interval_s=0
    ) as ledger:
        ledger.session_started(session("sess_later"))
        async with asyncio.timeout(10):
            await ledger.flush()
        assert await session_count(ledger, since=T0) == 1
    assert credential.calls == 3
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("EntraLoginError" in line and "Microsoft Entra ID token" in line for line in warnings)


# --- The default credential: a managed identity endpoint on 127.0.0.1 ----------------------------


@dataclass
class IdentityRequest:
    resource: str | None
    client_id: str | None
    header_matches: bool


@pytest.fixture
async def managed_identity(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[IdentityRequest]]:
    """A managed identity endpoint as App Service and Container Apps provide it
    (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``), answering ``RIGHT_TOKEN``; the requests it got."""
    requests: list[IdentityRequest] = []

    async def token(request: web.Request) -> web.Response:
        requests.append(
            IdentityRequest(
                request.query.get("resource"),
                request.query.get("client_id"),
                request.headers.get("X-IDENTITY-HEADER") == IDENTITY_HEADER_SECRET,
            )
        )
        body = {
            "access_token": RIGHT_TOKEN,
            "expires_on": str(int(time.time()) + 3600),
            "resource": request.query.get("resource"),
            "token_type": "Bearer",
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/msi/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for name in IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER_SECRET)
    try:
        yield requests
    finally:
        await runner.cleanup()


@pytest.mark.system_package("postgresql")
async def test_without_a_credential_the_default_azure_credential_logs_in_with_the_managed_identity(
    entra_db: EntraDatabase,
    managed_identity: list[IdentityRequest],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)  # a user-assigned identity
    engine = create_ledger_engine(entra_db.url())
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT current_user")) == ROLE
        await engine.dispose()  # a new login after the pool is emptied: the token is cached
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT current_user")) == ROLE
    finally:
        await engine.dispose()
    # The resource is the scope without "/.default" (the managed identity protocol).
    assert managed_identity == [IdentityRequest("https://ossrdbms-aad.database.windows.net", CLIENT_ID, True)]
    assert_no_token_in("", caplog)
