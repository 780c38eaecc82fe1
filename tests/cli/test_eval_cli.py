"""``realtalk eval`` end to end: the embedded emulator, a configured endpoint (an emulator on
127.0.0.1), --dry-run, --max-usd, --mishear and usage errors."""

from __future__ import annotations

import asyncio
import json
import os
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
    result = CliRunner().invoke(app, ["eval", "--suite", "alphanumeric", "--out", str(tmp_path / "out")])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "local emulator" in result.output
    assert "transcript: 100% exact, mean CER 0.000; read-back: 100% exact" in result.output
    assert f"{len(CASES)} ok, 0 errored, 0 skipped" in result.output
    assert elapsed < 60
    data = _results(tmp_path / "out")
    assert data["endpoint_kind"] == "emulator"
    assert len(data["cases"]) == len(CASES)
    assert data["totals"]["transcript_exact_rate"] == 1.0


def test_mishear_lowers_the_scores_of_the_cases_it_touches(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--mishear", "eight=a", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output  # scores are results, not failures
    data = _results(tmp_path)
    inexact = {c["case_id"] for c in data["cases"] if not c["transcript_score"]["exact"]}
    assert inexact == {c.id for c in CASES if "eight" in c.text.lower().replace("-", " ").split()}
    assert {c["case_id"] for c in data["cases"] if not c["readback_score"]["exact"]} == inexact
    assert 0 < data["totals"]["transcript_exact_rate"] < 1


@pytest.mark.parametrize(
    "args",
    [["--max-usd", "abc"], ["--max-usd", "0"], ["--suite", "nope"], ["--mishear", "eight"]],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--out", str(tmp_path), *args])
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
        code, out = await _realtalk("eval", "--dry-run", "--out", str(tmp_path), env=_configured(emulator))
        assert emulator.stats.handshakes == 0
    assert code == 0, out
    assert f"{len(CASES)} cases; estimated cost $" in out and " to $" in out
    assert not os.listdir(tmp_path)


async def test_configured_endpoint_with_max_usd_stops_early(tmp_path: Path) -> None:
    config = EmulatorConfig(keys=(KEY,), pace=None, phrases=case_phrases(CASES))
    async with Emulator(config) as emulator:
        code, out = await _realtalk(
            "eval",
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
    result = CliRunner().invoke(app, ["eval", "--cases", str(cases), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = _results(tmp_path)
    assert [(c["case_id"], c["suite"]) for c in data["cases"]] == [("my-ticket", "mine")]
    assert data["cases"][0]["readback_score"]["exact"] is True
