"""The secret scan: no test secret may reach a log anywhere in the suite (issue 13, defect 2).

``tests/conftest.py`` registers ``SecretScanPlugin`` for every run, whole suite or one file. It puts
a ``SecretScan`` handler on the root logger (and on the ``realtalk`` logger, which ``realtalk talk``
detaches from the root while it runs) and sets ``realtalk.*`` to DEBUG, so every record the
gateway, the emulator, the client, uvicorn, picows or asyncio write is checked as it is emitted:
its message, its exception traceback, its stack and its extra fields (``subject``, ...), the way
``JsonFormatter`` would write them. A record leaks when it holds

* a known test secret: the literal values below, plus every module-level ``str`` constant of a
  test module or conftest named like ``*TOKEN*``, ``*SECRET*``, ``*KEY*`` (8+ characters), so a
  new test's ``UPSTREAM_KEY = "..."`` is covered without editing this file; or
* something shaped like a credential, whatever its value: a signed gateway token, an ``ek_``
  client secret, a bearer value, an ``api-key``, a token subprotocol, a session cookie, or a key or
  signature in a URL's query (a signed URL).

At the end of the session any leak fails the run, and the summary names the test that was
running, the logger, and the record with the secret masked. Output of child processes
(``realtalk serve``/``emulate`` run as commands) is checked with ``SecretScan.check_text``.

DEBUG records of the tests' own client libraries are not the servers' logs: websockets' client,
httpx and openai log the requests a test makes, credentials included, when a test turns them up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Final

import pytest

__all__ = ["INLINE_SECRETS", "PATTERNS", "Leak", "SecretScan", "SecretScanPlugin", "secret_constants"]

# Secrets tests write inline rather than in a constant (a new test should use a named constant,
# which the scan then finds by itself).
INLINE_SECRETS: Final = (
    "browser-test-token-0123456789",
    "a-valid-token-0123456789abcdef",
    "the-right-key",
    "a-wrong-key",
    "azure-key-not-for-openai",
    "fuzz-key",
    "right-key",
    "wrong-token-0123456789",
    "nope-0123456789",
)

# A credential-like value: 8+ token characters, a digit among them (so "Bearer authorization" is
# prose, and "Bearer abc123..." is not).
_TOKENISH: Final = r"(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,}"
# Credentials by their shape. A value written as a placeholder (``<token>``) is documentation.
PATTERNS: Final = {
    "signed token": re.compile(r"\brt1\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    "client secret": re.compile(r"\bek_[A-Za-z0-9]{16,}"),
    "bearer value": re.compile(r"(?i)\bbearer\s+(?!<)" + _TOKENISH),
    "api-key value": re.compile(r"(?i)api[-_]key['\"]?\s*[:=]\s*['\"]?(?!<)" + _TOKENISH),
    "token subprotocol": re.compile(r"openai-insecure-api-key\.(?!<)[^\s,'\"]+"),
    "session cookie": re.compile(r"realtalk_session=(?!<)[^;\s'\"]+"),
    "key in a URL": re.compile(
        r"(?i)[?&](?:api[-_]key|key|token|access_token|sig|signature|secret)=[^&\s'\"]+"
    ),
}
_CONSTANT_NAME: Final = re.compile(r"[A-Z0-9_]*(?:TOKEN|SECRET|KEY)[A-Z0-9_]*")
_CLIENT_LIBRARIES: Final = ("websockets.client", "httpx", "httpcore", "openai")
_STANDARD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MARK: Final = "_secret_scanned"
_MAX_SHOWN_CHARS: Final = 600


@dataclass(frozen=True)
class Leak:
    """A record (or a line of a child's output) that held a secret; ``text`` has it masked."""

    where: str
    logger: str
    level: str
    text: str

    def describe(self) -> str:
        text = self.text if len(self.text) <= _MAX_SHOWN_CHARS else self.text[:_MAX_SHOWN_CHARS] + " [...]"
        return f"{self.where}: {self.logger} {self.level}: {text}"


def secret_constants(module: ModuleType) -> Iterator[str]:
    """The module's ``*TOKEN*``/``*SECRET*``/``*KEY*`` string constants of 8+ characters."""
    for name, value in vars(module).items():
        if _CONSTANT_NAME.fullmatch(name) and isinstance(value, str) and len(value) >= 8:
            yield value


def render(record: logging.LogRecord) -> str:
    """Everything a formatter could write for ``record``: message, extras, traceback, stack."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a record whose arguments do not fit its format: logging prints both
        parts = [str(record.msg), repr(record.args)]
    parts += [
        f"{name}={value}"
        for name, value in vars(record).items()
        if name not in _STANDARD_ATTRIBUTES and not name.startswith("_")
    ]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


class SecretScan(logging.Handler):
    """Checks every record as it is emitted; keeps only the leaks (never the records)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(logging.NOTSET)
        self.secrets: set[str] = set(secrets)
        self.leaks: list[Leak] = []
        self.records_checked = 0
        self.where = "(before the first test)"

    def add_secrets(self, values: Iterable[str]) -> None:
        self.secrets.update(values)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, _MARK, False):  # seen on the realtalk logger, now at the root
            return
        setattr(record, _MARK, True)
        if record.levelno < logging.INFO and record.name.startswith(_CLIENT_LIBRARIES):
            return
        self.records_checked += 1
        masked = self.mask(render(record))
        if masked is not None:
            self.leaks.append(Leak(self.where, record.name, record.levelname, masked))

    def check_text(self, source: str, text: str) -> list[Leak]:
        """Check a child process's output (``source`` names it), line by line; the leaks found."""
        found = []
        for line in text.splitlines():
            masked = self.mask(line)
            if masked is not None:
                found.append(Leak(self.where, source, "output", masked))
        self.leaks.extend(found)
        return found

    def mask(self, text: str) -> str | None:
        """``text`` with every secret in it masked, or ``None`` when it holds none."""
        masked = text
        # Longest first: a secret that contains another is masked whole.
        for secret in sorted(self.secrets, key=len, reverse=True):
            masked = masked.replace(secret, "[test secret]")
        for name, pattern in PATTERNS.items():
            masked = pattern.sub(f"[{name}]", masked)
        return masked if masked != text else None


