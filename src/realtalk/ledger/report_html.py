"""A report's figures as text, and the report as one self-contained HTML page.

``figures(row)`` names every figure of a ``ReportRow`` with its exact value (what ``--csv`` and
``--json`` write); ``format_figure`` is how the terminal table and the page show one (money to
4 decimals, half to even). Both outputs take their figures from here, so they cannot disagree.

``render_html(report)`` is a single file: inline CSS and SVG charts drawn here (cost per day stacked
by modality, cache share per day, the voice-to-voice latency distribution, top users by spend); no
script, nothing fetched. Each chart has a title and a description for screen readers and its
figures in a table beside it. Every text from the ledger (user names, deployments) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from html import escape
from typing import Final

from realtalk.html_charts import (
    BOTTOM,
    CSS,
    HEIGHT,
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
    text,
    x_labels,
    y_axis,
)  # fmt: skip
from realtalk.ledger.report import Report, ReportRow

__all__ = ["FIGURES", "SPEND_FIGURES", "TOKEN_FIGURES", "figures", "format_figure", "label", "render_html"]

Figure = int | Decimal | float | None

# The terminal table and the page show these two sets; CSV and JSON carry all of FIGURES.
SPEND_FIGURES: Final = (
    "sessions", "responses", "audio_in_min", "audio_out_min", "text_usd", "audio_usd", "image_usd",
    "tools_usd", "total_usd", "cache_share", "cache_saved_usd", "unheard_audio_usd", "latency_p50_ms",
    "latency_p95_ms", "what_if_mini_usd",
)  # fmt: skip
TOKEN_FIGURES: Final = (
    "text_in_tokens", "text_cached_tokens", "audio_in_tokens", "audio_cached_tokens", "image_in_tokens",
    "image_cached_tokens", "text_out_tokens", "audio_out_tokens", "cancelled_responses", "audio_unheard_min",
)  # fmt: skip
_BREAKDOWN: Final = (
    "text_in_usd", "text_cached_usd", "text_out_usd", "audio_in_usd", "audio_cached_usd", "audio_out_usd",
    "image_in_usd", "image_cached_usd",
)  # fmt: skip
FIGURES: Final = (*SPEND_FIGURES, *TOKEN_FIGURES, *_BREAKDOWN)
_LABELS: Final = {
    "audio_in_min": "audio in min (billed)",
    "audio_out_min": "audio out min",
    "audio_unheard_min": "audio unheard min",
    "total_usd": "total $",
    "cache_share": "cache share",
    "cache_saved_usd": "saved by cache $",
    "unheard_audio_usd": "unheard audio $",
    "latency_p50_ms": "latency p50 ms",
    "latency_p95_ms": "latency p95 ms",
    "what_if_mini_usd": "on gpt-realtime-mini $",
    "cancelled_responses": "cancelled",
}
_NONE: Final = "\N{EN DASH}"  # a figure that does not exist (no latency measured, no input)
_TO: Final = "\N{EN DASH}"  # a range, 500-600 ms
# Stacked bars, bottom up: the modalities of a day's spend.
_SERIES: Final = (("audio", "#4e79a7"), ("text", "#f28e2b"), ("image", "#76b7b2"), ("tools", "#e15759"))


def label(name: str) -> str:
    """A figure's column header (``text_in_tokens`` → ``text in tokens``, ``audio_usd`` → ``audio $``)."""
    return _LABELS.get(name) or name.replace("_usd", " $").replace("_", " ")


def figures(row: ReportRow) -> dict[str, Figure]:
    """Every figure of ``row`` by name (``FIGURES``), exact: money as ``Decimal``, counts as ``int``."""
    usage, cost = row.usage, row.cost
    values: dict[str, Figure] = {
        "sessions": row.sessions,
        "responses": row.responses,
        "audio_in_min": row.audio_in_min,
        "audio_out_min": row.audio_out_min,
        "text_usd": row.text_usd,
        "audio_usd": row.audio_usd,
        "image_usd": row.image_usd,
        "tools_usd": row.tools_usd,
        "total_usd": row.cost_usd,
        "cache_share": row.cache_share,
        "cache_saved_usd": row.cache_saved_usd,
        "unheard_audio_usd": row.unheard_audio_usd,
        "latency_p50_ms": row.latency_p50_ms,
        "latency_p95_ms": row.latency_p95_ms,
        "what_if_mini_usd": row.what_if_mini_usd,
        "text_in_tokens": usage.text_in,
        "text_cached_tokens": usage.cached_text_in,
        "audio_in_tokens": usage.audio_in,
        "audio_cached_tokens": usage.cached_audio_in,
        "image_in_tokens": usage.image_in,
        "image_cached_tokens": usage.cached_image_in,
        "text_out_tokens": usage.text_out,
        "audio_out_tokens": usage.audio_out,
        "cancelled_responses": row.cancelled_responses,
        "audio_unheard_min": row.audio_unheard_min,
    }
    values.update((name, getattr(cost, name)) for name in _BREAKDOWN)
    return values


