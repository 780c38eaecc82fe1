"""Probe a Realtime endpoint step by step, and say which step failed and what to check.

The probe opens one WebSocket exactly as a session would, waits for the first server event, checks
it is a GA ``session.created`` (validated with the official SDK's type), and closes with 1000. It
returns structured steps; rendering belongs to the caller (``realtalk doctor``).

Why DNS and TCP are done here rather than inside ``websockets.connect``: a timeout inside
``connect`` cannot tell a firewall that drops packets from a server that never answers the
upgrade, and "which step failed" is the whole point. The connected socket is then handed to
``connect(sock=...)``, which does TLS and the HTTP upgrade. When a proxy is configured in the
environment, DNS and TCP are the proxy's business, so ``connect`` does everything and its
exception types tell the steps apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from openai.types.realtime import SessionCreatedEvent
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidProxy,
    InvalidStatus,
    ProxyError,
)
from websockets.uri import get_proxy, parse_uri

from realtalk.client.credentials import Credential
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import ResolvedEndpoint, is_loopback_host

__all__ = ["MAX_MESSAGE_BYTES", "ProbeResult", "ProbeStep", "StepName", "probe"]

# websockets' default is 1 MiB; session.updated or conversation.item.retrieved with audio exceed it
# (protocol reference §1.4).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

StepName = Literal["credentials", "dns", "tcp", "proxy", "tls", "upgrade", "session.created"]

_BODY_CHARS = 300
_ROLE = "Cognitive Services OpenAI User"


@dataclass(frozen=True)
class ProbeStep:
    """One step of the probe: its name, whether it passed, and one line for people."""

    name: StepName
    ok: bool
    detail: str


@dataclass(frozen=True)
class ProbeResult:
    """The steps the probe took, in order; it stops at the first failure."""

    endpoint: ResolvedEndpoint
    steps: tuple[ProbeStep, ...]
    session_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when every step passed, up to and including ``session.created``."""
        return bool(self.steps) and all(s.ok for s in self.steps) and self.steps[-1].name == "session.created"

    @property
    def failure(self) -> ProbeStep | None:
        """The step that failed, if any."""
        return next((s for s in self.steps if not s.ok), None)


async def probe(endpoint: ResolvedEndpoint, credential: Credential, timeout_s: float = 10.0) -> ProbeResult:
    """Connect to ``endpoint`` with ``credential`` and wait for ``session.created``.

    Each step waits at most ``timeout_s``. Never raises for network or server failures: they are
    reported as the failing step. Does not close ``credential``.
    """
    steps: list[ProbeStep] = []

    headers = await _credentials_step(credential, timeout_s, steps)
    if headers is None:
        return ProbeResult(endpoint, tuple(steps))

    target = urlsplit(endpoint.url)
    hostname = target.hostname or ""
    secure = target.scheme == "wss"
    port = target.port or (443 if secure else 80)
    # A loopback server is never reached through a proxy, whatever the environment says.
    proxy = None if is_loopback_host(hostname) else get_proxy(parse_uri(endpoint.url))

    sock: socket.socket | None = None
    if proxy is None:
        addresses = await _dns_step(hostname, port, timeout_s, steps)
        if addresses is None:
            return ProbeResult(endpoint, tuple(steps))
        sock = await _tcp_step(addresses, hostname, port, endpoint, timeout_s, steps)
        if sock is None:
            return ProbeResult(endpoint, tuple(steps))

    try:
        connection = await connect(
            endpoint.url,
            sock=sock,
            proxy=proxy,
            additional_headers=headers,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=timeout_s,
            close_timeout=timeout_s,
        )
    except Exception as exc:  # a diagnostic reports every failure as a step instead of crashing
        if sock is not None:
            sock.close()  # connect() may fail before a transport owns it
        steps += _open_failure(exc, endpoint, proxy, secure, timeout_s)
        return ProbeResult(endpoint, tuple(steps))

    try:
        if proxy is not None:
            steps.append(_proxy_ok(proxy))
        if secure:
            steps.append(ProbeStep("tls", True, _tls_detail(connection, hostname)))
        steps.append(ProbeStep("upgrade", True, _upgrade_detail(connection)))
        session_step, session_id = await _session_created_step(connection, timeout_s)
        steps.append(session_step)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
    return ProbeResult(endpoint, tuple(steps), session_id)


async def _credentials_step(
    credential: Credential, timeout_s: float, steps: list[ProbeStep]
) -> dict[str, str] | None:
    description = credential.describe()
    try:
        async with asyncio.timeout(timeout_s):
            headers = await credential.headers()
    except TimeoutError:
        steps.append(ProbeStep("credentials", False, f"no token within {timeout_s:g} s: {description}"))
        return None
    except ConfigError as exc:
        steps.append(ProbeStep("credentials", False, str(exc)))
        return None
    except Exception as exc:  # a diagnostic reports every failure as a step instead of crashing
        steps.append(ProbeStep("credentials", False, f"{description}: {type(exc).__name__}: {exc}"))
        return None
    steps.append(ProbeStep("credentials", True, description))
    return headers


