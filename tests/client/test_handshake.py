"""The handshake probe against tiny servers on 127.0.0.1: each failure lands on the right step."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.handshake import MAX_MESSAGE_BYTES, ProbeResult, probe
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import Provider, ResolvedEndpoint

KEY = "0123456789abcdef0123456789abcdef"
TIMEOUT_S = 2.0
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


def session_created(**session: Any) -> str:
    return json.dumps(
        {
            "type": "session.created",
            "event_id": "event_1",
            "session": {"type": "realtime", "id": "sess_1", "model": "gpt-realtime-1.5", **session},
        }
    )


@dataclass
class Seen:
    """What the server saw, for assertions."""

    paths: list[str] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)


Handler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Response | None]


@contextlib.asynccontextmanager
async def realtime_server(
    handler: Handler | None = None,
    process_request: ProcessRequest | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[int, Seen]]:
    seen = Seen()

    async def greet(connection: ServerConnection) -> None:
        await connection.send(session_created())
        await connection.wait_closed()

    async def record(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen.paths.append(connection.request.path)
        seen.headers.append(connection.request.headers)
        await (handler or greet)(connection)
        seen.close_codes.append(connection.close_code)

    async with serve(record, "127.0.0.1", 0, process_request=process_request, ssl=ssl_context) as server:
        port = server.sockets[0].getsockname()[1]
        yield port, seen


def local_endpoint(port: int, provider: Provider = "local", scheme: str = "ws") -> ResolvedEndpoint:
    base = f"{scheme}://127.0.0.1:{port}/openai/v1"
    return ResolvedEndpoint(
        url=f"{base}/realtime?model=rt",
        websocket_base_url=base,
        host=f"127.0.0.1:{port}",
        deployment="rt",
        provider=provider,
    )


def rejecting(status: HTTPStatus, body: str, headers: dict[str, str] | None = None) -> ProcessRequest:
    def process_request(connection: ServerConnection, request: Request) -> Response:
        response = connection.respond(status, body)
        response.headers.update(headers or {})
        return response

    return process_request


def step_names(result: ProbeResult) -> list[str]:
    return [step.name for step in result.steps]


@pytest.fixture(autouse=True)
def no_proxy_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- success -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_server_that_sends_session_created_passes_every_step() -> None:
    async with realtime_server() as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.ok
    assert result.failure is None
    assert step_names(result) == ["credentials", "dns", "tcp", "upgrade", "session.created"]
    assert result.session_id == "sess_1"
    assert result.steps[-1].detail == "session sess_1, model gpt-realtime-1.5"
    assert result.steps[1].detail == "127.0.0.1 is an address: nothing to resolve"
    assert result.steps[2].detail == f"connected to 127.0.0.1 port {port}"


@pytest.mark.asyncio
async def test_the_probe_uses_the_ga_path_and_the_credential_headers_only() -> None:
    async with realtime_server() as (port, seen):
        await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert seen.paths == ["/openai/v1/realtime?model=rt"]
    assert seen.headers[0]["api-key"] == KEY
    assert "OpenAI-Beta" not in seen.headers[0]
    assert "Authorization" not in seen.headers[0]


@pytest.mark.asyncio
async def test_the_probe_closes_the_connection_cleanly() -> None:
    async with realtime_server() as (port, seen):
        await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert seen.close_codes == [1000]


@pytest.mark.asyncio
async def test_a_first_event_larger_than_one_mebibyte_is_accepted() -> None:
    big = session_created(instructions="x" * (2 * 1024 * 1024))
    assert 1024 * 1024 < len(big) < MAX_MESSAGE_BYTES

    async def send_big(connection: ServerConnection) -> None:
        await connection.send(big)
        await connection.wait_closed()

    async with realtime_server(send_big) as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), 5)
    assert result.ok, result.failure


@pytest.mark.asyncio
async def test_a_loopback_server_is_reached_directly_even_when_a_proxy_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    async with realtime_server() as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.ok
    assert "proxy" not in step_names(result)


# --- HTTP status on the upgrade ------------------------------------------------------------------

ACCESS_DENIED = json.dumps(
    {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint.",
        }
    }
)
NOT_FOUND = json.dumps(
    {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist.",
        }
    }
)
WRONG_MODEL = json.dumps(
    {
        "error": {
            "code": "OpperationNotSupported",
            "message": "The realtime operation does not work with the specified model.",
        }
    }
)


@pytest.mark.parametrize(
    ("status", "body", "provider", "detail"),
    [
        (
            HTTPStatus.UNAUTHORIZED,
            ACCESS_DENIED,
            "azure",
            "HTTP 401: the key or token was refused: check AZURE_OPENAI_API_KEY or your Entra ID role "
            "'Cognitive Services OpenAI User' (the server said: 401: Access denied due to invalid "
            "subscription key or wrong API endpoint.)",
        ),
        (
            HTTPStatus.UNAUTHORIZED,
            "",
            "openai",
            "HTTP 401: the key was refused: check OPENAI_API_KEY",
        ),
        (
            HTTPStatus.UNAUTHORIZED,
            "",
            "local",
            "HTTP 401: the local server refused the key: check AZURE_OPENAI_API_KEY (or OPENAI_API_KEY) "
            "against the key the server expects",
        ),
        (
            HTTPStatus.FORBIDDEN,
            "",
            "azure",
            "HTTP 403: access denied: your Entra ID identity needs the role 'Cognitive Services OpenAI User' "
            "on the resource, or the resource's network rules block this address",
        ),
        (
            HTTPStatus.NOT_FOUND,
            NOT_FOUND,
            "azure",
            "HTTP 404: deployment 'rt' not found: check AZURE_OPENAI_DEPLOYMENT_NAME (the server said: "
            "DeploymentNotFound: The API deployment for this resource does not exist.)",
        ),
        (
            HTTPStatus.BAD_REQUEST,
            WRONG_MODEL,
            "azure",
            "HTTP 400: the server rejected the request: the deployment 'rt' is not a realtime model; deploy "
            "gpt-realtime-1.5 (the server said: OpperationNotSupported: The realtime operation does not work "
            "with the specified model.)",
        ),
        (
            HTTPStatus.BAD_REQUEST,
            "plain   text\nbody",
            "azure",
            "HTTP 400: the server rejected the request (the server said: plain text body)",
        ),
        (
            HTTPStatus.TOO_MANY_REQUESTS,
            "",
            "azure",
            "HTTP 429: rate limited or out of quota: wait and retry, or raise the deployment's quota",
        ),
        (
            HTTPStatus.SERVICE_UNAVAILABLE,
            "",
            "azure",
            "HTTP 503: the service had a problem: retry later",
        ),
        (
            HTTPStatus.IM_A_TEAPOT,
            "",
            "azure",
            "HTTP 418: the server refused the WebSocket upgrade",
        ),
    ],
)
@pytest.mark.asyncio
async def test_an_http_status_on_the_upgrade_says_what_to_check(
    status: HTTPStatus, body: str, provider: Provider, detail: str
) -> None:
    async with realtime_server(process_request=rejecting(status, body)) as (port, _):
        result = await probe(local_endpoint(port, provider), ApiKeyCredential(KEY), TIMEOUT_S)
    assert not result.ok
    assert step_names(result) == ["credentials", "dns", "tcp", "upgrade"]
    assert result.failure is not None
    assert result.failure.name == "upgrade"
    assert result.failure.detail == detail


@pytest.mark.asyncio
async def test_a_long_error_body_is_shortened() -> None:
    async with realtime_server(process_request=rejecting(HTTPStatus.BAD_REQUEST, "y" * 5000)) as (port, _):
        result = await probe(local_endpoint(port, "azure"), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert result.failure.detail.endswith("y…)")
    assert len(result.failure.detail) < 400


@pytest.mark.asyncio
async def test_the_azure_request_id_is_shown_for_support() -> None:
    reject = rejecting(HTTPStatus.UNAUTHORIZED, "", {"apim-request-id": "req-42"})
    async with realtime_server(process_request=reject) as (port, _):
        result = await probe(local_endpoint(port, "azure"), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert result.failure.detail.endswith(" [apim-request-id req-42]")


@pytest.mark.asyncio
async def test_the_key_never_appears_in_any_step() -> None:
    async with realtime_server(process_request=rejecting(HTTPStatus.UNAUTHORIZED, "")) as (port, _):
        result = await probe(local_endpoint(port, "azure"), ApiKeyCredential(KEY), TIMEOUT_S)
    assert all(KEY not in step.detail for step in result.steps)


# --- after the upgrade ---------------------------------------------------------------------------


async def silent(connection: ServerConnection) -> None:
    await connection.wait_closed()


@pytest.mark.asyncio
async def test_no_session_created_within_the_timeout_fails_that_step() -> None:
    async with realtime_server(silent) as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), 0.2)
    assert step_names(result) == ["credentials", "dns", "tcp", "upgrade", "session.created"]
    assert result.failure is not None
    assert result.failure.name == "session.created"
    assert result.failure.detail == "no session.created within 0.2 s after the upgrade"


@pytest.mark.parametrize(
    ("first_message", "detail"),
    [
        (
            json.dumps({"type": "error", "event_id": "e", "error": {"code": "bad", "message": "nope"}}),
            "the server sent an error instead of session.created: bad: nope",
        ),
        (
            json.dumps({"type": "session.updated", "event_id": "e", "session": {"type": "realtime"}}),
            "the first event was 'session.updated', not session.created",
        ),
        ("not json", "the first message was not JSON: 'not json'"),
        ("[1, 2]", "the first message was not a JSON object"),
        (b"\x00\x01", "the first message was binary, not a JSON event"),
    ],
)
@pytest.mark.asyncio
async def test_a_wrong_first_message_fails_the_session_created_step(
    first_message: str | bytes, detail: str
) -> None:
    async def send_first(connection: ServerConnection) -> None:
        await connection.send(first_message)
        await connection.wait_closed()

    async with realtime_server(send_first) as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert result.failure.name == "session.created"
    assert result.failure.detail == detail


@pytest.mark.asyncio
async def test_a_preview_shaped_session_created_fails_validation_with_a_hint() -> None:
    beta = json.dumps(
        {"type": "session.created", "event_id": "e", "session": {"id": "sess_1", "modalities": ["audio"]}}
    )

    async def send_beta(connection: ServerConnection) -> None:
        await connection.send(beta)
        await connection.wait_closed()

    async with realtime_server(send_beta) as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert result.failure.name == "session.created"
    assert result.failure.detail.startswith("session.created does not match the GA schema (session.")
    assert result.failure.detail.endswith(": is the endpoint serving the retired preview protocol?")


@pytest.mark.asyncio
async def test_a_close_before_session_created_reports_the_close_code_and_reason() -> None:
    async def close_at_once(connection: ServerConnection) -> None:
        await connection.close(1011, "boom")

    async with realtime_server(close_at_once) as (port, _):
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert (
        result.failure.detail == "the server closed the connection before session.created (code 1011: boom)"
    )


# --- before the upgrade --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_closed_port_fails_the_tcp_step_and_suggests_starting_the_local_server() -> None:
    port = closed_port()
    result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert step_names(result) == ["credentials", "dns", "tcp"]
    assert result.failure is not None
    assert result.failure.detail == (
        f"connection to 127.0.0.1 port {port} refused: nothing listens there; "
        "is the local server running (realtalk emulate)?"
    )


@pytest.mark.asyncio
async def test_a_closed_port_on_a_remote_provider_points_at_the_endpoint_port() -> None:
    port = closed_port()
    result = await probe(local_endpoint(port, "azure"), ApiKeyCredential(KEY), TIMEOUT_S)
    assert result.failure is not None
    assert result.failure.detail.endswith("nothing listens there; check the port in AZURE_OPENAI_ENDPOINT")


@contextlib.asynccontextmanager
async def raw_tcp_server(reply: bytes | None) -> AsyncIterator[int]:
    """A TCP server that is not a WebSocket server: it sends ``reply`` and closes, or stays mute."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
            writer.close()
        else:
            await reader.read()  # until the client gives up

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_server_that_does_not_speak_http_fails_the_upgrade_step() -> None:
    async with raw_tcp_server(b"SSH-2.0-OpenSSH_9.6\r\n") as port:
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), TIMEOUT_S)
    assert step_names(result) == ["credentials", "dns", "tcp", "upgrade"]
    assert result.failure is not None
    assert result.failure.detail.startswith("the server did not accept the WebSocket upgrade: ")


