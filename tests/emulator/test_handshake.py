"""The WebSocket handshake, auth, ephemeral keys and the REST endpoints (§1, §4.1)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtalk.emulator import Faults

from .conftest import KEY, MODEL


async def _refused(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers or {}):
            pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_the_sdk_connects_with_its_bearer_header_and_gets_session_created(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        created = stream.events[0]
        assert created["session"]["model"] == MODEL
        record = emu.stats.sessions[0]
        assert (record.deployment, record.credential_kind) == (MODEL, "bearer")


async def test_an_api_key_header_and_an_api_key_query_parameter_are_accepted(emulator) -> None:
    async with emulator(keys=("secret",)) as emu:
        url = f"{emu.websocket_base_url}/realtime?model={MODEL}"
        async with connect(url, additional_headers={"api-key": "secret"}) as ws:
            assert '"session.created"' in str(await ws.recv())
        async with connect(url + "&api-key=secret") as ws:
            assert '"session.created"' in str(await ws.recv())
        assert [s.credential_kind for s in emu.stats.sessions] == ["api-key", "query"]


async def test_the_openai_form_of_the_path_is_served_too(emulator) -> None:
    async with emulator() as emu:
        async with connect(
            f"ws://127.0.0.1:{emu.port}/v1/realtime?model={MODEL}", additional_headers={"api-key": "k"}
        ):
            pass
        assert emu.stats.connections_accepted == 1


async def test_a_missing_credential_is_refused_with_401_and_no_session(emulator) -> None:
    async with emulator() as emu:
        status, body = await _refused(f"{emu.websocket_base_url}/realtime?model={MODEL}")
        assert status == 401
        assert body["error"]["code"] == "401" and "missing subscription key" in body["error"]["message"]
        assert emu.stats.connections_accepted == 0 and emu.stats.rejected == {401: 1}


async def test_a_wrong_key_is_refused_with_401_when_keys_are_configured(emulator) -> None:
    async with emulator(keys=("right",)) as emu:
        client = AsyncOpenAI(websocket_base_url=emu.websocket_base_url, api_key="wrong")
        with pytest.raises(InvalidStatus) as refused:
            async with client.realtime.connect(model=MODEL):
                pass
        assert refused.value.response.status_code == 401
        assert b"invalid subscription key" in (refused.value.response.body or b"")
        assert emu.stats.connections_accepted == 0
        await client.close()


async def test_an_unknown_deployment_gets_404_deployment_not_found(emulator) -> None:
    async with emulator() as emu:
        status, body = await _refused(f"{emu.websocket_base_url}/realtime?model=nope", {"api-key": KEY})
        assert status == 404 and body["error"]["code"] == "DeploymentNotFound"


async def test_a_configured_deployment_list_replaces_the_default_one(emulator, session) -> None:
    async with emulator(deployments=("my-voice-bot",)) as emu:
        async with session(emu, model="my-voice-bot") as stream:
            assert stream.events[0]["session"]["model"] == "my-voice-bot"
        status, _ = await _refused(f"{emu.websocket_base_url}/realtime?model={MODEL}", {"api-key": KEY})
        assert status == 404


async def test_the_preview_path_gets_400_naming_the_ga_path(emulator) -> None:
    async with emulator() as emu:
        url = f"ws://127.0.0.1:{emu.port}/openai/realtime?api-version=2025-04-01-preview&deployment={MODEL}"
        status, body = await _refused(url, {"api-key": KEY})
        assert status == 400
        assert "/openai/v1/realtime?model=" in body["error"]["message"]
        assert emu.stats.connections_accepted == 0


async def test_an_openai_beta_header_gets_400(emulator) -> None:
    async with emulator() as emu:
        headers = {"api-key": KEY, "OpenAI-Beta": "realtime=v1"}
        status, body = await _refused(f"{emu.websocket_base_url}/realtime?model={MODEL}", headers)
        assert status == 400 and body["error"]["code"] == "beta_api_shape_disabled"


async def test_handshakes_from_the_nth_on_get_401_as_with_an_expired_token(emulator, session) -> None:
    async with emulator(faults=Faults(reject_from_connection=3)) as emu:
        for _ in range(2):
            async with session(emu):
                pass
        for _ in range(2):
            status, body = await _refused(
                f"{emu.websocket_base_url}/realtime?model={MODEL}", {"api-key": KEY}
            )
            assert status == 401 and "expired" in body["error"]["message"]
        assert emu.stats.connections_accepted == 2 and emu.stats.handshakes == 4


async def test_a_client_secret_is_minted_and_opens_a_session_with_its_configuration(
    emulator, session
) -> None:
    async with emulator() as emu:
        client = AsyncOpenAI(base_url=emu.http_base_url + "/openai/v1", api_key=KEY)
        secret = await client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 120},
            session={
                "type": "realtime",
                "model": MODEL,
                "instructions": "Be brief.",
                "audio": {"output": {"voice": "cedar"}},
            },
        )
        await client.close()
        assert secret.value.startswith("ek_")
        assert abs(secret.expires_at - (time.time() + 120)) < 5
        assert secret.session.type == "realtime"
        async with session(emu, api_key=secret.value) as stream:
            created = stream.events[0]["session"]
            assert created["instructions"] == "Be brief."
            assert created["audio"]["output"]["voice"] == "cedar"
        assert emu.stats.sessions[0].credential_kind == "ephemeral"


async def test_an_unknown_ephemeral_key_is_refused(emulator) -> None:
    async with emulator() as emu:
        status, _ = await _refused(
            f"{emu.websocket_base_url}/realtime?model={MODEL}", {"authorization": "Bearer ek_nope"}
        )
        assert status == 401


async def test_client_secrets_refuses_bad_requests_with_the_apis_errors(emulator) -> None:
    async with emulator() as emu, httpx.AsyncClient(base_url=emu.http_base_url) as http:
        url = "/openai/v1/realtime/client_secrets"
        unauthenticated = await http.post(url, json={})
        assert unauthenticated.status_code == 401
        too_long = await http.post(url, headers={"api-key": KEY}, json={"expires_after": {"seconds": 9000}})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["code"] == "integer_above_max_value"
        no_type = await http.post(url, headers={"api-key": KEY}, json={"session": {"instructions": "x"}})
        assert no_type.json()["error"]["code"] == "missing_required_parameter"
        beta = await http.post(
            url, headers={"api-key": KEY}, json={"session": {"type": "realtime", "voice": "alloy"}}
        )
        assert beta.json()["error"] == {
            "message": "Unknown parameter: 'session.voice'.",
            "type": "invalid_request_error",
            "param": "session.voice",
            "code": "unknown_parameter",
        }
        minted = await http.post(url, headers={"api-key": KEY}, json={})
        assert minted.status_code == 200 and minted.json()["value"].startswith("ek_")


async def test_healthz_reports_sessions(emulator, session) -> None:
    async with emulator() as emu:
        async with session(emu), httpx.AsyncClient(base_url=emu.http_base_url) as http:
            health = (await http.get("/healthz")).json()
        assert health["status"] == "ok" and health["active_sessions"] == 1


# Any bytes a client can put in a credential position, and what it gets: 401 for every value that
# reaches the app (non-ASCII, invalid UTF-8, a valid key's prefix with a non-ASCII tail, an "ek_"
# prefix with junk, a very long value); control bytes are not allowed in an HTTP header at all, and
# the HTTP layer answers them 400 before the app. Never a 500, never the value echoed.
HOSTILE_CREDENTIALS = [
    pytest.param(b"\xff\xfe\xfd", 401, id="invalid-utf8"),
    pytest.param("clé-ключ-鍵".encode(), 401, id="non-ascii-utf8"),
    pytest.param(b"secret\xe9", 401, id="valid-key-plus-latin1-byte"),
    pytest.param(b"ek_\xff\xfejunk", 401, id="ephemeral-prefix-with-junk"),
    pytest.param(b"A" * 8000, 401, id="very-long"),
    pytest.param(b"secret\x01\x7f", 400, id="control-bytes"),
    pytest.param(b"secret\x00", 400, id="nul-byte"),
]


async def _raw_upgrade(port: int, header: bytes, path: str = f"/openai/v1/realtime?model={MODEL}") -> bytes:
    """A WebSocket upgrade written byte for byte, and the head of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n".encode()
            + header
            + b"\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(4096)
    finally:
        writer.close()


