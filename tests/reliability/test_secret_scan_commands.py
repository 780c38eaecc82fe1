"""``realtalk serve`` and ``realtalk emulate`` as commands, at their most verbose, used with every
credential a client can send (good, bad, and malformed bytes): their output holds no secret.

The in-process servers of the rest of the suite are covered by the log scan itself
(``secret_scan.py``); these are the commands' own logging set-ups (JSON lines on stderr, DEBUG).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtalk.gateway.auth import COOKIE_NAME, SUBPROTOCOL_PREFIX
from realtalk.testing import configuration_variables

from .commands import command, raw_status
from .secret_scan import SecretScan
from .support import MODEL

UPSTREAM_KEY = "commands-upstream-key-0123456789"
GATEWAY_TOKEN = "commands-gateway-token-0123456789"
GATEWAY_SECRET = "commands-gateway-secret-0123456789abcdef"
WRONG_TOKEN = "commands-wrong-token-0123456789"


def _upgrade(path: str, header: bytes) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + header
        + b"\r\n\r\n"
    )


async def _use_every_credential(http_base_url: str, port: int) -> None:
    """What clients do to a gateway: each way of authenticating, refusals, and malformed bytes."""
    ws_base = http_base_url.replace("http://", "ws://") + "/openai/v1"
    sdk = AsyncOpenAI(websocket_base_url=ws_base, api_key=GATEWAY_TOKEN)
    azure = AsyncAzureOpenAI(
        azure_endpoint=http_base_url,
        websocket_base_url=ws_base,
        api_key=GATEWAY_TOKEN,
        api_version="2025-08-28",
    )
    try:
        for client in (sdk, azure):
            async with client.realtime.connect(model=MODEL) as conn:
                assert (await conn.recv()).type == "session.created"
    finally:
        await sdk.close()
        await azure.close()
    async with httpx.AsyncClient(base_url=http_base_url) as http:
        minted = (await http.post("/api/token", headers={"authorization": f"Bearer {GATEWAY_TOKEN}"})).json()
        signed_in = await http.post("/api/session", json={"token": minted["token"]})
        cookie = signed_in.cookies[COOKIE_NAME]
        assert (await http.post("/api/session", json={"token": WRONG_TOKEN})).status_code == 401
        assert (await http.post("/api/token", headers={"api-key": WRONG_TOKEN})).status_code == 401
    url = f"{ws_base}/realtime?model={MODEL}"
    for options in (
        {"subprotocols": ["realtime", SUBPROTOCOL_PREFIX + minted["token"]]},
        {"additional_headers": {"Cookie": f"{COOKIE_NAME}={cookie}"}},
    ):
        async with connect(url, close_timeout=1.0, **options) as ws:
            assert "session.created" in str(await ws.recv())
    with pytest.raises(InvalidStatus):
        async with connect(url, additional_headers={"Authorization": f"Bearer {WRONG_TOKEN}"}):
            pass
    # The handshake that once crashed with the header's value in a logged traceback.
    protocol = b"Sec-WebSocket-Protocol: realtime, " + (SUBPROTOCOL_PREFIX + GATEWAY_TOKEN).encode() + b"\xff"
    assert 400 <= await raw_status(port, _upgrade(f"/openai/v1/realtime?model={MODEL}", protocol)) < 500
    api_key = b"api-key: " + GATEWAY_TOKEN.encode() + b"\xc3\xa9"
    assert await raw_status(port, _upgrade(f"/openai/v1/realtime?model={MODEL}", api_key)) == 401


@pytest.mark.slow
async def test_serve_and_emulate_at_debug_never_write_a_secret(
    tmp_path: Path, secret_scan: SecretScan
) -> None:
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    emulate_args = ["emulate", "--port", "0", "--key", UPSTREAM_KEY, "--verbose"]
    emulate_args += ["--vad", "energy", "--asr", "none", "--tts", "tone"]
    async with command(tmp_path, env, signal.SIGINT, *emulate_args) as emulate:
        endpoint = (await emulate.wait_for("stdout", r"AZURE_OPENAI_ENDPOINT=(http://\S+)")).group(1)
        emulator_port = int(endpoint.rsplit(":", 1)[1])
        serve_env = env | {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT_NAME": MODEL,
            "AZURE_OPENAI_API_KEY": UPSTREAM_KEY,
            "REALTALK_GATEWAY_TOKENS": GATEWAY_TOKEN,
            "REALTALK_GATEWAY_SECRET": GATEWAY_SECRET,
        }
        async with command(
            tmp_path, serve_env, signal.SIGTERM, "serve", "--port", "0", "--log-level", "DEBUG"
        ) as serve:
            found = await serve.wait_for("stderr", r"realtalk gateway: (http://127\.0\.0\.1:(\d+))/")
            await _use_every_credential(found.group(1), int(found.group(2)))
        # The emulator's own handshake, with a key carrying bytes that are not ASCII.
        api_key = b"api-key: " + UPSTREAM_KEY.encode() + b"\xff"
        assert await raw_status(emulator_port, _upgrade(f"/openai/v1/realtime?model={MODEL}", api_key)) == 401
    outputs = {
        "realtalk serve stdout": serve.text("stdout"),
        "realtalk serve stderr": serve.text("stderr"),
        "realtalk emulate stderr": emulate.text("stderr"),
        "realtalk emulate stdout": emulate.text("stdout"),  # its banner (issue 13, defect 10)
    }
    leaks = [leak for source, text in outputs.items() for leak in secret_scan.check_text(source, text)]
    assert not leaks, "\n".join(leak.describe() for leak in leaks)
    # The scan had something to read: the gateway logged the sessions and the refusals.
    assert outputs["realtalk serve stderr"].count('"session opened') >= 4, outputs["realtalk serve stderr"]
    assert outputs["realtalk serve stderr"].count("refused a client") >= 3
