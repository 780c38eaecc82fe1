"""realtalk.eval.runner against the emulator on 127.0.0.1, with the built-in WAV fixtures."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from realtalk.client.credentials import ApiKeyCredential
from realtalk.eval.cases import builtin_cases, case_phrases
from realtalk.eval.runner import (
    EMULATOR_ECHO_PREFIX,
    estimate_cost,
    estimate_cost_range,
    run_cases,
    write_results,
)
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.testing import Emulator, EmulatorConfig

PRICES = prices_for("gpt-realtime-1.5")
CASES = builtin_cases("alphanumeric")
KEY = "eval-test-key"


async def _run(emulator: Emulator, cases=CASES, **kwargs):  # type: ignore[no-untyped-def]
    endpoint = resolve_endpoint(emulator.http_base_url, "gpt-realtime-1.5")
    return await run_cases(
        cases,
        endpoint=endpoint,
        credential=ApiKeyCredential(KEY, style="bearer"),
        profile=None,
        prices=PRICES,
        speed=kwargs.pop("speed", 8.0),
        endpoint_kind="emulator",
        reply_prefix=EMULATOR_ECHO_PREFIX,
        **kwargs,
    )


def _emulator(**kwargs) -> Emulator:  # type: ignore[no-untyped-def]
    return Emulator(EmulatorConfig(keys=(KEY,), pace=None, phrases=case_phrases(CASES), **kwargs))


async def test_clean_run_scores_every_case_exact() -> None:
    async with _emulator() as emulator:
        run = await _run(emulator, concurrency=4)
    assert [c.case_id for c in run.cases] == [c.id for c in CASES]
    for result in run.cases:
        assert result.status == "ok", result
        assert result.transcript_score is not None and result.transcript_score.exact, result
        assert result.reply_score is not None and result.reply_score.exact, result
        assert result.cost_usd > 0
    assert run.cost_usd == sum(c.cost_usd for c in run.cases)
    summary = run.totals()["suites"]["alphanumeric"]
    assert summary["checks"]["transcript_exact"] == {"n": len(CASES), "passed": len(CASES), "rate": 1.0}
    assert summary["metrics"]["reply_cer"]["mean"] == 0.0 and summary["metrics"]["reply_cer"]["n"] == len(
        CASES
    )


async def test_mishearing_drops_scores_in_exactly_the_cases_affected() -> None:
    # "eight" is misheard as "a": every case whose words hold an eight (or an 8) scores below exact.
    async with _emulator(mishear=(("eight", "a"),)) as emulator:
        run = await _run(emulator, concurrency=4)
    by_id = {c.case_id: c for c in run.cases}
    affected = {c.id for c in CASES if "eight" in c.text.lower().replace("-", " ").split() or "8" in c.text}
    assert affected and affected != {c.id for c in CASES}
    for case in CASES:
        result = by_id[case.id]
        assert result.transcript_score is not None and result.reply_score is not None, result
        assert result.transcript_score.exact is (case.id not in affected), result
        assert result.reply_score.exact is (case.id not in affected), result
        if case.id in affected:
            assert result.transcript_score.cer > 0


async def test_max_usd_stops_starting_cases_and_records_the_rest_skipped() -> None:
    one = estimate_cost(CASES[:1], PRICES)
    async with _emulator() as emulator:
        run = await _run(emulator, cases=CASES[:4], concurrency=1, max_usd=one * Decimal("1.5"))
    statuses = [c.status for c in run.cases]
    assert statuses[0] == "ok"
    assert "skipped" in statuses
    first_skip = statuses.index("skipped")
    assert all(s == "skipped" for s in statuses[first_skip:])
    assert run.cost_usd <= one * Decimal("1.5")


def test_estimate_is_audio_in_plus_budgeted_reply() -> None:
    low, high = estimate_cost_range(CASES, PRICES)
    assert Decimal(0) < low < high
    assert estimate_cost(CASES, PRICES) == low
    assert estimate_cost(CASES[:2], PRICES) < low


async def test_results_json_records_the_run_and_every_case(tmp_path: Path) -> None:
    async with _emulator() as emulator:
        run = await _run(emulator, cases=CASES[:2])
    path = write_results(run, tmp_path)
    assert (
        path.parent.parent == tmp_path
        and path.parent.name.startswith("eval-")
        and path.name == "results.json"
    )
    data = json.loads(path.read_text())
    assert data["deployment"] == "gpt-realtime-1.5"
    assert data["endpoint_kind"] == "emulator"
    assert data["realtalk_version"]
    assert data["vad"]["type"] == "ServerVad" and data["vad"]["silence_duration_ms"] == 500
    assert data["voice"] == "marin"
    assert [c["case_id"] for c in data["cases"]] == [c.id for c in CASES[:2]]
    assert data["cases"][0]["transcript_score"]["exact"] is True
    assert Decimal(data["cost_usd"]) == run.cost_usd
    assert data["format"] == 2 and data["suites"] == ["alphanumeric"]
    # The version the server said it runs, from session.created, beside the deployment's name.
    assert data["model_version"] == data["cases"][0]["details"]["server_model"]
    assert data["model_version"].startswith("gpt-realtime")
    assert data["cases"][0]["checks"] == {"transcript_exact": True, "reply_exact": True}
    assert data["totals"]["suites"]["alphanumeric"]["checks"]["reply_exact"]["rate"] == 1.0
    assert KEY not in path.read_text()


async def test_unreachable_endpoint_records_an_error_per_case() -> None:
    endpoint = resolve_endpoint("http://127.0.0.1:9", "gpt-realtime-1.5")
    run = await run_cases(
        CASES[:2],
        endpoint=endpoint,
        credential=ApiKeyCredential(KEY, style="bearer"),
        profile=None,
        prices=PRICES,
    )
    assert [c.status for c in run.cases] == ["error", "error"]
    assert all(c.error for c in run.cases)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def test_rate_limited_case_is_retried_with_backoff_then_recorded_as_an_error() -> None:
    from realtalk.testing import Faults

    async with _emulator(faults=Faults(rate_limit_from_response=1)) as emulator:
        started = asyncio.get_running_loop().time()
        run = await _run(emulator, cases=CASES[:1], retries=2, backoff_s=0.2)
        elapsed = asyncio.get_running_loop().time() - started
        handshakes = emulator.stats.handshakes
    (result,) = run.cases
    assert result.status == "error" and result.attempts == 3, result
    assert result.error is not None and "rate limited 3 times" in result.error
    assert handshakes == 3
    assert elapsed >= 0.2 + 0.4
