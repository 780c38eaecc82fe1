"""The npm ``openai`` package (``OpenAIRealtimeWS.azure()``), configured for Azure, through the gateway.

``js/realtime_turn.mjs`` builds an ``AzureOpenAI`` client for the gateway's endpoint and opens the
Realtime socket the documented Azure way: the package builds ``wss://HOST/openai/v1/realtime?model=
<deployment>`` and sends the key in an ``api-key`` header. The gateway sits behind a TLS terminator
(``tls_proxy.py``) because the package speaks ``wss:`` only. The script's dependencies are pinned
in ``js/package-lock.json`` and installed with ``npm ci`` on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from realtalk.gateway import Gateway

from .conftest import API_KEY, DEPLOYMENT, session_updates
from .tls_proxy import self_signed_certificate, tls_proxy

pytestmark = pytest.mark.system_package("nodejs")

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "realtime_turn.mjs"
VOICE = "cedar"  # not the profile's own (marin): a change, so it is forwarded
NODE_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` binary, with the script's packages installed as the lock file pins them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs Node.js and npm: apt-get install nodejs (Node 20 or later)")
    lock, installed = JS_DIR / "package-lock.json", JS_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
        )
    return node


async def _run_turn(node: str, gw: Gateway, tmp_path: Path) -> dict[str, Any]:
    cert, key = self_signed_certificate(tmp_path)
    async with tls_proxy(cert, key, gw.port) as port:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "NODE_EXTRA_CA_CERTS": str(cert),
            "REALTALK_TEST_API_KEY": API_KEY,
        }
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"https://127.0.0.1:{port}",
            DEPLOYMENT,
            VOICE,
            cwd=JS_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_S)
    assert process.returncode == 0, (stdout.decode(), stderr.decode())
    report: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return report


async def test_npm_openai_azure_realtime_runs_a_turn_through_the_gateway(stack, node, tmp_path) -> None:
    async with stack() as (emu, gw):
        report = await _run_turn(node, gw, tmp_path)
        updates = session_updates(emu)

    assert report["errors"] == []
    # The package's own Azure URL reached the gateway, its api-key header let it in.
    assert report["url"].endswith(f"/openai/v1/realtime?model={DEPLOYMENT}")
    types = [event["type"] for event in report["events"]]
    assert types[0] == "session.created"
    # Its session.update went through, applied upstream and confirmed to the client.
    assert updates[1]["session"]["audio"]["output"]["voice"] == VOICE
    assert VOICE in [event.get("voice") for event in report["events"] if event["type"] == "session.updated"]
    # The reply as the package reported it: audio, its transcript, a completed response.
    assert report["status"] == "completed"
    assert report["audioBytes"] > 24_000
    assert report["transcript"].strip()
    assert report["closed"] == 1000
