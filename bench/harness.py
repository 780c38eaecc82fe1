"""What the benchmarks that run realtalk in child processes share (bench/tools.py, bench/ledger.py).

* ``pin``: the code under test gets the machine's last CPU to itself; the load (clients, the
  emulator, a database) shares the others. On this 2-core VM that is one core each.
* ``child``: a benchmark script run again as a child in a ``--role``; it answers on stdin/stdout,
  and its first line says the ports it listens on (``PORTS 1234 5678``). ``run_once``: a role that
  runs to its end and prints one ``RESULT <json>`` line.
* ``figures``: the percentiles every table and JSON of these benchmarks report.
* ``frame_type``: the ``type`` of a Realtime JSON frame, read without parsing the whole frame.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["CPUS", "Child", "child", "child_env", "figures", "frame_type", "pin", "run_once", "serve_gateway"]

CPUS: Final = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
_TYPE: Final = re.compile(r'"type"\s*:\s*"([^"]+)"')


def frame_type(text: str) -> str | None:
    """The frame's ``type``: it comes first in every frame the server sends (within 200 characters)."""
    found = _TYPE.search(text, 0, 200)
    return found[1] if found else None


def pin(pid: int, under_test: bool) -> None:
    """The code under test gets the last CPU to itself, the load shares the others (pid 0: this one)."""
    if len(CPUS) >= 2:
        os.sched_setaffinity(pid, {CPUS[-1]} if under_test else set(CPUS[:-1]))


def figures(values: list[float]) -> dict[str, Any]:
    """n, min, p50, p90, p95, p99, p99.9, max and mean, rounded to 4 decimals (``None`` when empty)."""
    from realtalk.percentiles import percentile

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "n": len(values),
        "min": r(min(values)) if values else None,
        "p50": r(percentile(values, 50)),
        "p90": r(percentile(values, 90)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "p99.9": r(percentile(values, 99.9)),
        "max": r(max(values)) if values else None,
        "mean": r(statistics.fmean(values)) if values else None,
    }


def child_env() -> dict[str, str]:
    """This environment without any Azure, OpenAI or realtalk setting: nothing leaves 127.0.0.1."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "REALTALK_"))}


@dataclass
class Child:
    """A benchmark script running in a role, and the ports it listens on."""

    process: subprocess.Popen[str]
    ports: list[int]
    stop_timeout_s: float = 20.0

    def ask(self, command: str) -> str:
        """Send one line; its one-line answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline()

    def cpu_s(self) -> float:
        """CPU time of every thread of the process so far (schedstat's first field, in ns)."""
        total_ns = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total_ns += int((task / "schedstat").read_text().split()[0])
        return total_ns / 1e9

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def child(script: Path, *args: str, under_test: bool) -> Iterator[Child]:
    """Run ``script --role *args`` pinned as ``under_test`` says, until its ``PORTS`` line; stopped after."""
    process = subprocess.Popen(
        [sys.executable, str(script), "--role", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    pin(process.pid, under_test)
    started = Child(process, [])
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORTS "):
            raise RuntimeError(f"the {args[0]} did not start: {line!r}")
        started.ports = [int(p) for p in line.split()[1:]]
        yield started
    finally:
        started.stop()


def run_once(script: Path, *args: str, timeout_s: float) -> dict[str, Any]:
    """Run ``script --role *args`` as the code under test until it ends; its ``RESULT`` JSON."""
    process = subprocess.Popen(
        [sys.executable, str(script), "--role", *args], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    pin(process.pid, under_test=True)
    out, _ = process.communicate(timeout=timeout_s)
    result = next((line[7:] for line in out.splitlines() if line.startswith("RESULT ")), None)
    if process.returncode or result is None:
        raise RuntimeError(f"the {args[0]} process failed ({process.returncode}): {out[-500:]!r}")
    parsed: dict[str, Any] = json.loads(result)
    return parsed


async def serve_gateway(
    upstream_port: int, model: str, key: str, settings: dict[str, str], *, handle_signals: bool = False
) -> None:
    """A ``--role gateway`` child: ``realtalk serve``'s app in front of the upstream on
    ``upstream_port``, on a free loopback port (its ``PORTS`` line), limits opened up for load,
    ``settings`` (``REALTALK_*`` variables) on top; serves until it is stopped."""
    os.environ.update(
        {
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{upstream_port}",
            "AZURE_OPENAI_DEPLOYMENT_NAME": model,
            "AZURE_OPENAI_API_KEY": key,
            "REALTALK_GATEWAY_HOST": "127.0.0.1",
            "REALTALK_GATEWAY_PORT": "0",
            "REALTALK_GATEWAY_BUDGET_USD": "0",  # many turns per session
            "REALTALK_GATEWAY_MAX_EVENTS_PER_S": "1000",
            "REALTALK_GATEWAY_EVENT_BURST": "1000",
            "REALTALK_GATEWAY_DRAIN_S": "0",
            **settings,
        }
    )
    from realtalk.gateway import Gateway, create_app
    from realtalk.settings import load_settings

    # As `realtalk serve` (freeze_gc; with handle_signals, SIGTERM stops it gracefully).
    gateway = Gateway(create_app(load_settings(env_file=None)), handle_signals=handle_signals, freeze_gc=True)
    await gateway.start()
    print(f"PORTS {gateway.port}", flush=True)
    await gateway.serve_forever()