@pytest.mark.asyncio
async def test_a_server_that_never_answers_the_upgrade_times_out_on_that_step() -> None:
    async with raw_tcp_server(None) as port:
        result = await probe(local_endpoint(port), ApiKeyCredential(KEY), 0.2)
    assert step_names(result) == ["credentials", "dns", "tcp", "upgrade"]
    assert result.failure is not None
    assert result.failure.detail == "no answer to the WebSocket upgrade within 0.2 s"


# --- credentials ---------------------------------------------------------------------------------


class RefusingCredential:
    def __init__(self, error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.error = error
        self.delay_s = delay_s

    async def headers(self) -> dict[str, str]:
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return {}

    def describe(self) -> str:
        return "a test credential"

    async def close(self) -> None:
        return None


@pytest.mark.asyncio
async def test_a_credential_error_stops_before_any_connection() -> None:
    error = ConfigError(
        "AZURE_OPENAI_API_KEY is not set, and Entra ID failed.", variable="AZURE_OPENAI_API_KEY"
    )
    async with realtime_server() as (port, seen):
        result = await probe(local_endpoint(port), RefusingCredential(error), TIMEOUT_S)
    assert step_names(result) == ["credentials"]
    assert result.failure is not None
    assert result.failure.detail == "AZURE_OPENAI_API_KEY is not set, and Entra ID failed."
    assert seen.paths == []


@pytest.mark.asyncio
async def test_an_unexpected_credential_failure_is_reported_not_raised() -> None:
    result = await probe(
        local_endpoint(closed_port()), RefusingCredential(RuntimeError("socket gone")), TIMEOUT_S
    )
    assert result.failure is not None
    assert result.failure.detail == "a test credential: RuntimeError: socket gone"


@pytest.mark.asyncio
async def test_a_credential_that_never_answers_times_out() -> None:
    result = await probe(local_endpoint(closed_port()), RefusingCredential(delay_s=5), 0.1)
    assert result.failure is not None
    assert result.failure.detail == "no token within 0.1 s: a test credential"


# --- TLS -----------------------------------------------------------------------------------------


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.mark.asyncio
async def test_an_untrusted_certificate_fails_the_tls_step(tmp_path: Path) -> None:
    async with realtime_server(ssl_context=self_signed_context(tmp_path)) as (port, seen):
        result = await probe(local_endpoint(port, scheme="wss"), ApiKeyCredential(KEY), TIMEOUT_S)
    assert step_names(result) == ["credentials", "dns", "tcp", "tls"]
    assert result.failure is not None
    assert result.failure.detail.startswith("the certificate of 127.0.0.1 was not trusted (")
    assert seen.paths == []


# --- through a proxy -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect_proxy(target_port: int, status: int = 200) -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTP CONNECT proxy that sends every tunnel to 127.0.0.1:target_port, whatever was asked."""
    requested: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requested.append(head.split(b"\r\n", 1)[0].decode())
        if status != 200:
            writer.write(f"HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        tasks.append(asyncio.create_task(pipe(reader, upstream_writer)))
        tasks.append(asyncio.create_task(pipe(upstream_reader, writer)))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], requested
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def remote_looking_endpoint() -> ResolvedEndpoint:
    # Never resolved here: with a proxy configured, the host name goes to the proxy only.
    return ResolvedEndpoint(
        url="ws://res.openai.azure.com/openai/v1/realtime?model=rt",
        websocket_base_url="ws://res.openai.azure.com/openai/v1",
        host="res.openai.azure.com",
        deployment="rt",
        provider="azure",
    )


@pytest.mark.asyncio
async def test_a_configured_proxy_carries_the_connection_and_its_password_is_not_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with realtime_server() as (port, seen), connect_proxy(port) as (proxy_port, requested):
        monkeypatch.setenv("http_proxy", f"http://user:pa55word@127.0.0.1:{proxy_port}")
        result = await probe(remote_looking_endpoint(), ApiKeyCredential(KEY), 2)
    assert result.ok, result.failure
    assert step_names(result) == ["credentials", "proxy", "upgrade", "session.created"]
    assert requested == ["CONNECT res.openai.azure.com:80 HTTP/1.1"]
    assert seen.paths == ["/openai/v1/realtime?model=rt"]
    assert result.steps[1].detail == f"through the proxy http://127.0.0.1:{proxy_port} (from the environment)"


@pytest.mark.asyncio
async def test_a_proxy_that_refuses_fails_the_proxy_step(monkeypatch: pytest.MonkeyPatch) -> None:
    async with connect_proxy(closed_port(), status=407) as (proxy_port, _):
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        result = await probe(remote_looking_endpoint(), ApiKeyCredential(KEY), 2)
    assert step_names(result) == ["credentials", "proxy"]
    assert result.failure is not None
    assert result.failure.detail.startswith(f"the proxy http://127.0.0.1:{proxy_port} failed: ")
    assert result.failure.detail.endswith(": check HTTPS_PROXY")


@pytest.mark.asyncio
async def test_an_unreachable_proxy_fails_the_proxy_step(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy_port = closed_port()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
    result = await probe(remote_looking_endpoint(), ApiKeyCredential(KEY), 2)
    assert step_names(result) == ["credentials", "proxy"]
    assert result.failure is not None
    assert result.failure.detail.startswith(f"the proxy http://127.0.0.1:{proxy_port} failed: ")


@pytest.mark.asyncio
async def test_a_malformed_proxy_setting_fails_the_proxy_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "ftp://127.0.0.1:1")
    result = await probe(remote_looking_endpoint(), ApiKeyCredential(KEY), 2)
    assert step_names(result) == ["credentials", "proxy"]
    assert result.failure is not None
    assert result.failure.detail.startswith("the proxy ftp://127.0.0.1:1 failed: ")


@pytest.mark.asyncio
async def test_an_http_status_through_a_proxy_is_still_an_upgrade_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reject = rejecting(HTTPStatus.NOT_FOUND, "")
    async with realtime_server(process_request=reject) as (port, _), connect_proxy(port) as (proxy_port, _):
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        result = await probe(remote_looking_endpoint(), ApiKeyCredential(KEY), 2)
    assert step_names(result) == ["credentials", "proxy", "upgrade"]
    assert result.failure is not None
    assert result.failure.detail == "HTTP 404: deployment 'rt' not found: check AZURE_OPENAI_DEPLOYMENT_NAME"
