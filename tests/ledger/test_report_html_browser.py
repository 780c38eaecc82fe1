"""``realtalk report --html``'s page in Debian's Chromium (Playwright): it renders offline, its
charts are drawn with the bars the scripted ledger calls for, and a screenshot is not blank.

Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``), launched as
``tests/gateway/test_browser.py`` does: through ``executable_path``, never ``playwright install``.
Skipped locally without it, a failure under CI.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from realtalk.ledger import Ledger
from realtalk.ledger.report import GroupBy, load_report
from realtalk.ledger.report_html import render_html

from .test_report import SINCE, UNTIL, fill

pytestmark = [pytest.mark.system_package("chromium"), pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# Headless and offline: nothing fetched in the background (QUIC, component updates, sync).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# What the script spends per UTC day, by modality (tests/ledger/test_report.py): one stacked segment each.
SEGMENTS = {
    "2026-05-18": {"audio", "text", "tools"},  # alice; her delegated question
    "2026-05-19": {"audio", "text", "image"},  # bob; carol's image
    "2026-05-20": {"audio", "text"},  # night
}

# Draws the screenshot on a canvas: how many distinct colours, and the share of pixels not white.
PIXELS_JS = """async (png) => {
  const image = new Image();
  image.src = "data:image/png;base64," + png;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const colours = new Set();
  let inked = 0;
  for (let i = 0; i < data.length; i += 4) {
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (data[i] < 240 || data[i + 1] < 240 || data[i + 2] < 240) inked += 1;
  }
  return {colours: colours.size, inked: inked / (data.length / 4), width: image.width, height: image.height};
}"""


def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install chromium")
    return CHROMIUM


async def rect_sizes(page: Any, selector: str) -> list[tuple[str | None, float, float]]:
    """``(data attribute, width, height)`` of each element ``selector`` finds, as laid out."""
    return [
        (await r.get_attribute("data-day") or await r.get_attribute("data-user"), box["width"], box["height"])
        for r in await page.query_selector_all(selector)
        if (box := await r.bounding_box()) is not None
    ]


@contextlib.asynccontextmanager
async def offline_page(page_file: Path) -> AsyncIterator[Any]:
    """``page_file`` open in Chromium, 1280 px wide; checked to have fetched nothing but itself and
    to have raised no script error."""
    executable = chromium_path()
    async_api = pytest.importorskip(
        "playwright.async_api", reason="needs the dev extra: pip install playwright"
    )
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), args=list(CHROMIUM_FLAGS), headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(page_file.as_uri())
            assert requests == [page_file.as_uri()]  # self-contained: nothing else fetched
            assert errors == []
            yield page
        finally:
            await browser.close()


async def assert_chart_laid_out(page: Any, chart: str) -> None:
    """The chart's SVG has a size, is an image with a title, and has its figures in a table."""
    svg = await page.query_selector(f"svg#{chart}")
    assert svg is not None, chart
    box = await svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100, (chart, box)
    assert await svg.get_attribute("role") == "img"
    assert await page.text_content(f"#{chart}-title"), chart
    assert await page.locator(f"figure:has(svg#{chart}) details table").count() == 1


async def screenshot_pixels(page: Any) -> dict[str, Any]:
    """A full-page screenshot's colours, inked share and size, counted in the page (``PIXELS_JS``)."""
    png = await page.screenshot(full_page=True)
    pixels: dict[str, Any] = await page.evaluate(PIXELS_JS, base64.b64encode(png).decode())
    return pixels


async def test_the_html_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    chromium_path()
    async with await Ledger.open(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}") as ledger:
        await fill(ledger)
        report = await load_report(ledger.engine, group_by=GroupBy.USER, since=SINCE, until=UNTIL)
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(report), encoding="utf-8")

    async with offline_page(page_file) as page:
        for chart in ("chart-cost", "chart-cache", "chart-latency", "chart-users"):
            await assert_chart_laid_out(page, chart)

        segments = await page.query_selector_all("#chart-cost rect.segment")
        found: dict[str, set[str]] = {}
        for segment in segments:
            day, series = (
                await segment.get_attribute("data-day"),
                await segment.get_attribute("data-series"),
            )
            assert day is not None and series is not None
            found.setdefault(day, set()).add(series)
        assert found == SEGMENTS
        assert all(w > 0 and h > 0 for _, w, h in await rect_sizes(page, "#chart-cost rect.segment"))

        shares = await rect_sizes(page, "#chart-cache rect.share")
        assert [day for day, _, _ in shares] == ["2026-05-18", "2026-05-19", "2026-05-20"]
        heights = [h for _, _, h in shares]
        assert heights[0] > heights[1] > heights[2] == 0  # 59%, 48%, nothing cached

        bins = await page.query_selector_all("#chart-latency rect.latency")
        counts = [int(await r.get_attribute("data-count") or 0) for r in bins]
        assert sum(counts) == 6 and all(counts)  # six responses with a measured latency
        assert await page.locator("#chart-latency line.mark").count() == 2  # p50, p95

        users = await rect_sizes(page, "#chart-users rect.user")
        assert [user for user, _, _ in users] == ["alice", "(no user)", "bob", "carol"]
        widths = [w for _, w, _ in users]
        assert widths == sorted(widths, reverse=True) and widths[-1] > 0

        pixels = await screenshot_pixels(page)

    assert pixels["width"] == 1280 and pixels["height"] > 900  # the whole page, taller than the window
    assert pixels["colours"] > 20 and pixels["inked"] > 0.03, pixels  # text, tables and coloured bars
