"""Who may use the gateway: client tokens, where they are carried, and the Origin allowlist.

Pure: the caller passes headers, cookies, offered subprotocols and the time; nothing here does I/O.

Credentials a client may present (checked before anything is opened upstream, issue 5 item 4):

* ``Authorization: Bearer <token>``: SDK and server-side clients.
* ``api-key: <token>``: what every client configured for Azure sends (``AsyncAzureOpenAI``, the npm
  package's ``OpenAIRealtimeWS.azure()``, pipecat's Azure service), so they work unchanged.
* The WebSocket subprotocol ``openai-insecure-api-key.<token>``: browsers cannot set headers on a
  WebSocket; this is OpenAI's own convention. The gateway answers with another offered
  subprotocol (``realtime``), never the one carrying the token.
* The ``realtalk_session`` cookie (HttpOnly, SameSite=Strict) that ``POST /api/session`` sets.
* With ``trust_principal_header``, the ``X-MS-CLIENT-PRINCIPAL-NAME``/``-ID`` headers that Azure
  Container Apps authentication (Entra ID) adds after signing the user in. Only safe when that
  front end is the sole way in: it strips those headers from incoming requests. Their bytes are
  read as UTF-8 (ASGI servers hand headers over decoded as Latin-1).

Tokens are a static list (compared in constant time; the user is ``token:<hash prefix>``) or
short-lived signed tokens ``rt1.<payload>.<signature>``: payload = base64url JSON
``{"sub": <user>, "exp": <unix s>}``, signature = base64url HMAC-SHA256 of ``rt1.<payload>`` with
the gateway secret. Anyone holding the secret (a backend) can mint them too.

A credential is whatever bytes the client sent: every comparison is on bytes (``hmac.compare_digest``
refuses ``str`` with non-ASCII characters), and any value in any position is a refusal, never an
exception. A subject (the user a token or a front end names) is 1-256 printable characters with
no control character and no lone surrogate, whoever signed it: the gateway writes it into cookies,
JSON answers and logs. Why a client was refused is for the log (``AuthFailure.reason``: which
check failed and where the credential came in, never the credential itself); the client is told
only ``REFUSAL``, so a caller probing tokens learns nothing about which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "COOKIE_NAME",
    "REFUSAL",
    "SUBPROTOCOL_PREFIX",
    "AuthFailure",
    "Authenticator",
    "Principal",
    "header_token",
    "origin_allowed",
    "pick_subprotocol",
]

COOKIE_NAME: Final = "realtalk_session"
SUBPROTOCOL_PREFIX: Final = "openai-insecure-api-key."
_TOKEN_PREFIX: Final = "rt1"
_PRINCIPAL_HEADERS: Final = ("x-ms-client-principal-name", "x-ms-client-principal-id")
# Printable: no C0 or C1 control character, no lone surrogate (it cannot be written as UTF-8).
_SUBJECT: Final = re.compile(r"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{1,256}")

REFUSAL: Final = (
    "Authentication required: send a valid gateway token ('Authorization: Bearer <token>', "
    f"'api-key: <token>' or the WebSocket subprotocol '{SUBPROTOCOL_PREFIX}<token>'), "
    "or sign in on the gateway's web page."
)

Method = Literal["open", "static", "signed", "principal"]


@dataclass(frozen=True)
class Principal:
    """An authenticated client: who (for per-user limits and logs) and how."""

    subject: str
    method: Method
    expires_at_s: int | None = None


@dataclass(frozen=True)
class AuthFailure:
    """Why a request is refused, for the log (it never contains the credential). Clients are
    told ``REFUSAL`` only."""

    reason: str


def _raw(text: str) -> bytes:
    """A credential as the bytes compared (any ``str``, lone surrogates included)."""
    return text.encode("utf-8", "surrogatepass")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Verifies and mints client tokens for one gateway.

    Args:
        static_tokens: accepted long-lived tokens (``REALTALK_GATEWAY_TOKENS``).
        secret: the HMAC key for signed tokens (``REALTALK_GATEWAY_SECRET``, or a random per-process
            key when unset: then signed tokens and cookies die with the process).
        signed_tokens_configured: whether ``secret`` was configured (signed tokens from elsewhere
            can exist) rather than generated.
        trust_principal_header: accept Azure Container Apps authentication's principal headers.
        token_ttl_s: the lifetime of minted tokens (the most a mint request may ask for).
        previous_secrets: keys that signed tokens still in use but sign nothing new
            (``REALTALK_GATEWAY_PREVIOUS_SECRET``, while a rotated secret's tokens expire).
    """

    def __init__(
        self,
        *,
        static_tokens: Iterable[str] = (),
        secret: bytes,
        signed_tokens_configured: bool = False,
        trust_principal_header: bool = False,
        token_ttl_s: int = 900,
        previous_secrets: Iterable[bytes] = (),
    ) -> None:
        self._static = tuple(token for token in static_tokens if token)
        self._secret = secret
        self._verify_keys = (secret, *(key for key in previous_secrets if key))
        self.signed_tokens_configured = signed_tokens_configured
        self.trust_principal_header = trust_principal_header
        self.token_ttl_s = token_ttl_s

    @property
    def configured(self) -> bool:
        """Whether any client authentication is configured (otherwise the gateway is open)."""
        return bool(self._static) or self.signed_tokens_configured or self.trust_principal_header

    # -- tokens ------------------------------------------------------------------------------

    def mint(self, subject: str, now_s: float, ttl_s: int | None = None) -> tuple[str, int]:
        """A signed token for ``subject`` and its expiry (unix seconds)."""
        if not _SUBJECT.fullmatch(subject):
            raise ValueError("a subject is 1-256 printable characters")
        lifetime = self.token_ttl_s if ttl_s is None else max(1, min(ttl_s, self.token_ttl_s))
        expires_at = int(now_s) + lifetime
        payload = _b64url(json.dumps({"sub": subject, "exp": expires_at}, separators=(",", ":")).encode())
        signed = f"{_TOKEN_PREFIX}.{payload}"
        return f"{signed}.{self._sign(signed)}", expires_at

    def _sign(self, text: str, key: bytes | None = None) -> str:
        digest = hmac.new(self._secret if key is None else key, text.encode("ascii"), hashlib.sha256)
        return _b64url(digest.digest())

    def verify(self, token: str, now_s: float) -> Principal | AuthFailure:
        """The principal a token stands for, or why it is not accepted."""
        if token.startswith(_TOKEN_PREFIX + "."):
            return self._verify_signed(token, now_s)
        for known in self._static:
            if hmac.compare_digest(_raw(token), _raw(known)):
                digest = hashlib.sha256(_raw(known)).hexdigest()[:10]
                return Principal(f"token:{digest}", "static")
        return AuthFailure("the token is neither a configured static token nor a signed one")

    def is_static(self, token: str) -> bool:
        return any(hmac.compare_digest(_raw(token), _raw(known)) for known in self._static)

    def _verify_signed(self, token: str, now_s: float) -> Principal | AuthFailure:
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isascii():
            return AuthFailure("the signed token is malformed")
        signed = f"{parts[0]}.{parts[1]}"
        signature = _raw(parts[2])
        # Every key is tried (no early exit), so the time taken does not tell which one matched.
        matches = [
            hmac.compare_digest(self._sign(signed, key).encode("ascii"), signature)
            for key in self._verify_keys
        ]
        if not any(matches):
            return AuthFailure("the signed token's signature does not match")
        try:
            claims = json.loads(_b64url_decode(parts[1]))
        except (binascii.Error, ValueError, RecursionError):
            return AuthFailure("the signed token's payload is not JSON")
        subject, expires_at = (
            (claims.get("sub"), claims.get("exp")) if isinstance(claims, dict) else (None, None)
        )
        if not isinstance(subject, str) or not isinstance(expires_at, int) or isinstance(expires_at, bool):
            return AuthFailure("the signed token's claims are incomplete")
        if not _SUBJECT.fullmatch(subject):
            # Signed by a backend holding the secret: valid, but not a name the gateway can use.
            return AuthFailure("the signed token's subject is not 1-256 printable characters")
        if expires_at <= now_s:
            return AuthFailure("the signed token has expired")
        return Principal(subject, "signed", expires_at)

    # -- requests ----------------------------------------------------------------------------

    def trusted_principal(self, headers: Mapping[str, str]) -> Principal | None:
        """The signed-in user named by Azure Container Apps authentication, when trusted."""
        if not self.trust_principal_header:
            return None
        for name in _PRINCIPAL_HEADERS:
            value = _utf8(headers.get(name, "")).strip()
            if value and _SUBJECT.fullmatch(value):
                return Principal(value, "principal")
        return None

    def authenticate(
        self,
        *,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        subprotocols: Iterable[str] = (),
        client_host: str,
        now_s: float,
    ) -> Principal | AuthFailure:
        """Who is making this request: the first credential found decides, in this order: bearer
        header, ``api-key`` header, subprotocol, cookie, trusted principal header. Open mode accepts
        everyone."""
        if not self.configured:
            return Principal(f"open:{client_host}", "open")
        found = header_token(headers)
        if found is None:
            offered = (p[len(SUBPROTOCOL_PREFIX) :] for p in subprotocols if p.startswith(SUBPROTOCOL_PREFIX))
            token = next(offered, None)
            found = (token, "the WebSocket subprotocol") if token is not None else None
        if found is None:
            token = cookies.get(COOKIE_NAME) or None
            found = (token, "the session cookie") if token is not None else None
        if found is not None:
            token, where = found
            result = self.verify(token, now_s)
            return (
                AuthFailure(f"{result.reason} (sent in {where})")
                if isinstance(result, AuthFailure)
                else result
            )
        principal = self.trusted_principal(headers)
        if principal is not None:
            return principal
        if self.trust_principal_header and any(name in headers for name in _PRINCIPAL_HEADERS):
            return AuthFailure(
                "no credential was sent, and the principal header is not a printable UTF-8 name"
            )
        return AuthFailure("no credential was sent")


