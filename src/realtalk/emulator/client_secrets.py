"""Ephemeral ``ek_`` keys minted by ``POST /openai/v1/realtime/client_secrets`` (§4.1).

A key starts any number of sessions until it expires; a session may outlive its key (expiry only
applies to starting one). The session configuration given at mint time becomes the starting
configuration of every session opened with the key, and its ``model`` is the deployment used when
the handshake names none.

The store belongs to one emulator instance, is bounded, and forgets expired keys. It is keyed by
the SHA-256 of each key, and a lookup compares the bytes with ``hmac.compare_digest``: finding a
key takes no time that depends on how much of it a guess got right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["ClientSecrets", "MintedSecret"]

MIN_TTL_S = 10
MAX_TTL_S = 7200
_MAX_KEYS = 10_000


@dataclass(frozen=True)
class MintedSecret:
    value: str
    expires_at: int  # Unix seconds
    model: str
    session_update: dict[str, Any]  # applied over the defaults of each session opened with it


class ClientSecrets:
    def __init__(self) -> None:
        self._secrets: dict[bytes, MintedSecret] = {}  # SHA-256 of the value → the secret

    def mint(self, *, ttl_s: int, model: str, session_update: dict[str, Any]) -> MintedSecret:
        self._forget_expired()
        if len(self._secrets) >= _MAX_KEYS:
            del self._secrets[next(iter(self._secrets))]
        secret = MintedSecret(
            value=f"ek_{secrets.token_hex(16)}",
            expires_at=int(time.time()) + ttl_s,
            model=model,
            session_update=session_update,
        )
        self._secrets[hashlib.sha256(secret.value.encode("ascii")).digest()] = secret
        return secret

    def lookup(self, value: bytes) -> MintedSecret | None:
        """The secret whose value is ``value`` (any bytes), if it exists and has not expired."""
        secret = self._secrets.get(hashlib.sha256(value).digest())
        if secret is None or not hmac.compare_digest(secret.value.encode("ascii"), value):
            return None
        if secret.expires_at <= time.time():
            return None
        return secret

    def _forget_expired(self) -> None:
        now = time.time()
        for digest in [d for d, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[digest]
