"""``realtalk eval --compare A B``: run B against run A, from their results.json (format 2).

``load_results(path)`` reads and checks a file (the only I/O here); ``compare_runs(a, b)`` builds a
``Comparison``: the runs' identities side by side, per suite each metric's and check's figures on both
sides with B - A and a significance test, the cases both runs share with what changed, and the cases
only one run has. ``render_comparison`` turns it into Rich renderables, ``comparison_dict`` into JSON.

Which test (``realtalk.eval.stats``):
- a metric: Wilcoxon signed-rank on the per-case differences when at least ``MIN_PAIRS`` cases
  (matched by suite and case_id) have the metric on both sides, since pairing removes the spread
  between cases; otherwise Mann-Whitney U on the two sets of per-case values. Fewer than
  ``MIN_CASES`` values on a side: no test, no verdict ("too few cases").
- a check: Fisher's exact test on passed/failed counts, with the same ``MIN_CASES`` floor.
A difference is significant at p < ``ALPHA``. Its direction (better, worse, same) is read from the
p50 delta (the mean's when the p50s are equal) and the metric's ``better`` (unknown metrics: lower).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from realtalk.errors import ConfigError
from realtalk.eval.stats import TestResult, fisher_exact, mann_whitney_u, wilcoxon_signed_rank
from realtalk.eval.suite import CHECKS, METRICS, percentile

__all__ = [
    "ALPHA",
    "MIN_CASES",
    "MIN_PAIRS",
    "CaseChange",
    "CheckComparison",
    "Comparison",
    "IdentityRow",
    "MetricComparison",
    "Side",
    "SuiteComparison",
    "compare_runs",
    "comparison_dict",
    "load_results",
    "render_comparison",
]

RESULTS_FORMAT: Final = 2
ALPHA: Final = 0.05
MIN_CASES: Final = 3
MIN_PAIRS: Final = 5
ALL_CASES_UP_TO: Final = 20  # the per-case table shows every shared case up to this many
TOO_FEW = "too few cases"
_NONE: Final = "\N{EN DASH}"  # a figure that does not exist

Direction = Literal["better", "worse", "same"]
_IDENTITY: Final = (  # (key, label, is a setting: a difference there explains the others)
    ("deployment", "deployment", True),
    ("model", "model", True),
    ("model_version", "model version (server)", True),
    ("endpoint_kind", "endpoint", True),
    ("voice", "voice", True),
    ("vad", "VAD", True),
    ("transcription_model", "transcription model", True),
    ("grader_model", "grader model", True),
    ("realtalk_version", "realtalk version", True),
    ("started_at", "started at", False),
    ("duration_s", "duration (s)", False),
    ("cost_usd", "cost (USD)", False),
)


# ---------------------------------------------------------------------------------------- loading


def load_results(path: Path) -> dict[str, Any]:
    """Read a results.json that ``realtalk eval`` wrote (format 2; a folder holding one is accepted).

    Raises ``ConfigError`` naming the file and what is wrong with it: missing, not JSON, not a
    realtalk eval results file, or another format version."""
    if path.is_dir():
        path = path / "results.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file. Pass the results.json a `realtalk eval` run wrote (in its "
            "eval-<date>-<time> folder)",
            variable="--compare",
            example="realtalk eval --compare results/eval-A/results.json results/eval-B/results.json",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}). Check the path and its permissions.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). Pass the "
            "results.json a `realtalk eval` run wrote, not the report or a cases file."
        ) from None
    what = "Pass the results.json a `realtalk eval` run wrote."
    if not isinstance(data, dict) or "format" not in data or "cases" not in data:
        raise ConfigError(f"{path}: not a realtalk eval results file (no 'format' and 'cases'). {what}")
    if data["format"] != RESULTS_FORMAT:
        raise ConfigError(
            f"{path}: results format {data['format']!r}; this realtalk reads format {RESULTS_FORMAT}. "
            "Run `realtalk eval` again with this version of realtalk, or compare with the version that "
            "wrote the file."
        )
    cases = data["cases"]
    if not isinstance(cases, list):
        raise ConfigError(f"{path}: 'cases' is not a list. {what}")
    for index, case in enumerate(cases):
        if not (
            isinstance(case, dict)
            and isinstance(case.get("suite"), str)
            and isinstance(case.get("case_id"), str)
            and isinstance(case.get("metrics") or {}, dict)
            and isinstance(case.get("checks") or {}, dict)
        ):
            raise ConfigError(
                f"{path}: case {index + 1} is not a results case (needs 'suite' and 'case_id' "
                f"strings, 'metrics' and 'checks' objects). {what}"
            )
    return data


# ------------------------------------------------------------------------------------ the figures


@dataclass(frozen=True)
class IdentityRow:
    key: str
    label: str
    a: str
    b: str
    differs: bool
    setting: bool  # a run's configuration (highlighted when it differs), not a measurement


@dataclass(frozen=True)
class Side:
    """One run's figures for a metric: its per-case values summarised (``percentile``)."""

    n: int
    mean: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class MetricComparison:
    name: str
    label: str
    unit: str
    better: Literal["lower", "higher"]
    a: Side
    b: Side
    delta_p50: float | None  # B - A
    delta_mean: float | None
    relative_p50: float | None  # (B - A) / |A|; None when A is 0 or missing
    relative_mean: float | None
    direction: Direction | None  # None when a side has no values
    test: str | None  # "Wilcoxon signed-rank" / "Mann-Whitney U"; None: no test
    method: str | None  # "exact" / "normal"
    pairs: int  # cases with the metric on both sides
    p_value: float | None
    significant: bool
    note: str | None  # why there is no test ("too few cases", "only in A")

    @property
    def verdict(self) -> str:
        return _verdict(self.direction, self.significant, self.p_value)