async def _dns_step(
    hostname: str, port: int, timeout_s: float, steps: list[ProbeStep]
) -> list[tuple[Any, ...]] | None:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        steps.append(
            ProbeStep("dns", False, f"no answer for {hostname} within {timeout_s:g} s: check your DNS")
        )
        return None
    except OSError as exc:
        steps.append(
            ProbeStep(
                "dns",
                False,
                f"could not resolve {hostname} ({exc.strerror or exc}): check the resource name in "
                "AZURE_OPENAI_ENDPOINT and your network",
            )
        )
        return None
    shown = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if shown == [hostname]:
        steps.append(ProbeStep("dns", True, f"{hostname} is an address: nothing to resolve"))
    else:
        steps.append(ProbeStep("dns", True, f"{hostname} resolves to {', '.join(shown[:3])}"))
    return list(infos)


async def _tcp_step(
    addresses: list[tuple[Any, ...]],
    hostname: str,
    port: int,
    endpoint: ResolvedEndpoint,
    timeout_s: float,
    steps: list[ProbeStep],
) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    try:
        async with asyncio.timeout(timeout_s):
            for family, type_, proto, _, sockaddr in addresses:
                sock = socket.socket(family, type_, proto)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, sockaddr)
                except OSError as exc:
                    sock.close()
                    last_error = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                steps.append(ProbeStep("tcp", True, f"connected to {sockaddr[0]} port {port}"))
                return sock
    except TimeoutError:
        steps.append(
            ProbeStep(
                "tcp",
                False,
                f"no TCP connection to {hostname} port {port} within {timeout_s:g} s: a firewall may drop "
                "the traffic; if your network needs a proxy, set HTTPS_PROXY",
            )
        )
        return None
    if isinstance(last_error, ConnectionRefusedError):
        hint = (
            "is the local server running (realtalk emulate)?"
            if endpoint.provider == "local"
            else "check the port in AZURE_OPENAI_ENDPOINT"
        )
        detail = f"connection to {hostname} port {port} refused: nothing listens there; {hint}"
    else:
        reason = last_error.strerror if last_error is not None and last_error.strerror else last_error
        detail = f"could not connect to {hostname} port {port} ({reason}): check your network and firewall"
    steps.append(ProbeStep("tcp", False, detail))
    return None


def _open_failure(
    exc: Exception, endpoint: ResolvedEndpoint, proxy: str | None, secure: bool, timeout_s: float
) -> list[ProbeStep]:
    """Map an exception from ``websockets.connect`` (TLS and upgrade, or all of it via a proxy) to steps."""
    hostname = urlsplit(endpoint.url).hostname or ""
    if proxy is not None and (
        isinstance(exc, ProxyError | InvalidProxy)
        or (isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError))
    ):
        # Through a proxy, every socket error is about reaching the proxy: it does DNS and TCP for us.
        return [
            ProbeStep("proxy", False, f"the proxy {_shown_proxy(proxy)} failed: {exc}: check HTTPS_PROXY")
        ]
    before = [_proxy_ok(proxy)] if proxy is not None else []
    tls_ok = [ProbeStep("tls", True, f"certificate valid for {hostname}")] if secure else []
    if isinstance(exc, InvalidStatus):
        return [*before, *tls_ok, ProbeStep("upgrade", False, describe_rejection(exc, endpoint))]
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (
            f"the certificate of {hostname} was not trusted ({exc.verify_message}): a proxy or firewall may "
            "intercept TLS; install its root certificate, or check the host name"
        )
        return [*before, ProbeStep("tls", False, detail)]
    if isinstance(exc, ssl.SSLError):
        return [
            *before,
            ProbeStep("tls", False, f"the TLS handshake with {hostname} failed ({exc.reason or exc})"),
        ]
    if isinstance(exc, InvalidHandshake):
        detail = f"the server did not accept the WebSocket upgrade: {exc}"
        return [*before, *tls_ok, ProbeStep("upgrade", False, detail)]
    if isinstance(exc, TimeoutError):
        what = "the TLS handshake or the WebSocket upgrade" if secure else "the WebSocket upgrade"
        via = f" through the proxy {_shown_proxy(proxy)}" if proxy is not None else ""
        return [ProbeStep("upgrade", False, f"no answer to {what}{via} within {timeout_s:g} s")]
    detail = f"the connection failed during the upgrade: {type(exc).__name__}: {exc}"
    return [*before, ProbeStep("upgrade", False, detail)]


def _proxy_ok(proxy: str) -> ProbeStep:
    return ProbeStep("proxy", True, f"through the proxy {_shown_proxy(proxy)} (from the environment)")