class SecretScanPlugin:
    """The pytest side: installs the scan, learns the tests' secrets, fails a run that leaked."""

    def __init__(self) -> None:
        self.scan = SecretScan(INLINE_SECRETS)
        self._installed: list[logging.Logger] = []

    def install(self) -> None:
        """(Re)attach the handler and DEBUG on ``realtalk``: code under test may reset either."""
        package = logging.getLogger("realtalk")
        package.setLevel(logging.DEBUG)
        for logger in (logging.getLogger(), package):
            if self.scan not in logger.handlers:
                logger.addHandler(self.scan)
            if logger not in self._installed:
                self._installed.append(logger)

    def uninstall(self) -> None:
        for logger in self._installed:
            logger.removeHandler(self.scan)
        self._installed.clear()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.install()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        modules = {
            id(item.module): item.module for item in session.items if isinstance(item, pytest.Function)
        }
        # Conftests too, with the constants they share (tests/gateway/conftest.py's TOKEN, ...).
        modules |= {
            id(plugin): plugin
            for plugin in session.config.pluginmanager.get_plugins()
            if isinstance(plugin, ModuleType) and plugin.__name__.rpartition(".")[2] == "conftest"
        }
        for module in modules.values():
            self.scan.add_secrets(secret_constants(module))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.install()
        self.scan.where = nodeid

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.scan.where = f"(after {nodeid}: a background task or a session fixture)"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.scan.where = "(session teardown)"
        if self.scan.leaks and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.scan.leaks:
            if terminalreporter.verbosity > 0:
                terminalreporter.write_line(
                    f"secret scan: {self.scan.records_checked} log records checked, no test secret in any"
                )
            return
        terminalreporter.section("secrets in the logs", red=True)
        terminalreporter.write_line(
            f"{len(self.scan.leaks)} log records held a test secret (masked below); the run fails:"
        )
        for leak in self.scan.leaks:
            terminalreporter.write_line(leak.describe())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.uninstall()
