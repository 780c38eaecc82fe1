"""``realtalk emulate``: options, the banner, and a real run stopped with Ctrl+C.

(Kept with the emulator's tests; the command lives in ``realtalk/cli/emulate.py``.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner
from websockets.sync.client import connect

from realtalk.cli.emulate import emulate, render_banner
from realtalk.emulator import Emulator, EmulatorConfig


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(emulate)
    return app


def test_the_help_lists_the_options_and_faults() -> None:
    result = CliRunner().invoke(_app(), ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    options = ["--host", "--port", "--key", "--deployment", "--session-limit", "--pace", "--vad", "--asr"]
    options += ["--tts", "--scenario", "--first-audio-delay-ms", "--drop-after", "--reject-from"]
    for option in options:
        assert option in result.output


def test_a_malformed_scenario_file_stops_with_exit_2_naming_the_problem(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns:\n  - sing: la\n")
    result = CliRunner().invoke(_app(), ["--scenario", str(bad)])
    assert result.exit_code == 2
    assert "turn 1: unknown key(s) sing" in result.output


async def test_the_banner_says_how_to_point_clients_at_the_emulator(fast_engines) -> None:
    async with Emulator(EmulatorConfig(keys=("k1-secret-value",)), engines=fast_engines) as emu:
        console = Console(record=True, width=200)
        console.print(render_banner(emu, fast_engines.description))
        text = console.export_text()
    assert f"export AZURE_OPENAI_ENDPOINT=http://127.0.0.1:{emu.port}" in text
    assert "export AZURE_OPENAI_DEPLOYMENT_NAME=gpt-realtime-1.5" in text
    assert "export AZURE_OPENAI_API_KEY=<a key you passed with --key>" in text
    assert "1 key from --key (15 characters)" in text
    assert f'websocket_base_url="ws://127.0.0.1:{emu.port}/openai/v1"' in text
    assert 'api_key=os.environ["AZURE_OPENAI_API_KEY"]' in text
    assert "k1-secret-value" not in text


async def test_without_keys_the_banner_shows_the_placeholder_any_key_works_with(fast_engines) -> None:
    async with Emulator(EmulatorConfig(), engines=fast_engines) as emu:
        console = Console(record=True, width=200)
        console.print(render_banner(emu, fast_engines.description))
        text = console.export_text()
    assert "export AZURE_OPENAI_API_KEY=any-non-empty-key" in text
    assert 'api_key="any-non-empty-key"' in text


@pytest.mark.slow
def test_the_command_serves_until_ctrl_c() -> None:
    command = [sys.executable, "-c", "from realtalk.cli.app import main; main()", "emulate", "--port", "0"]
    command += ["--vad", "energy", "--asr", "none", "--tts", "tone"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            assert process.stdout is not None
            endpoint = None
            for line in process.stdout:  # the banner, line by line, until the endpoint is known
                found = re.search(r"AZURE_OPENAI_ENDPOINT=(http://\S+)", line)
                if found:
                    endpoint = found.group(1)
                    break
            assert endpoint is not None
            url = endpoint.replace("http://", "ws://") + "/openai/v1/realtime?model=gpt-realtime-1.5"
            with connect(url, additional_headers={"api-key": "any"}, open_timeout=10) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
def test_the_command_never_prints_its_api_key_and_still_says_how_to_connect() -> None:
    secret = "emulate-key-Zq81xW4vT0"
    command = [sys.executable, "-c", "from realtalk.cli.app import main; main()", "emulate", "--port", "0"]
    command += ["--vad", "energy", "--asr", "none", "--tts", "tone", "--key", secret, "--verbose"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            assert process.stdout is not None
            banner: list[str] = []
            for line in process.stdout:  # the banner, up to its last line
                banner.append(line)
                if "Ctrl+C stops it" in line:
                    break
            text = "".join(banner)
            assert secret not in text
            endpoint = re.search(r"AZURE_OPENAI_ENDPOINT=(http://\S+)", text)
            assert endpoint is not None, text
            assert "export AZURE_OPENAI_API_KEY=" in text
            assert f"1 key from --key ({len(secret)} characters)" in text
            url = endpoint.group(1).replace("http://", "ws://") + "/openai/v1/realtime?model=gpt-realtime-1.5"
            with connect(url, additional_headers={"api-key": secret}, open_timeout=10) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
            process.send_signal(signal.SIGINT)
            rest, _ = process.communicate(timeout=10)
            assert process.returncode == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert secret not in text + rest
