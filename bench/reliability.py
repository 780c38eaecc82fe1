"""The reliability suite's long mode: 10,000 fuzzed events per target, every hostile and fault test.

Run: ``.venv/bin/python bench/reliability.py`` (a few minutes). It runs ``tests/reliability`` with
``REALTALK_RELIABILITY_LONG=1`` (the fuzz tests send 10,000 events to the gateway and to the
emulator per seed instead of 400), collects the figures each test wrote, prints a table and writes
``bench/results/reliability.json``. It fails (exit 1) when any test fails.

What the table says, per fuzz target and seed: events sent, ``error`` answers, events that had to
be refused (not an event at all, or an unknown type), those left unanswered (0 expected),
connections used, documented closes (a code and a reason; the fuzz then reconnects) and abrupt
closes (1006 or 1011: 0 expected).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "reliability.json"


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        env = os.environ | {"REALTALK_RELIABILITY_LONG": "1", "REALTALK_RELIABILITY_OUT": out}
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed_s = time.monotonic() - started
        figures: dict[str, Any] = {
            path.stem: json.loads(path.read_text()) for path in sorted(Path(out).glob("*.json"))
        }
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    table = Table(title=f"reliability, long mode ({elapsed_s:.0f} s): {summary}")
    for column in ("fuzz target", "sent", "errors", "must refuse", "unanswered", "connections"):
        table.add_column(column, justify="right" if column != "fuzz target" else "left")
    table.add_column("documented closes", justify="right")
    table.add_column("abrupt closes", justify="right")
    for name, tally in figures.items():
        if not name.startswith("fuzz-"):
            continue
        table.add_row(
            name.removeprefix("fuzz-"),
            str(tally["sent"]),
            str(tally["errors"]),
            str(tally["must_error"]),
            str(len(tally["unanswered"])),
            str(tally["connections"]),
            str(len(tally["documented_closes"])),
            str(len(tally["abrupt_closes"])),
        )
    Console().print(table)
    result = {
        "benchmark": "reliability",
        "mode": "long",
        "elapsed_s": round(elapsed_s, 1),
        "pytest_summary": summary,
        "passed": run.returncode == 0,
        "figures": figures,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if run.returncode != 0:
        print(run.stdout[-5000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
