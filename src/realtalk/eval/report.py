"""``realtalk eval``'s report.html: one self-contained page drawn from results.json's data.

``render_report(results)`` takes the results (format 2, the dict ``runner.results_dict`` makes or
``json.load`` reads back) and returns the page: the run's header (deployment, model, voice, VAD,
cost, case counts), then a section per suite present with its charts and a table of its cases,
then the cases that failed or were skipped with their error. Inline CSS and SVG drawn here
(``realtalk.html_charts``); no script, nothing fetched. Every chart has a title and a description
for screen readers and its figures in a table below it. Every text from the results is escaped.

Built-in suites get charts of their own (alphanumeric exact-match rates per style and CER per case;
interruption timings per case; latency per case with its p50 and p95 and its components; the
instructions and tools checks). A suite it does not know gets its metrics' and checks' summaries
and its cases: the page works for any results, whatever suites, errors or missing figures they hold.
Every section's summaries are recomputed from its cases (``suite.summarise``), so they agree with
the charts drawn from the same cases.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from html import escape
from pathlib import Path
from typing import Any, Final

from realtalk.eval.suite import CHECKS, METRICS, percentile, summarise
from realtalk.html_charts import (
    CSS,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    Cell,
    Row,
    bar,
    figure,
    legend,
    mark,
    nice_max,
    plot_height,
    svg,
    table,
    x_labels,
    y_axis,
)

__all__ = ["render_report", "write_report"]

Case = Mapping[str, Any]
Series = tuple[str, str, str]  # (key, label, colour)

_NONE: Final = "\N{EN DASH}"  # a figure that does not exist (not measured, not decidable)
_PAGE_CSS: Final = (
    CSS
    + """td.text{text-align:left;white-space:normal;max-width:420px;overflow-wrap:break-word}