@dataclass(frozen=True)
class CheckComparison:
    name: str
    description: str
    a_passed: int
    a_n: int
    b_passed: int
    b_n: int
    a_rate: float | None
    b_rate: float | None
    delta_rate: float | None  # B - A
    direction: Direction | None
    test: str | None  # "Fisher's exact"
    p_value: float | None
    significant: bool
    note: str | None

    @property
    def verdict(self) -> str:
        return _verdict(self.direction, self.significant, self.p_value)


@dataclass(frozen=True)
class SuiteComparison:
    suite: str
    in_a: bool
    in_b: bool
    a_cases: int
    b_cases: int
    metrics: tuple[MetricComparison, ...]
    checks: tuple[CheckComparison, ...]


@dataclass(frozen=True)
class CaseChange:
    """A case both runs have: its status, metrics (A, B, B - A) and checks (A, B) side by side."""

    suite: str
    case_id: str
    status_a: str
    status_b: str
    metrics: tuple[tuple[str, float | None, float | None, float | None], ...]  # name, A, B, B - A
    checks: tuple[tuple[str, bool | None, bool | None], ...]  # name, A, B
    regressions: tuple[str, ...]  # "reply_exact: pass → fail", "status: ok → error"
    improvements: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.regressions or self.improvements)


@dataclass(frozen=True)
class Comparison:
    identity: tuple[IdentityRow, ...]
    differences: tuple[str, ...]  # the keys of the settings that differ
    suites: tuple[SuiteComparison, ...]
    cases: tuple[CaseChange, ...]  # shared cases, in A's order
    only_in_a: tuple[tuple[str, str], ...]  # (suite, case_id)
    only_in_b: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]  # e.g. duplicate case ids

    @property
    def regressions(self) -> tuple[CaseChange, ...]:
        return tuple(case for case in self.cases if case.regressions)

    @property
    def improvements(self) -> tuple[CaseChange, ...]:
        return tuple(case for case in self.cases if case.improvements)


def _verdict(direction: Direction | None, significant: bool, p_value: float | None) -> str:
    if direction is None:
        return _NONE
    if direction == "same":
        return "same"
    if significant:
        return direction
    return f"{direction} (n.s.)" if p_value is not None else f"{direction} (no test)"


def _show(value: Any) -> str:
    if value is None:
        return _NONE
    if isinstance(value, dict):
        kind = value.get("type", "")
        rest = " ".join(f"{k}={v}" for k, v in value.items() if k != "type" and v is not None)
        return f"{kind} {rest}".strip()
    return str(value)


