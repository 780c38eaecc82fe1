"""Credentials for the Realtime WebSocket handshake: an API key, or a Microsoft Entra ID token.

Both give ``await credential.headers()`` at each connect (protocol reference §1.1: ``api-key: <key>``,
or ``Authorization: Bearer <token or key>``), ``describe()`` for people (never any part of the
secret) and ``await close()``.

Entra ID tokens live about an hour and a voice session may reconnect many times, so the token is
fetched per connect and cached until ``refresh_margin_s`` before it expires. Only the async
``azure.identity.aio`` credentials are used: a sync ``get_token`` would block the event loop
(and the audio with it) for the whole HTTP round trip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from azure.core.exceptions import ClientAuthenticationError

from realtalk.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "DEFAULT_ENTRA_SCOPE",
    "ApiKeyCredential",
    "Credential",
    "EntraCredential",
    "KeyStyle",
    "default_credential",
]

DEFAULT_ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"

KeyStyle = Literal["api-key", "bearer"]


class Credential(Protocol):
    """What the connection needs from a credential."""

    async def headers(self) -> dict[str, str]:
        """The handshake headers that authenticate one connection."""
        ...

    def describe(self) -> str:
        """Which credential this is, for people; never contains the secret."""
        ...

    async def close(self) -> None:
        """Release what the credential holds (HTTP sessions of a token credential)."""
        ...


class ApiKeyCredential:
    """A static API key.

    ``style="api-key"`` sends ``api-key: <key>`` (Azure); ``style="bearer"`` sends
    ``Authorization: Bearer <key>`` (the OpenAI platform, and what the official SDK sends to Azure
    v1). ``source`` names where the key came from, for ``describe()``; ``None`` means a placeholder.
    """

    def __init__(self, key: str, *, style: KeyStyle = "api-key", source: str | None = "AZURE_OPENAI_API_KEY"):
        if not key or any(ch.isspace() or not ch.isprintable() for ch in key):
            # A header value cannot carry whitespace or control characters; say so without the key.
            raise ConfigError(
                f"{source or 'The API key'} is empty or contains spaces or control characters; "
                "paste the key exactly as the portal shows it.",
                variable=source,
            )
        self._key = key
        self._style: KeyStyle = style
        self._source = source

    async def headers(self) -> dict[str, str]:
        """``{"api-key": key}`` or ``{"Authorization": "Bearer <key>"}``."""
        if self._style == "api-key":
            return {"api-key": self._key}
        return {"Authorization": f"Bearer {self._key}"}

    def describe(self) -> str:
        """E.g. "API key from AZURE_OPENAI_API_KEY (32 characters), sent in the api-key header"."""
        header = "api-key header" if self._style == "api-key" else "Authorization: Bearer header"
        if self._source is None:
            return f"no API key set: a placeholder key for the local server, sent in the {header}"
        return f"API key from {self._source} ({len(self._key)} characters), sent in the {header}"

    async def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"ApiKeyCredential(style={self._style!r}, source={self._source!r})"


class EntraCredential:
    """A Microsoft Entra ID token from an async ``azure.identity`` credential.

    ``headers()`` returns ``{"Authorization": "Bearer <token>"}``. The token is cached until
    ``refresh_margin_s`` before its ``expires_on``; concurrent callers share one fetch. ``clock``
    must return Unix time (``expires_on`` is Unix time). ``token`` can be passed as the official
    SDK's async ``api_key`` provider. ``close()`` closes ``token_credential`` if ``owns_credential``.
    """

    def __init__(
        self,
        token_credential: AsyncTokenCredential,
        *,
        scope: str = DEFAULT_ENTRA_SCOPE,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        owns_credential: bool = True,
    ) -> None:
        self._credential = token_credential
        self._scope = scope
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._name = name or type(token_credential).__name__
        self._owns_credential = owns_credential
        self._token: str | None = None
        self._expires_on_s = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A token valid for at least ``refresh_margin_s`` more (when the issuer allows that long)."""
        cached = self._fresh_token()
        if cached is not None:
            return cached
        async with self._lock:
            # Whoever waited on the lock finds the token the first caller fetched.
            cached = self._fresh_token()
            if cached is not None:
                return cached
            try:
                access = await self._credential.get_token(self._scope)
            except ClientAuthenticationError as exc:
                first_line = (exc.message or str(exc)).strip().splitlines()[0:1]
                raise ConfigError(
                    "AZURE_OPENAI_API_KEY is not set, so realtalk asked Microsoft Entra ID for a token "
                    f"({self._name}, scope {self._scope}), and that failed: "
                    f"{first_line[0] if first_line else type(exc).__name__} "
                    "Sign in with `az login` (or give this identity access), or set AZURE_OPENAI_API_KEY.",
                    variable="AZURE_OPENAI_API_KEY",
                ) from exc
            self._token = access.token
            self._expires_on_s = float(access.expires_on)
            return access.token

    async def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``, fetching a token only when needed."""
        return {"Authorization": f"Bearer {await self.token()}"}

    def describe(self) -> str:
        """E.g. "Microsoft Entra ID token from DefaultAzureCredential (scope ...)"."""
        return (
            f"Microsoft Entra ID token from {self._name} (scope {self._scope}), sent in the "
            "Authorization: Bearer header; set AZURE_OPENAI_API_KEY to use a key instead"
        )

    async def close(self) -> None:
        """Close the token credential if this object owns it."""
        if self._owns_credential:
            await self._credential.close()

    def __repr__(self) -> str:
        return f"EntraCredential(name={self._name!r}, scope={self._scope!r})"

    def _fresh_token(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_on_s - self._refresh_margin_s:
            return self._token
        return None


def default_credential() -> AsyncTokenCredential:
    """``azure.identity.aio.DefaultAzureCredential``, imported only when Entra ID is used."""
    # Imported here: azure.identity is slow to import and only the Entra ID path needs it.
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
