"""``realtalk doctor`` end to end on 127.0.0.1, and its pure renderers."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
import typer
from rich.console import Console, RenderableType
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from realtalk.cli.doctor import doctor, render_config_error, render_configuration, render_probe
from realtalk.client.handshake import ProbeResult, ProbeStep
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import resolve_endpoint

SECRET = "s3cret-key-0123456789abcdef0123"


def doctor_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(doctor)
    return app


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


def configure(monkeypatch: pytest.MonkeyPatch, endpoint: str, deployment: str = "rt") -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", endpoint)
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", deployment)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)


def run_doctor(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(doctor_app(), list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


SESSION_CREATED = json.dumps(
    {
        "type": "session.created",
        "event_id": "event_1",
        "session": {"type": "realtime", "id": "sess_1", "model": "gpt-realtime-1.5"},
    }
)


@contextlib.contextmanager
def threaded_server(
    process_request: Callable[[ServerConnection, Request], Response | None] | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """A Realtime server in a thread: the doctor runs its own event loop, synchronously."""
    authorizations: list[str] = []

    def handler(connection: ServerConnection) -> None:
        authorizations.append(
            connection.request.headers.get("Authorization", "") if connection.request else ""
        )
        connection.send(SESSION_CREATED)
        with contextlib.suppress(ConnectionClosed):
            connection.recv()

    with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.socket.getsockname()[1], authorizations
        finally:
            server.shutdown()
            thread.join()


# --- the command ---------------------------------------------------------------------------------


def test_an_unreachable_endpoint_exits_1_naming_the_tcp_step(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    configure(monkeypatch, f"http://127.0.0.1:{port}")
    code, output = run_doctor("--timeout", "2")
    assert code == 1
    assert (
        f"✗ tcp: connection to 127.0.0.1 port {port} refused: nothing listens there; "
        "is the local server running (realtalk emulate)?"
    ) in output
    assert output.endswith("FAILED at step 'tcp'.\n")
    assert SECRET not in output


def test_a_healthy_server_passes_with_exit_code_0(monkeypatch: pytest.MonkeyPatch) -> None:
    with threaded_server() as (port, authorizations):
        configure(monkeypatch, f"http://127.0.0.1:{port}/openai/v1")
        code, output = run_doctor("--timeout", "5")
    assert code == 0, output
    assert "✓ session.created: session sess_1, model gpt-realtime-1.5" in output
    assert "OK: the deployment answered the WebSocket handshake with session.created." in output
    assert authorizations == [f"Bearer {SECRET}"]
    assert SECRET not in output


def test_the_configuration_is_shown_before_the_probe_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    configure(monkeypatch, f"http://127.0.0.1:{port}", deployment="my-rt")
    _, output = run_doctor("--timeout", "0.5")
    lines = output.splitlines()
    assert lines[0] == "realtalk doctor"
    assert f"  endpoint   ws://127.0.0.1:{port}/openai/v1/realtime?model=my-rt" in lines
    assert "  deployment my-rt" in lines
    assert "  provider   local server (loopback)" in lines
    assert (
        f"  credential API key from AZURE_OPENAI_API_KEY ({len(SECRET)} characters), "
        "sent in the Authorization: Bearer header"
    ) in lines
    assert "  timeout    0.5 s per step" in lines
    assert SECRET not in output


def test_the_timeout_defaults_to_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("REALTALK_CONNECT_TIMEOUT_S", "3")
    _, output = run_doctor()
    assert "  timeout    3 s per step" in output.splitlines()


def test_a_refused_key_exits_1_naming_the_upgrade_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "")

    with threaded_server(refuse) as (port, _):
        configure(monkeypatch, f"http://127.0.0.1:{port}")
        code, output = run_doctor("--timeout", "5")
    assert code == 1
    assert (
        "✗ upgrade: HTTP 401: the local server refused the key: check AZURE_OPENAI_API_KEY "
        "(or OPENAI_API_KEY) against the key the server expects"
    ) in output
    assert output.endswith("FAILED at step 'upgrade'.\n")
    assert SECRET not in output


def test_a_preview_endpoint_shows_the_retirement_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    configure(
        monkeypatch, f"http://127.0.0.1:{port}/openai/realtime?api-version=2025-04-01-preview&deployment=rt"
    )
    _, output = run_doctor("--timeout", "0.5")
    assert "⚠ warning: AZURE_OPENAI_ENDPOINT is a preview Realtime URL" in output
    assert "retired from April 30, 2026" in output


def test_a_config_error_exits_1_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, "https://example.com/openai/v1")
    code, output = run_doctor()
    assert code == 1
    assert output.startswith(
        "✗ configuration: AZURE_OPENAI_ENDPOINT has the host 'example.com', which is not"
    )
    assert "Example: https://my-resource.openai.azure.com/openai/v1" in output
    assert SECRET not in output


def test_with_no_endpoint_it_checks_the_embedded_emulator_and_passes_saying_how_to_use_azure() -> None:
    # The README's default set-up: nothing configured, so talk and serve use the embedded emulator.
    code, output = run_doctor("--timeout", "30")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == "realtalk doctor"
    assert any(
        line.startswith("  target     the embedded emulator (no AZURE_OPENAI_ENDPOINT configured)")
        for line in lines
    ), output
    assert re.search(
        r"^  endpoint   ws://127\.0\.0\.1:\d+/openai/v1/realtime\?model=gpt-realtime-1\.5$", output, re.M
    )
    assert "✓ session.created: session " in output
    assert "OK: the embedded emulator answered the WebSocket handshake with session.created." in output
    assert (
        "To use Azure OpenAI: set AZURE_OPENAI_ENDPOINT (the portal's Target URI) and "
        "AZURE_OPENAI_DEPLOYMENT_NAME"
    ) in " ".join(output.split())


def test_an_invalid_setting_exits_1_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setenv("REALTALK_CONNECT_TIMEOUT_S", "-1")
    code, output = run_doctor()
    assert code == 1
    assert output.startswith("✗ configuration: REALTALK_CONNECT_TIMEOUT_S: Input should be greater than 0.")


def test_a_dot_env_in_the_working_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"AZURE_OPENAI_ENDPOINT=http://127.0.0.1:{closed_port()}\nAZURE_OPENAI_DEPLOYMENT_NAME=from-dotenv\n"
        f"AZURE_OPENAI_API_KEY={SECRET}\n",
        encoding="utf-8",
    )
    code, output = run_doctor("--timeout", "0.5")
    assert code == 1
    assert "  deployment from-dotenv" in output.splitlines()
    assert SECRET not in output


def test_the_help_explains_the_command() -> None:
    code, output = run_doctor("--help")
    assert code == 0
    assert "Check the configuration, the credentials and the deployment" in output
    assert "--timeout" in output


# --- the renderers -------------------------------------------------------------------------------


def rendered(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable, soft_wrap=True)
    return console.export_text()


def test_render_probe_names_the_failed_step_in_one_line() -> None:
    endpoint = resolve_endpoint("https://res.openai.azure.com", "rt")
    result = ProbeResult(
        endpoint,
        (
            ProbeStep("credentials", True, "API key"),
            ProbeStep("dns", False, "could not resolve res.openai.azure.com (Name or service not known)"),
        ),
    )
    assert rendered(render_probe(result)).splitlines() == [
        "✓ credentials: API key",
        "✗ dns: could not resolve res.openai.azure.com (Name or service not known)",
        "FAILED at step 'dns'.",
    ]


def test_render_configuration_lists_warnings_last() -> None:
    endpoint = resolve_endpoint("https://res.openai.azure.com/openai/v1?api-version=x", "rt")
    lines = rendered(render_configuration(endpoint, "a credential", 10)).splitlines()
    assert lines == [
        "realtalk doctor",
        "  endpoint   wss://res.openai.azure.com/openai/v1/realtime?model=rt",
        "  deployment rt",
        "  provider   Azure OpenAI",
        "  credential a credential",
        "  timeout    10 s per step",
        "⚠ warning: AZURE_OPENAI_ENDPOINT has an api-version, which the GA API does not use; "
        "realtalk dropped it.",
    ]


def test_render_config_error_keeps_brackets_literal() -> None:
    error = ConfigError("AZURE_OPENAI_ENDPOINT has the host '[::2]'.", variable="AZURE_OPENAI_ENDPOINT")
    assert (
        rendered(render_config_error(error))
        == "✗ configuration: AZURE_OPENAI_ENDPOINT has the host '[::2]'.\n"
    )
