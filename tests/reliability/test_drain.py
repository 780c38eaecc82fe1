"""SIGTERM to ``realtalk serve`` mid-reply: the reply finishes, every client is told why before its
1001, a client that comes during the drain gets a 503 with Retry-After (the socket still listens),
and the process ends by that SIGTERM with no leaked task, socket or traceback (issue 13, defect 8)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtalk.gateway.relay import SHUTDOWN_SENTENCE
from realtalk.testing import configuration_variables

from .commands import command
from .support import MODEL

LONG_TEXT = "please repeat this sentence slowly so that the reply is still playing when the server stops " * 2


async def _events_to_close(ws: ClientConnection) -> tuple[list[dict[str, object]], int | None, str]:
    events: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(30):
            while True:
                events.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass
    close = ws.protocol.close_rcvd
    return events, (close.code if close else None), (close.reason if close else "")


@pytest.mark.slow
async def test_sigterm_mid_reply_finishes_it_warns_every_client_refuses_newcomers_503_and_ends_cleanly(
    tmp_path: Path,
) -> None:
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    env["PYTHONWARNINGS"] = "always::ResourceWarning"  # an unclosed socket or file is printed
    emulate_args = [
        "emulate",
        "--port",
        "0",
        "--pace",
        "1",
        "--vad",
        "energy",
        "--asr",
        "none",
        "--tts",
        "tone",
    ]
    async with command(tmp_path, env, signal.SIGINT, *emulate_args) as emulate:
        endpoint = await emulate.emulator_endpoint()
        serve_env = env | {
            "AZURE_OPENAI_ENDPOINT": endpoint,
            "AZURE_OPENAI_DEPLOYMENT_NAME": MODEL,
            "AZURE_OPENAI_API_KEY": "drain-test-key",
            "REALTALK_GATEWAY_DRAIN_S": "20",
        }
        async with command(tmp_path, serve_env, signal.SIGTERM, "serve", "--port", "0") as serve:
            base = await serve.gateway_base()
            url = await serve.realtime_url(MODEL)
            async with connect(url, close_timeout=1.0) as talking, connect(url, close_timeout=1.0) as quiet:
                for ws in (talking, quiet):
                    assert json.loads(await ws.recv())["type"] == "session.created"
                item = {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": LONG_TEXT}],
                }
                await talking.send(json.dumps({"type": "conversation.item.create", "item": item}))
                await talking.send(json.dumps({"type": "response.create"}))
                while json.loads(await talking.recv())["type"] != "response.output_audio.delta":
                    pass
                serve.process.send_signal(signal.SIGTERM)
                await serve.wait_for("stderr", r"shutting down: 2 open sessions")
                # A newcomer during the drain: an answer, not a refused connection.
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url):
                        pass
                assert refused.value.response.status_code == 503
                assert refused.value.response.headers["Retry-After"] == "5"
                async with httpx.AsyncClient(base_url=base) as http:
                    assert (await http.get("/readyz")).status_code == 503
                talked, talking_code, talking_reason = await _events_to_close(talking)
                heard, quiet_code, quiet_reason = await _events_to_close(quiet)
            exited = await asyncio.wait_for(serve.process.wait(), timeout=30)  # the one SIGTERM
    # The reply in flight was finished, then each client got an `error` saying why, then 1001.
    types = [event["type"] for event in talked]
    assert "response.done" in types
    done = next(event for event in talked if event["type"] == "response.done")
    assert done["response"]["status"] == "completed"  # type: ignore[index]
    for events, code, reason in ((talked, talking_code, talking_reason), (heard, quiet_code, quiet_reason)):
        assert events[-1]["type"] == "error", events[-3:]
        assert events[-1]["error"]["code"] == "server_shutting_down"  # type: ignore[index]
        assert (code, reason) == (1001, SHUTDOWN_SENTENCE)
    # Drained, it ends as uvicorn does: by the signal it was sent, re-raised (what a supervisor
    # expects of a stopped service; systemd and Kubernetes count it as a clean stop). A crash is 1.
    assert exited == -signal.SIGTERM
    stderr = serve.text("stderr")
    for leak in ("Traceback", "ResourceWarning", "Task was destroyed", "Unclosed"):
        assert leak not in stderr, stderr