def _side(values: Sequence[float]) -> Side:
    return Side(
        n=len(values),
        mean=sum(values) / len(values) if values else None,
        p50=percentile(values, 50),
        p95=percentile(values, 95),
    )


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _relative(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else (b - a) / abs(a)


def _direction(
    delta: float | None, fallback: float | None, higher_is_better: bool, scale: float | None = None
) -> Direction | None:
    if delta is None:
        return None
    # Sums of the same values in another order differ in the last bits: that is no change.
    tolerance = 1e-9 * max(1.0, abs(scale or 0.0))
    step = delta if abs(delta) > tolerance else (fallback or 0.0)
    if abs(step) <= tolerance:
        return "same"
    return "better" if (step > 0) == higher_is_better else "worse"


Case = Mapping[str, Any]
Key = tuple[str, str]


def _index(cases: Sequence[Case], run: str, notes: list[str]) -> dict[Key, Case]:
    out: dict[Key, Case] = {}
    for case in cases:
        key = (case["suite"], case["case_id"])
        if key in out:
            notes.append(f"{run} has case {key[1]!r} of {key[0]} twice: the first is compared")
            continue
        out[key] = case
    return out


def _values(cases: Sequence[Case], bucket: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for case in cases:
        for name, value in (case.get(bucket) or {}).items():
            values = out.setdefault(name, [])
            if value is not None:
                values.append(float(value) if bucket == "metrics" else bool(value))
    return out


def _compare_metric(
    name: str, a_values: list[float], b_values: list[float], pairs: list[float], present: tuple[bool, bool]
) -> MetricComparison:
    info = METRICS.get(name)
    better = info.better if info else "lower"
    a, b = _side(a_values), _side(b_values)
    delta_p50, delta_mean = _minus(b.p50, a.p50), _minus(b.mean, a.mean)
    result: TestResult | None = None
    note: str | None = None
    if not present[0] or not present[1]:
        note = "only in A" if present[0] else "only in B"
    elif len(pairs) >= MIN_PAIRS:
        result = wilcoxon_signed_rank(pairs)
    elif a.n >= MIN_CASES and b.n >= MIN_CASES:
        result = mann_whitney_u(a_values, b_values)
    else:
        note = TOO_FEW
    p = None if result is None else result.p_value
    return MetricComparison(
        name=name,
        label=info.label if info else name,
        unit=info.unit if info else "",
        better=better,
        a=a,
        b=b,
        delta_p50=delta_p50,
        delta_mean=delta_mean,
        relative_p50=_relative(b.p50, a.p50),
        relative_mean=_relative(b.mean, a.mean),
        direction=_direction(delta_p50, delta_mean, better == "higher", a.mean),
        test=None if result is None else result.test,
        method=None if result is None else result.method,
        pairs=len(pairs),
        p_value=p,
        significant=p is not None and p < ALPHA,
        note=note,
    )


def _compare_check(
    name: str, a_verdicts: list[bool], b_verdicts: list[bool], present: tuple[bool, bool]
) -> CheckComparison:
    a_n, b_n = len(a_verdicts), len(b_verdicts)
    a_passed, b_passed = sum(a_verdicts), sum(b_verdicts)
    a_rate = a_passed / a_n if a_n else None
    b_rate = b_passed / b_n if b_n else None
    delta = _minus(b_rate, a_rate)
    result: TestResult | None = None
    note: str | None = None
    if not present[0] or not present[1]:
        note = "only in A" if present[0] else "only in B"
    elif a_n >= MIN_CASES and b_n >= MIN_CASES:
        result = fisher_exact(a_passed, a_n - a_passed, b_passed, b_n - b_passed)
    else:
        note = TOO_FEW
    p = None if result is None else result.p_value
    return CheckComparison(
        name=name,
        description=CHECKS.get(name, name),
        a_passed=a_passed,
        a_n=a_n,
        b_passed=b_passed,
        b_n=b_n,
        a_rate=a_rate,
        b_rate=b_rate,
        delta_rate=delta,
        direction=_direction(delta, None, True),
        test=None if result is None else result.test,
        p_value=p,
        significant=p is not None and p < ALPHA,
        note=note,
    )


def _case_change(key: Key, a: Case, b: Case) -> CaseChange:
    a_metrics, b_metrics = a.get("metrics") or {}, b.get("metrics") or {}
    a_checks, b_checks = a.get("checks") or {}, b.get("checks") or {}
    metrics = tuple(
        (name, a_metrics.get(name), b_metrics.get(name), _minus(b_metrics.get(name), a_metrics.get(name)))
        for name in dict.fromkeys([*a_metrics, *b_metrics])
    )
    checks = tuple(
        (name, a_checks.get(name), b_checks.get(name)) for name in dict.fromkeys([*a_checks, *b_checks])
    )
    regressions: list[str] = []
    improvements: list[str] = []
    status_a, status_b = str(a.get("status", "ok")), str(b.get("status", "ok"))
    if status_a != status_b:
        (regressions if status_a == "ok" else improvements if status_b == "ok" else regressions).append(
            f"status: {status_a} → {status_b}"
        )
    for name, was, now in checks:
        if was is True and now is False:
            regressions.append(f"{name}: pass → fail")
        elif was is False and now is True:
            improvements.append(f"{name}: fail → pass")
    return CaseChange(
        key[0], key[1], status_a, status_b, metrics, checks, tuple(regressions), tuple(improvements)
    )


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:
    """Run ``b`` against run ``a`` (results.json data, as ``load_results`` returns): B - A throughout."""
    identity = tuple(
        IdentityRow(key, label, _show(a.get(key)), _show(b.get(key)), a.get(key) != b.get(key), setting)
        for key, label, setting in _IDENTITY
    )
    notes: list[str] = []
    a_cases, b_cases = list(a.get("cases") or []), list(b.get("cases") or [])
    a_index, b_index = _index(a_cases, "A", notes), _index(b_cases, "B", notes)
    shared = [key for key in a_index if key in b_index]
    suites: list[SuiteComparison] = []
    for suite in dict.fromkeys([*(c["suite"] for c in a_cases), *(c["suite"] for c in b_cases)]):
        a_suite = [c for c in a_cases if c["suite"] == suite]
        b_suite = [c for c in b_cases if c["suite"] == suite]
        a_metrics, b_metrics = _values(a_suite, "metrics"), _values(b_suite, "metrics")
        metrics = []
        for name in dict.fromkeys([*a_metrics, *b_metrics]):
            pairs = [
                float(b_index[key]["metrics"][name]) - float(a_index[key]["metrics"][name])
                for key in shared
                if key[0] == suite
                and (a_index[key].get("metrics") or {}).get(name) is not None
                and (b_index[key].get("metrics") or {}).get(name) is not None
            ]
            metrics.append(
                _compare_metric(
                    name,
                    a_metrics.get(name, []),
                    b_metrics.get(name, []),
                    pairs,
                    (name in a_metrics, name in b_metrics),
                )
            )
        a_checks, b_checks = _values(a_suite, "checks"), _values(b_suite, "checks")
        checks = [
            _compare_check(
                name, a_checks.get(name, []), b_checks.get(name, []), (name in a_checks, name in b_checks)
            )
            for name in dict.fromkeys([*a_checks, *b_checks])
        ]
        suites.append(
            SuiteComparison(
                suite, bool(a_suite), bool(b_suite), len(a_suite), len(b_suite), tuple(metrics), tuple(checks)
            )
        )
    return Comparison(
        identity=identity,
        differences=tuple(row.key for row in identity if row.setting and row.differs),
        suites=tuple(suites),
        cases=tuple(_case_change(key, a_index[key], b_index[key]) for key in shared),
        only_in_a=tuple(key for key in a_index if key not in b_index),
        only_in_b=tuple(key for key in b_index if key not in a_index),
        notes=tuple(notes),
    )


# -------------------------------------------------------------------------------------- rendering


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return _NONE
    if unit == "ms":
        return f"{value:.0f} ms" if abs(value) >= 10 else f"{value:.1f} ms"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _signed(value: float | None, unit: str = "") -> str:
    text = _number(value, unit)
    return f"+{text}" if value is not None and value > 0 else text


def _percent(value: float | None) -> str:
    return "" if value is None else f" ({value:+.0%})"


def _p(p: float | None, note: str | None, test: str | None) -> str:
    if p is None:
        return note or _NONE
    shown = "<0.001" if p < 0.001 else f"{p:.3f}"
    return f"{shown} {_TEST_SHORT.get(test or '', test or '')}".strip()


_TEST_SHORT: Final = {
    "Wilcoxon signed-rank": "(Wilcoxon)",
    "Mann-Whitney U": "(Mann-Whitney)",
    "Fisher's exact": "(Fisher)",
}


def _verdict_text(verdict: str, direction: Direction | None, significant: bool) -> Text:
    if not significant or direction in (None, "same"):
        return Text(verdict, style="dim")
    return Text(verdict, style="bold green" if direction == "better" else "bold red")


def render_comparison(c: Comparison) -> list[RenderableType]:
    """The comparison as Rich renderables: the runs side by side (differing settings highlighted),
    a table per suite (each figure's A, B, delta, p-value and verdict), the cases that got worse or
    better (every shared case when there are few), and the cases only one run has."""
    out: list[RenderableType] = []
    header = Table(title="Runs: B against A", title_justify="left")
    for column in ("", "A", "B"):
        header.add_column(column)
    for row in c.identity:
        style = "bold yellow" if row.differs and row.setting else None
        header.add_row(row.label, Text(row.a, style=style or ""), Text(row.b, style=style or ""))
    out.append(header)
    if c.differences:
        out.append(Text(f"Settings that differ: {', '.join(c.differences)}", style="yellow"))
    for suite in c.suites:
        if not (suite.in_a and suite.in_b):
            out.append(Text(f"Suite {suite.suite}: only in {'A' if suite.in_a else 'B'}", style="yellow"))
        table = Table(
            title=f"{suite.suite}  (A: {suite.a_cases} cases, B: {suite.b_cases})", title_justify="left"
        )
        for column, justify in (
            ("figure", "left"),
            ("A", "right"),
            ("B", "right"),
            ("Δ", "right"),
            ("p", "left"),
            ("verdict", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]  # Rich's JustifyMethod literal
        for m in suite.metrics:
            table.add_row(
                f"{m.label} p50 ({'lower' if m.better == 'lower' else 'higher'} is better)",
                f"{_number(m.a.p50, m.unit)}  n={m.a.n}",
                f"{_number(m.b.p50, m.unit)}  n={m.b.n}",
                _signed(m.delta_p50, m.unit) + _percent(m.relative_p50),
                _p(m.p_value, m.note, m.test),
                _verdict_text(m.verdict, m.direction, m.significant),
            )
        for k in suite.checks:
            table.add_row(
                f"{k.name} pass rate",
                f"{k.a_passed}/{k.a_n}",
                f"{k.b_passed}/{k.b_n}",
                _NONE if k.delta_rate is None else f"{k.delta_rate * 100:+.0f} pts",
                _p(k.p_value, k.note, k.test),
                _verdict_text(k.verdict, k.direction, k.significant),
            )
        out.append(table)
    shown = c.cases if len(c.cases) <= ALL_CASES_UP_TO else tuple(x for x in c.cases if x.changed)
    if shown:
        title = "Cases" if len(shown) == len(c.cases) else "Cases that got worse or better"
        cases = Table(title=title, title_justify="left")
        for column in ("suite", "case", "status", "changes", "metrics (A → B)"):
            cases.add_column(column)
        for case in shown:
            changes = Text()
            for item in case.regressions:
                changes.append(f"{item}\n", style="red")
            for item in case.improvements:
                changes.append(f"{item}\n", style="green")
            changes.rstrip()
            figures = ", ".join(
                f"{name} {_number(x, _unit(name))} → {_number(y, _unit(name))}"
                for name, x, y, _ in case.metrics
            )
            status = case.status_a if case.status_a == case.status_b else f"{case.status_a} → {case.status_b}"
            cases.add_row(case.suite, case.case_id, status, changes, figures)
        out.append(cases)
    elif c.cases:
        out.append(Text(f"No case changed a check or its status ({len(c.cases)} shared cases)."))
    for run, keys in (("A", c.only_in_a), ("B", c.only_in_b)):
        if keys:
            out.append(Text(f"Only in {run}: " + ", ".join(f"{s}/{i}" for s, i in keys), style="yellow"))
    out.extend(Text(note, style="yellow") for note in c.notes)
    return out


def _unit(name: str) -> str:
    info = METRICS.get(name)
    return info.unit if info else ""


def comparison_dict(c: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready data (what ``--compare`` may write as compare.json)."""
    data = asdict(c)
    for suite, source in zip(data["suites"], c.suites, strict=True):
        for row, metric in zip(suite["metrics"], source.metrics, strict=True):
            row["verdict"] = metric.verdict
        for row, check in zip(suite["checks"], source.checks, strict=True):
            row["verdict"] = check.verdict
    data["only_in_a"] = [{"suite": s, "case_id": i} for s, i in c.only_in_a]
    data["only_in_b"] = [{"suite": s, "case_id": i} for s, i in c.only_in_b]
    for case in data["cases"]:
        case["metrics"] = [
            dict(zip(("name", "a", "b", "delta"), row, strict=True)) for row in case["metrics"]
        ]
        case["checks"] = [dict(zip(("name", "a", "b"), row, strict=True)) for row in case["checks"]]
    return data
