"""``realtalk eval --compare`` (``realtalk.eval.compare``): two synthetic runs compared through the
public API; the significance verdicts, regressions, metadata differences, mismatched suites and
cases, the rendered tables (recorded by a Rich console) and the JSON form, and load_results' errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from realtalk.errors import ConfigError
from realtalk.eval.compare import (
    Comparison,
    compare_runs,
    comparison_dict,
    load_results,
    render_comparison,
)
from realtalk.eval.stats import fisher_exact, mann_whitney_u, wilcoxon_signed_rank
from realtalk.eval.suite import summarise

# Latencies with noise: B is A plus a fixed 250 ms, or A shuffled (the same distribution).
BASE_MS = [612.0, 580.5, 701.2, 655.0, 598.3, 640.9, 689.4, 603.7]


def _case(
    suite: str, case_id: str, metrics: dict[str, Any], checks: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "suite": suite,
        "status": "ok",
        "error": None,
        "metrics": metrics,
        "checks": checks,
        "details": {},
        **extra,
    }


def _run(cases: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": 2,
        "started_at": "2026-12-04T17:40:00+00:00",
        "deployment": "gpt-realtime-1.5",
        "model": "gpt-realtime-1.5",
        "voice": "alloy",
        "vad": {"type": "ServerVad", "threshold": 0.5, "silence_duration_ms": 500},
        "realtalk_version": "0.9.0",
        "endpoint_kind": "emulator",
        "cost_usd": "0.0123",
        "duration_s": 42.1,
        "transcription_model": "gpt-4o-transcribe",
        "suites": sorted({c["suite"] for c in cases}),
        "cases": cases,
        **meta,
    }
    data["totals"] = {"suites": summarise(cases)}
    return data


def _latency(
    values: list[float], *, replied: list[bool] | None = None, prefix: str = "lat"
) -> list[dict[str, Any]]:
    replied = replied or [True] * len(values)
    return [
        _case("latency", f"{prefix}-{i}", {"voice_to_voice_ms": v}, {"replied": r})
        for i, (v, r) in enumerate(zip(values, replied, strict=True))
    ]


def _render(c: Comparison) -> str:
    console = Console(record=True, width=160)
    for part in render_comparison(c):
        console.print(part)
    return console.export_text()


def test_b_clearly_slower_is_flagged_worse_with_a_paired_test() -> None:
    a = _run(_latency(BASE_MS))
    b = _run(_latency([v + 250 + i for i, v in enumerate(BASE_MS)]))  # distinct differences: exact
    c = compare_runs(a, b)
    (suite,) = c.suites
    (metric,) = suite.metrics
    assert metric.name == "voice_to_voice_ms"
    assert (metric.a.n, metric.b.n, metric.pairs) == (8, 8, 8)
    assert metric.a.p50 == pytest.approx(626.45)  # the mean of the 4th and 5th of the sorted eight
    assert metric.delta_mean == pytest.approx(253.5)
    assert metric.relative_p50 == pytest.approx(metric.delta_p50 / 626.45)  # type: ignore[operator]
    assert 250 < metric.delta_p50 < 258  # type: ignore[operator]
    assert (metric.test, metric.method) == ("Wilcoxon signed-rank", "exact")
    assert metric.p_value == pytest.approx(wilcoxon_signed_rank([250.0 + i for i in range(8)]).p_value)
    assert metric.p_value == pytest.approx(2 / 2**8)  # every difference positive
    assert metric.significant and metric.direction == "worse" and metric.verdict == "worse"
    text = _render(c)
    assert "voice to voice" in text and "Wilcoxon" in text and "0.008" in text
    assert "worse" in text and "(n.s.)" not in text


def test_b_clearly_slower_on_other_cases_uses_mann_whitney() -> None:
    a = _run(_latency(BASE_MS, prefix="a"))
    b = _run(_latency([v + 250 for v in BASE_MS], prefix="b"))
    c = compare_runs(a, b)
    metric = c.suites[0].metrics[0]
    assert metric.pairs == 0 and metric.test == "Mann-Whitney U" and metric.method == "exact"
    assert metric.p_value == pytest.approx(mann_whitney_u(BASE_MS, [v + 250 for v in BASE_MS]).p_value)
    assert metric.p_value < 0.001 and metric.significant and metric.direction == "worse"
    assert len(c.only_in_a) == 8 and len(c.only_in_b) == 8 and c.cases == ()
    assert "Only in A: latency/a-0" in _render(c)


def test_noise_is_not_significant() -> None:
    shuffled = [BASE_MS[i] for i in (3, 0, 6, 1, 7, 2, 5, 4)]
    c = compare_runs(_run(_latency(BASE_MS)), _run(_latency(shuffled)))
    metric = c.suites[0].metrics[0]
    assert metric.test == "Wilcoxon signed-rank" and metric.p_value is not None
    assert metric.p_value > 0.05 and not metric.significant
    assert metric.delta_p50 == pytest.approx(0.0) and metric.verdict == "same"
    assert "same" in _render(compare_runs(_run(_latency(BASE_MS)), _run(_latency(shuffled))))
    jittered = [v + (7 if i % 2 else -5) for i, v in enumerate(BASE_MS)]
    metric = (
        compare_runs(_run(_latency(BASE_MS, prefix="a")), _run(_latency(jittered, prefix="b")))
        .suites[0]
        .metrics[0]
    )
    assert metric.test == "Mann-Whitney U" and not metric.significant
    assert metric.verdict.endswith("(n.s.)")


def test_higher_is_better_follows_the_catalogue_and_unknown_metrics_are_lower_is_better() -> None:
    a = _run([_case("custom", f"c{i}", {"my_score": float(i)}, {}) for i in range(6)])
    b = _run([_case("custom", f"c{i}", {"my_score": float(i) + 10}, {}) for i in range(6)])
    metric = compare_runs(a, b).suites[0].metrics[0]
    assert metric.label == "my_score" and metric.better == "lower" and metric.direction == "worse"
    assert metric.significant  # six equal positive differences: 2 / 2**6


def test_too_few_cases_give_no_p_value_and_no_significance() -> None:
    c = compare_runs(_run(_latency([600.0, 610.0], prefix="a")), _run(_latency([900.0, 990.0], prefix="b")))
    metric, check = c.suites[0].metrics[0], c.suites[0].checks[0]
    assert metric.p_value is None and metric.note == "too few cases" and not metric.significant
    assert metric.direction == "worse" and metric.verdict == "worse (no test)"
    assert check.p_value is None and check.note == "too few cases"
    assert "too few cases" in _render(c)


def test_four_pairs_fall_back_to_mann_whitney() -> None:
    c = compare_runs(_run(_latency(BASE_MS[:4])), _run(_latency([v + 1 for v in BASE_MS[:4]])))
    metric = c.suites[0].metrics[0]
    assert metric.pairs == 4 and metric.test == "Mann-Whitney U"


def test_checks_going_pass_to_fail_are_regressions_with_fishers_test() -> None:
    a = _run(_latency(BASE_MS, replied=[True] * 8))
    b = _run(_latency(BASE_MS, replied=[True, False, False, False, False, False, False, True]))
    c = compare_runs(a, b)
    check = c.suites[0].checks[0]
    assert (check.a_passed, check.a_n, check.b_passed, check.b_n) == (8, 8, 2, 8)
    assert check.delta_rate == pytest.approx(-0.75)
    assert check.test == "Fisher's exact"
    assert check.p_value == pytest.approx(fisher_exact(8, 0, 2, 6).p_value)
    assert check.significant and check.direction == "worse"
    assert [case.case_id for case in c.regressions] == [f"lat-{i}" for i in range(1, 7)]
    assert c.regressions[0].regressions == ("replied: pass → fail",)
    assert c.improvements == ()
    text = _render(c)
    assert "replied: pass → fail" in text and "8/8" in text and "2/8" in text and "Fisher" in text


def test_status_changes_are_regressions_and_improvements() -> None:
    a_cases = _latency(BASE_MS[:3])
    b_cases = _latency(BASE_MS[:3])
    b_cases[0].update(
        status="error", error="timeout", metrics={"voice_to_voice_ms": None}, checks={"replied": None}
    )
    a_cases[2].update(status="error", error="timeout")
    c = compare_runs(_run(a_cases), _run(b_cases))
    assert c.cases[0].regressions == ("status: ok → error",)
    assert c.cases[2].improvements == ("status: error → ok",)
    assert c.cases[0].metrics == (("voice_to_voice_ms", BASE_MS[0], None, None),)


def test_metadata_differences_are_listed_and_shown() -> None:
    a = _run(_latency(BASE_MS))
    b = _run(
        _latency(BASE_MS),
        deployment="gpt-realtime-mini",
        voice="marin",
        vad={"type": "SemanticVad", "eagerness": "high"},
        started_at="2026-12-04T18:00:00+00:00",
        cost_usd="0.0456",
    )
    c = compare_runs(a, b)
    assert c.differences == ("deployment", "voice", "vad")  # settings only, not the date or cost
    rows = {row.key: row for row in c.identity}
    assert rows["started_at"].differs and not rows["started_at"].setting
    assert rows["vad"].b == "SemanticVad eagerness=high"
    text = _render(c)
    assert "gpt-realtime-mini" in text and "marin" in text and "0.0456" in text
    assert "Settings that differ: deployment, voice, vad" in text


def test_mismatched_suites_and_cases_are_reported() -> None:
    a = _run(
        [
            *_latency(BASE_MS[:5]),
            _case("alphanumeric", "n-1", {"transcript_cer": 0.0}, {"transcript_exact": True}),
        ]
    )
    b_latency = _latency(BASE_MS[:6])[1:]  # lat-1 .. lat-5
    b = _run([*b_latency, _case("tools", "t-1", {}, {"tool_called": True})])
    c = compare_runs(a, b)
    suites = {s.suite: s for s in c.suites}
    assert (suites["alphanumeric"].in_a, suites["alphanumeric"].in_b) == (True, False)
    assert (suites["tools"].in_a, suites["tools"].in_b) == (False, True)
    assert (
        suites["alphanumeric"].metrics[0].note == "only in A"
        and suites["alphanumeric"].metrics[0].p_value is None
    )
    assert suites["tools"].checks[0].note == "only in B"
    assert set(c.only_in_a) == {("latency", "lat-0"), ("alphanumeric", "n-1")}
    assert set(c.only_in_b) == {("latency", "lat-5"), ("tools", "t-1")}
    assert [case.case_id for case in c.cases] == ["lat-1", "lat-2", "lat-3", "lat-4"]
    latency = suites["latency"].metrics[0]
    assert latency.pairs == 4 and latency.test == "Mann-Whitney U"  # under five pairs: unpaired
    text = _render(c)
    assert "Suite alphanumeric: only in A" in text and "Suite tools: only in B" in text


def test_duplicate_case_ids_are_noted() -> None:
    cases = _latency(BASE_MS[:3])
    c = compare_runs(_run([*cases, cases[0]]), _run(cases))
    assert c.notes == ("A has case 'lat-0' of latency twice: the first is compared",)


def test_only_changed_cases_are_listed_when_there_are_many() -> None:
    values = [600.0 + i for i in range(30)]
    b = _latency(values)
    b[7]["checks"]["replied"] = False
    text = _render(compare_runs(_run(_latency(values)), _run(b)))
    assert "Cases that got worse or better" in text
    assert "lat-7" in text and "lat-8 " not in text


def test_comparison_dict_is_json_ready() -> None:
    b = _latency([v + 250 for v in BASE_MS])
    b[0]["checks"]["replied"] = False
    data = comparison_dict(compare_runs(_run(_latency(BASE_MS)), _run(b)))
    again = json.loads(json.dumps(data))
    metric = again["suites"][0]["metrics"][0]
    assert metric["name"] == "voice_to_voice_ms" and metric["verdict"] == "worse" and metric["significant"]
    assert metric["a"]["n"] == 8 and metric["test"] == "Wilcoxon signed-rank"
    assert again["cases"][0]["checks"] == [{"name": "replied", "a": True, "b": False}]
    assert again["cases"][0]["regressions"] == ["replied: pass → fail"]
    assert again["only_in_a"] == [] and again["differences"] == []


# ---------------------------------------------------------------------------------- load_results


def test_load_results_reads_a_results_file_and_its_folder(tmp_path: Path) -> None:
    data = _run(_latency(BASE_MS))
    (tmp_path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_results(tmp_path / "results.json") == data
    assert load_results(tmp_path) == data


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not JSON (Expecting property name"),
        ("[1, 2]", "not a realtalk eval results file"),
        ('{"cases": []}', "not a realtalk eval results file"),
        ('{"format": 1, "cases": []}', "results format 1; this realtalk reads format 2"),
        ('{"format": 2, "cases": {}}', "'cases' is not a list"),
        ('{"format": 2, "cases": [{"suite": "latency"}]}', "case 1 is not a results case"),
    ],
)
def test_load_results_errors_name_the_file_and_the_problem(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "a.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_results(path)
    message = str(caught.value)
    assert str(path) in message and expected in message
    assert "realtalk eval" in message  # says what to pass instead
