"""The pieces of realtalk's self-contained HTML pages: inline SVG charts and tables, drawn as text.

``realtalk report --html`` (``ledger/report_html.py``) and ``realtalk eval``'s report.html
(``eval/report.py``) compose their charts from these, so the two pages look alike and neither
carries a copy of the other's drawing code. A chart is ``svg(...)`` around a body of ``y_axis``,
``x_labels``, ``bar`` and ``mark`` pieces, all in one coordinate system: a ``WIDTH`` x ``HEIGHT``
view box whose plot area is inset by ``LEFT``, ``RIGHT``, ``TOP`` and ``BOTTOM``. ``figure`` puts a
chart over its figures as a table, for screen readers and for anyone who wants the numbers.

Leaf utility: it imports nothing from realtalk. Every text given to it is escaped here, except the
markup a ``Cell`` explicitly carries (``html=True``) and the SVG body handed to ``svg``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Final

__all__ = [
    "BOTTOM",
    "CSS",
    "HEIGHT",
    "LEFT",
    "RIGHT",
    "TOP",
    "WIDTH",
    "Cell",
    "Row",
    "bar",
    "figure",
    "legend",
    "mark",
    "nice_max",
    "plot_height",
    "svg",
    "table",
    "text",
    "x_labels",
    "y_axis",
]

WIDTH: Final = 720
HEIGHT: Final = 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 34

# The base style of every page; a page appends rules of its own.
CSS: Final = """
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
"""


def plot_height(height: int = HEIGHT) -> int:
    """The height of the plot area of a chart ``height`` high (what a value of the axis top spans)."""
    return height - TOP - BOTTOM


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above ``value`` (an axis end); 1 for nothing to show."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1.0, 2.0, 5.0, 10.0) if step * magnitude >= value)


def svg(chart_id: str, title: str, desc: str, body: str, height: int = HEIGHT) -> str:
    """A chart: an ``img`` for screen readers, named by its ``title`` and described by ``desc``.

    ``body`` is SVG markup, made of this module's pieces (its texts already escaped)."""
    return (
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def text(x: float, y: float, content: str, anchor: str | None = None) -> str:
    """A small label at (x, y); ``anchor`` is SVG's text-anchor (``end``, ``middle``)."""
    where = f' text-anchor="{anchor}"' if anchor else ""
    return f'<text class="tick" x="{x:g}" y="{y:g}"{where}>{escape(content)}</text>'


def y_axis(top_value: float, fmt: str, height: int = HEIGHT) -> str:
    """Five grid lines from 0 to ``top_value``, each labelled with ``fmt.format(value)``."""
    plot_h = plot_height(height)
    parts = []
    for step in range(5):
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            + text(LEFT - 6, round(y + 4, 1), fmt.format(top_value * step / 4), "end")
        )
    return "".join(parts)


def x_labels(labels: Sequence[str], slot: float, height: int = HEIGHT, most: int = 12) -> str:
    """Labels under slots ``slot`` wide, centred; at most about ``most`` of them (every n-th)."""
    every = max(1, math.ceil(len(labels) / most))
    return "".join(
        text(round(LEFT + slot * (i + 0.5), 1), height - BOTTOM + 16, label, "middle")
        for i, label in enumerate(labels)
        if i % every == 0
    )


def bar(
    classes: str,
    x: float,
    y: float,
    width: float,
    height: float,
    fill: str,
    tip: str,
    data: Mapping[str, object] | None = None,
) -> str:
    """A bar: ``rect.bar`` with ``data-*`` attributes (the exact figure, for tests and tools) and a
    tooltip ``tip``."""
    attributes = "".join(f' data-{name}="{escape(str(value))}"' for name, value in (data or {}).items())
    return (
        f'<rect class="bar {escape(classes)}"{attributes} x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
        f'height="{height:.1f}" fill="{fill}"><title>{escape(tip)}</title></rect>'
    )


def mark(x1: float, y1: float, x2: float, y2: float, label: str, label_x: float, label_y: float) -> str:
    """A dashed reference line (a p50, a p95) and its label."""
    return f'<line class="mark" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>' + text(
        round(label_x, 1), round(label_y, 1), label
    )


def legend(series: Sequence[tuple[str, str]], spacing: int = 90) -> str:
    """A row of colour swatches with their names, above the plot: ``(name, colour)`` each."""
    return "".join(
        f'<rect x="{LEFT + spacing * n}" y="2" width="10" height="10" fill="{colour}"/>'
        + text(LEFT + spacing * n + 14, 11, name)
        for n, (name, colour) in enumerate(series)
    )


@dataclass(frozen=True)
class Cell:
    """A table cell: its text (escaped) or, with ``html=True``, markup the caller escaped."""

    text: str
    field: str = ""  # data-field: what the figure is, for tests and tools that read the page
    css: str = ""  # class
    html: bool = False


@dataclass(frozen=True)
class Row:
    """A table row: its key (a row header) and its cells; ``attrs`` go on the ``tr`` (default:
    ``data-key`` = the key)."""

    key: str
    cells: Sequence[Cell | str]
    attrs: Mapping[str, str] = field(default_factory=dict)


def _row(row: Row) -> str:
    attrs = row.attrs or {"data-key": row.key}
    opening = "".join(f' {name}="{escape(value)}"' for name, value in attrs.items())
    cells = []
    for cell in row.cells:
        cell = cell if isinstance(cell, Cell) else Cell(cell)
        attributes = (f' data-field="{escape(cell.field)}"' if cell.field else "") + (
            f' class="{escape(cell.css)}"' if cell.css else ""
        )
        cells.append(f"<td{attributes}>{cell.text if cell.html else escape(cell.text)}</td>")
    return f'<tr{opening}><th scope="row">{escape(row.key)}</th>{"".join(cells)}</tr>'


def table(
    table_id: str,
    head: Sequence[str],
    rows: Sequence[Row],
    *,
    caption: str | None = None,
    foot: Row | None = None,
    wrap: bool = True,
) -> str:
    """A table with column headers ``head`` (the first one over the row keys), its rows and an
    optional footer row (a total); inside a horizontally scrolling ``div`` unless ``wrap`` is false."""
    header = "".join(f'<th scope="col">{escape(name)}</th>' for name in head)
    html = (
        f'<table id="{escape(table_id)}">'
        + (f"<caption>{escape(caption)}</caption>" if caption is not None else "")
        + f"<thead><tr>{header}</tr></thead><tbody>{''.join(_row(r) for r in rows)}</tbody>"
        + (f"<tfoot>{_row(foot)}</tfoot>" if foot is not None else "")
        + "</table>"
    )
    return f'<div class="wrap">{html}</div>' if wrap else html


def figure(chart: str, caption: str, figures_table: str) -> str:
    """A chart under its caption, with its figures as a table in a ``details`` below it."""
    return (
        f"<figure><figcaption>{escape(caption)}</figcaption>{chart}"
        f"<details><summary>Figures as a table</summary>{figures_table}</details></figure>"
    )