@pytest.mark.parametrize(("value", "status"), HOSTILE_CREDENTIALS)
@pytest.mark.parametrize("position", ["api-key", "bearer"])
async def test_any_bytes_in_a_credential_header_get_401_never_500(emulator, value, status, position) -> None:
    header = b"api-key: " + value if position == "api-key" else b"Authorization: Bearer " + value
    async with emulator(keys=("secret",)) as emu:
        answer = await _raw_upgrade(emu.port, header)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
        assert value not in answer  # the refusal never echoes the credential
        assert emu.stats.connections_accepted == 0


async def test_any_bytes_in_the_api_key_query_parameter_get_401(emulator) -> None:
    async with emulator(keys=("secret",)) as emu:
        path = f"/openai/v1/realtime?model={MODEL}&api-key=%FF%FEsecret%C3%A9"
        answer = await _raw_upgrade(emu.port, b"X-Nothing: 1", path)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


async def test_any_bytes_as_a_client_secrets_credential_get_401(emulator) -> None:
    async with emulator(keys=("secret",)) as emu:
        async with httpx.AsyncClient(base_url=emu.http_base_url) as http:
            for value in (b"\xff\xfe", "ключ".encode(), b"secret\xe9", b"ek_\xff"):
                response = await http.post("/openai/v1/realtime/client_secrets", headers={"api-key": value})
                assert response.status_code == 401, value
