"""A malformed ``.env`` line is named (file, line number, what is wrong, what to write) by every
command that reads the configuration, instead of the setting on it seeming not to be set."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from realtalk.cli.doctor import doctor
from realtalk.cli.serve import serve
from realtalk.cli.talk import talk

SECRET = "s3cret-dotenv-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings from the developer's shell; the test's tmp_path is the working directory."""


def run(command: typer.models.CommandFunctionType, *args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def write_env(directory: Path, *lines: str) -> Path:
    path = directory / ".env"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_doctor_names_the_file_the_line_and_the_missing_equals_sign(isolated_env: Path) -> None:
    path = write_env(
        isolated_env,
        "# my Azure resource",
        "AZURE_OPENAI_ENDPOINT https://my-resource.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENT_NAME=gpt-realtime-1.5",
    )
    code, output = run(doctor, "--timeout", "1")
    assert code == 1, output
    assert "AZURE_OPENAI_ENDPOINT is not set" not in output
    assert f"✗ configuration: {path.resolve()}, line 2: no '=' after AZURE_OPENAI_ENDPOINT." in output
    assert "Write each setting as NAME=value" in output
    assert "Example: AZURE_OPENAI_ENDPOINT=https://my-resource.openai.azure.com" in output


def test_a_colon_instead_of_equals_is_named_and_the_value_is_never_shown(isolated_env: Path) -> None:
    write_env(isolated_env, f"AZURE_OPENAI_API_KEY: {SECRET}")
    code, output = run(doctor)
    assert code == 1, output
    assert "line 1: AZURE_OPENAI_API_KEY is followed by ':'; write '=' instead." in output
    assert SECRET not in output


def test_an_unclosed_quote_is_named_with_the_line_it_opens_on(isolated_env: Path) -> None:
    write_env(isolated_env, "AZURE_OPENAI_DEPLOYMENT_NAME=rt", f'AZURE_OPENAI_API_KEY="{SECRET}', "OTHER=1")
    code, output = run(doctor)
    assert code == 1, output
    assert 'line 2: the value of AZURE_OPENAI_API_KEY opens a " quote that is never closed.' in output
    assert SECRET not in output


def test_talk_stops_with_a_usage_error_in_one_line(isolated_env: Path) -> None:
    write_env(isolated_env, "MY SETTING=1")
    code, output = run(talk, "--output-wav", "out.wav")
    assert code == 2, output
    assert "line 1: the name before '=' has a space in it." in output
    assert "talking to the local emulator" not in output


def test_serve_stops_before_it_listens(isolated_env: Path) -> None:
    write_env(isolated_env, "REALTALK_GATEWAY_PORT 8000")
    code, output = run(serve, "--port", "0")
    assert code == 2, output
    assert "Cannot start the gateway:" in output and "line 1: no '=' after REALTALK_GATEWAY_PORT." in output
