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

_W: Final = 720
_H: Final = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 14, 34


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (an axis end)."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1.0, 2.0, 5.0, 10.0) if step * magnitude >= value)


def _svg(chart_id: str, title: str, desc: str, body: str, height: int = _H) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {_W} {height}" width="{_W}" height="{height}" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _y_axis(top_value: float, fmt: str) -> str:
    plot_h = _H - _TOP - _BOTTOM
    parts = []
    for step in range(5):
        y = _TOP + plot_h - plot_h * step / 4
        text = fmt.format(top_value * step / 4)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>'
        )
    return "".join(parts)


def _x_labels(keys: Sequence[str], slot: float) -> str:
    every = max(1, math.ceil(len(keys) / 12))
    return "".join(
        f'<text class="tick" x="{_LEFT + slot * (i + 0.5):.1f}" y="{_H - _BOTTOM + 16}" '
        f'text-anchor="middle">{escape(key[5:])}</text>'
        for i, key in enumerate(keys)
        if i % every == 0
    )


def _cost_chart(days: Sequence[ReportRow]) -> str:
    plot_h, slot = _H - _TOP - _BOTTOM, (_W - _LEFT - _RIGHT) / max(1, len(days))
    top = _nice_max(float(max((d.cost_usd for d in days), default=Decimal(0))))
    bars = []
    for i, day in enumerate(days):
        base = 0.0
        for series, color in _SERIES:
            value = getattr(day, f"{series}_usd")
            if value <= 0:
                continue
            height = max(1.0, plot_h * float(value) / top)  # a part too small to see still shows
            y = _TOP + plot_h - base - height
            bars.append(
                f'<rect class="bar segment" data-series="{series}" data-day="{day.key}" data-usd="{value}" '
                f'x="{_LEFT + slot * (i + 0.15):.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{height:.1f}" fill="{color}"><title>{day.key} {series} '
                f"{format_figure('x_usd', value)}</title></rect>"
            )
            base += height
    legend = "".join(
        f'<rect x="{_LEFT + 90 * n}" y="2" width="10" height="10" fill="{color}"/>'
        f'<text class="tick" x="{_LEFT + 90 * n + 14}" y="11">{series}</text>'
        for n, (series, color) in enumerate(_SERIES)
    )
    desc = f"Spend per UTC day, {days[0].key} to {days[-1].key}, stacked by audio, text, image and tools."
    body = _y_axis(top, "${:,.2f}" if top >= 1 else "${:,.4f}") + legend + "".join(bars)
    return _svg("chart-cost", "Cost per day by modality", desc, body + _x_labels([d.key for d in days], slot))


def _share_chart(days: Sequence[ReportRow]) -> str:
    plot_h, slot = _H - _TOP - _BOTTOM, (_W - _LEFT - _RIGHT) / max(1, len(days))
    bars = [
        f'<rect class="bar share" data-day="{day.key}" data-share="{day.cache_share}" '
        f'x="{_LEFT + slot * (i + 0.15):.1f}" y="{_TOP + plot_h * (1 - float(day.cache_share)):.1f}" '
        f'width="{slot * 0.7:.1f}" height="{plot_h * float(day.cache_share):.1f}" fill="#59a14f">'
        f"<title>{day.key} {format_figure('cache_share', day.cache_share)}</title></rect>"
        for i, day in enumerate(days)
        if day.cache_share is not None
    ]
    desc = "Share of input tokens served from the prompt cache, per UTC day (days without input: no bar)."
    body = _y_axis(100, "{:.0f}%") + "".join(bars) + _x_labels([d.key for d in days], slot)
    return _svg("chart-cache", "Cache hit share per day", desc, body)


