"""``realtalk talk --transport webrtc``: the option, the session it picks, and a spoken turn over
WebRTC against the embedded emulator through WAV files (real time: WebRTC media is not sped up).
"""

from __future__ import annotations

import json
import wave
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from realtalk.cli.talk import talk
from realtalk.cli.talk_options import TalkOptions, Transport
from realtalk.cli.talk_startup import open_target
from realtalk.client.session import RealtimeSession
from realtalk.client.webrtc import WebRTCSession
from realtalk.protocol import AgentProfile
from realtalk.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


def run_talk(*args: str) -> Result:
    app = typer.Typer()
    app.command()(talk)
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def flat(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def test_speed_does_not_apply_to_webrtc() -> None:
    result = run_talk("--transport", "webrtc", "--speed", "4", "--input-wav", str(FIXTURES / "question.wav"))
    assert result.exit_code == 2
    assert "WebRTC audio flows in real time" in flat(result.output)


def test_an_unknown_transport_is_a_usage_error() -> None:
    result = run_talk("--transport", "carrier-pigeon")
    assert result.exit_code == 2
    assert "websocket" in flat(result.output) and "webrtc" in flat(result.output)


@pytest.mark.parametrize(
    ("transport", "session_class", "shown"),
    [(Transport.websocket, RealtimeSession, ""), (Transport.webrtc, WebRTCSession, " over WebRTC")],
)
async def test_the_transport_picks_the_session_class(
    transport: Transport, session_class: type[RealtimeSession], shown: str
) -> None:
    settings = Settings(
        _env_file=None,
        azure_openai_endpoint="http://127.0.0.1:9",
        azure_openai_deployment_name="gpt-realtime-1.5",
        azure_openai_api_key="test-key",
    )
    options = TalkOptions(profile=AgentProfile(), transport=transport)
    async with AsyncExitStack() as stack:
        target = await open_target(options, settings, stack, Console(quiet=True))
    assert target.session_class is session_class
    assert target.description == f"gpt-realtime-1.5 at 127.0.0.1:9{shown}"


@pytest.mark.slow
def test_a_spoken_turn_over_webrtc_against_the_embedded_emulator(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    events = tmp_path / "events.jsonl"
    result = run_talk(
        "--transport",
        "webrtc",
        "--input-wav",
        str(FIXTURES / "question.wav"),
        "--output-wav",
        str(out),
        "--events",
        str(events),
        "--exit-after-turns",
        "1",
        "--duration",
        "30",
    )
    assert result.exit_code == 0, result.output
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    sent = {entry.get("event", {}).get("type") for entry in logged if entry.get("direction") == "out"}
    assert "input_audio_buffer.append" not in sent  # the microphone went over the track
    with wave.open(str(out), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert int(np.count_nonzero(np.abs(samples) > 300)) > 24_000 // 2  # the reply was heard
