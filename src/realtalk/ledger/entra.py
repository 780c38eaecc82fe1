"""Microsoft Entra ID tokens as the password of a PostgreSQL ledger (Azure Database for PostgreSQL).

Which URLs use a token is decided from the URL alone (the ledger takes values, never settings):

* a URL with a password always logs in with that password;
* otherwise ``?azure_auth=entra`` or ``?azure_auth=password`` decides, and is removed from the URL
  before the driver sees it;
* otherwise a host under Azure's domain (``<server>.postgres.database.azure.com``, the
  ``privatelink.`` names included) uses a token, any other host does not.

A token is a bearer credential, so a URL that logs in with one, or names an Azure host, requires
TLS (``ssl=require``) unless it says otherwise (``ssl=...``, or libpq's ``sslmode=...``, which is
passed on as ``ssl``: asyncpg knows only that name).

asyncpg calls ``EntraTokenPassword`` (a coroutine function given as ``password``) for every new
connection. Azure checks the token only when a connection logs in, so connections already in the
pool outlive it; a new connection after the token's expiry gets a fresh one: the token is cached
until ``refresh_margin_s`` before its ``expires_on``.

Without a credential of the caller's, each fetch makes a ``DefaultAzureCredential`` (managed
identity in Azure, ``AZURE_CLIENT_ID`` for a user-assigned one, ``az login`` on a workstation)
and closes it as soon as the token is in hand. A fetch happens about once per token lifetime, so
nothing outlives it, and no engine has a credential to close on ``dispose()``.

A login that fails for want of a token, or that the server refuses (SQLSTATE class 28), raises
``EntraLoginError``: a ``ConfigError`` that says what to set up, and a ``ConnectionError``, so the
code that already copes with an unreachable ledger (the writer's retries, a lease's 503, the
renewal loop) copes with it the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from azure.core.exceptions import ClientAuthenticationError
from sqlalchemy import URL

from realtalk.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "AUTH_CHOICES",
    "AUTH_OPTION",
    "AZURE_POSTGRES_DOMAIN",
    "AZURE_POSTGRES_SCOPE",
    "EntraLoginError",
    "EntraTokenPassword",
    "PostgresAuth",
    "is_azure_postgres_host",
    "postgres_auth",
]

AZURE_POSTGRES_SCOPE: Final = "https://ossrdbms-aad.database.windows.net/.default"
AZURE_POSTGRES_DOMAIN: Final = ".postgres.database.azure.com"
AUTH_OPTION: Final = "azure_auth"
AUTH_CHOICES: Final = ("entra", "password")

_VARIABLE: Final = "REALTALK_LEDGER_URL"
_EXAMPLE: Final = "REALTALK_LEDGER_URL=postgresql+asyncpg://realtalk-gateway@myserver.postgres.database.azure.com:5432/realtalk"
_TLS_OPTIONS: Final = ("ssl", "sslmode")


class EntraLoginError(ConfigError, ConnectionError):
    """A ledger connection could not log in with a Microsoft Entra ID token: none could be had,
    or the server refused it. The message says which identity was used and what to set up."""


def is_azure_postgres_host(host: str | None) -> bool:
    """Whether ``host`` is an Azure Database for PostgreSQL name (``*.postgres.database.azure.com``)."""
    if not host:
        return False
    return host.lower().rstrip(".").endswith(AZURE_POSTGRES_DOMAIN)


@dataclass(frozen=True)
class PostgresAuth:
    """How a PostgreSQL ledger URL logs in: ``url`` is what the driver gets (``azure_auth``
    removed, ``sslmode`` renamed ``ssl``, TLS required where a token or an Azure host is
    involved); ``entra_id`` says whether each new connection's password is a Microsoft Entra ID
    token."""

    url: URL
    entra_id: bool


def postgres_auth(url: URL) -> PostgresAuth:
    """Decide how the PostgreSQL ledger at ``url`` logs in (see the module's docstring).

    Raises:
        ConfigError: ``azure_auth`` is not one of ``AUTH_CHOICES``, or asks for a token in a URL
            that has a password.
    """
    choice = url.query.get(AUTH_OPTION)
    if choice is not None and choice not in AUTH_CHOICES:
        # A repeated option arrives as a tuple: refused the same way.
        shown = choice if isinstance(choice, str) else "&".join(choice)
        raise ConfigError(
            f"the ledger URL's {AUTH_OPTION}={shown} is not one of {', '.join(AUTH_CHOICES)} "
            f"({AUTH_OPTION}=entra logs in with a Microsoft Entra ID token, {AUTH_OPTION}=password "
            "with the URL's password)",
            variable=_VARIABLE,
            example=f"{_EXAMPLE}?{AUTH_OPTION}=entra",
        )
    has_password = url.password is not None
    if choice == "entra" and has_password:
        raise ConfigError(
            f"the ledger URL has a password and asks for {AUTH_OPTION}=entra: remove the password "
            f"to log in with a Microsoft Entra ID token, or remove {AUTH_OPTION} to use the password",
            variable=_VARIABLE,
            example=_EXAMPLE,
        )
    azure_host = is_azure_postgres_host(url.host)
    if has_password:
        entra_id = False
    elif choice is not None:
        entra_id = choice == "entra"
    else:
        entra_id = azure_host
    prepared = url.difference_update_query([AUTH_OPTION])
    sslmode = url.query.get("sslmode")
    if isinstance(sslmode, str) and "ssl" not in url.query:
        # libpq's name, the one Azure's documentation uses; asyncpg only takes ``ssl``.
        prepared = prepared.difference_update_query(["sslmode"]).update_query_dict({"ssl": sslmode})
    elif (entra_id or azure_host) and not any(option in url.query for option in _TLS_OPTIONS):
        # Azure Database for PostgreSQL enforces TLS by default; a token must never travel in clear.
        prepared = prepared.update_query_dict({"ssl": "require"})
    return PostgresAuth(prepared, entra_id)


class EntraTokenPassword:
    """asyncpg's ``password`` for Entra ID logins: ``await password()`` gives a token for ``scope``.

    The token is cached until ``refresh_margin_s`` before its ``expires_on``; concurrent
    connections share one fetch. ``credential`` is the caller's, and left open; ``None`` makes a
    ``DefaultAzureCredential`` per fetch, closed right after. ``clock`` returns Unix time (as
    ``expires_on`` is). ``url`` (its password hidden) names the ledger in errors.
    """

    def __init__(
        self,
        credential: AsyncTokenCredential | None = None,
        *,
        url: str,
        scope: str = AZURE_POSTGRES_SCOPE,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._url = url
        self._scope = scope
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._name = "DefaultAzureCredential" if credential is None else type(credential).__name__
        self._token: str | None = None
        self._expires_on_s = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        """A token valid for at least ``refresh_margin_s`` more (when the issuer allows that long).

        Raises:
            EntraLoginError: no identity could give a token (``ClientAuthenticationError``).
        """
        cached = self._fresh_token()
        if cached is not None:
            return cached
        async with self._lock:
            # Whoever waited on the lock finds the token the first caller fetched.
            cached = self._fresh_token()
            if cached is not None:
                return cached
            try:
                access = await self._fetch()
            except ClientAuthenticationError as exc:
                raise self._failed(exc) from exc
            self._token = access.token
            self._expires_on_s = float(access.expires_on)
            return access.token

    def login_refused(self, user: str | None, error: BaseException) -> EntraLoginError | None:
        """The error to raise instead of ``error`` when it is the server refusing the token
        (SQLSTATE class 28, e.g. ``28P01``); ``None`` for any other error."""
        sqlstate = getattr(error, "sqlstate", None)
        if not isinstance(sqlstate, str) or not sqlstate.startswith("28"):
            return None
        # The server's message names the role, never the password.
        return EntraLoginError(
            f"the ledger database {self._url} refused the Microsoft Entra ID token of {self._name} "
            f"for the role {user!r} ({error}). The role must be made for this identity by an Entra "
            "administrator of the server (in the postgres database: select * from "
            "pgaadauth_create_principal('<identity name>', false, false)), the URL's user must be "
            "that role's name, and AZURE_CLIENT_ID must be set for a user-assigned identity. Or "
            "put a password in the URL to log in with it instead.",
            variable=_VARIABLE,
            example=_EXAMPLE,
        )

    def describe(self) -> str:
        """E.g. "Microsoft Entra ID token from DefaultAzureCredential (scope ...)"; never the token."""
        return f"Microsoft Entra ID token from {self._name} (scope {self._scope})"

    def __repr__(self) -> str:
        return f"EntraTokenPassword(credential={self._name!r}, scope={self._scope!r})"

    async def _fetch(self) -> AccessToken:
        if self._credential is not None:
            return await self._credential.get_token(self._scope)
        # Imported here: azure.identity is slow to import and only Entra ID ledgers need it.
        from azure.identity.aio import DefaultAzureCredential

        async with DefaultAzureCredential() as credential:
            return await credential.get_token(self._scope)

    def _fresh_token(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_on_s - self._refresh_margin_s:
            return self._token
        return None

    def _failed(self, exc: ClientAuthenticationError) -> EntraLoginError:
        first_line = (exc.message or str(exc)).strip().splitlines()[0:1]
        reason = first_line[0].rstrip(".") if first_line else type(exc).__name__
        return EntraLoginError(
            f"the ledger URL {self._url} has no password, so realtalk logs in to it with a Microsoft "
            f"Entra ID token ({self._name}, scope {self._scope}), and getting one failed ({reason}). "
            "Give this process an identity: a managed identity in Azure (set AZURE_CLIENT_ID to the "
            "client id of a user-assigned one), or `az login` on a workstation; its role must exist "
            "on the server. Or put a password in the URL to log in with it instead "
            f"({AUTH_OPTION}=password keeps a URL without one off Entra ID).",
            variable=_VARIABLE,
            example=_EXAMPLE,
        )
