"""Client authentication and the Origin allowlist, before anything is opened upstream."""

from __future__ import annotations

import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from realtalk.gateway.auth import COOKIE_NAME, SUBPROTOCOL_PREFIX, Authenticator

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
