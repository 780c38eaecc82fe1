"""The browser voice UI, end to end, in Debian's stock Firefox ESR driven over WebDriver BiDi.

The same stack as the Chromium tests (``test_browser.py``): ``realtalk serve``'s app in-process on
port 0, talking to an emulator on 127.0.0.1, and the real page. What differs is the browser and
how it is driven (``tests/gateway/firefox/``):

* Firefox headless with a temporary profile, driven by a small WebDriver BiDi client (Playwright's
  Firefox is a patched build that cannot be downloaded here); nothing may leave 127.0.0.1 (a
  sentinel proxy fails the test if anything tries);
* the microphone: Firefox's fake device plays a tone, not a file, so a preload script replaces
  ``getUserMedia`` for the page with a stream that plays a speech fixture
  (``firefox/fake_microphone.js``) and records the constraints the page asked for. Everything
  downstream is the page's own: its AudioContext at Firefox's rate, its capture worklet
  resampling to 24 kHz, its WebSocket, its playback worklet counting played samples (checked
  against the audio received, and against the clock: the count grows in real time);
* no sound card: Firefox's AudioContext does not start without an output device, so the profile
  selects Firefox's built-in mock audio backend (``media.cubeb.force_mock_context``), whose
  thread pulls the graph in real-time blocks (see ``firefox/bidi.py``).

They need ``/usr/bin/firefox-esr`` (``apt-get install firefox-esr``): skipped locally without it,
a failure under CI.
"""

from __future__ import annotations

import base64
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from realtalk.audio.pcm import read_wav, silence
from realtalk.emulator import Engines, load_engines, parse_scenario

from .firefox.bidi import FIREFOX, Page, firefox_page
from .test_browser import (
    FIXTURES,
    HOOKS_JS,
    LONG_REPLY,
    PHRASES,
    RECORD_SENT_EVENTS,
    REPLY,
    TRANSCRIPT_JS,
    UiStack,
    assert_nothing_was_interrupted,
    assert_the_spoken_turn,
    ui_stack,
)

pytestmark = [pytest.mark.system_package("firefox-esr"), pytest.mark.slow]

FAKE_MICROPHONE_JS = Path(__file__).parent / "firefox" / "fake_microphone.js"
PROCESSING = ("echoCancellation", "noiseSuppression", "autoGainControl")
# When the page sent each playback report, by the page's clock: proof that the playback worklet
# is paced by an audio clock (the counts grow at 24 samples per millisecond), not run flat out.
RECORD_PLAYBACK_REPORTS = """() => {
  const reports = [];
  Object.defineProperty(window, "playbackReports", { get: () => reports.map((r) => ({ ...r })) });
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string" && data.startsWith('{"type":"realtalk.')) {
      const event = JSON.parse(data);
      const ms = performance.now();
      reports.push({ type: event.type, item: event.item_id, played: event.played_samples, ms });
    }
    return send.call(this, data);
  };
}"""


def firefox_path() -> Path:
    if not FIREFOX.exists():
        pytest.skip("needs Debian's firefox-esr at /usr/bin/firefox-esr: apt-get install firefox-esr")
    return FIREFOX


def fake_microphone(*parts: str | int) -> str:
    """The preload script of a microphone that plays fixtures and milliseconds of silence, once."""
    pcm = b"".join(
        silence(part) if isinstance(part, int) else read_wav(FIXTURES / f"{part}.wav")[0] for part in parts
    )
    config = {"pcm16Base64": base64.b64encode(pcm).decode("ascii"), "sampleRateHz": 24_000}
    function = FAKE_MICROPHONE_JS.read_text().strip().removesuffix(";")
    return f"() => ({function})({json.dumps(config)})"


def ui_page(*microphone: str | int) -> AbstractAsyncContextManager[Page]:
    """Firefox with the fake microphone and the recorder of the page's WebSocket sends."""
    scripts = [fake_microphone(*microphone), f"() => {{ {RECORD_SENT_EVENTS} }}", RECORD_PLAYBACK_REPORTS]
    return firefox_page(firefox_path(), preload_scripts=scripts)


@pytest.fixture(scope="module")
def speech_engines() -> Engines:
    """Energy VAD, PocketSphinx that knows the fixtures' sentences, espeak-ng (a tone without it)."""
    return load_engines("energy", "auto", "auto", phrases=PHRASES)


async def open_ui(page: Page, stack: UiStack) -> None:
    await page.navigate(stack.page_url)
    await page.click("#start")


async def hooks(page: Page) -> dict[str, Any]:
    """The page's read-only statistics (``window.realtalk``), as plain data."""
    snapshot: dict[str, Any] = await page.evaluate(HOOKS_JS)
    return snapshot


async def transcript_lines(page: Page) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = await page.evaluate(TRANSCRIPT_JS)
    return lines


