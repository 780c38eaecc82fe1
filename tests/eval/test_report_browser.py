"""``realtalk eval``'s report.html in Debian's Chromium (Playwright): it renders offline, every chart
is laid out with the bars the results call for, and a full-page screenshot is not blank.

Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``), launched the way
``tests/ledger/test_report_html_browser.py`` launches it (its flags, its pixel count): through
``executable_path``, never ``playwright install``. Skipped locally without it, a failure under CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from realtalk.eval.report import write_report

from ..ledger.test_report_html_browser import assert_chart_laid_out, offline_page, screenshot_pixels
from .test_report import sample_results

pytestmark = [pytest.mark.system_package("chromium"), pytest.mark.slow]

# What sample_results() holds: for each chart, its bars (a figure that could not be measured or a
# check that could not be decided has none).
BARS = {
    "chart-alphanumeric-exact": 5,  # digits 2, nato 2, grouped 1 (read-back undecided), spelled 0 (error)
    "chart-alphanumeric-cer": 7,  # 4 transcripts, 3 read-backs
    "chart-interruption-timing": 4,  # 2 cases x 2 (the skipped one has none)
    "chart-interruption-truncation": 2,
    "chart-interruption-checks": 2,
    "chart-latency-v2v": 3,  # l-4 had no reply
    "chart-latency-components": 10,  # 3 cases x 3 segments, l-4's VAD end alone
    "chart-instructions-checks": 4,
    "chart-tools-checks": 3,
    "chart-pronunciation-checks": 1,
}


async def test_the_eval_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    page_file = write_report(sample_results(), tmp_path)

    async with offline_page(page_file) as page:
        assert await page.locator("script").count() == 0  # the reply's <script> came out as text
        charts = [await svg.get_attribute("id") for svg in await page.query_selector_all("svg.chart")]
        assert sorted(c or "" for c in charts) == sorted(BARS)
        for chart, count in BARS.items():
            await assert_chart_laid_out(page, chart)
            bars = await page.query_selector_all(f"#{chart} rect.bar")
            assert len(bars) == count, chart
            sizes = [await bar.bounding_box() for bar in bars]
            values = [float(await bar.get_attribute("data-value") or "nan") for bar in bars]
            # Laid out: every bar with a figure above 0 is drawn with a width and a height.
            assert all(
                size is not None and size["width"] > 0 and (size["height"] > 0 or value == 0)
                for size, value in zip(sizes, values, strict=True)
            ), (chart, sizes, values)

        # The tallest voice-to-voice bar is the slowest case, as drawn on the screen.
        v2v = [
            await bar.bounding_box() for bar in await page.query_selector_all("#chart-latency-v2v rect.bar")
        ]
        heights = [box["height"] for box in v2v if box is not None]
        assert heights == sorted(heights) and heights[0] < heights[-1]  # 600, 700, 900 ms
        assert await page.locator("#chart-latency-v2v line.mark").count() == 2  # p50, p95

        pixels = await screenshot_pixels(page)

    assert pixels["width"] == 1280 and pixels["height"] > 900  # the whole page, taller than the window
    assert pixels["colours"] > 20 and pixels["inked"] > 0.03, pixels  # text, tables and coloured bars
