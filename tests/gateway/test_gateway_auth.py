"""Client authentication and the Origin allowlist, before anything is opened upstream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from openai import AsyncAzureOpenAI
from websockets.exceptions import InvalidStatus

from realtalk.gateway.auth import COOKIE_NAME, REFUSAL, SUBPROTOCOL_PREFIX, Authenticator

from .conftest import OTHER_TOKEN, SECRET, TOKEN

AUTH = {"gateway_tokens": f"{TOKEN},{OTHER_TOKEN}", "gateway_secret": SECRET}


def _signer() -> Authenticator:
    return Authenticator(secret=SECRET.encode(), signed_tokens_configured=True, token_ttl_s=900)


REFUSED = [
    ("no token", {}, 401),
    ("a bad token", {"token": "wrong-token-0123456789"}, 401),
    ("a tampered signed token", {"token": _signer().mint("alice", time.time())[0][:-2] + "xx"}, 401),
    ("an expired signed token", {"token": _signer().mint("alice", time.time() - 3600, ttl_s=60)[0]}, 401),
    ("a wrong Origin", {"token": TOKEN, "origin": "https://evil.example"}, 403),
]


@pytest.mark.parametrize(
    ("credentials", "status"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_a_refused_client_costs_nothing_upstream(
    emulator, gateway, client, credentials, status
) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw, **credentials):
                pass
        assert refused.value.response.status_code == status
        assert emu.stats.handshakes == 0 and emu.stats.connections_accepted == 0


async def test_the_sdk_authenticates_with_a_bearer_token(emulator, gateway, sdk) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw, sdk(gw, TOKEN) as conn:
        assert (await conn.recv()).type == "session.created"
        assert emu.stats.connections_accepted == 1


async def test_a_browser_authenticates_with_the_subprotocol_and_gets_realtime_back(
    emulator, gateway, client
) -> None:
    token = _signer().mint("alice", time.time())[0]
    offered = ["realtime", SUBPROTOCOL_PREFIX + token]
    async with emulator() as emu, gateway(emu, **AUTH) as gw, client(gw, subprotocols=offered) as c:
        assert c.ws.subprotocol == "realtime"
        await c.until("session.created")
        assert emu.stats.connections_accepted == 1


async def test_the_page_exchanges_a_token_for_an_http_only_cookie_that_opens_the_websocket(
    emulator, gateway, client
) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            assert (await http.get("/api/session")).json()["authenticated"] is False
            refused = await http.post("/api/session", json={"token": "wrong-token-0123456789"})
            assert refused.status_code == 401
            cross_site = await http.post(
                "/api/session", json={"token": TOKEN}, headers={"origin": "https://evil.example"}
            )
            assert cross_site.status_code == 403
            response = await http.post(
                "/api/session", json={"token": TOKEN}, headers={"origin": gw.http_base_url}
            )
            assert response.status_code == 200
            cookie = response.headers["set-cookie"]
            assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
            status = (await http.get("/api/session")).json()
            assert status["authenticated"] is True and status["subject"].startswith("token:")
            value = http.cookies[COOKIE_NAME]
        cookie_header = {"Cookie": f"{COOKIE_NAME}={value}"}
        with pytest.raises(InvalidStatus) as cross_site_ws:
            async with client(gw, origin="https://evil.example", headers=cookie_header):
                pass
        assert cross_site_ws.value.response.status_code == 403
        assert emu.stats.handshakes == 0
        async with client(gw, origin=gw.http_base_url, headers=cookie_header) as c:
            await c.until("session.created")
        assert emu.stats.connections_accepted == 1


async def test_a_static_token_holder_mints_short_lived_tokens_for_the_sdk(emulator, gateway, sdk) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            refused = await http.post("/api/token", json={})
            assert refused.status_code == 401
            minted = await http.post(
                "/api/token",
                json={"subject": "alice", "ttl_s": 60},
                headers={"authorization": f"Bearer {TOKEN}"},
            )
            assert minted.status_code == 200
            body = minted.json()
            assert body["subject"] == "alice" and body["expires_at"] <= time.time() + 61
            # A signed token cannot mint more tokens.
            again = await http.post("/api/token", headers={"authorization": f"Bearer {body['token']}"})
            assert again.status_code == 401
        async with sdk(gw, body["token"]) as conn:
            assert (await conn.recv()).type == "session.created"
        assert emu.stats.connections_accepted == 1


async def test_a_trusted_principal_header_signs_the_page_in(emulator, gateway, client) -> None:
    headers = {"x-ms-client-principal-name": "alice@contoso.com"}
    async with emulator() as emu, gateway(emu, gateway_trust_principal_header=True) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            page = await http.get("/", headers=headers)
            assert page.status_code == 200 and COOKIE_NAME in page.headers["set-cookie"]
            status = (await http.get("/api/session")).json()
            assert status["subject"] == "alice@contoso.com"
            minted = await http.post("/api/token", json={"subject": "mallory"}, headers=headers)
            assert minted.json()["subject"] == "alice@contoso.com"  # only for themselves
        with pytest.raises(InvalidStatus):
            async with client(gw):
                pass
        assert emu.stats.handshakes == 0


async def test_the_open_mode_serves_loopback_clients_without_a_token(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw) as c:
        await c.until("session.created")
        assert emu.stats.connections_accepted == 1


async def _raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send exact bytes (non-ASCII included, as no HTTP library will); the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        writer.write(head + length + b"\r\n" + body)
        async with asyncio.timeout(10):
            response_head = await reader.readuntil(b"\r\n\r\n")
            lengths = [
                int(line.split(b":", 1)[1])
                for line in response_head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            # Without a length (a refusal that closes the connection), the body runs to the end.
            response_body = await reader.readexactly(lengths[0]) if lengths else await reader.read()
    finally:
        writer.close()
    return int(response_head.split()[1]), response_body


_NON_ASCII_SIGNED = _signer().mint("alice", time.time())[0].rsplit(".", 1)[0].encode() + b".\xc3\xa9\xffsig"
_POSITIONS = {
    "bearer": b"Authorization: Bearer " + _NON_ASCII_SIGNED + b"\r\n",
    "api-key": b"api-key: " + _NON_ASCII_SIGNED + b"\r\n",
    "cookie": COOKIE_NAME.encode() + b"=" + _NON_ASCII_SIGNED,
}


@pytest.mark.parametrize("position", sorted(_POSITIONS))
async def test_a_signed_token_with_a_non_ascii_signature_is_a_401_in_every_position(
    emulator, gateway, position
) -> None:
    header = _POSITIONS[position]
    if position == "cookie":
        header = b"Cookie: " + header + b"\r\n"
    upgrade = (
        b"GET /openai/v1/realtime?model=gpt-realtime-1.5 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + header
    )
    session = b"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + header
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        port = int(gw.http_base_url.rsplit(":", 1)[1])
        ws_status, ws_body = await _raw_request(port, upgrade)
        api_status, api_body = await _raw_request(port, session, b"{}")
        assert emu.stats.handshakes == 0
    assert (ws_status, api_status) == (401, 401)
    for body in (ws_body, api_body):
        assert json.loads(body)["error"]["message"] == REFUSAL  # nothing about which check failed


async def test_a_non_ascii_token_in_the_session_body_is_a_401(emulator, gateway) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            forged = _NON_ASCII_SIGNED.decode("latin-1")
            response = await http.post("/api/session", json={"token": forged})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == REFUSAL


async def test_an_azure_configured_sdk_client_authenticates_with_its_api_key_header(
    emulator, gateway
) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        azure = AsyncAzureOpenAI(
            azure_endpoint=gw.http_base_url,
            websocket_base_url=gw.websocket_base_url,
            api_key=TOKEN,
            api_version="2025-08-28",
        )
        try:
            async with azure.realtime.connect(model="gpt-realtime-1.5") as conn:
                assert (await conn.recv()).type == "session.created"
        finally:
            await azure.close()
        assert emu.stats.connections_accepted == 1


async def test_a_refused_client_is_told_a_generic_reason_and_the_log_says_which_check_failed(
    emulator, gateway, caplog
) -> None:
    expired = _signer().mint("alice", time.time() - 3600, ttl_s=60)[0]
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            response = await http.post("/api/session", json={"token": expired})
    assert response.json()["error"]["message"] == REFUSAL
    logged = [r.getMessage() for r in caplog.records if r.name == "realtalk.gateway"]
    assert any("expired" in line for line in logged)
    assert not any(expired in line for line in logged)


def _signed_by_a_backend(claims: object) -> str:
    """A token signed with the gateway's secret by a backend, with claims of its own choosing."""

    def b64url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    signed = "rt1." + b64url(json.dumps(claims).encode())
    return f"{signed}.{b64url(hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest())}"