def format_figure(name: str, value: Figure) -> str:
    """How the terminal and the page show a figure: ``$1,234.5678``, ``62.50%``, ``812.3``, ``1,024``."""
    if value is None:
        return _NONE
    if name.endswith("_usd"):
        return f"${value:,.4f}"
    if name == "cache_share":
        return f"{Decimal(value) * 100:.2f}%"
    if name.endswith("_ms"):
        return f"{value:,.1f}"
    if name.endswith("_min"):
        return f"{value:,.2f}"
    return f"{value:,}"


# --- charts ----------------------------------------------------------------------------------------


def _cost_chart(days: Sequence[ReportRow]) -> str:
    plot_h, slot = plot_height(), (WIDTH - LEFT - RIGHT) / max(1, len(days))
    top = nice_max(float(max((d.cost_usd for d in days), default=Decimal(0))))
    bars = []
    for i, day in enumerate(days):
        base = 0.0
        for series, color in _SERIES:
            value = getattr(day, f"{series}_usd")
            if value <= 0:
                continue
            height = max(1.0, plot_h * float(value) / top)  # a part too small to see still shows
            tip = f"{day.key} {series} {format_figure('x_usd', value)}"
            bars.append(
                bar(
                    "segment", LEFT + slot * (i + 0.15), TOP + plot_h - base - height, slot * 0.7, height,
                    color, tip, {"series": series, "day": day.key, "usd": value},
                )
            )  # fmt: skip
            base += height
    desc = f"Spend per UTC day, {days[0].key} to {days[-1].key}, stacked by audio, text, image and tools."
    body = y_axis(top, "${:,.2f}" if top >= 1 else "${:,.4f}") + legend(_SERIES) + "".join(bars)
    return svg("chart-cost", "Cost per day by modality", desc, body + x_labels(_day_labels(days), slot))


def _day_labels(days: Sequence[ReportRow]) -> list[str]:
    return [day.key[5:] for day in days]  # 2026-05-18 -> 05-18


def _share_chart(days: Sequence[ReportRow]) -> str:
    plot_h, slot = plot_height(), (WIDTH - LEFT - RIGHT) / max(1, len(days))
    bars = [
        bar(
            "share",
            LEFT + slot * (i + 0.15),
            TOP + plot_h * (1 - float(day.cache_share)),
            slot * 0.7,
            plot_h * float(day.cache_share),
            "#59a14f",
            f"{day.key} {format_figure('cache_share', day.cache_share)}",
            {"day": day.key, "share": day.cache_share},
        )
        for i, day in enumerate(days)
        if day.cache_share is not None
    ]
    desc = "Share of input tokens served from the prompt cache, per UTC day (days without input: no bar)."
    body = y_axis(100, "{:.0f}%") + "".join(bars) + x_labels(_day_labels(days), slot)
    return svg("chart-cache", "Cache hit share per day", desc, body)