td.pass{background:#e3f4e1;color:#1e5b1a}td.fail{background:#fbe3e3;color:#8a1c1c}
section{border-top:1px solid #dfe3ea;margin-top:24px}
"""
)
_BLUE, _ORANGE, _RED, _TEAL, _GREEN, _YELLOW, _PURPLE, _GREY = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#af7aa1", "#bab0ac",
)  # fmt: skip


# --- figures -------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _metric(case: Case, name: str) -> float | None:
    metrics = case.get("metrics")
    return _number(metrics.get(name)) if isinstance(metrics, Mapping) else None


def _check(case: Case, name: str) -> bool | None:
    checks = case.get("checks")
    verdict = checks.get(name) if isinstance(checks, Mapping) else None
    return verdict if isinstance(verdict, bool) else None


def _text(value: Any) -> str:
    if value is None:
        return _NONE
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _unit(name: str) -> str:
    info = METRICS.get(name)
    return info.unit if info else ("ms" if name.endswith("_ms") else "")


def _label(name: str) -> str:
    """A metric's or check's header: its label and unit (``voice to voice (ms)``), else its name."""
    info = METRICS.get(name)
    if info is None:
        return name
    return f"{info.label} (ms)" if info.unit == "ms" else info.label


def _figure_text(name: str, value: float | None) -> str:
    if value is None:
        return _NONE
    unit = _unit(name)
    if unit == "ms":
        return f"{value:,.1f}"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:,.4g}"


def _rate(verdicts: Sequence[bool | None]) -> float | None:
    decided = [v for v in verdicts if v is not None]
    return sum(decided) / len(decided) if decided else None


def _rate_text(rate: float | None) -> str:
    return _NONE if rate is None else f"{rate:.0%}"


def _verdict(value: bool | None, name: str = "") -> Cell:
    if value is None:
        return Cell(_NONE, field=name)
    return Cell("pass" if value else "fail", field=name, css="pass" if value else "fail")


def _usd(value: Any) -> str:
    try:
        return f"${Decimal(str(value)):,.4f}"
    except (InvalidOperation, ValueError):
        return _text(value)


def _names(cases: Sequence[Case], key: str) -> list[str]:
    """The metric or check names the cases carry, in the order first seen."""
    seen: dict[str, None] = {}
    for case in cases:
        values = case.get(key)
        if isinstance(values, Mapping):
            seen.update((str(name), None) for name in values)
    return list(seen)


# --- charts --------------------------------------------------------------------------------------


def _short(label: str, slot: float) -> str:
    most = max(3, int(slot / 6.5))  # 11 px labels: about 6.5 px a character
    return label if len(label) <= most else label[: most - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _bars(
    chart_id: str,
    title: str,
    desc: str,
    groups: Sequence[str],
    series: Sequence[Series],
    values: Sequence[Sequence[float | None]],
    *,
    stacked: bool = False,
    percent: bool = False,
    marks: Sequence[tuple[str, float]] = (),
) -> str:
    """Vertical bars, a slot per group: the series side by side (or ``stacked``). ``values[g][s]``;
    ``None`` draws no bar. ``percent``: values are rates, the axis runs to 100%. ``marks``:
    horizontal reference lines (a p50, a p95). Bar heights are proportional to the values."""
    plot_h, slot = plot_height(), (WIDTH - LEFT - RIGHT) / max(1, len(groups))
    sums = [
        sum(max(0.0, v or 0.0) for v in row) if stacked else max((v or 0.0 for v in row), default=0.0)
        for row in values
    ]
    top = 1.0 if percent else nice_max(max([*sums, *(value for _, value in marks)], default=0.0))
    width = slot * 0.7 / (1 if stacked else max(1, len(series)))
    parts = []
    for g, (group, row) in enumerate(zip(groups, values, strict=True)):
        base = 0.0
        for s, ((key, name, colour), value) in enumerate(zip(series, row, strict=True)):
            if value is None:
                continue
            height = plot_h * max(0.0, value) / top  # proportional; a negative figure has no bar
            x = LEFT + slot * (g + 0.15) + (0 if stacked else width * s)
            tip = f"{group}: {name} {_value_text(key, value, percent)}"
            data = {"group": group, "series": key, "value": repr(value)}
            parts.append(bar("value", x, TOP + plot_h - base - height, width, height, colour, tip, data))
            base += height if stacked else 0.0
    for name, value in marks:
        y = TOP + plot_h * (1 - value / top)
        parts.append(mark(LEFT, y, WIDTH - RIGHT, y, f"{name} {value:,.1f}", WIDTH - RIGHT - 90, y - 3))
    tick = "{:.0%}" if percent else "{:,.0f}" if top >= 10 else "{:,.2f}" if top >= 1 else "{:.3f}"
    axis = y_axis(top, tick)
    key = legend([(name, colour) for _, name, colour in series], spacing=170) if len(series) > 1 else ""
    labels = x_labels([_short(group, slot) for group in groups], slot)
    return svg(chart_id, title, desc, axis + key + "".join(parts) + labels)


def _value_text(key: str, value: float | None, percent: bool) -> str:
    return _rate_text(value) if percent else _figure_text(key, value)


def _bars_table(
    table_id: str,
    key_head: str,
    groups: Sequence[str],
    series: Sequence[Series],
    values: Sequence[Sequence[float | None]],
    percent: bool,
) -> str:
    rows = [
        Row(
            group,
            [
                Cell(_value_text(key, v, percent), field=key)
                for (key, _, _), v in zip(series, row, strict=True)
            ],
        )
        for group, row in zip(groups, values, strict=True)
    ]
    return table(table_id, [key_head, *(name for _, name, _ in series)], rows)


def _chart(
    chart_id: str,
    caption: str,
    desc: str,
    groups: Sequence[str],
    series: Sequence[Series],
    values: Sequence[Sequence[float | None]],
    *,
    key_head: str = "case",
    percent: bool = False,
    stacked: bool = False,
    marks: Sequence[tuple[str, float]] = (),
) -> str:
    """A figure: the bar chart and its figures as a table (``{chart_id}-table``)."""
    if not groups:
        return ""
    chart = _bars(
        chart_id, caption, desc, groups, series, values, stacked=stacked, percent=percent, marks=marks
    )
    return figure(chart, caption, _bars_table(f"{chart_id}-table", key_head, groups, series, values, percent))


def _checks_chart(slug: str, cases: Sequence[Case], checks: Sequence[str]) -> str:
    rates = [[_rate([_check(case, name) for case in cases])] for name in checks]
    desc = "The share of cases that passed each check, of those where it could be decided."
    series = [("rate", "passed", _GREEN)]
    return _chart(
        f"chart-{slug}-checks", "Checks passed", desc, checks, series, rates, key_head="check", percent=True
    )


# --- sections ------------------------------------------------------------------------------------


def _ids(cases: Sequence[Case]) -> list[str]:
    return [_text(case.get("case_id")) for case in cases]


def _summary(slug: str, cases: Sequence[Case]) -> str:
    """The section's counts, and each metric's n/mean/p50/p95 and each check's rate."""
    clean = [
        {
            "suite": "_",
            "status": case.get("status", "ok"),
            "metrics": {name: _metric(case, name) for name in _names([case], "metrics")},
            "checks": {name: _check(case, name) for name in _names([case], "checks")},
        }
        for case in cases
    ]
    summary: dict[str, Any] = summarise(clean).get("_", {"cases": 0, "ok": 0, "errors": 0, "skipped": 0})
    counts = (
        f"{summary['cases']} cases: {summary['ok']} ok, {summary['errors']} errors, "
        f"{summary['skipped']} skipped."
    )
    stats = ("n", "mean", "p50", "p95", "min", "max")
    metric_rows = [
        Row(
            name,
            [
                Cell(_label(name), css="text"),
                *(Cell(_figure_text(name, m[f]) if f != "n" else str(m[f]), field=f) for f in stats),
            ],
        )
        for name, m in summary.get("metrics", {}).items()
    ]
    check_rows = [
        Row(name, [Cell(str(c["n"]), field="n"), Cell(str(c["passed"]), field="passed"),
                   Cell(_rate_text(c["rate"]), field="rate"), Cell(CHECKS.get(name, ""), css="text")])
        for name, c in summary.get("checks", {}).items()
    ]  # fmt: skip
    parts = [f'<p class="meta">{escape(counts)}</p>']
    if metric_rows:
        head = ["metric", "", *stats]
        parts.append(table(f"table-{slug}-metrics", head, metric_rows, caption="Metrics"))
    if check_rows:
        head = ["check", "n", "passed", "rate", "what it checks"]
        parts.append(table(f"table-{slug}-checks", head, check_rows, caption="Checks"))
    return "".join(parts)


Column = tuple[str, Callable[[Case], Cell]]


def _cases_table(slug: str, cases: Sequence[Case], columns: Sequence[Column]) -> str:
    """The suite's cases: one row each, ``columns`` as (header, case -> cell)."""
    rows = [Row(_text(case.get("case_id")), [cell(case) for _, cell in columns]) for case in cases]
    return table(f"table-{slug}-cases", ["case", *(head for head, _ in columns)], rows, caption="Cases")


def _metric_column(name: str) -> Column:
    return _label(name), lambda case: Cell(_figure_text(name, _metric(case, name)), field=name)


def _check_column(name: str, head: str | None = None) -> Column:
    return head or name, lambda case: _verdict(_check(case, name), name)


def _text_column(head: str, read: Callable[[Case], Any]) -> Column:
    return head, lambda case: Cell(_text(read(case)), css="text", field=head)


def _latency_column(case: Case) -> Cell:
    return Cell(_figure_text("latency_ms", _number(case.get("latency_ms"))), field="latency_ms")


_STYLE = _text_column("style", lambda case: case.get("style"))
_EXPECTED = _text_column("expected", lambda case: case.get("expected"))
_TRANSCRIPT = _text_column("transcript", lambda case: case.get("transcript"))
_REPLY = _text_column("reply", lambda case: case.get("reply"))
_STATUS = _text_column("status", lambda case: case.get("status", "ok"))


def _alphanumeric(slug: str, cases: Sequence[Case]) -> str:
    styles = list(dict.fromkeys(_text(case.get("style")) for case in cases))
    exact = [("transcript_exact", "transcript", _BLUE), ("reply_exact", "read-back", _ORANGE)]
    rates = [
        [_rate([_check(c, key) for c in cases if _text(c.get("style")) == style]) for key, _, _ in exact]
        for style in styles
    ]
    exact_chart = _chart(
        f"chart-{slug}-exact", "Exact match rate per style",
        "Per reading style, the share of cases whose transcript and whose read-back matched the code.",
        styles, exact, rates, key_head="style", percent=True,
    )  # fmt: skip
    cer = [("transcript_cer", "transcript", _BLUE), ("reply_cer", "read-back", _ORANGE)]
    cer_chart = _chart(
        f"chart-{slug}-cer", "Character error rate per case",
        "CER of the transcript and of the read-back, per case (lower is better).",
        _ids(cases), cer, [[_metric(case, key) for key, _, _ in cer] for case in cases],
    )  # fmt: skip
    columns = [
        _STYLE, _EXPECTED, _text_column("heard", lambda c: c.get("transcript")),
        _text_column("read back", lambda c: c.get("reply")),
        _check_column("transcript_exact", "transcript exact"),
        _check_column("reply_exact", "read-back exact"),
        _metric_column("transcript_cer"), _metric_column("reply_cer"), ("latency (ms)", _latency_column),
        _STATUS,
    ]  # fmt: skip
    return exact_chart + cer_chart + _cases_table(slug, cases, columns)


def _interruption(slug: str, cases: Sequence[Case]) -> str:
    timing = [
        ("onset_to_speech_started_ms", "onset → speech_started", _BLUE),
        ("onset_to_silent_ms", "onset → playback silent", _RED),
    ]
    timing_chart = _chart(
        f"chart-{slug}-timing", "Barge-in timings per case (ms)",
        "Per case, ms from the barge-in's onset to the server's speech_started and to the reply's silence.",
        _ids(cases), timing, [[_metric(case, key) for key, _, _ in timing] for case in cases],
    )  # fmt: skip
    truncation_chart = _chart(
        f"chart-{slug}-truncation", "Truncation error per case (ms)",
        "Per case, |the audio_end_ms sent in the truncate - the reply audio played|, in ms.",
        _ids(cases), [("truncation_error_ms", "truncation error", _TEAL)],
        [[_metric(case, "truncation_error_ms")] for case in cases],
    )  # fmt: skip
    checks = [n for n in ("truncated_at_played", "follows_new_intent") if n in _names(cases, "checks")]
    names = (
        "onset_to_speech_started_ms",
        "onset_to_silent_ms",
        "truncation_error_ms",
        "played_before_barge_in_ms",
    )
    columns = [
        _STYLE, *(_metric_column(name) for name in names),
        _check_column("truncated_at_played", "truncated at played"),
        _check_column("follows_new_intent", "follows new intent"),
        _text_column("answer", lambda c: c.get("reply")), _STATUS,
    ]  # fmt: skip
    return (
        timing_chart
        + truncation_chart
        + _checks_chart(slug, cases, checks)
        + _cases_table(slug, cases, columns)
    )


def _latency(slug: str, cases: Sequence[Case]) -> str:
    totals = [_metric(case, "voice_to_voice_ms") for case in cases]
    known = [value for value in totals if value is not None]
    marks = [(f"p{q}", value) for q in (50, 95) if (value := percentile(known, q)) is not None]
    v2v_chart = _chart(
        f"chart-{slug}-v2v", "Voice-to-voice latency per case (ms)",
        "Per case, ms from the end of the user's speech to the first reply sample played; dashed: p50, p95.",
        _ids(cases), [("voice_to_voice_ms", "voice to voice", _PURPLE)], [[value] for value in totals],
        marks=marks,
    )  # fmt: skip
    parts: list[list[float | None]] = []
    for case, total in zip(cases, totals, strict=True):
        vad, delta = _metric(case, "vad_end_ms"), _metric(case, "first_delta_ms")
        rest = total - vad - delta if total is not None and vad is not None and delta is not None else None
        parts.append([vad, delta, rest if rest is not None and rest > 0 else None])
    components = [
        ("vad_end_ms", "VAD end", _GREEN),
        ("first_delta_ms", "first audio delta", _YELLOW),
        ("rest_ms", "on to playback", _GREY),
    ]
    components_chart = _chart(
        f"chart-{slug}-components", "Latency components per case (ms)",
        "Per case, stacked: the VAD's end of speech, the first audio delta after it, the rest to playback.",
        _ids(cases), components, parts, stacked=True,
    )  # fmt: skip
    names = ("voice_to_voice_ms", "vad_end_ms", "first_delta_ms")
    columns = [
        _EXPECTED, _TRANSCRIPT, *(_metric_column(name) for name in names), _check_column("replied"), _REPLY,
        _STATUS,
    ]  # fmt: skip
    return v2v_chart + components_chart + _cases_table(slug, cases, columns)


def _instructions(slug: str, cases: Sequence[Case]) -> str:
    checks = _names(cases, "checks")
    columns = [*(_check_column(name) for name in checks), _metric_column("reply_words"), _REPLY, _STATUS]
    return _checks_chart(slug, cases, checks) + _cases_table(slug, cases, columns)


def _called(case: Case) -> str:
    details = case.get("details")
    calls = details.get("called") if isinstance(details, Mapping) else None
    if not isinstance(calls, list) or not calls:
        return "none"
    return "; ".join(
        f"{_text(call.get('name'))}({_text(call.get('arguments', {}))})"
        if isinstance(call, Mapping)
        else _text(call)
        for call in calls
    )


def _expected_arguments(case: Case) -> Any:
    details = case.get("details")
    if not isinstance(details, Mapping):
        return None
    return details.get("expected_arguments", details.get("arguments"))


def _tools(slug: str, cases: Sequence[Case]) -> str:
    present = _names(cases, "checks")
    checks: list[str] = [name for name in ("tool_called", "right_tool", "right_arguments") if name in present]
    checks += [name for name in present if name not in checks]
    columns = [
        _text_column("expected tool", lambda c: c.get("expected")),
        _text_column("expected arguments", _expected_arguments),
        _text_column("called", _called), *(_check_column(name) for name in checks), _STATUS,
    ]  # fmt: skip
    return _checks_chart(slug, cases, checks) + _cases_table(slug, cases, columns)


def _generic(slug: str, cases: Sequence[Case]) -> str:
    checks = _names(cases, "checks")
    columns = [
        _STYLE, _EXPECTED, _TRANSCRIPT, _REPLY, *(_metric_column(name) for name in _names(cases, "metrics")),
        *(_check_column(name) for name in checks), _STATUS,
    ]  # fmt: skip
    return _checks_chart(slug, cases, checks) + _cases_table(slug, cases, columns)


_SECTIONS: Final = {
    "alphanumeric": _alphanumeric,
    "interruption": _interruption,
    "latency": _latency,
    "instructions": _instructions,
    "tools": _tools,
}


# --- page ----------------------------------------------------------------------------------------


def _vad(vad: Any) -> str:
    if vad is None:
        return "none (the client ends each turn)"
    if not isinstance(vad, Mapping):
        return _text(vad)
    settings = ", ".join(f"{k} {_text(v)}" for k, v in vad.items() if k != "type" and v is not None)
    return f"{_text(vad.get('type', 'VAD'))}" + (f" ({settings})" if settings else "")


def _header(results: Mapping[str, Any], cases: Sequence[Case]) -> str:
    statuses = [case.get("status", "ok") for case in cases]
    ok, skipped = statuses.count("ok"), statuses.count("skipped")
    duration = _number(results.get("duration_s"))
    cap = results.get("max_usd")
    fields = [
        ("deployment", _text(results.get("deployment"))),
        ("model", _text(results.get("model"))),
        *([("model version", _text(results["model_version"]))] if results.get("model_version") else []),
        ("endpoint", _text(results.get("endpoint_kind"))),
        ("voice", _text(results.get("voice"))),
        ("VAD", _vad(results.get("vad"))),
        ("transcription model", _text(results.get("transcription_model"))),
        *([("grader model", _text(results["grader_model"]))] if results.get("grader_model") else []),
        ("realtalk", _text(results.get("realtalk_version"))),
        ("started", _text(results.get("started_at"))),
        ("duration", _NONE if duration is None else f"{duration:,.1f} s"),
        ("concurrency", _text(results.get("concurrency"))),
        ("total cost", _usd(results.get("cost_usd")) + (f" (cap {_usd(cap)})" if cap is not None else "")),
        ("cases", f"{len(cases)}: {ok} ok, {len(cases) - ok - skipped} errors, {skipped} skipped"),
    ]
    rows = [Row(name, [Cell(value, css="text", field=name)]) for name, value in fields]
    return table("run", ["run", ""], rows)


def _problems(cases: Sequence[Case]) -> str:
    failed = [c for c in cases if c.get("status", "ok") != "ok" or c.get("error")]
    if not failed:
        return "<p>Every case ran to the end without an error.</p>"
    columns = [
        _text_column("suite", lambda c: c.get("suite")),
        _STATUS,
        _text_column("attempts", lambda c: c.get("attempts")),
        _text_column("error", lambda c: c.get("error")),
    ]
    return _cases_table("problems", failed, columns)


def _slugs(suites: Sequence[str]) -> dict[str, str]:
    """An HTML id part per suite: its name's letters, digits, '_' and '-', made unique."""
    slugs: dict[str, str] = {}
    for suite in suites:
        slug = re.sub(r"[^A-Za-z0-9_-]", "-", suite) or "suite"
        while slug in slugs.values() or slug == "problems":
            slug += "-2"
        slugs[suite] = slug
    return slugs


def render_report(results: Mapping[str, Any]) -> str:
    """The run as one HTML document (UTF-8 text): header, a section per suite with its charts and
    cases, the cases that failed or were skipped. No script; every text escaped."""
    raw = results.get("cases")
    cases = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []
    listed = results.get("suites")
    named = [str(s) for s in listed] if isinstance(listed, list) else []
    suites = list(dict.fromkeys([*named, *(_text(case.get("suite")) for case in cases)]))
    slugs = _slugs(suites)
    sections = []
    for suite in suites:
        mine = [case for case in cases if _text(case.get("suite")) == suite]
        draw = _SECTIONS.get(suite, _generic)
        kind = "" if suite in _SECTIONS else " (a suite this report does not know: its figures as recorded)"
        body = draw(slugs[suite], mine) if mine else "<p>No cases.</p>"
        sections.append(
            f'<section id="suite-{slugs[suite]}" data-suite="{escape(suite)}">'
            f"<h2>{escape(suite + kind)}</h2>{_summary(slugs[suite], mine)}{body}</section>"
        )
    title = f"realtalk eval, {_text(results.get('deployment'))}, {_text(results.get('started_at'))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_PAGE_CSS}</style></head>
<body><main>
<h1>realtalk eval</h1>
<p class="meta">Suites: {escape(", ".join(suites) or "none")}. Times in ms; CER is the character error rate
after normalisation (lower is better); “{_NONE}”: not measured or not decidable.</p>
{_header(results, cases)}
{"".join(sections)}
<section id="problems"><h2>Errors and skipped cases</h2>{_problems(cases)}</section>
</main></body></html>
"""


def write_report(results: Mapping[str, Any], folder: Path) -> Path:
    """Write ``folder/report.html`` (``render_report(results)``) and return its path."""
    path = Path(folder) / "report.html"
    path.write_text(render_report(results), encoding="utf-8")
    return path
