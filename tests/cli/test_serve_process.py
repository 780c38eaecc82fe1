"""``realtalk serve`` as a process: what it prints once it listens, and what its log level reaches."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from realtalk.testing import configuration_variables, process_group_ended

# The command, plus a stand-in for a third-party library that logs at every level once serve runs.
APP = """
import logging, threading
from realtalk.cli.app import main

def chatter():
    for name in ("thirdparty.lib", "realtalk.test"):
        logger = logging.getLogger(name)
        logger.debug("%s debug line", name)
        logger.info("%s info line", name)
        logger.warning("%s warning line", name)

threading.Timer(0.5, chatter).start()
main()
"""
OPEN_LINE = re.compile(
    r"^Open (http://127\.0\.0\.1:\d+/) in a browser and press Start to talk; Ctrl-C stops\.$"
)


class Lines:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.stderr: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        # A daemon: should a process of the command's outlive it holding the pipe, the run still ends.
        self._thread = threading.Thread(
            target=lambda: self.stderr.extend(iter(stream.readline, "")), daemon=True
        )
        self._thread.start()

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.stderr):
                if found := pattern.search(line.rstrip("\n")):
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern.pattern}: {self.stderr}")

    def join(self) -> None:
        self._thread.join(timeout=10)


@contextmanager
def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Lines]:
    cleared = set(configuration_variables())
    environment = {key: value for key, value in os.environ.items() if key not in cleared} | (env or {})
    process = subprocess.Popen(
        [sys.executable, "-c", APP, "serve", "--port", "0", *args],
        env=environment, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines = Lines(process)
    try:
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
            process.wait()
            lines.join()
            if process.stderr is not None:
                process.stderr.close()
        # Nothing it started outlives it (the embedded emulator's recogniser processes did).
        leftover = not process_group_ended(process.pid)
        if leftover:
            os.killpg(process.pid, signal.SIGKILL)
        assert not leftover, "a process started by realtalk serve outlived it"


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_the_last_line_at_start_up_says_what_to_open_and_do(tmp_path: Path) -> None:
    with serving(tmp_path) as lines:
        found = lines.wait_for(OPEN_LINE)
        time.sleep(1.5)  # anything start-up prints comes before it
        startup = [line for line in lines.stderr if "debug line" not in line and "info line" not in line]
        startup = [line for line in startup if "warning line" not in line]
    assert startup[-1].rstrip("\n") == found.group(0)
    assert any(line.startswith(f"realtalk gateway: {found.group(1)}") for line in startup)


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--log-level", "DEBUG"), {}), ((), {"REALTALK_LOG_LEVEL": "DEBUG"})],
    ids=["option", "setting"],
)
def test_the_log_level_applies_to_realtalk_and_third_party_libraries_stay_at_warning(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    with serving(tmp_path, *args, env=env) as lines:
        lines.wait_for(re.compile(r"thirdparty\.lib warning line"))
        lines.wait_for(re.compile(r"realtalk\.test warning line"))
    logged = {(record["logger"], record["level"]) for record in records(lines.stderr)}
    assert {("realtalk.test", "debug"), ("realtalk.test", "info"), ("realtalk.test", "warning")} <= logged
    assert ("thirdparty.lib", "warning") in logged
    assert ("thirdparty.lib", "debug") not in logged and ("thirdparty.lib", "info") not in logged