async def test_the_page_runs_in_firefox_and_asks_for_the_microphone_with_explicit_processing(
    tmp_path: Path, speech_engines: Engines
) -> None:
    scenario = parse_scenario({"turns": [{"say": REPLY}]})
    async with ui_stack(tmp_path, speech_engines, scenario) as stack, ui_page(3000) as page:
        await page.navigate(stack.page_url)
        assert await page.evaluate("document.title") == "realtalk"
        assert stack.emulator.stats.connections_accepted == 0, "nothing opened upstream before Start"
        assert await page.evaluate("document.getElementById('auth').hidden") is True
        # Start waits for the gateway's answer on sign-in (none needed here).
        await page.wait_for(
            "document.getElementById('status').textContent === 'Press Start to talk'", timeout_s=5
        )
        await page.click("#headphones")
        await page.click("#start")
        await page.wait_for("!document.getElementById('emulator-badge').hidden", timeout_s=10)
        await page.wait_for("window.realtalk.status === 'listening'", timeout_s=10)
        state = await hooks(page)
        assert state["session"]["upstream"] == "emulator"
        assert state["session"]["sample_rate_hz"] == 24_000
        # The context keeps Firefox's own rate; the capture worklet converts to 24 kHz itself.
        assert state["sampleRate"] in (44_100, 48_000)
        assert await page.evaluate("window.realtalk.statusText") == "Listening"
        # Taking the headphones off reopens the microphone with echo cancellation, live.
        await page.click("#headphones")
        await page.wait_for("window.fakeMicrophone.requests.length === 2", timeout_s=5)
        await page.wait_for("window.realtalk.chunksSent >= 25", timeout_s=5)
        await page.click("#mute")
        assert await page.evaluate("document.getElementById('mute').getAttribute('aria-pressed')") == "true"
        assert await page.evaluate("document.getElementById('status').textContent") == "Listening (muted)"
        await page.click("#stop")
        await page.wait_for("window.realtalk.status === 'closed'", timeout_s=5)
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status == "Stopped. Press Start to talk again."
        requests = await page.evaluate("window.fakeMicrophone.requests")
        opened = await page.evaluate("window.fakeMicrophone.opened")
        sent = set(await page.evaluate("window.sentEventTypes"))
        await stack.emulator.stats.wait_for(lambda stats: stats.active_sessions == 0, timeout_s=5)
    # Every request names all three processing switches explicitly (browsers differ in what an
    # omitted one means): first with headphones (no echo cancellation), then without.
    assert [{name: request["audio"][name] for name in PROCESSING} for request in requests] == [
        {"echoCancellation": False, "noiseSuppression": True, "autoGainControl": True},
        {"echoCancellation": True, "noiseSuppression": True, "autoGainControl": True},
    ]
    assert all(request["audio"]["channelCount"] == 1 and request["video"] is False for request in requests)
    assert [entry["stopped"] for entry in opened] == [True, True], "each microphone was released"
    assert sent == {"input_audio_buffer.append"}
    assert stack.emulator.stats.connections_accepted == 1


async def test_a_spoken_question_gets_both_transcripts_and_a_reply_whose_every_sample_was_played(
    tmp_path: Path, speech_engines: Engines
) -> None:
    scenario = parse_scenario({"turns": [{"say": REPLY}]})
    async with ui_stack(tmp_path, speech_engines, scenario) as stack, ui_page("question", 3000) as page:
        await open_ui(page, stack)
        # The reply is on the page once its line is final, and it has been played to the end.
        await page.wait_for(
            """document.querySelector("#transcript li.assistant:not(.partial)") !== null
               && Object.keys(window.realtalk.playedSamples).length > 0
               && window.realtalk.status === "listening" """,
            timeout_s=30,
        )
        lines = await transcript_lines(page)
        state = await hooks(page)
        reports = await page.evaluate("window.playbackReports")
    item_id, played = assert_the_spoken_turn(lines, state)
    # Played at the pace of the audio clock: from the first report to the last, the count grew by
    # about as many milliseconds of audio as went by (Firefox's mock backend runs 3-15 % slow).
    progress = [
        r for r in reports if r["type"] == "realtalk.playback" and r["item"] == item_id and r["played"] > 0
    ]
    assert progress[-1]["played"] == played and len(progress) >= 10
    audio_ms = (progress[-1]["played"] - progress[0]["played"]) / 24
    assert 0.6 < audio_ms / (progress[-1]["ms"] - progress[0]["ms"]) < 1.1, (
        audio_ms,
        progress[0],
        progress[-1],
    )
    assert_nothing_was_interrupted(state, stack)


async def test_barging_in_truncates_the_reply_upstream_at_the_position_the_page_played(
    tmp_path: Path, speech_engines: Engines
) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    # The question ends 4.8 s in; the reply starts 1-4 s later and runs about 27 s; "stop please
    # wait" starts 12.3 s in, well inside it.
    async with (
        ui_stack(tmp_path, speech_engines, scenario) as stack,
        ui_page("question", 5000, "stop", 3000) as page,
    ):
        await open_ui(page, stack)
        stats = stack.emulator.stats
        await stats.wait_for(lambda s: bool(s.events_received("conversation.item.truncate")), timeout_s=30)
        [truncate] = stats.events_received("conversation.item.truncate")
        await page.wait_for("document.querySelector('#transcript li.assistant.cut') !== null", timeout_s=5)
        state = await hooks(page)
        lines = await transcript_lines(page)
        sent = set(await page.evaluate("window.sentEventTypes"))
    report = state["lastTruncateReport"]
    assert report is not None and report["item_id"] == truncate["item_id"]
    # The truncate says exactly what the page's playback worklet played (24 samples per ms).
    assert abs(truncate["audio_end_ms"] - report["played_samples"] / 24) <= 2, (truncate, report)
    assert truncate["content_index"] == 0
    # It really was mid-reply: more than a second heard, far less than the ~25 s reply.
    assert 1_000 < truncate["audio_end_ms"] < 15_000
    assert report["played_samples"] <= state["receivedSamples"][truncate["item_id"]]
    cut = [line for line in lines if line["cut"]]
    assert len(cut) == 1 and LONG_REPLY.startswith(cut[0]["text"]) and len(cut[0]["text"]) < len(LONG_REPLY)
    # The page reported what it played; the Python core decided the truncate.
    assert "conversation.item.truncate" not in sent
    assert {"realtalk.playback", "realtalk.flushed"} <= sent
