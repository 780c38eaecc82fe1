"""``realtalk eval``'s report.html (``realtalk.eval.report``), read back through an HTML parser: the
run's header, a section per suite with charts whose bars are proportional to the figures in the
results and tables that hold the same figures, unknown suites, errors and skipped cases, and every
text from the results escaped. ``sample_results()`` is also what ``test_report_browser.py`` renders.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from realtalk.eval.report import render_report, write_report
from realtalk.eval.suite import summarise
from realtalk.percentiles import percentile

SCRIPT = "<script>alert('x')</script>"
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "section", "figure",
    "figcaption", "details", "summary", "div", "table", "caption", "thead", "tbody", "tfoot", "tr", "th",
    "td", "svg", "desc", "rect", "line", "text",
}  # fmt: skip
PLOT_BOTTOM_Y = 206.0  # html_charts: TOP 14 + the plot's 192 px


def _case(case_id: str, suite: str, style: str, expected: str, **fields: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "case_id": case_id, "suite": suite, "style": style, "expected": expected, "transcript": None,
        "reply": None, "transcript_score": None, "reply_score": None, "cost_usd": "0.0011",
        "latency_ms": None, "error": None, "status": "ok", "attempts": 1, "metrics": {}, "checks": {},
        "details": {},
    }  # fmt: skip
    case.update(fields)
    return case


def sample_results() -> dict[str, Any]:
    """A run of every built-in suite and one the report does not know, as results.json holds it:
    an errored and a skipped case, figures that could not be measured, and HTML in the texts."""
    alnum, intr, lat, ins, tools = "alphanumeric", "interruption", "latency", "instructions", "tools"
    cases = [
        _case("a-digits-1", alnum, "digits", "4892", transcript="4892", reply="You said: 4892",
              latency_ms=812.5, metrics={"transcript_cer": 0.0, "reply_cer": 0.0},
              checks={"transcript_exact": True, "reply_exact": True}),
        _case("a-nato-1", alnum, "nato", "XR-4892", transcript="x ray romeo 4892",
              reply="You said: X R 4 8 9 3", latency_ms=901.0,
              metrics={"transcript_cer": 0.0, "reply_cer": 0.1667},
              checks={"transcript_exact": True, "reply_exact": False}),
        _case("a-nato-2", alnum, "nato", "KZ-11", transcript="case at 11", reply="You said: case 11",
              latency_ms=760.0, metrics={"transcript_cer": 0.5, "reply_cer": 0.25},
              checks={"transcript_exact": False, "reply_exact": False}),
        _case("a-grouped-1", alnum, "grouped", "AB-12", transcript="A B twelve", reply=None,
              metrics={"transcript_cer": 0.0, "reply_cer": None},
              checks={"transcript_exact": True, "reply_exact": None}),
        _case("a-spelled-1", alnum, "spelled", "QQ-7", status="error", attempts=3,
              error=f"server error event: {SCRIPT} (code server_error)"),
        _case("i-early-1", intr, "early", "weather", reply="The weather in Oslo is mild.",
              metrics={"onset_to_speech_started_ms": 180.0, "onset_to_silent_ms": 240.0,
                       "truncation_error_ms": 12.0, "played_before_barge_in_ms": 600.0},
              checks={"truncated_at_played": True, "follows_new_intent": True}),
        _case("i-mid-1", intr, "mid", "train", reply="The next train leaves at nine.",
              metrics={"onset_to_speech_started_ms": 220.0, "onset_to_silent_ms": 310.0,
                       "truncation_error_ms": 55.0, "played_before_barge_in_ms": 1500.0},
              checks={"truncated_at_played": False, "follows_new_intent": True}),
        _case("i-late-1", intr, "late", "time", status="skipped", attempts=0,
              error="not run: the cost cap of $1.00 would be passed"),
        _case("l-1", lat, "short", "what time is it", transcript="what time is it", reply="It is noon.",
              latency_ms=600.0,
              metrics={"voice_to_voice_ms": 600.0, "vad_end_ms": 520.0, "first_delta_ms": 40.0},
              checks={"replied": True}),
        _case("l-2", lat, "short", "hello", transcript="hello", reply="Hi there.", latency_ms=700.0,
              metrics={"voice_to_voice_ms": 700.0, "vad_end_ms": 560.0, "first_delta_ms": 90.0},
              checks={"replied": True}),
        _case("l-3", lat, "long", "tell me a story", transcript="tell me a story", reply="Once upon a time.",
              latency_ms=900.0,
              metrics={"voice_to_voice_ms": 900.0, "vad_end_ms": 600.0, "first_delta_ms": 150.0},
              checks={"replied": True}),
        _case("l-4", lat, "long", "goodbye", transcript="goodbye", reply=None,
              metrics={"voice_to_voice_ms": None, "vad_end_ms": 500.0, "first_delta_ms": None},
              checks={"replied": False}),
        _case("ins-fr-1", ins, "language", "answers in French", reply="Bonjour, je peux vous aider.",
              metrics={"reply_words": 5.0}, checks={"language": True, "max_words": True}),
        _case("ins-refuse-1", ins, "refusal", "declines", reply=f"{SCRIPT} Sure, here is the recipe",
              metrics={"reply_words": 6.0}, checks={"refusal": False, "must_not_include": True}),
        _case("t-weather-1", tools, "single", "get_weather",
              details={"called": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
                       "expected_arguments": {"city": "Oslo"}},
              checks={"tool_called": True, "right_tool": True, "right_arguments": True}),
        _case("t-none-1", tools, "none", "none", details={"called": []},
              checks={"tool_called": True, "right_tool": None, "right_arguments": None}),
        _case("p-1", "pronunciation", "names", "Siobhán", transcript="shiv on",
              metrics={"phoneme_error_rate": 0.12, "stress_ms": 30.0}, checks={"intelligible": True}),
        _case("p-2", "pronunciation", "names", "Nguyễn", transcript="win",
              metrics={"phoneme_error_rate": None, "stress_ms": 50.0}, checks={"intelligible": False}),
    ]  # fmt: skip
    statuses = [case["status"] for case in cases]
    return {
        "format": 2,
        "started_at": "2026-12-04T17:40:00+00:00",
        "deployment": "gpt-realtime-1.5",
        "model": "gpt-realtime-1.5-2026-02-23",
        "voice": "alloy",
        "vad": {"type": "ServerVad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
        "realtalk_version": "0.9.0",
        "endpoint_kind": "emulator",
        "cost_usd": "0.0123",
        "duration_s": 42.1,
        "transcription_model": "gpt-4o-transcribe",
        "max_usd": "1.00",
        "concurrency": 4,
        "suites": list(dict.fromkeys(case["suite"] for case in cases)),
        "cases": cases,
        "totals": {
            "cases": len(cases),
            "ok": statuses.count("ok"),
            "errors": statuses.count("error"),
            "skipped": statuses.count("skipped"),
            "suites": summarise(cases),
        },
    }


# --- reading the page back -----------------------------------------------------------------------


class Page(HTMLParser):
    """What the page shows: each chart's bars and marks, each table's cells, each section's suite."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, list[dict[str, str]]] = {}  # chart id -> rect.bar attributes
        self.marks: dict[str, list[dict[str, str]]] = {}
        self.charts: dict[str, dict[str, str]] = {}  # chart id -> svg attributes, + title and desc
        self.cells: dict[str, dict[str, dict[str, str]]] = {}  # table id -> row key -> field -> text
        self.cell_classes: dict[str, dict[str, dict[str, str]]] = {}
        self.heads: dict[str, list[str]] = {}  # table id -> column headers
        self.sections: list[str] = []
        self.figure_tables: dict[str, list[str]] = {}  # chart id -> ids of tables in its figure
        self._chart = self._table = self._row = self._field = self._title = ""
        self._in_th = False
        self._figure_chart = ""
        self.tags: set[str] = set()  # every element and attribute name used
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.tags.add(tag)
        self.attributes.update(found)
        if tag == "section" and "data-suite" in found:
            self.sections.append(found["data-suite"])
        elif tag == "figure":
            self._figure_chart = "?"
        elif tag == "svg":
            self._chart = found.get("id", "")
            self.charts[self._chart] = found
            if self._figure_chart == "?":
                self._figure_chart = self._chart
        elif tag in ("title", "desc") and self._chart and found.get("id"):
            self._title = tag
        elif tag == "rect" and self._chart and "bar" in found.get("class", "").split():
            self.bars.setdefault(self._chart, []).append(found)
        elif tag == "line" and self._chart and found.get("class") == "mark":
            self.marks.setdefault(self._chart, []).append(found)
        elif tag == "table":
            self._table = found.get("id", "")
            self.heads[self._table] = []
            if self._figure_chart not in ("", "?"):
                self.figure_tables.setdefault(self._figure_chart, []).append(self._table)
        elif tag == "tr":
            self._row = found.get("data-key", "")
        elif tag == "th" and found.get("scope") == "col":
            self._in_th = True
            self.heads[self._table].append("")
        elif tag == "td":
            self._field = found.get("data-field", "") or "?"
            self.cells.setdefault(self._table, {}).setdefault(self._row, {})[self._field] = ""
            self.cell_classes.setdefault(self._table, {}).setdefault(self._row, {})[self._field] = found.get(
                "class", ""
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = ""
        elif tag in ("title", "desc"):
            self._title = ""
        elif tag == "td":
            self._field = ""
        elif tag == "th":
            self._in_th = False
        elif tag == "figure":
            self._figure_chart = ""

    def handle_data(self, data: str) -> None:
        if self._title and self._chart:
            self.charts[self._chart][self._title] = self.charts[self._chart].get(self._title, "") + data
        elif self._field:
            row = self.cells[self._table][self._row]
            row[self._field] += data
        elif self._in_th:
            self.heads[self._table][-1] += data


def read(results: dict[str, Any]) -> tuple[str, Page]:
    html = render_report(results)
    page = Page()
    page.feed(html)
    page.close()
    return html, page


def values(page: Page, chart: str, series: str | None = None) -> list[tuple[str, float]]:
    return [
        (bar["data-group"], float(bar["data-value"]))
        for bar in page.bars.get(chart, [])
        if series is None or bar["data-series"] == series
    ]


def assert_proportional(page: Page, chart: str) -> None:
    """Every bar's height is its value times the chart's one scale (to the 0.1 px drawn)."""
    bars = page.bars[chart]
    tallest = max(bars, key=lambda bar: float(bar["data-value"]))
    scale = float(tallest["height"]) / float(tallest["data-value"])
    assert scale > 0, chart
    for bar in bars:
        assert float(bar["height"]) == pytest.approx(scale * float(bar["data-value"]), abs=0.11), bar


# --- tests ---------------------------------------------------------------------------------------


def test_the_header_names_the_run_its_cost_and_cap_and_its_case_counts() -> None:
    _, page = read(sample_results())
    run = {
        key: row["?"] if "?" in row else next(iter(row.values())) for key, row in page.cells["run"].items()
    }
    assert run["deployment"] == "gpt-realtime-1.5"
    assert run["model"] == "gpt-realtime-1.5-2026-02-23"
    assert run["endpoint"] == "emulator"
    assert run["voice"] == "alloy"
    assert run["VAD"] == "ServerVad (threshold 0.5, prefix_padding_ms 300, silence_duration_ms 500)"
    assert run["transcription model"] == "gpt-4o-transcribe"
    assert run["realtalk"] == "0.9.0"
    assert run["started"] == "2026-12-04T17:40:00+00:00"
    assert run["duration"] == "42.1 s"
    assert run["concurrency"] == "4"
    assert run["total cost"] == "$0.0123 (cap $1.0000)"
    assert run["cases"] == "18: 16 ok, 1 errors, 1 skipped"


def test_every_suite_present_gets_a_section_and_every_chart_is_described_with_its_figures_beside_it() -> None:
    _, page = read(sample_results())
    assert page.sections == [
        "alphanumeric",
        "interruption",
        "latency",
        "instructions",
        "tools",
        "pronunciation",
    ]
    expected = {
        "chart-alphanumeric-exact", "chart-alphanumeric-cer", "chart-interruption-timing",
        "chart-interruption-truncation", "chart-interruption-checks", "chart-latency-v2v",
        "chart-latency-components", "chart-instructions-checks", "chart-tools-checks",
        "chart-pronunciation-checks",
    }  # fmt: skip
    assert set(page.charts) == expected
    for chart, attributes in page.charts.items():
        assert attributes["role"] == "img"
        assert attributes["aria-labelledby"] == f"{chart}-title {chart}-desc"
        assert attributes.get("title") and attributes.get("desc"), chart
        assert page.figure_tables[chart] == [f"{chart}-table"]


def test_alphanumeric_exact_rates_per_style_are_drawn_to_scale_and_tabled() -> None:
    _, page = read(sample_results())
    chart = "chart-alphanumeric-exact"
    # digits 1/1 and 1/1; nato 1/2 heard, 0/2 read back; grouped 1/1, read-back undecided (no bar);
    # the errored spelled case decides nothing (no bars).
    assert values(page, chart, "transcript_exact") == [("digits", 1.0), ("nato", 0.5), ("grouped", 1.0)]
    assert values(page, chart, "reply_exact") == [("digits", 1.0), ("nato", 0.0)]
    assert_proportional(page, chart)
    assert max(float(bar["height"]) for bar in page.bars[chart]) == pytest.approx(192.0)  # 100% = full plot
    table = page.cells[f"{chart}-table"]
    assert table["nato"] == {"transcript_exact": "50%", "reply_exact": "0%"}
    assert table["grouped"] == {"transcript_exact": "100%", "reply_exact": "\N{EN DASH}"}
    assert table["spelled"] == {"transcript_exact": "\N{EN DASH}", "reply_exact": "\N{EN DASH}"}


def test_alphanumeric_cer_per_case_and_its_case_table() -> None:
    _, page = read(sample_results())
    chart = "chart-alphanumeric-cer"
    assert values(page, chart, "transcript_cer") == [
        ("a-digits-1", 0.0), ("a-nato-1", 0.0), ("a-nato-2", 0.5), ("a-grouped-1", 0.0),
    ]  # fmt: skip
    assert values(page, chart, "reply_cer") == [("a-digits-1", 0.0), ("a-nato-1", 0.1667), ("a-nato-2", 0.25)]
    assert_proportional(page, chart)
    cases = page.cells["table-alphanumeric-cases"]
    assert list(cases) == ["a-digits-1", "a-nato-1", "a-nato-2", "a-grouped-1", "a-spelled-1"]
    nato = cases["a-nato-1"]
    assert (nato["expected"], nato["heard"], nato["read back"]) == (
        "XR-4892", "x ray romeo 4892", "You said: X R 4 8 9 3",
    )  # fmt: skip
    assert (nato["transcript_exact"], nato["reply_exact"]) == ("pass", "fail")
    assert (nato["transcript_cer"], nato["reply_cer"], nato["latency_ms"]) == ("0.000", "0.167", "901.0")
    classes = page.cell_classes["table-alphanumeric-cases"]["a-nato-1"]
    assert (classes["transcript_exact"], classes["reply_exact"]) == ("pass", "fail")
    assert cases["a-grouped-1"]["read back"] == cases["a-grouped-1"]["reply_cer"] == "\N{EN DASH}"
    assert cases["a-spelled-1"]["status"] == "error"


def test_interruption_timings_and_truncation_error_are_bars_per_case() -> None:
    _, page = read(sample_results())
    timing = "chart-interruption-timing"
    assert values(page, timing, "onset_to_speech_started_ms") == [("i-early-1", 180.0), ("i-mid-1", 220.0)]
    assert values(page, timing, "onset_to_silent_ms") == [("i-early-1", 240.0), ("i-mid-1", 310.0)]
    assert_proportional(page, timing)
    assert all(
        float(bar["y"]) + float(bar["height"]) == pytest.approx(PLOT_BOTTOM_Y, abs=0.1)
        for bar in page.bars[timing]
    )
    truncation = "chart-interruption-truncation"
    assert values(page, truncation) == [("i-early-1", 12.0), ("i-mid-1", 55.0)]
    assert_proportional(page, truncation)
    assert page.cells[f"{truncation}-table"]["i-mid-1"] == {"truncation_error_ms": "55.0"}
    assert values(page, "chart-interruption-checks") == [
        ("truncated_at_played", 0.5),
        ("follows_new_intent", 1.0),
    ]
    row = page.cells["table-interruption-cases"]["i-mid-1"]
    assert (row["follows_new_intent"], row["truncated_at_played"], row["onset_to_silent_ms"]) == (
        "pass", "fail", "310.0",
    )  # fmt: skip


def test_latency_bars_carry_p50_and_p95_lines_and_its_components_stack_up_to_voice_to_voice() -> None:
    _, page = read(sample_results())
    chart = "chart-latency-v2v"
    assert values(page, chart) == [("l-1", 600.0), ("l-2", 700.0), ("l-3", 900.0)]  # l-4 heard no reply
    assert_proportional(page, chart)
    scale = float(page.bars[chart][0]["height"]) / 600.0
    marks = page.marks[chart]
    assert len(marks) == 2
    for line, q in zip(marks, (50, 95), strict=True):
        figure = percentile([600.0, 700.0, 900.0], q)
        assert figure is not None
        assert float(line["y1"]) == pytest.approx(PLOT_BOTTOM_Y - scale * figure, abs=0.1)
    summary = page.cells["table-latency-metrics"]["voice_to_voice_ms"]
    assert (summary["n"], summary["p50"], summary["p95"]) == ("3", "700.0", "880.0")

    components = "chart-latency-components"
    assert_proportional(page, components)
    heights: dict[str, float] = {}
    for bar in page.bars[components]:
        heights[bar["data-group"]] = heights.get(bar["data-group"], 0.0) + float(bar["height"])
    for case, total in (("l-1", 600.0), ("l-2", 700.0), ("l-3", 900.0)):
        assert heights[case] == pytest.approx(
            total * float(page.bars[components][0]["height"]) / 520.0, abs=0.3
        )
    assert values(page, components, "rest_ms") == [("l-1", 40.0), ("l-2", 50.0), ("l-3", 150.0)]
    assert values(page, components, "vad_end_ms")[-1] == ("l-4", 500.0)
    assert page.cells["table-latency-cases"]["l-4"]["voice_to_voice_ms"] == "\N{EN DASH}"


def test_instructions_show_a_matrix_of_the_checks_present_and_the_replies() -> None:
    html, page = read(sample_results())
    head = page.heads["table-instructions-cases"]
    assert head[:5] == ["case", "language", "max_words", "refusal", "must_not_include"]
    assert "max_sentences" not in head and "grader" not in head
    rows = page.cells["table-instructions-cases"]
    assert rows["ins-fr-1"]["language"] == "pass" and rows["ins-fr-1"]["refusal"] == "\N{EN DASH}"
    assert rows["ins-refuse-1"]["refusal"] == "fail"
    assert rows["ins-refuse-1"]["reply"] == f"{SCRIPT} Sure, here is the recipe"  # shown, as text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Sure, here is the recipe" in html


def test_tools_show_the_expected_call_beside_the_one_made() -> None:
    _, page = read(sample_results())
    rows = page.cells["table-tools-cases"]
    weather = rows["t-weather-1"]
    assert weather["expected tool"] == "get_weather"
    assert weather["expected arguments"] == '{"city": "Oslo"}'
    assert weather["called"] == 'get_weather({"city": "Oslo"})'
    assert (weather["tool_called"], weather["right_tool"], weather["right_arguments"]) == ("pass",) * 3
    assert rows["t-none-1"]["called"] == "none"
    assert rows["t-none-1"]["right_tool"] == "\N{EN DASH}"
    assert values(page, "chart-tools-checks") == [
        ("tool_called", 1.0),
        ("right_tool", 1.0),
        ("right_arguments", 1.0),
    ]


def test_a_suite_the_report_does_not_know_gets_its_summaries_and_its_cases() -> None:
    _, page = read(sample_results())
    metrics = page.cells["table-pronunciation-metrics"]
    assert metrics["phoneme_error_rate"]["n"] == "1"
    assert metrics["stress_ms"] == {
        "?": "stress_ms", "n": "2", "mean": "40.0", "p50": "40.0", "p95": "49.0", "min": "30.0",
        "max": "50.0",
    }  # fmt: skip
    assert page.cells["table-pronunciation-checks"]["intelligible"]["rate"] == "50%"
    cases = page.cells["table-pronunciation-cases"]
    assert cases["p-1"]["expected"] == "Siobhán" and cases["p-2"]["phoneme_error_rate"] == "\N{EN DASH}"
    assert cases["p-2"]["intelligible"] == "fail"


def test_errors_and_skipped_cases_are_listed_with_their_error() -> None:
    _, page = read(sample_results())
    problems = page.cells["table-problems-cases"]
    assert list(problems) == ["a-spelled-1", "i-late-1"]
    assert problems["a-spelled-1"]["error"] == f"server error event: {SCRIPT} (code server_error)"
    assert (problems["a-spelled-1"]["status"], problems["a-spelled-1"]["attempts"]) == ("error", "3")
    assert problems["i-late-1"]["status"] == "skipped"
    assert problems["i-late-1"]["error"] == "not run: the cost cap of $1.00 would be passed"


def test_every_text_from_the_results_is_escaped_and_nothing_is_fetched() -> None:
    results = sample_results()
    results["deployment"] = f"dep{SCRIPT}"
    results["cases"][0]["case_id"] = f'a"><img src=x onerror=alert(1)>{SCRIPT}'
    results["cases"][0]["style"] = f"digits{SCRIPT}"
    results["cases"][-1]["suite"] = f'<b onmouseover="x">{SCRIPT}'
    results["suites"] = None
    html, page = read(results)
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<b " not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert page.tags <= ALLOWED_TAGS, page.tags - ALLOWED_TAGS
    assert not {name for name in page.attributes if name in ("src", "href") or name.startswith("on")}
    assert "url(" not in lowered and "@import" not in lowered
    assert page.sections[-1] == f'<b onmouseover="x">{SCRIPT}'
    assert f'a"><img src=x onerror=alert(1)>{SCRIPT}' in page.cells["table-alphanumeric-cases"]
    assert all("chart-" in chart and "<" not in chart and '"' not in chart for chart in page.charts)


def test_a_subset_of_suites_and_an_empty_run_still_make_a_page() -> None:
    results = sample_results()
    results["cases"] = [case for case in results["cases"] if case["suite"] == "latency"]
    results["suites"] = ["latency"]
    _, page = read(results)
    assert page.sections == ["latency"]
    assert set(page.charts) == {"chart-latency-v2v", "chart-latency-components"}

    _, empty = read({})
    assert empty.sections == [] and empty.charts == {}
    assert empty.cells["run"]["cases"]["cases"] == "0: 0 ok, 0 errors, 0 skipped"

    broken = {
        "suites": ["latency", 7],
        "cases": ["not a case", {"suite": "latency", "metrics": {"voice_to_voice_ms": "fast"}}],
    }
    _, page = read(broken)
    assert page.sections == ["latency", "7"]
    assert page.bars.get("chart-latency-v2v", []) == []  # a figure that is not a number draws nothing


def test_a_results_file_read_back_from_json_renders_the_same_page(tmp_path: Path) -> None:
    results = sample_results()
    path = write_report(json.loads(json.dumps(results)), tmp_path)
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8") == render_report(copy.deepcopy(results))
