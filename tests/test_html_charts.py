"""``realtalk.html_charts``, the SVG and table pieces of the ledger's and eval's HTML reports: axis
ends, escaping of every text given, and the shapes the reports' tests read back."""

from __future__ import annotations

import re

import pytest

from realtalk.html_charts import (
    BOTTOM,
    HEIGHT,
    TOP,
    Cell,
    Row,
    bar,
    figure,
    legend,
    nice_max,
    plot_height,
    svg,
    table,
    x_labels,
    y_axis,
)

EVIL = "<script>alert('x')</script>"


@pytest.mark.parametrize(
    ("value", "end"),
    [
        (0, 1.0),
        (-3, 1.0),
        (0.7, 1.0),
        (1, 1.0),
        (1.01, 2.0),
        (3, 5.0),
        (7.5, 10.0),
        (0.013, 0.02),
        (880, 1000.0),
    ],
)
def test_an_axis_ends_at_the_next_1_2_or_5_times_a_power_of_ten(value: float, end: float) -> None:
    assert nice_max(value) == pytest.approx(end)


def test_a_chart_is_an_image_named_and_described_with_its_texts_escaped() -> None:
    chart = svg("chart-x", f"title {EVIL}", f"desc {EVIL}", "<g/>", height=120)
    assert chart.startswith('<svg id="chart-x" class="chart" viewBox="0 0 720 120"')
    assert 'role="img" aria-labelledby="chart-x-title chart-x-desc"' in chart
    assert "<script" not in chart and "title &lt;script&gt;" in chart and "desc &lt;script&gt;" in chart
    assert chart.endswith("<g/></svg>")


def test_a_bar_carries_its_figure_and_escapes_its_tooltip_and_data() -> None:
    drawn = bar("value", 10, 20.04, 5.55, 100.0, "#123456", f"tip {EVIL}", {"group": EVIL, "value": 1.5})
    assert "<script" not in drawn
    assert 'data-group="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"' in drawn
    assert 'data-value="1.5" x="10.0" y="20.0" width="5.5" height="100.0" fill="#123456"' in drawn
    assert drawn.startswith('<rect class="bar value"')


def test_the_y_axis_has_five_labelled_grid_lines_from_the_bottom_of_the_plot_to_its_top() -> None:
    axis = y_axis(200, "{:.0f} ms")
    ys = [float(y) for y in re.findall(r'<line class="grid"[^>]* y1="([\d.]+)"', axis)]
    assert ys == [TOP + plot_height(), *(TOP + plot_height() * (1 - k / 4) for k in (1, 2, 3)), TOP]
    assert re.findall(r">(\d+ ms)<", axis) == ["0 ms", "50 ms", "100 ms", "150 ms", "200 ms"]
    assert HEIGHT - BOTTOM == TOP + plot_height()


def test_x_labels_thin_out_past_the_most_shown_and_are_escaped() -> None:
    labels = x_labels([f"{EVIL}{n}" for n in range(30)], 20.0, most=10)
    assert labels.count("<text") == 10 and "<script" not in labels
    assert legend([("a<b", "#000")]).count("a&lt;b") == 1


def test_a_table_escapes_its_cells_unless_a_cell_says_it_is_markup() -> None:
    rows = [Row(EVIL, [EVIL, Cell("<b>ok</b>", field="f", css="c", html=True)], {"data-x": EVIL})]
    html = table("t", ["key", EVIL], rows, caption=EVIL, foot=Row("total", ["1", "2"]))
    assert html.count("<script") == 0
    assert '<td data-field="f" class="c"><b>ok</b></td>' in html
    assert '<tfoot><tr data-key="total"><th scope="row">total</th><td>1</td><td>2</td></tr></tfoot>' in html
    assert html.startswith('<div class="wrap"><table id="t"><caption>&lt;script&gt;')
    assert table("t", ["k"], [], wrap=False).startswith('<table id="t"><thead>')


def test_a_figure_puts_the_chart_over_its_figures_table() -> None:
    html = figure("<svg/>", EVIL, "<table/>")
    assert html == (
        "<figure><figcaption>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</figcaption><svg/>"
        "<details><summary>Figures as a table</summary><table/></details></figure>"
    )
