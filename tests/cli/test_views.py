"""The ``realtalk talk`` screens, rendered from fixed data and compared with snapshots checked by eye.

Snapshots live in ``tests/cli/snapshots/``. After an intended change of the screen, regenerate them
with ``REALTALK_UPDATE_SNAPSHOTS=1 pytest tests/cli/test_views.py`` and read the diff.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from realtalk.cli.views import (
    Notice,
    TalkSummary,
    TalkView,
    ViewLine,
    level_bar,
    percentile,
    render_failure,
    render_line,
    render_status,
    render_summary,
    render_talk,
    render_transcript,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"


def text_of(renderable: RenderableType, width: int = 100) -> str:
    console = Console(record=True, width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("REALTALK_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with REALTALK_UPDATE_SNAPSHOTS=1 and check it by eye"
    assert text == path.read_text(encoding="utf-8")


CONVERSATION = (
    ViewLine("user", "what is the weather like in Oslo today"),
    ViewLine("assistant", "It is seven degrees and cloudy in Oslo.", latency_ms=640.4),
    ViewLine("user", "and my ticket is XR-4892"),
    ViewLine("assistant", "Your ticket XR-4892 is", cut=True, final=True, latency_ms=702.0),
    ViewLine("user", "stop please wait"),
    ViewLine("assistant", "Sure, I am", final=False),
)

LIVE = TalkView(
    lines=CONVERSATION,
    status="speaking",
    mic_level_dbfs=-23.5,
    gate="muted",
    latencies_ms=(640.4, 702.0, 1210.0),
    cost_usd=Decimal("0.012345"),
    input_tokens=1234,
    output_tokens=567,
    cache_hit_ratio=0.35,
    notices=(
        Notice("warning", "connection lost (close 1006); reconnecting, attempt 1 in 0.4 s"),
        Notice("info", "reconnected: a new session, with the conversation so far replayed as text"),
        Notice("error", "server error invalid_value: audio_end_ms is larger than the audio", count=2),
    ),
    target="local emulator at 127.0.0.1:8765",
    push_to_talk=True,
    typed="hello the",
)


def test_the_live_screen_shows_transcript_notices_status_and_the_typed_line() -> None:
    assert_snapshot("talk_live", text_of(render_talk(LIVE)))


def test_the_live_screen_keeps_only_the_last_lines_and_says_how_many_are_hidden() -> None:
    text = text_of(render_talk(LIVE, max_lines=2, max_notices=0))
    assert "… 4 earlier lines" in text
    assert "stop please wait" in text and "what is the weather" not in text
    assert "server error" not in text


def test_a_screen_without_key_input_has_no_input_line() -> None:
    text = text_of(render_talk(TalkView(status="connecting")))
    assert "Enter sends" not in text
    assert text.startswith("◌ connecting")


def test_the_summary_shows_turns_duration_latency_percentiles_and_unheard_cost() -> None:
    summary = TalkSummary(
        turns=6,
        duration_s=125.25,
        latencies_ms=(600.0, 640.0, 700.0, 720.0, 1500.0),
        cost_usd=Decimal("0.0512"),
        unheard_audio_usd=Decimal("0.0064"),
        input_tokens=4321,
        output_tokens=987,
        cache_hit_ratio=0.5,
        connections=2,
        interruptions=2,
    )
    assert_snapshot("talk_summary", text_of(render_summary(summary)))


def test_a_summary_of_text_turns_only_says_no_latency_was_measured() -> None:
    summary = TalkSummary(
        turns=1,
        duration_s=3.0,
        latencies_ms=(),
        cost_usd=Decimal("0.0026"),
        unheard_audio_usd=Decimal(0),
        input_tokens=70,
        output_tokens=41,
        cache_hit_ratio=None,
    )
    text = text_of(render_summary(summary))
    assert "- (no spoken turn)" in text
    assert "cache hits -" in text
    assert "reconnects" not in text and "interrupted" not in text


def test_a_cut_reply_is_marked_as_cut_after_what_was_heard() -> None:
    line = ViewLine("assistant", "Your ticket XR-4892 is", cut=True, latency_ms=702.0)
    assert text_of(render_line(line)) == "agent Your ticket XR-4892 is — cut  · 702 ms\n"


def test_a_user_turn_still_being_transcribed_shows_an_ellipsis() -> None:
    assert text_of(render_line(ViewLine("user", "", final=False))) == "you   …\n"


def test_an_untranscribed_user_turn_says_so() -> None:
    line = ViewLine("user", "", final=True, untranscribed=True)
    assert text_of(render_line(line)) == "you   (speech, not transcribed)\n"


def test_the_transcript_keeps_the_order_it_is_given() -> None:
    text = text_of(render_transcript(CONVERSATION))
    assert text.index("what is the weather") < text.index("seven degrees") < text.index("XR-4892 is")


def test_the_status_line_says_when_the_user_is_speaking() -> None:
    text = text_of(render_status(TalkView(status="listening", user_speaking=True)))
    assert text.startswith("● listening (you are speaking)")
    assert "mic              silent" in text


def test_the_failure_line_is_one_line() -> None:
    assert text_of(render_failure("HTTP 401: check AZURE_OPENAI_API_KEY"), width=200).count("\n") == 1


@pytest.mark.parametrize(
    ("dbfs", "bar"),
    [
        (-120.0, "            "),
        (-60.0, "            "),
        (-30.0, "██████      "),
        (0.0, "████████████"),
        (6.0, "████████████"),
    ],
)
def test_the_level_bar_maps_minus_60_to_0_dbfs_onto_its_width(dbfs: float, bar: str) -> None:
    assert level_bar(dbfs) == bar


def test_the_level_bar_shows_partial_cells() -> None:
    assert level_bar(-57.5, width=12) == "▄" + " " * 11


def test_percentiles_interpolate_between_ranks() -> None:
    values = [100.0, 200.0, 300.0, 400.0, 1000.0]
    assert percentile(values, 50) == 300.0
    assert percentile(values, 95) == pytest.approx(880.0)
    assert percentile(values, 0) == 100.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_a_low_cache_share_is_flagged_in_the_summary_with_its_reason() -> None:
    summary = TalkSummary(
        turns=3,
        duration_s=20.0,
        latencies_ms=(),
        cost_usd=Decimal("0.02"),
        unheard_audio_usd=Decimal(0),
        input_tokens=900,
        output_tokens=300,
        cache_hit_ratio=0.0,
        low_cache_reason="most input came in responses under the 1,024 tokens the prompt cache starts at",
    )
    text = text_of(render_summary(summary))
    assert "low cache share" in text and "1,024 tokens" in text