def describe_rejection(exc: InvalidStatus, endpoint: ResolvedEndpoint) -> str:
    """One sentence on a refused upgrade (websockets' ``InvalidStatus``): what to check."""
    response = exc.response
    return describe_refusal(
        response.status_code, response.body, response.headers.get("apim-request-id"), endpoint
    )


def describe_refusal(
    status: int, body_bytes: bytes | None, request_id: str | None, endpoint: ResolvedEndpoint
) -> str:
    """One sentence on an upgrade refused with HTTP ``status``: what to check, and what the server
    said (its JSON error message, shortened) with Azure's ``apim-request-id`` for a support case."""
    body = _body_text(body_bytes)
    said = f" (the server said: {body})" if body else ""
    said += f" [apim-request-id {request_id}]" if request_id else ""
    if status == 401:
        if endpoint.provider == "openai":
            return f"HTTP 401: the key was refused: check OPENAI_API_KEY{said}"
        if endpoint.provider == "local":
            return (
                "HTTP 401: the local server refused the key: check AZURE_OPENAI_API_KEY (or OPENAI_API_KEY) "
                f"against the key the server expects{said}"
            )
        return (
            "HTTP 401: the key or token was refused: check AZURE_OPENAI_API_KEY or your Entra ID role "
            f"'{_ROLE}'{said}"
        )
    if status == 403:
        return (
            f"HTTP 403: access denied: your Entra ID identity needs the role '{_ROLE}' on the resource, "
            f"or the resource's network rules block this address{said}"
        )
    if status == 404:
        return (
            f"HTTP 404: deployment '{endpoint.deployment}' not found: "
            f"check AZURE_OPENAI_DEPLOYMENT_NAME{said}"
        )
    if status == 400:
        hint = ""
        if "OpperationNotSupported" in body or "OperationNotSupported" in body:
            hint = (
                f": the deployment '{endpoint.deployment}' is not a realtime model; deploy gpt-realtime-1.5"
            )
        return f"HTTP 400: the server rejected the request{hint}{said}"
    if status == 429:
        return (
            f"HTTP 429: rate limited or out of quota: wait and retry, or raise the deployment's quota{said}"
        )
    if status >= 500:
        return f"HTTP {status}: the service had a problem: retry later{said}"
    return f"HTTP {status}: the server refused the WebSocket upgrade{said}"


def _shown_proxy(proxy: str) -> str:
    # A proxy URL may carry a user name and password: show only where it is.
    parts = urlsplit(proxy)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _body_text(body: bytes | None) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        text = f"{error.get('code')}: {error['message']}" if error.get("code") else str(error["message"])
    text = " ".join(text.split())
    return text if len(text) <= _BODY_CHARS else text[: _BODY_CHARS - 1] + "…"


def _tls_detail(connection: ClientConnection, hostname: str) -> str:
    ssl_object = connection.transport.get_extra_info("ssl_object")
    version = ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else None
    return f"{version or 'TLS'}, certificate valid for {hostname}"


def _upgrade_detail(connection: ClientConnection) -> str:
    response = connection.response
    region = response.headers.get("x-ms-region") if response is not None else None
    return "HTTP 101 Switching Protocols" + (f" (region {region})" if region else "")


async def _session_created_step(
    connection: ClientConnection, timeout_s: float
) -> tuple[ProbeStep, str | None]:
    def failed(detail: str) -> tuple[ProbeStep, str | None]:
        return ProbeStep("session.created", False, detail), None

    try:
        async with asyncio.timeout(timeout_s):
            message = await connection.recv()
    except TimeoutError:
        return failed(f"no session.created within {timeout_s:g} s after the upgrade")
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        return failed(
            f"the server closed the connection before session.created (code {code}: {reason or 'no reason'})"
        )
    if isinstance(message, bytes):
        return failed("the first message was binary, not a JSON event")
    try:
        data = json.loads(message)
    except ValueError:
        return failed(f"the first message was not JSON: {message[:80]!r}")
    if not isinstance(data, dict):
        return failed("the first message was not a JSON object")
    if data.get("type") == "error":
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        return failed(
            "the server sent an error instead of session.created: "
            f"{error.get('code')}: {error.get('message')}"
        )
    if data.get("type") != "session.created":
        return failed(f"the first event was '{data.get('type')}', not session.created")
    try:
        SessionCreatedEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return failed(
            f"session.created does not match the GA schema ({where}: {first['msg']}): "
            "is the endpoint serving the retired preview protocol?"
        )
    session = data["session"]
    session_id = session.get("id") if isinstance(session.get("id"), str) else None
    model = session.get("model")
    detail = f"session {session_id or '(no id)'}" + (f", model {model}" if model else "")
    return ProbeStep("session.created", True, detail), session_id
