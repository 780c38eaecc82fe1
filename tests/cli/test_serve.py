"""``realtalk serve``: configuration errors stop it before it listens, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from realtalk.cli.serve import serve

app = typer.Typer()
app.command()(serve)


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure or gateway settings or .env from the developer's checkout."""


def test_serve_refuses_a_public_address_without_client_authentication() -> None:
    result = CliRunner().invoke(app, ["--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without client authentication" in result.output


def test_serve_names_the_profile_that_is_wrong(tmp_path: Path) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('client_adjustable = ["instructions"]\n')
    result = CliRunner().invoke(app, ["--profile", str(profile), "--port", "0"])
    assert result.exit_code == 2
    assert f"{profile}: 'instructions' cannot be client-adjustable" in result.output
