"""A malformed WebSocket upgrade gets a 4xx and one log line; no header's value in either."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtalk.emulator import load_engines
from realtalk.gateway import Gateway, create_app
from realtalk.settings import Settings

SECRET_TOKEN = "handshake-secret-token-0123456789"
UPGRADE = (
    b"GET /openai/v1/realtime?model=gpt-realtime-1.5 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
HEADERS = (
    b"Sec-WebSocket-Protocol",
    b"Sec-WebSocket-Key",
    b"Sec-WebSocket-Version",
    b"Sec-WebSocket-Extensions",
    b"Upgrade",
    b"Connection",
    b"Origin",
    b"Authorization",
    b"api-key",
    b"Cookie",
)


@asynccontextmanager
async def running_gateway(tmp_path: Path) -> AsyncIterator[int]:
    static = tmp_path / "static"
    static.mkdir(exist_ok=True)
    (static / "index.html").write_text("<!doctype html>")
    settings = Settings(
        _env_file=None, gateway_port=0, gateway_tokens="a-valid-token-0123456789abcdef", connect_timeout_s=5.0
    )
    app = create_app(settings, static_dir=static, emulator_engines=load_engines("energy", "none", "tone"))
    async with Gateway(app) as gw:
        yield int(gw.http_base_url.rsplit(":", 1)[1])


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            return head + await reader.readexactly(length)
    finally:
        writer.close()


def _leaks(caplog: pytest.LogCaptureFixture, secret: str) -> list[str]:
    handler_text = caplog.text
    records = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    return [line for line in [handler_text, *records] if secret in line]


async def test_a_subprotocol_carrying_a_token_and_a_non_ascii_byte_gets_a_400_and_no_token_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    header = (
        b"Sec-WebSocket-Protocol: realtime, openai-insecure-api-key."
        + SECRET_TOKEN.encode()
        + b"\xc3\xa9\r\n"
    )
    async with running_gateway(tmp_path) as port:
        response = await exchange(port, UPGRADE + header + b"\r\n")
    assert response.startswith(b"HTTP/1.1 400 ")
    assert SECRET_TOKEN.encode() not in response
    assert b"Sec-WebSocket-Protocol" in response  # names the header, not its value
    assert _leaks(caplog, SECRET_TOKEN) == []
    refusals = [r for r in caplog.records if r.name == "realtalk.websocket"]
    assert len(refusals) == 1 and refusals[0].exc_info is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(HEADERS), value=st.binary(min_size=1, max_size=80))
async def test_any_bytes_in_any_handshake_header_get_an_http_answer_and_never_reach_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: bytes, value: bytes
) -> None:
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    value = value.replace(b"\r", b"").replace(b"\n", b"") or b"x"
    secret = SECRET_TOKEN + "-fuzz"
    request = UPGRADE + name + b": " + secret.encode() + value + b"\r\n\r\n"
    async with running_gateway(tmp_path) as port:
        response = await exchange(port, request)
    status = int(response.split()[1])
    assert 400 <= status < 500 or status == 101, response[:200]
    assert _leaks(caplog, secret) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