async def test_a_backend_signed_token_with_an_empty_subject_is_a_401_not_a_500(
    emulator, gateway, client
) -> None:
    token = _signed_by_a_backend({"sub": "", "exp": int(time.time()) + 600})
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            session = await http.post("/api/session", json={"token": token})
            by_header = await http.post("/api/session", headers={"api-key": token})
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw, token=token):
                pass
        assert emu.stats.handshakes == 0
    assert (session.status_code, by_header.status_code) == (401, 401)
    assert refused.value.response.status_code == 401


async def test_a_mint_request_for_a_subject_with_a_lone_surrogate_is_a_400(emulator, gateway) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            response = await http.post(
                "/api/token",
                content=b'{"subject": "al\\ud800ice"}',
                headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
            )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_value"


# Bytes no HTTP library will send: UTF-8, bytes that are not UTF-8, C0 and C1 controls, NUL.
_HOSTILE_VALUES = [
    b"\xc3\xa9t\xc3\xa9",
    b"tok\xff\xfeen",
    b"tok\x80\x9fen",
    b"a\x01\x1b\x7fb",
    b"nul\x00byte",
]
_CREDENTIAL_LINES = {
    "bearer": lambda value: b"Authorization: Bearer " + value,
    "api-key": lambda value: b"api-key: " + value,
    "cookie": lambda value: b"Cookie: " + COOKIE_NAME.encode() + b"=" + value,
    "signed bearer": lambda value: (
        b"Authorization: Bearer " + _NON_ASCII_SIGNED.rsplit(b".", 1)[0] + b"." + value
    ),
}
_UPGRADE = (
    b"GET /openai/v1/realtime?model=gpt-realtime-1.5 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def _expected_status(value: bytes) -> set[int]:
    # Control bytes in a header value break HTTP itself: the server's parser may refuse them (400)
    # before any credential is looked at. Anything else reaches the credential check: 401.
    return {400, 401} if any(b < 0x20 or b == 0x7F for b in value) else {401}


@pytest.mark.parametrize("position", sorted(_CREDENTIAL_LINES))
async def test_any_bytes_in_a_credential_header_are_a_401_on_every_route(emulator, gateway, position) -> None:
    post = b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    routes = {
        "websocket": _UPGRADE,
        "/api/session": b"POST /api/session" + post,
        "/api/token": b"POST /api/token" + post,
    }
    answers: list[tuple[str, bytes, int, bytes]] = []
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        port = int(gw.http_base_url.rsplit(":", 1)[1])
        for value in _HOSTILE_VALUES:
            line = _CREDENTIAL_LINES[position](value) + b"\r\n"
            for route, head in routes.items():
                body = b"" if route == "websocket" else b"{}"
                status, answer = await _raw_request(port, head + line, body)
                answers.append((route, value, status, answer))
        assert emu.stats.handshakes == 0
    for route, value, status, answer in answers:
        assert status in _expected_status(value), (route, value, status, answer)
        assert value not in answer
        if status == 401:
            assert json.loads(answer)["error"]["message"] == REFUSAL


@pytest.mark.parametrize("header", [b"X-MS-CLIENT-PRINCIPAL-NAME", b"X-MS-CLIENT-PRINCIPAL-ID"])
async def test_any_bytes_in_a_trusted_principal_header_are_a_name_or_a_401(emulator, gateway, header) -> None:
    answers: list[tuple[bytes, str, int, bytes]] = []
    async with emulator() as emu, gateway(emu, gateway_trust_principal_header=True) as gw:
        port = int(gw.http_base_url.rsplit(":", 1)[1])
        for value in _HOSTILE_VALUES:
            line = header + b": " + value + b"\r\n"
            for route in ("/api/session", "/api/token"):
                head = f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                status, answer = await _raw_request(port, head.encode() + line, b"{}")
                answers.append((value, route, status, answer))
    for value, route, status, answer in answers:
        # A front end that signs users in names them in UTF-8; a name is printable text, or no one
        # is signed in.
        name = value.decode("utf-8", "replace")
        printable = "\ufffd" not in name and not any(c < " " or "\x7f" <= c < "\xa0" for c in name)
        assert status in ({200} if printable else _expected_status(value)), (route, value, status, answer)
        if status == 200:
            assert json.loads(answer)["subject"] == name


async def test_the_api_key_header_carries_a_token_on_the_http_routes_too(emulator, gateway) -> None:
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            minted = await http.post("/api/token", json={"subject": "alice"}, headers={"api-key": TOKEN})
            session = await http.post("/api/session", headers={"api-key": minted.json()["token"]})
    assert minted.status_code == 200 and minted.json()["subject"] == "alice"
    assert session.status_code == 200 and session.json()["subject"] == "alice"


async def test_any_bytes_in_a_session_or_mint_body_are_a_400_or_a_401(emulator, gateway) -> None:
    bodies = {
        b'{"token": "\xff\xfe"}': 400,  # not UTF-8: not JSON
        b'{"token": "a\\u0000b\\ud800"}': 401,
        b'{"token": 5}': 401,
        b'{"token": "rt1.e30.\xc3\xa9"}': 401,
        b"[1]": 400,
        b"{" * 100_000: 400,  # nested past the parser's recursion limit
    }
    answers = []
    async with emulator() as emu, gateway(emu, **AUTH) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            for body, status in bodies.items():
                for route in ("/api/session", "/api/token"):
                    response = await http.post(
                        route, content=body, headers={"content-type": "application/json"}
                    )
                    answers.append((route, body[:40], response.status_code, status))
    for route, body, got, expected in answers:
        assert got == expected, (route, body, got)
