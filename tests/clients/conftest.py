"""Real client libraries, configured as for Azure, driven through the gateway (issue 13, defect 11).

Each test runs ``realtalk serve``'s app (the gateway, in-process, with a client token set so
that the ``api-key`` header is what lets the client in) in front of an in-process emulator on
127.0.0.1, points a third-party Realtime client at it exactly as its documentation
says to point it at an Azure resource (``/openai/v1/realtime?model=<deployment>``, the key in an
``api-key`` header), and asserts on what that library reports. Negatives ("never forwarded",
"applied upstream") are read from the emulator's own records (``emu.stats``).

The recogniser is PocketSphinx (the ``asr`` extra) where it is installed, so user audio gets real
``input_audio_transcription`` events: openai-agents answers each with ``conversation.item.retrieve``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from realtalk.audio.pcm import read_wav
from realtalk.emulator import Emulator, EmulatorConfig, Engines, Scenario, load_engines
from realtalk.gateway import Gateway, create_app
from realtalk.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures"
DEPLOYMENT = "gpt-realtime-1.5"
API_KEY = "client-key-0123456789abcdef"  # the gateway's one client token, sent in the api-key header
GATEWAY_SECRET = "s" * 40
TURN_TIMEOUT_S = 20.0

# What an operator opens so that a client may keep its audio formats, transcription and output
# modality (the default profile opens voice, speed, turn_detection and noise_reduction only).
OPEN_FORMATS = (
    "voice",
    "speed",
    "turn_detection",
    "noise_reduction",
    "transcription",
    "input_format",
    "output_format",
    "output_modality",
)


def fixture_pcm(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


def realtime_url(gw: Gateway) -> str:
    """The Azure-style WebSocket URL of the gateway: ``ws://127.0.0.1:PORT/openai/v1/realtime?model=``."""
    return f"{gw.websocket_base_url}/realtime?model={DEPLOYMENT}"


@pytest.fixture(autouse=True)
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test may leave an error in the log: no traceback of the gateway, uvicorn or asyncio."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    errors += [r for r in caplog.get_records("teardown") if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture(scope="session")
def engines() -> Engines:
    """Energy VAD, PocketSphinx where installed (real transcripts), tone replies."""
    return load_engines("energy", "auto", "tone")


def _profile_file(directory: Path, client_adjustable: Sequence[str], tools: Sequence[dict[str, Any]]) -> Path:
    # TOML by hand: the standard library reads TOML but does not write it; JSON strings are TOML strings.
    lines = [f"client_adjustable = [{', '.join(json.dumps(name) for name in client_adjustable)}]"]
    for tool in tools:
        lines.append("[[tools]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in tool.items())
    path = directory / "profile.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(inner)}" for key, inner in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(inner) for inner in value) + "]"
    return json.dumps(value)


@pytest.fixture
def stack(engines: Engines, tmp_path: Path) -> Callable[..., Any]:
    """``async with stack(client_adjustable=..., tools=..., scenario=...) as (emu, gw)``.

    Without ``client_adjustable`` and ``tools`` the gateway runs its built-in default profile, as
    ``realtalk serve`` does with no ``--profile``."""

    @asynccontextmanager
    async def start(
        *,
        client_adjustable: Sequence[str] | None = None,
        tools: Sequence[dict[str, Any]] = (),
        scenario: Scenario | None = None,
    ) -> AsyncIterator[tuple[Emulator, Gateway]]:
        static = tmp_path / "static"
        static.mkdir(exist_ok=True)
        (static / "index.html").write_text("<!doctype html><title>realtalk</title>")
        profile = None
        if client_adjustable is not None or tools:
            from realtalk.gateway.profile import DEFAULT_CLIENT_ADJUSTABLE

            adjustable = DEFAULT_CLIENT_ADJUSTABLE if client_adjustable is None else client_adjustable
            profile = _profile_file(tmp_path, adjustable, tools)
        async with Emulator(EmulatorConfig(pace=40.0, scenario=scenario), engines=engines) as emu:
            settings = Settings(
                _env_file=None,
                azure_openai_endpoint=emu.http_base_url,
                azure_openai_deployment_name=DEPLOYMENT,
                gateway_port=0,
                gateway_profile=profile,
                gateway_tokens=API_KEY,
                gateway_secret=GATEWAY_SECRET,
                connect_timeout_s=5.0,
            )
            app = create_app(settings, static_dir=static, emulator_engines=engines)
            async with Gateway(app) as gw:
                yield emu, gw

    return start


def session_updates(emu: Emulator) -> list[dict[str, Any]]:
    """The ``session.update`` events the emulator received: the gateway's, then the client's."""
    return emu.stats.events_received("session.update")