def _latency_bins(latencies_ms: Sequence[float]) -> list[tuple[float, float, int]]:
    """Equal bins of a 1, 2 or 5 x 10^k ms width, about 12 of them: (start, end, count)."""
    low, high = min(latencies_ms), max(latencies_ms)
    width = nice_max(max(high - low, 1.0) / 12)
    start = math.floor(low / width) * width
    counts = [0] * (int((high - start) // width) + 1)
    for value in latencies_ms:
        counts[int((value - start) // width)] += 1
    return [(start + n * width, start + (n + 1) * width, count) for n, count in enumerate(counts)]


def _latency_chart(report: Report) -> str:
    values = report.latencies_ms
    if not values:
        return svg("chart-latency", "Voice-to-voice latency", "No latency was measured.", "", height=40)
    bins = _latency_bins(values)
    plot_h, slot = plot_height(), (WIDTH - LEFT - RIGHT) / len(bins)
    top = 4 * math.ceil(max(count for _, _, count in bins) / 4)  # whole responses at every tick
    bars = [
        bar(
            "latency",
            LEFT + slot * n + 1,
            TOP + plot_h * (1 - count / top),
            slot - 2,
            plot_h * count / top,
            "#af7aa1",
            f"{start:g}{_TO}{end:g} ms: {count}",
            {"from-ms": f"{start:g}", "count": count},
        )
        for n, (start, end, count) in enumerate(bins)
        if count
    ]
    span = bins[-1][1] - bins[0][0]
    marks = []
    for name, value in (("p50", report.total.latency_p50_ms), ("p95", report.total.latency_p95_ms)):
        if value is not None:
            x = LEFT + (WIDTH - LEFT - RIGHT) * (value - bins[0][0]) / span
            marks.append(mark(x, TOP, x, TOP + plot_h, f"{name} {value:,.1f}", x + 3, TOP + 10))
    axis = "".join(
        text(round(LEFT + slot * n, 1), HEIGHT - BOTTOM + 16, f"{start:g}", "middle")
        for n, (start, _, _) in enumerate(bins)
        if n % max(1, math.ceil(len(bins) / 8)) == 0
    )
    desc = f"How many of {len(values)} responses had each voice-to-voice latency, in ms bins."
    return svg(
        "chart-latency",
        "Voice-to-voice latency",
        desc,
        y_axis(top, "{:.0f}") + "".join(bars) + "".join(marks) + axis,
    )


def _users_chart(users: Sequence[ReportRow]) -> str:
    shown = [u for u in users if u.cost_usd > 0][:10]
    height = 24 * max(1, len(shown)) + 12
    top = float(shown[0].cost_usd) if shown else 1.0
    left, width = 180, WIDTH - 180 - 110
    parts = []
    for n, user in enumerate(shown):
        length, spend = width * float(user.cost_usd) / top, format_figure("x_usd", user.cost_usd)
        parts += [
            text(left - 6, 24 * n + 22, user.key[:26], "end"),
            bar("user", left, 24 * n + 8, length, 18, "#4e79a7", f"{user.key} {spend}",
                {"user": user.key, "usd": user.cost_usd}),
            text(round(left + length + 6, 1), 24 * n + 22, spend),
        ]  # fmt: skip
    desc = f"The {len(shown)} users who spent the most over the range, by total spend."
    return svg("chart-users", "Top users by spend", desc, "".join(parts), height=height)


# --- page ------------------------------------------------------------------------------------------

_CSS: Final = (
    CSS
    + """#low-cache :is(td,th){text-align:left}#low-cache td.n{text-align:right}
td.why{text-align:left;white-space:normal;max-width:520px}
"""
)


def _table(
    table_id: str,
    caption: str,
    key_label: str,
    names: Sequence[str],
    rows: Sequence[ReportRow],
    total: ReportRow | None,
) -> str:
    def row(report_row: ReportRow) -> Row:
        values = figures(report_row)
        cells = [Cell(format_figure(n, values[n]), field=n) for n in names]
        return Row(report_row.key, cells, {"data-key": "total" if report_row is total else report_row.key})

    head = [key_label, *(label(n) for n in names)]
    foot = row(total) if total else None
    return table(table_id, head, [row(r) for r in rows], caption=caption, foot=foot)


def _low_cache(report: Report) -> str:
    if not report.low_cache:
        return "<p>No session's cache share is below 50%.</p>"
    rows = [
        Row(
            f.session_id,
            [
                f.user or _NONE,
                f.deployment,
                Cell(f"{f.responses:,}", css="n"),
                Cell(f"{f.input_tokens:,}", css="n"),
                Cell(format_figure("cache_share", f.cache_share), field="cache_share", css="n"),
                Cell(f.reason, field="reason"),
                Cell(f.explanation, css="why"),
            ],
            {"data-session": f.session_id},
        )
        for f in report.low_cache
    ]
    head = ("session", "user", "deployment", "responses", "input tokens", "cache share", "reason", "why")
    return table("low-cache", head, rows)


def render_html(report: Report) -> str:
    """The report as one HTML document (UTF-8 text): tables, charts and their figures, no script."""
    group = report.group_by.value
    span = f"{report.since.isoformat()} to {report.until.isoformat()} (UTC)"
    days, users = report.days, report.users[:10]
    day_table = _table(
        "table-days",
        "Cost and cache share per day",
        "day",
        ("text_usd", "audio_usd", "image_usd", "tools_usd", "total_usd", "cache_share"),
        days,
        None,
    )
    user_table = _table("table-users", "Top users by spend", "user", ("sessions", "total_usd"), users, None)
    bins = _latency_bins(report.latencies_ms) if report.latencies_ms else []
    latency_rows = [Row(f"{start:g}{_TO}{end:g}", [str(count)], {}) for start, end, count in bins]
    latency_table = table("table-latency", ("ms", "responses"), latency_rows, wrap=False)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>realtalk usage report, {escape(span)}</title><style>{_CSS}</style></head>
<body><main>
<h1>realtalk usage report</h1>
<p class="meta">{escape(span)}, by {escape(group)}. Money in USD at the ledger's exact figures,
shown to 4 decimals; “on gpt-realtime-mini” prices the same tokens on {escape(report.what_if_model)}
(tools not included).</p>
{_table("spend", f"Spend by {group}", group, SPEND_FIGURES, report.rows, report.total)}
{_table("tokens", f"Tokens by {group}", group, TOKEN_FIGURES, report.rows, report.total)}
<h2>Charts</h2>
{figure(_cost_chart(days), "Cost per day, stacked by modality", day_table)}
{figure(_share_chart(days), "Cache hit share per day", day_table)}
{figure(_latency_chart(report), "Voice-to-voice latency distribution", latency_table)}
{figure(_users_chart(report.users), "Top users by spend", user_table)}
<h2>Sessions with a low cache share</h2>
{_low_cache(report)}
</main></body></html>
"""
