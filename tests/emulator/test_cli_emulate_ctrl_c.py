"""Ctrl-C in a terminal running ``realtalk emulate`` with its recogniser: the signal reaches the
whole process group, the recogniser's worker processes included. They must not print a
``KeyboardInterrupt`` traceback each (issue 13, defect 12), and none may be left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from realtalk.testing import process_group_ended

COMMAND = "from realtalk.cli.app import main; main()"


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_stops_emulate_and_its_workers_without_a_traceback() -> None:
    pytest.importorskip("pocketsphinx")  # the `asr` extra; `make` installs it, so CI has it
    command = [sys.executable, "-c", COMMAND, "emulate", "--port", "0"]
    command += ["--vad", "energy", "--asr", "pocketsphinx", "--tts", "tone"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:  # the banner: the server is up and the recogniser started
                if re.search(r"AZURE_OPENAI_ENDPOINT=http://", line):
                    break
            time.sleep(3.0)  # the worker process loads its model meanwhile (~2 s)
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    ended = process_group_ended(process.pid)
    assert process.returncode in (0, -signal.SIGINT, 130), output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert ended, "a process of the emulator's group outlived it"
