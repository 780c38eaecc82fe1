"""The secret scan can fail: records and child output holding a secret are caught, masked, and
fail the run (``secret_scan.py``), while what is documentation or not ours is let through."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from websockets.exceptions import InvalidHeaderValue

from .secret_scan import SecretScan

LEAKED = "scan-test-token-0123456789abcdef"
SIGNED_SHAPE = "rt1.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


def _record(
    message: str, *args: object, name: str = "realtalk.gateway", level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, message, args or None, None)
    record.__dict__.update(extra)
    return record


def _scan() -> SecretScan:
    scan = SecretScan([LEAKED])
    scan.where = "tests/example.py::test_example"
    return scan


def test_a_secret_in_a_message_or_its_arguments_is_a_leak_and_is_masked() -> None:
    scan = _scan()
    scan.handle(_record("refused %s", LEAKED))
    scan.handle(_record(f"upgrade with {LEAKED} failed"))
    assert [leak.logger for leak in scan.leaks] == ["realtalk.gateway", "realtalk.gateway"]
    assert all(LEAKED not in leak.describe() and "[test secret]" in leak.text for leak in scan.leaks)
    assert scan.leaks[0].describe().startswith("tests/example.py::test_example: realtalk.gateway INFO:")


def test_a_secret_in_a_traceback_is_a_leak() -> None:
    # The handshake leak of issue 13: websockets' exception quoted the header's value.
    scan = _scan()
    try:
        raise InvalidHeaderValue(
            "Sec-WebSocket-Protocol", f"realtime, openai-insecure-api-key.{LEAKED}\udcff"
        )
    except InvalidHeaderValue:
        record = _record("Fatal error: protocol.data_received() call failed.", name="asyncio", level=40)
        record.exc_info = sys.exc_info()
    scan.handle(record)
    assert len(scan.leaks) == 1 and LEAKED not in scan.leaks[0].text


def test_a_secret_in_an_extra_field_is_a_leak() -> None:
    scan = _scan()
    scan.handle(_record("session opened", subject=LEAKED))
    assert len(scan.leaks) == 1


def test_credentials_are_caught_by_their_shape_whatever_their_value() -> None:
    scan = SecretScan()
    shapes = [
        f"token {SIGNED_SHAPE}",
        "upstream said Authorization: Bearer abcdefgh12345678",
        "headers {'api-key': 'a1b2c3d4e5f6a7b8'}",
        "export AZURE_OPENAI_API_KEY=0a1b2c3d4e5f6a7b",
        "offered openai-insecure-api-key.whatever",
        "Cookie: realtalk_session=abc",
        "GET /openai/v1/realtime?model=m&api-key=abc",
        "blob https://acct.blob.core.windows.net/c/f.wav?sv=2024&sig=AbCd%2B",
        "minted ek_0123456789abcdef0123456789abcdef",
    ]
    for text in shapes:
        assert scan.mask(text) is not None, text
    assert SIGNED_SHAPE not in (scan.mask(shapes[0]) or "")


def test_documentation_and_the_tests_own_client_libraries_are_not_leaks() -> None:
    scan = _scan()
    for text in (
        "send 'Authorization: Bearer <token>', 'api-key: <token>' or 'openai-insecure-api-key.<token>'",
        "API key from AZURE_OPENAI_API_KEY (32 characters), sent in the Authorization: Bearer header",
        "the Bearer authorization scheme; set AZURE_OPENAI_API_KEY=<your key>",
        "refused a client from 127.0.0.1: the signed token has expired (sent in the api-key header)",
    ):
        scan.handle(_record(text))
    # websockets' client logs the request a test sends at DEBUG: the test's side, not a server's log.
    scan.handle(_record("> api-key: %s", LEAKED, name="websockets.client", level=logging.DEBUG))
    assert scan.leaks == [] and scan.records_checked == 4
    scan.handle(_record("> api-key: %s", LEAKED, name="websockets.client", level=logging.WARNING))
    assert len(scan.leaks) == 1


def test_child_output_is_checked_line_by_line() -> None:
    scan = _scan()
    found = scan.check_text("realtalk serve", f'{{"message": "ok"}}\n{{"message": "token {LEAKED}"}}\n')
    assert [leak.logger for leak in found] == ["realtalk serve"] and scan.leaks == found


_LEAKY_SUITE = """
    import logging

    LEAKY_TOKEN = "inner-" + "token-0123456789abcdef"


    def test_a_handshake_logs_its_header_in_a_traceback():
        try:
            raise ValueError("invalid Sec-WebSocket-Protocol: openai-insecure-api-key." + LEAKY_TOKEN)
        except ValueError:
            logging.getLogger("realtalk.gateway").debug("handshake failed", exc_info=True)


    def test_a_clean_log_line():
        logging.getLogger("realtalk.gateway").info("session opened")
"""


def _run_inner_suite(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from secret_scan import SecretScanPlugin


            def pytest_configure(config):
                config.pluginmanager.register(SecretScanPlugin(), "secret-scan")
            """
        )
    )
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(_LEAKY_SUITE))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def test_a_run_whose_tests_all_pass_fails_when_a_log_record_held_a_secret(tmp_path: Path) -> None:
    run = _run_inner_suite(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    assert "secrets in the logs" in run.stdout
    shown = [line for line in run.stdout.splitlines() if "realtalk.gateway DEBUG" in line]
    assert shown and shown[0].startswith("test_inner.py::test_a_handshake_logs_its_header_in_a_traceback")
    assert "inner-token-0123456789abcdef" not in run.stdout + run.stderr  # masked


def test_a_run_of_only_clean_tests_passes(tmp_path: Path) -> None:
    run = _run_inner_suite(tmp_path, "-k", "clean")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "secrets in the logs" not in run.stdout
