"""``realtalk eval`` end to end: the embedded emulator, a configured endpoint (an emulator on
127.0.0.1), --dry-run, --max-usd, --mishear and usage errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realtalk.cli.app import app
from realtalk.eval.cases import builtin_cases, case_phrases
from realtalk.testing import Emulator, EmulatorConfig, configuration_variables

CASES = builtin_cases("alphanumeric")
KEY = "eval-cli-test-key"
WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in configuration_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def _results(folder: Path) -> dict:  # type: ignore[type-arg]
    (path,) = folder.glob("eval-*/results.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_embedded_emulator_run_scores_exact_and_writes_results(tmp_path: Path) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(
        app, env=WIDE, args=["eval", "--suite", "alphanumeric", "--out", str(tmp_path / "out")]
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "local emulator" in result.output
    assert re.search(r"transcript exact\W+100% \(12/12\)", result.output), result.output
    assert re.search(r"reply exact\W+100% \(12/12\)", result.output), result.output
    assert f"{len(CASES)} ok, 0 errored, 0 skipped" in result.output
    assert elapsed < 60
    data = _results(tmp_path / "out")
    assert data["endpoint_kind"] == "emulator"
    assert len(data["cases"]) == len(CASES)
    assert data["totals"]["suites"]["alphanumeric"]["checks"]["transcript_exact"]["rate"] == 1.0
    assert (tmp_path / "out").glob("eval-*/report.html")


def test_mishear_lowers_the_scores_of_the_cases_it_touches(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--suite", "alphanumeric", "--mishear", "eight=a", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output  # scores are results, not failures
    data = _results(tmp_path)
    inexact = {c["case_id"] for c in data["cases"] if not c["transcript_score"]["exact"]}
    assert inexact == {c.id for c in CASES if "eight" in c.text.lower().replace("-", " ").split()}
    assert {c["case_id"] for c in data["cases"] if not c["reply_score"]["exact"]} == inexact
    assert 0 < data["totals"]["suites"]["alphanumeric"]["checks"]["transcript_exact"]["rate"] < 1


@pytest.mark.parametrize(
    "args",
    [["--max-usd", "abc"], ["--max-usd", "0"], ["--suite", "nope"], ["--mishear", "eight"]],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, env=WIDE, args=["eval", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert not list(tmp_path.glob("eval-*"))


async def _realtalk(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from realtalk.cli.app import main; main()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def _configured(emulator: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in configuration_variables()}
    env |= {
        "AZURE_OPENAI_ENDPOINT": emulator.http_base_url,
        "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-realtime-1.5",
        "AZURE_OPENAI_API_KEY": KEY,
        "COLUMNS": "200",
    }
    return env


async def test_dry_run_prints_an_estimate_and_opens_no_session(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=None)) as emulator:
        code, out = await _realtalk(
            "eval", "--suite", "alphanumeric", "--dry-run", "--out", str(tmp_path), env=_configured(emulator)
        )
        assert emulator.stats.handshakes == 0
    assert code == 0, out
    assert f"{len(CASES)} cases (alphanumeric); estimated cost $" in out and " to $" in out
    assert not os.listdir(tmp_path)


async def test_configured_endpoint_with_max_usd_stops_early(tmp_path: Path) -> None:
    config = EmulatorConfig(keys=(KEY,), pace=None, phrases=case_phrases(CASES))
    async with Emulator(config) as emulator:
        code, out = await _realtalk(
            "eval",
            "--suite",
            "alphanumeric",
            "--concurrency",
            "1",
            "--max-usd",
            "0.006",
            "--out",
            str(tmp_path),
            env=_configured(emulator),
        )
        sessions = emulator.stats.handshakes
    assert code == 0, out
    assert "running against gpt-realtime-1.5 at 127.0.0.1" in out
    data = _results(tmp_path)
    statuses = [c["status"] for c in data["cases"]]
    assert statuses[0] == "ok" and "skipped" in statuses
    assert sessions == statuses.count("ok")
    assert data["endpoint_kind"] == "azure" and KEY not in json.dumps(data)
    assert KEY not in out


def test_cases_file_runs_the_users_cases(tmp_path: Path) -> None:
    ticket = next(c for c in CASES if c.id == "ticket-digits-1")
    cases = tmp_path / "mine.yaml"
    cases.write_text(
        f"- {{id: my-ticket, style: digits, text: {ticket.text}, expected: {ticket.expected}, "
        f"audio: {ticket.audio}}}\n"
    )
    result = CliRunner().invoke(app, env=WIDE, args=["eval", "--cases", str(cases), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = _results(tmp_path)
    assert [(c["case_id"], c["suite"]) for c in data["cases"]] == [("my-ticket", "alphanumeric")]
    assert data["cases"][0]["reply_score"]["exact"] is True


def test_the_default_suites_against_the_embedded_emulator_write_results_and_a_report(tmp_path: Path) -> None:
    # The command: alphanumeric, interruption and latency (the default), in one run.
    result = CliRunner().invoke(app, env=WIDE, args=["eval", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = _results(tmp_path)
    assert data["suites"] == ["alphanumeric", "interruption", "latency"]
    assert all(case["status"] == "ok" for case in data["cases"]), [
        (c["case_id"], c["error"]) for c in data["cases"] if c["status"] != "ok"
    ]
    suites = data["totals"]["suites"]
    assert suites["alphanumeric"]["checks"]["reply_exact"]["rate"] == 1.0
    assert suites["interruption"]["checks"]["follows_new_intent"]["rate"] == 1.0
    assert suites["interruption"]["checks"]["truncated_at_played"]["rate"] == 1.0
    latency = suites["latency"]["metrics"]["voice_to_voice_ms"]
    assert latency["n"] == len(builtin_cases("latency")) and 0 < latency["p50"] <= latency["p95"] < 5000
    for name in ("interruption", "latency"):
        assert re.search(rf"(?m)^.*{name}", result.output)  # a table per suite
    (report,) = tmp_path.glob("eval-*/report.html")
    page = report.read_text()
    assert "<svg" in page and "voice" in page.lower() and "<script" not in page
    assert f"report:  {report}" in result.output.replace("\n", "")


def test_compare_shows_what_got_worse_between_two_runs(tmp_path: Path) -> None:
    runs = []
    for name, extra in (("a", []), ("b", ["--mishear", "eight=a"])):
        out = tmp_path / name
        result = CliRunner().invoke(
            app, env=WIDE, args=["eval", "--suite", "alphanumeric", "--out", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        (path,) = out.glob("eval-*/results.json")
        runs.append(str(path))
    result = CliRunner().invoke(app, env=WIDE, args=["eval", "--compare", *runs])
    assert result.exit_code == 0, result.output
    misheard = [c.id for c in CASES if "eight" in c.text.lower().replace("-", " ").split()]
    assert misheard
    output = result.output
    assert "transcript_exact" in output or "transcript exact" in output
    for case_id in misheard:
        assert case_id in output  # each regression is named
    assert not list(tmp_path.glob("eval-*"))  # --compare runs nothing


def test_compare_of_a_file_that_is_not_results_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    result = CliRunner().invoke(app, env=WIDE, args=["eval", "--compare", str(bogus), str(bogus)])
    assert result.exit_code == 2, result.output
    assert str(bogus) in result.output