def _latency_bins(latencies_ms: Sequence[float]) -> list[tuple[float, float, int]]:
    """Equal bins of a 1, 2 or 5 x 10^k ms width, about 12 of them: (start, end, count)."""
    low, high = min(latencies_ms), max(latencies_ms)
    width = _nice_max(max(high - low, 1.0) / 12)
    start = math.floor(low / width) * width
    counts = [0] * (int((high - start) // width) + 1)
    for value in latencies_ms:
        counts[int((value - start) // width)] += 1
    return [(start + n * width, start + (n + 1) * width, count) for n, count in enumerate(counts)]


def _latency_chart(report: Report) -> str:
    values = report.latencies_ms
    if not values:
        return _svg("chart-latency", "Voice-to-voice latency", "No latency was measured.", "", height=40)
    bins = _latency_bins(values)
    plot_h, slot = _H - _TOP - _BOTTOM, (_W - _LEFT - _RIGHT) / len(bins)
    top = 4 * math.ceil(max(count for _, _, count in bins) / 4)  # whole responses at every tick
    bars = [
        f'<rect class="bar latency" data-from-ms="{start:g}" data-count="{count}" '
        f'x="{_LEFT + slot * n + 1:.1f}" y="{_TOP + plot_h * (1 - count / top):.1f}" '
        f'width="{slot - 2:.1f}" height="{plot_h * count / top:.1f}" fill="#af7aa1">'
        f"<title>{start:g}{_TO}{end:g} ms: {count}</title></rect>"
        for n, (start, end, count) in enumerate(bins)
        if count
    ]
    span = bins[-1][1] - bins[0][0]
    marks = []
    for name, value in (("p50", report.total.latency_p50_ms), ("p95", report.total.latency_p95_ms)):
        if value is not None:
            x = _LEFT + (_W - _LEFT - _RIGHT) * (value - bins[0][0]) / span
            marks.append(
                f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
                f'<text class="tick" x="{x + 3:.1f}" y="{_TOP + 10}">{name} {value:,.1f}</text>'
            )
    axis = "".join(
        f'<text class="tick" x="{_LEFT + slot * n:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">'
        f"{start:g}</text>"
        for n, (start, _, _) in enumerate(bins)
        if n % max(1, math.ceil(len(bins) / 8)) == 0
    )
    desc = f"How many of {len(values)} responses had each voice-to-voice latency, in ms bins."
    return _svg(
        "chart-latency",
        "Voice-to-voice latency",
        desc,
        _y_axis(top, "{:.0f}") + "".join(bars) + "".join(marks) + axis,
    )


def _users_chart(users: Sequence[ReportRow]) -> str:
    shown = [u for u in users if u.cost_usd > 0][:10]
    height = 24 * max(1, len(shown)) + 12
    top = float(shown[0].cost_usd) if shown else 1.0
    left, width = 180, _W - 180 - 110
    bars = "".join(
        f'<text class="tick" x="{left - 6}" y="{24 * n + 22}" text-anchor="end">{escape(u.key[:26])}</text>'
        f'<rect class="bar user" data-user="{escape(u.key)}" data-usd="{u.cost_usd}" x="{left}" '
        f'y="{24 * n + 8}" width="{width * float(u.cost_usd) / top:.1f}" height="18" fill="#4e79a7">'
        f"<title>{escape(u.key)} {format_figure('x_usd', u.cost_usd)}</title></rect>"
        f'<text class="tick" x="{left + width * float(u.cost_usd) / top + 6:.1f}" y="{24 * n + 22}">'
        f"{format_figure('x_usd', u.cost_usd)}</text>"
        for n, u in enumerate(shown)
    )
    desc = f"The {len(shown)} users who spent the most over the range, by total spend."
    return _svg("chart-users", "Top users by spend", desc, bars, height=height)


# --- page ------------------------------------------------------------------------------------------

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.meta{color:#5a6478;margin:0 0 16px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #dfe3ea;padding:4px 8px;text-align:right;white-space:nowrap}
th[scope=row],thead th:first-child{text-align:left}thead th{background:#f3f5f9;font-weight:600}
tfoot th,tfoot td{font-weight:700;border-top:2px solid #9aa3b5}.wrap{overflow-x:auto}
figure{margin:16px 0 24px}figcaption{font-weight:600;margin-bottom:6px}
.chart .grid{stroke:#e6e9ef}.chart .tick{font-size:11px;fill:#4a5366}
.chart .mark{stroke:#1d2330;stroke-dasharray:4 3}details{margin-top:6px}
caption{text-align:left;font-weight:600;font-size:17px;padding:20px 0 6px}summary{cursor:pointer;color:#35a}
#low-cache :is(td,th){text-align:left}#low-cache td.n{text-align:right}
td.why{text-align:left;white-space:normal;max-width:520px}
"""


def _table(
    table_id: str,
    caption: str,
    key_label: str,
    names: Sequence[str],
    rows: Sequence[ReportRow],
    total: ReportRow | None,
) -> str:
    def cells(row: ReportRow, tag: str = "td") -> str:
        values = figures(row)
        return f'<th scope="row">{escape(row.key)}</th>' + "".join(
            f'<{tag} data-field="{n}">{escape(format_figure(n, values[n]))}</{tag}>' for n in names
        )

    head = f'<th scope="col">{escape(key_label)}</th>' + "".join(
        f'<th scope="col">{escape(label(n))}</th>' for n in names
    )
    body = "".join(f'<tr data-key="{escape(r.key)}">{cells(r)}</tr>' for r in rows)
    foot = f'<tfoot><tr data-key="total">{cells(total)}</tr></tfoot>' if total else ""
    return (
        f'<div class="wrap"><table id="{table_id}"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody>{foot}</table></div>"
    )


def _figure(svg: str, caption: str, table: str) -> str:
    return (
        f"<figure><figcaption>{escape(caption)}</figcaption>{svg}"
        f"<details><summary>Figures as a table</summary>{table}</details></figure>"
    )


def _low_cache(report: Report) -> str:
    if not report.low_cache:
        return "<p>No session's cache share is below 50%.</p>"
    rows = "".join(
        f'<tr data-session="{escape(f.session_id)}"><th scope="row">{escape(f.session_id)}</th>'
        f"<td>{escape(f.user or _NONE)}</td><td>{escape(f.deployment)}</td><td class='n'>{f.responses:,}</td>"
        f"<td class='n'>{f.input_tokens:,}</td>"
        f'<td class="n" data-field="cache_share">{format_figure("cache_share", f.cache_share)}</td>'
        f'<td data-field="reason">{escape(f.reason)}</td><td class="why">{escape(f.explanation)}</td></tr>'
        for f in report.low_cache
    )
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "session",
            "user",
            "deployment",
            "responses",
            "input tokens",
            "cache share",
            "reason",
            "why",
        )
    )
    return (
        f'<div class="wrap"><table id="low-cache"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


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
    latency_rows = "".join(
        f"<tr><th scope='row'>{start:g}{_TO}{end:g}</th><td>{count}</td></tr>"
        for start, end, count in (_latency_bins(report.latencies_ms) if report.latencies_ms else [])
    )
    latency_table = (
        "<table id='table-latency'><thead><tr><th scope='col'>ms</th><th scope='col'>responses</th></tr>"
        f"</thead><tbody>{latency_rows}</tbody></table>"
    )
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
{_figure(_cost_chart(days), "Cost per day, stacked by modality", day_table)}
{_figure(_share_chart(days), "Cache hit share per day", day_table)}
{_figure(_latency_chart(report), "Voice-to-voice latency distribution", latency_table)}
{_figure(_users_chart(report.users), "Top users by spend", user_table)}
<h2>Sessions with a low cache share</h2>
{_low_cache(report)}
</main></body></html>
"""
