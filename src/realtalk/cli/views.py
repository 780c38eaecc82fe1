"""What ``realtalk talk`` shows, as pure functions: plain data in, Rich renderables out.

``talk.py`` takes a ``TalkView`` snapshot about ten times a second (transcript, status, levels,
latencies, cost, notices) and hands it to ``render_talk``; at the end it hands a ``TalkSummary`` to
``render_summary``. Nothing here reads a clock, a session or a device, so every screen can be
rendered from fixed data and compared as text (``tests/cli/test_views.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from realtalk.percentiles import percentile

__all__ = [
    "GateShown",
    "Notice",
    "Status",
    "TalkSummary",
    "TalkView",
    "ViewLine",
    "level_bar",
    "percentile",
    "render_failure",
    "render_line",
    "render_meters",
    "render_notice",
    "render_status",
    "render_summary",
    "render_talk",
    "render_transcript",
]

Status = Literal["connecting", "listening", "thinking", "speaking", "muted", "reconnecting", "closed"]
GateShown = Literal["off", "open", "muted"]

# The meter's scale: -60 dBFS (a quiet room) to 0 dBFS (full scale).
METER_FLOOR_DBFS = -60.0
_METER_CELLS = " ▁▂▃▄▅▆▇█"

_STATUS_STYLE: dict[Status, tuple[str, str]] = {
    "connecting": ("◌", "yellow"),
    "listening": ("●", "green"),
    "thinking": ("◐", "cyan"),
    "speaking": ("▶", "magenta"),
    "muted": ("○", "dim"),
    "reconnecting": ("↻", "bold yellow"),
    "closed": ("■", "red"),
}
_ROLE_LABEL = {"user": ("you", "bold blue"), "assistant": ("agent", "bold magenta")}
_NOTICE_STYLE = {"info": ("·", "dim"), "warning": ("⚠", "yellow"), "error": ("✗", "bold red")}


@dataclass(frozen=True)
class ViewLine:
    """One transcript line. ``cut``: the reply was interrupted (the text is what was heard)."""

    role: str
    text: str
    final: bool = True
    cut: bool = False
    # Voice-to-voice latency of the turn this reply answered (assistant lines only).
    latency_ms: float | None = None
    # A user turn whose audio is not transcribed (--transcription-model none).
    untranscribed: bool = False


@dataclass(frozen=True)
class Notice:
    """A message for the user below the transcript: a server error, a reconnect, a warning."""

    level: Literal["info", "warning", "error"]
    text: str
    count: int = 1


@dataclass(frozen=True)
class TalkView:
    """Everything the live screen shows, at one instant."""

    lines: tuple[ViewLine, ...] = ()
    status: Status = "connecting"
    status_detail: str = ""
    user_speaking: bool = False
    mic_level_dbfs: float = -120.0
    gate: GateShown = "off"
    latencies_ms: tuple[float, ...] = ()
    cost_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hit_ratio: float | None = None
    notices: tuple[Notice, ...] = ()
    target: str = ""
    push_to_talk: bool = False
    # The line being typed; None when keys are not read (stdin is not a terminal).
    typed: str | None = None


@dataclass(frozen=True)
class TalkSummary:
    """The end-of-session figures."""

    turns: int
    duration_s: float
    latencies_ms: tuple[float, ...]
    cost_usd: Decimal
    unheard_audio_usd: Decimal
    input_tokens: int
    output_tokens: int
    cache_hit_ratio: float | None
    connections: int = 1
    interruptions: int = 0
    unfinished: int = 0
    """Of ``turns``, replies that had not finished when the conversation ended (or its connection dropped)."""
    low_cache_reason: str | None = None
    """Why the cached share of input was low, when it was (``CostTracker.low_cache_reason``)."""


# -- small pure helpers -------------------------------------------------------------------------


def level_bar(dbfs: float, width: int = 12) -> str:
    """A meter of ``width`` cells for a level in dBFS (-60 dBFS and below: empty; 0 dBFS: full)."""
    fraction = (max(METER_FLOOR_DBFS, min(0.0, dbfs)) - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_METER_CELLS[part] if full < width else "")
    return bar.ljust(width)[:width]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _usd(value: Decimal) -> str:
    # Cents hide the cost of short sessions; four decimals show a single turn (about $0.005).
    return f"${value:,.4f}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


# -- the live screen --------------------------------------------------------------------------------


def render_line(line: ViewLine) -> Text:
    """``you   what is the weather`` / ``agent It is sunny — cut  · 640 ms``."""
    label, style = _ROLE_LABEL.get(line.role, (line.role, "bold"))
    text = Text.assemble((f"{label:<6}", style))
    if line.untranscribed and not line.text:
        text.append("(speech, not transcribed)", "dim italic")
    elif not line.text and not line.final:
        text.append("…", "dim")
    else:
        text.append(line.text, "dim" if not line.final and not line.cut else "")
        if not line.final and not line.cut:
            text.append(" …", "dim")
    if line.cut:
        text.append(" — cut", "bold yellow")
    if line.latency_ms is not None:
        text.append(f"  · {_ms(line.latency_ms)}", "dim")
    return text


def render_notice(notice: Notice) -> Text:
    mark, style = _NOTICE_STYLE[notice.level]
    text = Text.assemble((f"{mark} ", style), (notice.text, style if notice.level == "error" else ""))
    if notice.count > 1:
        text.append(f" (x{notice.count})", "dim")
    return text


def render_transcript(lines: Sequence[ViewLine], max_lines: int | None = None) -> Group:
    """The transcript, both sides in conversation order; only the last ``max_lines`` if given."""
    shown = list(lines) if max_lines is None else list(lines)[-max_lines:] if max_lines > 0 else []
    hidden = len(lines) - len(shown)
    rendered: list[RenderableType] = []
    if hidden:
        rendered.append(Text(f"… {hidden} earlier line{'s' if hidden != 1 else ''}", "dim"))
    rendered.extend(render_line(line) for line in shown)
    return Group(*rendered)


def render_status(view: TalkView) -> Text:
    """One line: what the agent is doing, the microphone meter, the echo gate."""
    mark, style = _STATUS_STYLE[view.status]
    label: str = view.status
    if view.status == "listening" and view.user_speaking:
        label = "listening (you are speaking)"
    text = Text.assemble((f"{mark} {label}", style))
    if view.status_detail:
        text.append(f" ({view.status_detail})", "dim")
    text.append("  │ mic ", "dim")
    text.append(level_bar(view.mic_level_dbfs), "green" if view.mic_level_dbfs > -40 else "dim green")
    level = "silent" if view.mic_level_dbfs <= -100 else f"{view.mic_level_dbfs:.0f} dBFS"
    text.append(f" {level}", "dim")
    if view.gate != "off":
        text.append(f"  │ echo gate {view.gate}", "yellow" if view.gate == "muted" else "dim")
    return text


def render_meters(view: TalkView) -> Text:
    """One line: voice-to-voice latency (last, p50, p95) and the running cost."""
    last = view.latencies_ms[-1] if view.latencies_ms else None
    text = Text.assemble(("  latency ", "dim"), _ms(last))
    if len(view.latencies_ms) > 1:
        text.append(
            f" (p50 {_ms(percentile(view.latencies_ms, 50))}, p95 {_ms(percentile(view.latencies_ms, 95))})",
            "dim",
        )
    text.append("  │ ", "dim")
    text.append(_usd(view.cost_usd), "bold")
    text.append(
        f" · {view.input_tokens:,} in / {view.output_tokens:,} out tokens"
        f" · cache {_percent(view.cache_hit_ratio)}",
        "dim",
    )
    return text


def render_talk(view: TalkView, *, max_lines: int = 14, max_notices: int = 3) -> Group:
    """The live screen: header, transcript, notices, status line, and the line being typed."""
    parts: list[RenderableType] = []
    if view.target:
        parts.append(Text.assemble(("realtalk talk", "bold"), (f" · {view.target}", "dim")))
    parts.append(render_transcript(view.lines, max_lines))
    parts.extend(render_notice(notice) for notice in view.notices[-max_notices:] if max_notices > 0)
    parts.append(render_status(view))
    parts.append(render_meters(view))
    if view.typed is not None:
        hints = ["Enter sends", "Ctrl+C ends"]
        if view.push_to_talk:
            hints.insert(0, "Space (on an empty line) talks/mutes")
        parts.append(
            Text.assemble(("> ", "bold"), view.typed, ("▏", "blink"), (f"   {' · '.join(hints)}", "dim"))
        )
    return Group(*parts)


# -- the end ----------------------------------------------------------------------------------------


def render_summary(summary: TalkSummary) -> Table:
    """Turns, duration, latency p50/p95, cost, and the cost of audio generated but never heard."""
    table = Table(title="Session summary", title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column(style="dim")
    table.add_column()
    minutes, seconds = divmod(summary.duration_s, 60)
    details = [f"{summary.interruptions} interrupted"] if summary.interruptions else []
    if summary.unfinished:
        details.append(f"{summary.unfinished} unfinished")
    table.add_row("turns", f"{summary.turns}" + (f" ({', '.join(details)})" if details else ""))
    table.add_row("duration", f"{int(minutes)} min {seconds:04.1f} s" if minutes else f"{seconds:.1f} s")
    latencies = summary.latencies_ms
    table.add_row(
        "latency, voice to voice",
        f"p50 {_ms(percentile(latencies, 50))}, p95 {_ms(percentile(latencies, 95))} over "
        f"{len(latencies)} spoken turn{'s' if len(latencies) != 1 else ''}"
        if latencies
        else "- (no spoken turn)",
    )
    table.add_row("cost", _usd(summary.cost_usd))
    table.add_row("  of audio never heard", _usd(summary.unheard_audio_usd))
    table.add_row(
        "tokens",
        f"{summary.input_tokens:,} in / {summary.output_tokens:,} out · cache hits "
        f"{_percent(summary.cache_hit_ratio)}",
    )
    if summary.low_cache_reason:
        table.add_row("  low cache share", summary.low_cache_reason)
    if summary.connections > 1:
        reconnects = summary.connections - 1
        table.add_row(
            "connections", f"{summary.connections} ({reconnects} reconnect{'s' if reconnects > 1 else ''})"
        )
    return table


def render_failure(message: str) -> Text:
    """The one line that ends a session that cannot go on: what failed and what to fix."""
    return Text.assemble(("✗ ", "bold red"), message)
