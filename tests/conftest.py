"""Suite-wide rules.

Under CI (``CI=true``) every test must run: a skip (for example a missing system package) is turned
into a failure of the whole session, and so is a run that executed no test at all. Locally a test
that needs a Debian package skips with the reason, so a developer without it can still work.

In every run, no log record may hold a test secret (``reliability/secret_scan.py``): a leak fails
the session, whichever tests ran.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .reliability.secret_scan import SecretScan, SecretScanPlugin

FIXTURES = Path(__file__).parent / "fixtures"

_skipped: list[str] = []
_SECRET_SCAN = "realtalk-secret-scan"


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str, package: str | None = None) -> str:
    """Return the path of a system binary, or skip (locally) naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs system package {package or name!r}: apt-get install {package or name}")
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SecretScanPlugin(), _SECRET_SCAN)


@pytest.fixture(scope="session")
def secret_scan(pytestconfig: pytest.Config) -> SecretScan:
    """The suite's secret scan, for output it cannot see as log records (a child process's
    stderr): ``secret_scan.check_text("realtalk serve", stderr)`` records and returns the leaks."""
    plugin = pytestconfig.pluginmanager.get_plugin(_SECRET_SCAN)
    assert isinstance(plugin, SecretScanPlugin)
    return plugin.scan


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure ran (pytest reports it as skipped): only real skips count.
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _under_ci():
        return
    if _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif session.testscollected == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _under_ci() and _skipped:
        terminalreporter.section("skipped tests are failures under CI")
        for line in _skipped:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No realtalk configuration from the developer's shell or a ``.env`` in the checkout: clears
    ``realtalk.testing.configuration_variables()`` and runs the test in its ``tmp_path``."""
    from realtalk.testing import configuration_variables

    for name in configuration_variables():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _ledger_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``realtalk talk`` and ``serve`` write a usage ledger by default, under ``$XDG_DATA_HOME``:
    a test's goes to a folder of its own, never to the developer's home."""
    data_home = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return data_home
