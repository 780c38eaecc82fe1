"""``realtalk ledger upgrade`` and ``realtalk ledger where``, through the installed Typer app, and
the default ledger URL (``realtalk.settings.default_ledger_url``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk.cli.app import app
from realtalk.ledger import head_revision
from realtalk.settings import default_ledger_url, load_settings

DB_PASSWORD_SECRET = "ledger-db-secret-8901"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["ledger", *args], env={"COLUMNS": "300", "NO_COLOR": "1", **(env or {})}
    )
    return result.exit_code, result.output


def test_ledger_upgrade_migrates_the_database_at_url_and_says_what_it_did(
    isolated_env: Path, empty_db_url: str
) -> None:
    code, output = run("upgrade", "--url", empty_db_url)
    assert code == 0, output
    assert f"upgraded from an empty database to revision {head_revision()}" in output

    code, output = run("upgrade", "--url", empty_db_url)
    assert code == 0, output
    assert f"is up to date (revision {head_revision()})" in output


def test_ledger_upgrade_without_url_uses_realtalk_ledger_url(isolated_env: Path) -> None:
    path = isolated_env / "from-env.db"
    code, output = run("upgrade", env={"REALTALK_LEDGER_URL": f"sqlite:///{path}"})
    assert code == 0, output
    assert path.is_file()
    assert f"sqlite+aiosqlite:///{path}" in output


def test_ledger_upgrade_of_an_unreachable_database_exits_1_without_showing_the_password(
    isolated_env: Path,
) -> None:
    url = f"postgresql+asyncpg://realtalk:{DB_PASSWORD_SECRET}@127.0.0.1:1/ledger"
    code, output = run("upgrade", "--url", url)
    assert code == 1
    assert "cannot use the ledger database postgresql+asyncpg://realtalk:***@127.0.0.1:1/ledger" in output
    assert DB_PASSWORD_SECRET not in output


def test_ledger_where_prints_the_configured_url_with_the_password_hidden(isolated_env: Path) -> None:
    url = f"postgresql://realtalk:{DB_PASSWORD_SECRET}@db.example.com:5432/ledger"
    code, output = run("where", env={"REALTALK_LEDGER_URL": url})
    assert (code, output) == (0, "postgresql+asyncpg://realtalk:***@db.example.com:5432/ledger\n")


def test_ledger_where_without_configuration_is_the_sqlite_file_in_the_data_folder(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(isolated_env / "xdg"))
    code, output = run("where")
    assert (code, output) == (0, f"sqlite+aiosqlite:///{isolated_env}/xdg/realtalk/ledger.db\n")


def test_ledger_where_refuses_a_database_the_ledger_does_not_support(isolated_env: Path) -> None:
    code, output = run("where", env={"REALTALK_LEDGER_URL": "mysql://u@db/ledger"})
    assert code == 1
    assert "not 'mysql'" in output


@pytest.mark.parametrize("xdg_data_home", [None, "", "relative/data"])
def test_the_default_ledger_is_under_local_share_without_an_absolute_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg_data_home: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg_data_home is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg_data_home)
    assert default_ledger_url() == f"sqlite+aiosqlite:///{tmp_path}/.local/share/realtalk/ledger.db"


def test_the_ledger_url_setting_is_read_from_the_environment_and_kept_out_of_repr(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().ledger_url is None
    url = f"postgresql+asyncpg://realtalk:{DB_PASSWORD_SECRET}@db/ledger"
    monkeypatch.setenv("REALTALK_LEDGER_URL", url)
    settings = load_settings()
    assert settings.ledger_url == url
    assert DB_PASSWORD_SECRET not in repr(settings)