def header_token(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The token in ``Authorization: Bearer`` or else ``api-key``, with where it was found (for
    logs), or ``None`` when neither header carries one."""
    token = _bearer(headers.get("authorization", ""))
    if token is not None:
        return token, "the Authorization header"
    token = headers.get("api-key", "").strip()
    return (token, "the api-key header") if token else None


def _utf8(value: str) -> str:
    """A header value as the UTF-8 text it was sent as (empty when its bytes are not UTF-8)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return ""


def _bearer(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def pick_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol to answer with: ``realtime`` if offered, else the first one that carries no
    credential, else the credential-carrying one (a browser fails the connection when none of its
    offers is echoed)."""
    offered = list(offered)
    if "realtime" in offered:
        return "realtime"
    plain = [p for p in offered if not p.startswith(SUBPROTOCOL_PREFIX)]
    if plain:
        return plain[0]
    return offered[0] if offered else None


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Browsers send ``Origin``; it must be the gateway's own (same host and port as the ``Host``
    header) or one of ``allowed``. Requests without ``Origin`` are not from a browser page."""
    if origin is None:
        return True
    normalised = origin.strip().rstrip("/").lower()
    if normalised in (a.lower() for a in allowed):
        return True
    if host is None:
        return False
    parts = urlsplit(normalised)
    return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()
