"""Benchmark of ``realtalk eval``'s default run against the embedded emulator (issue 18's target:
``realtalk eval --suite alphanumeric,interruption,latency`` in under 2 minutes on this machine).

Run ``.venv/bin/python bench/eval_run.py`` (about a minute per run; ``--runs N``, ``--quick`` for
one run at concurrency 4); it prints a table and writes ``bench/results/eval.json``.

Each run is the real command in a child process with no Azure or realtalk setting in its
environment (so the embedded emulator, on 127.0.0.1), writing into a temporary folder; the wall
time is from the process start to its exit, so it includes the interpreter, imports, the
emulator's start and the HTML report. Baselines, from the same cases:

* **speech**: the total length of every WAV the run speaks, which a serial run in real time could
  not go below (the timing suites run in real time; the alphanumeric suite at 4x);
* **target**: the issue's 120 s.

It also reports the figures the run measured (the latency suite's voice to voice, the interruption
suite's onset → playback silent), to show the emulator's timings the runs are made with.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import child_env, figures  # bench/harness.py, beside this script
from realtalk.audio.pcm import read_wav
from realtalk.eval.cases import DEFAULT_SUITES, builtin_cases

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "eval.json"
TARGET_S = 120.0


def speech_seconds() -> float:
    total = 0.0
    for suite in DEFAULT_SUITES:
        for case in builtin_cases(suite):
            for path in (case.audio, case.followup_audio):
                if path is not None:
                    pcm, rate, channels = read_wav(path)
                    total += len(pcm) / (2 * rate * channels)
    return total


def one_run(concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from realtalk.cli.app import main; main()",
                "eval",
                "--suite",
                ",".join(DEFAULT_SUITES),
                "--concurrency",
                str(concurrency),
                "--out",
                folder,
            ],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wall_s = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(
                f"realtalk eval exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        (results,) = Path(folder).glob("eval-*/results.json")
        data = json.loads(results.read_text())
        reports = list(Path(folder).glob("eval-*/report.html"))
    suites = data["totals"]["suites"]
    return {
        "wall_s": round(wall_s, 2),
        "run_duration_s": data["duration_s"],
        "cases": data["totals"]["cases"],
        "ok": data["totals"]["ok"],
        "report_written": bool(reports),
        "voice_to_voice_p50_ms": suites["latency"]["metrics"]["voice_to_voice_ms"]["p50"],
        "voice_to_voice_p95_ms": suites["latency"]["metrics"]["voice_to_voice_ms"]["p95"],
        "onset_to_silent_p50_ms": suites["interruption"]["metrics"]["onset_to_silent_ms"]["p50"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one run")
    args = parser.parse_args()
    runs = [one_run(args.concurrency) for _ in range(1 if args.quick else args.runs)]
    speech_s = speech_seconds()
    walls = [run["wall_s"] for run in runs]
    wall = figures(walls)
    table = Table(
        title=f"realtalk eval {','.join(DEFAULT_SUITES)} vs the embedded emulator ({len(runs)} runs)"
    )
    for column in ("figure", "value", "ratio"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    table.add_row("cases", str(runs[0]["cases"]), "")
    table.add_row(
        "wall time p50 (s)", f"{wall['p50']:.1f}", f"{wall['p50'] / TARGET_S:.2f} of the 120 s target"
    )
    table.add_row(
        "wall time max (s)", f"{wall['max']:.1f}", f"{wall['max'] / TARGET_S:.2f} of the 120 s target"
    )
    table.add_row(
        "speech in the cases (s)", f"{speech_s:.1f}", f"wall p50 = {wall['p50'] / speech_s:.2f} x speech"
    )
    table.add_row(
        "voice to voice p50 / p95 (ms)",
        f"{runs[0]['voice_to_voice_p50_ms']:.0f} / {runs[0]['voice_to_voice_p95_ms']:.0f}",
        "",
    )
    table.add_row("onset → playback silent p50 (ms)", f"{runs[0]['onset_to_silent_p50_ms']:.0f}", "")
    Console().print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "eval_run",
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
                "concurrency": args.concurrency,
                "target_s": TARGET_S,
                "speech_s": round(speech_s, 2),
                "wall_s": wall,
                "wall_over_target": round(wall["max"] / TARGET_S, 3),
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
