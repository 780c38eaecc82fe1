"""``realtalk devices``: its renderers, its failures, and one listing through a real PortAudio."""

from __future__ import annotations

import ctypes.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console, RenderableType
from typer.testing import CliRunner

import realtalk.cli.devices as devices_module
from realtalk.audio.devices import DeviceInfo
from realtalk.cli.devices import devices, render_devices, render_no_devices


def rendered(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable, soft_wrap=True)
    return console.export_text()


def devices_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(devices)
    return app


def run_devices() -> tuple[int, str]:
    result = CliRunner().invoke(devices_app(), [])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


HEADSET = DeviceInfo(
    index=2,
    name="USB Headset: Audio (hw:1,0)",
    hostapi="ALSA",
    max_input_channels=1,
    max_output_channels=2,
    default_sample_rate_hz=48_000,
    is_default_input=True,
    is_default_output=False,
)
HDMI = DeviceInfo(
    index=1,
    name="HDA Intel PCH: HDMI 0 (hw:0,3)",
    hostapi="ALSA",
    max_input_channels=0,
    max_output_channels=8,
    default_sample_rate_hz=44_100,
    is_default_input=False,
    is_default_output=True,
)


def test_the_table_shows_each_device_with_its_channels_rate_and_default_role() -> None:
    text = rendered(render_devices([HDMI, HEADSET]))
    rows = [line for line in text.splitlines() if "hw:" in line]
    assert len(rows) == 2
    assert all(
        part in rows[0] for part in ("1", "HDA Intel PCH: HDMI 0 (hw:0,3)", " - ", "8", "44100 Hz", "output")
    )
    assert all(part in rows[1] for part in ("2", "USB Headset", "1", "2", "48000 Hz", "input"))
    assert "--input-device N" in text


def test_the_no_device_message_says_how_to_run_without_a_sound_card() -> None:
    text = rendered(render_no_devices())
    assert "no sound devices" in text
    assert "--input-wav" in text and "--output-wav" in text


def test_the_command_exits_1_when_no_device_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices_module, "list_devices", list)
    code, output = run_devices()
    assert code == 1
    assert "no sound devices" in output


def test_without_portaudio_the_command_says_to_install_it_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    code, output = run_devices()
    assert code == 1
    assert "apt-get install libportaudio2" in " ".join(output.split())


@pytest.mark.system_package("libportaudio2")
def test_the_command_lists_the_devices_portaudio_sees(tmp_path: Path) -> None:
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("needs system package 'libportaudio2': apt-get install libportaudio2")
    config = tmp_path / "asoundrc"
    config.write_text(
        'pcm.!default { type asym  playback.pcm "fakespk"  capture.pcm "fakemic" }\n'
        f'pcm.fakespk {{ type file  slave.pcm "null"  file "{tmp_path / "spk.raw"}"  format "raw" }}\n'
        'pcm.fakemic { type file  slave.pcm "null"  file "/dev/null"  infile "/dev/zero"  format "raw" }\n'
        "ctl.!default { type hw card 0 }\n"
    )
    env = {**os.environ, "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{config}", "COLUMNS": "150"}
    script = (
        "import typer\nfrom realtalk.cli.devices import devices\n"
        "app = typer.Typer()\napp.command()(devices)\napp()\n"
    )
    # A fresh interpreter: ALSA reads ALSA_CONFIG_PATH once, when PortAudio is loaded.
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any("fakespk" in line and "ALSA" in line for line in lines)
    assert any("fakemic" in line for line in lines)
    assert any("default" in line and "input, output" in line for line in lines)
