"""Ctrl+C in ``realtalk talk`` as a terminal delivers it: SIGINT to the whole foreground process group.

A terminal does not signal one process: it signals every process of the foreground group, so the
children that ``talk`` started (the embedded emulator's speech-recognition workers) get the Ctrl+C
too. The command must end the conversation once, print one summary, no traceback (from it or from a
child), and leave no process of its group behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from realtalk.testing import configuration_variables, process_group_ended

QUESTION = Path(__file__).parents[1] / "fixtures" / "question.wav"
APP = "import typer; from realtalk.cli.talk import talk; app = typer.Typer(); app.command()(talk); app()"


def _wait_for_event(path: Path, event_type: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "talk ended before the reply started"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.endswith("}") and json.loads(line)["type"] == event_type:
                    return
        time.sleep(0.05)
    raise AssertionError(f"no {event_type} within {timeout_s} s")


def test_ctrl_c_to_the_process_group_mid_reply_ends_cleanly_with_one_summary_and_no_leftover_process(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    process = subprocess.Popen(
        [sys.executable, "-c", APP, "--input-wav", str(QUESTION), "--output-wav", str(tmp_path / "out.wav"),
         "--events", str(events), "--speed", "2"],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )  # fmt: skip
    pgid = process.pid
    try:
        # Mid-reply: the agent's audio is arriving (its latency is being measured) and not finished.
        _wait_for_event(events, "response.output_audio.delta", process, timeout_s=60)
        os.killpg(pgid, signal.SIGINT)
        stdout_bytes, stderr_bytes = process.communicate(timeout=30)
        leftover = not process_group_ended(pgid)
    finally:
        if not process_group_ended(pgid, timeout_s=0):
            os.killpg(pgid, signal.SIGKILL)
        process.kill()
        process.wait()
    stdout, stderr = stdout_bytes.decode(), stderr_bytes.decode()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr, stderr
    assert "KeyboardInterrupt" not in stdout + stderr, stderr
    assert stdout.count("Session summary") == 1, stdout
    assert not leftover, "a process of talk's group was still running after it exited"
    turns = re.search(r"^\s*turns\s+(\d+)", stdout, re.MULTILINE)
    spoken = re.search(r"over (\d+) spoken turn", stdout)
    assert turns is not None and spoken is not None, stdout
    assert int(turns.group(1)) >= int(spoken.group(1)) >= 1, stdout  # every spoken turn is a turn
