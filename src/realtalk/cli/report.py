"""``realtalk report``: what the usage ledger says was spent, by day, user, deployment or session.

The command is thin: pick the ledger (``--url``, else ``REALTALK_LEDGER_URL``, else the default
SQLite file), check it exists and holds rows, ``realtalk.ledger.report.load_report``, then render.
Figures and their text come from ``realtalk.ledger.report_html`` (``figures``, ``format_figure``),
so the terminal table, ``--csv``, ``--json`` and ``--html`` show the same numbers. A report never
creates or migrates a ledger: a missing or empty one is an error that says so.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from realtalk.cli.dotenv_check import load_checked_settings
from realtalk.errors import ConfigError
from realtalk.ledger import ledger_url, redact_url
from realtalk.ledger.database import create_ledger_engine
from realtalk.ledger.migrate import current_revision, head_revision
from realtalk.ledger.report import (
    GroupBy,
    LedgerSpan,
    LowCacheSession,
    Report,
    ReportRow,
    ledger_span,
    load_report,
)
from realtalk.ledger.report_html import FIGURES, figures, format_figure, label, render_html
from realtalk.settings import ledger_target

__all__ = ["render_report", "report", "report_csv", "report_json"]

STDOUT: Final = "-"
DEFAULT_DAYS: Final = 7
# The terminal shows three narrow tables rather than one too wide for it; CSV and JSON hold them all.
TERMINAL_TABLES: Final = (
    ("Spend", ("sessions", "responses", "text_usd", "audio_usd", "image_usd", "tools_usd", "total_usd",
               "what_if_mini_usd")),
    ("Cache, audio and latency", ("cache_share", "cache_saved_usd", "unheard_audio_usd", "audio_in_min",
                                  "audio_out_min", "audio_unheard_min", "latency_p50_ms", "latency_p95_ms")),
    ("Tokens", ("text_in_tokens", "text_cached_tokens", "audio_in_tokens", "audio_cached_tokens",
                "image_in_tokens", "text_out_tokens", "audio_out_tokens", "cancelled_responses")),
)  # fmt: skip


_DAY: Final = ["%Y-%m-%d"]
_SINCE_HELP: Final = "First day (UTC) of the report."
_UNTIL_HELP: Final = "Last day (UTC) of the report, included."
_URL_DEFAULT: Final = "REALTALK_LEDGER_URL, else the SQLite file `realtalk ledger where` shows"
_URL_HELP: Final = "The ledger's database URL, e.g. postgresql+asyncpg://user:password@host:5432/realtalk."
_CSV_HELP: Final = "Also write the rows as CSV, every figure exact ('-': to stdout, instead of the table)."
_JSON_HELP: Final = (
    "Also write the report as JSON, every figure exact ('-': to stdout, instead of the table)."
)
_HTML_HELP: Final = "Also write the report as one self-contained HTML page with charts."
_NONE: Final = "\N{EN DASH}"


class ReportFailed(Exception):
    """The report cannot be made (no ledger, an empty one, an unreadable database)."""


def report(
    by: Annotated[GroupBy, typer.Option("--by", help="What each row is.")] = GroupBy.DAY,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            formats=_DAY,
            metavar="YYYY-MM-DD",
            show_default="6 days before --until",
            help=_SINCE_HELP,
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            "--until", formats=_DAY, metavar="YYYY-MM-DD", show_default="today (UTC)", help=_UNTIL_HELP
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", show_default=_URL_DEFAULT, help=_URL_HELP)
    ] = None,
    csv_file: Annotated[str | None, typer.Option("--csv", metavar="FILE|-", help=_CSV_HELP)] = None,
    json_file: Annotated[str | None, typer.Option("--json", metavar="FILE|-", help=_JSON_HELP)] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html", metavar="FILE", dir_okay=False, help=_HTML_HELP)
    ] = None,
) -> None:
    """Report the usage ledger's spend over a range of UTC days, by day, user, deployment or session.

    Per row: sessions, responses, dollars by modality (text, audio, image, tools and delegation)
    and in total, cache hit share and the dollars the cache saved, the dollars of audio generated
    but never heard (cut off by barge-in), minutes of audio (in: the input audio tokens billed,
    out: generated), voice-to-voice latency p50/p95, tokens by modality, and what the same tokens
    would cost on gpt-realtime-mini. Sessions whose cache share is under 50% are listed with the
    reason, when it can be told. Money is exact in CSV and JSON (strings in JSON), shown to 4
    decimals in the table and the HTML. Exits with status 1 when the ledger is missing, empty or
    cannot be read.
    """
    if csv_file == STDOUT and json_file == STDOUT:
        raise typer.BadParameter("only one of --csv and --json can write to stdout ('-')")
    last_day = until.date() if until else datetime.now(UTC).date()
    first_day = since.date() if since else last_day - timedelta(days=DEFAULT_DAYS - 1)
    if first_day > last_day:
        raise typer.BadParameter(f"--since {first_day} is after --until {last_day}")
    to_stdout = STDOUT in (csv_file, json_file)
    console = Console(highlight=False, soft_wrap=True, stderr=to_stdout)
    try:
        result, holds = asyncio.run(_load(_ledger_in_use(url), by, first_day, last_day))
    except (ConfigError, ReportFailed) as exc:
        console.print(Text.assemble(("✗ report: ", "bold red"), str(exc)))
        raise typer.Exit(1) from None
    outputs = [(csv_file, report_csv), (json_file, report_json)]
    for target, render in outputs:
        if target == STDOUT:
            sys.stdout.write(render(result))
        elif target is not None:
            _write(console, Path(target), render(result))
    if html_file is not None:
        _write(console, html_file, render_html(result))
    if not to_stdout:
        console.print(render_report(result, console.width, holds))


def _ledger_in_use(url: str | None) -> str:
    """``--url``, else the configured ledger; a SQLite file must exist (a report never creates one)."""
    if url is None:
        target = ledger_target(load_checked_settings())
        if target is None:
            raise ConfigError(
                "the ledger is turned off (REALTALK_LEDGER_URL=off): nothing was recorded; "
                "pass --url to read a ledger",
                variable="REALTALK_LEDGER_URL",
            )
        url = target
    parsed = ledger_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).expanduser().is_file():
            raise ConfigError(
                f"there is no ledger at {redact_url(parsed)}: nothing has been recorded there yet "
                "(realtalk talk and realtalk serve write the ledger as they run)",
                variable="REALTALK_LEDGER_URL",
                example="realtalk report --url sqlite+aiosqlite:////var/lib/realtalk/ledger.db",
            )
    return parsed.render_as_string(hide_password=False)


async def _load(url: str, by: GroupBy, since: date, until: date) -> tuple[Report, LedgerSpan]:
    engine = create_ledger_engine(url)
    where = redact_url(make_url(url))
    try:
        revision = await current_revision(engine)
        if revision is None:
            raise ReportFailed(
                f"the ledger {where} has no ledger tables: nothing has been recorded there yet"
            )
        if revision != head_revision():
            raise ReportFailed(
                f"the ledger {where} is at revision {revision}, this realtalk reads {head_revision()}: "
                "run `realtalk ledger upgrade` (or upgrade realtalk if the ledger is newer)"
            )
        span = await ledger_span(engine)
        if span.sessions == 0 and span.responses == 0:
            raise ReportFailed(f"the ledger {where} is empty: no session has been recorded yet")
        return await load_report(engine, group_by=by, since=since, until=until), span
    except (OSError, DBAPIError) as exc:
        detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        raise ReportFailed(f"cannot read the ledger {where}: {type(detail).__name__}: {detail}") from None
    finally:
        await engine.dispose()


def _write(console: Console, path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        console.print(Text.assemble(("✗ report: ", "bold red"), f"cannot write {path}: {exc.strerror}"))
        raise typer.Exit(1) from None
    console.print(Text.assemble(("✓ ", "bold green"), f"wrote {path}"))


def _plain(value: Any) -> Any:
    """A figure for CSV and JSON: an exact decimal as fixed-point text without trailing zeros."""
    if isinstance(value, Decimal):
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return value


def report_csv(result: Report) -> str:
    """The report's rows as CSV (no total row): the group's key, then every figure, exact."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([result.group_by.value, *FIGURES])
    for row in result.rows:
        values = figures(row)
        writer.writerow([row.key, *("" if values[n] is None else _plain(values[n]) for n in FIGURES)])
    return out.getvalue()


def _json_row(key_name: str, row: ReportRow) -> dict[str, Any]:
    return {key_name: row.key, **{name: _plain(value) for name, value in figures(row).items()}}


def _json_flag(flag: LowCacheSession) -> dict[str, Any]:
    return {name: _plain(getattr(flag, name)) for name in flag.__dataclass_fields__}


def report_json(result: Report) -> str:
    """The report as JSON: rows, total and low-cache sessions; exact decimals as strings."""
    key_name = result.group_by.value
    document = {
        "group_by": key_name,
        "since": result.since.isoformat(),
        "until": result.until.isoformat(),
        "what_if_model": result.what_if_model,
        "rows": [_json_row(key_name, row) for row in result.rows],
        "total": _json_row(key_name, result.total),
        "low_cache_sessions": [_json_flag(flag) for flag in result.low_cache],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _header(name: str, width: int) -> str:
    return textwrap.fill(label(name), width=max(width, 8), break_long_words=False)


def _tables(title: str, names: tuple[str, ...], result: Report, width: int) -> list[Table]:
    """One table of ``names`` for the rows and the total, split into as many as ``width`` needs: a
    figure is never cut, and each header wraps to its column's figures."""
    rows = (*result.rows, result.total)
    values = [figures(row) for row in rows]
    cells = {n: [format_figure(n, v[n]) for v in values] for n in names}
    cell_widths = {n: max(len(cell) for cell in cells[n]) for n in names}
    key_width = max(len(result.group_by.value), *(len(row.key) for row in rows)) + 4
    chunks: list[list[str]] = [[]]
    used = key_width
    for name in names:
        needed = max(cell_widths[name], 8) + 3
        if chunks[-1] and used + needed > width:
            chunks.append([])
            used = key_width
        chunks[-1].append(name)
        used += needed
    tables = []
    for number, chunk in enumerate(chunks):
        caption = title if number == 0 else f"{title} (continued)"
        table = Table(title=caption, title_justify="left", title_style="bold")
        table.add_column(result.group_by.value, no_wrap=True)
        for name in chunk:
            table.add_column(_header(name, cell_widths[name]), justify="right", no_wrap=True)
        for index, row in enumerate(rows):
            table.add_row(
                Text(row.key), *(cells[n][index] for n in chunk), end_section=index == len(rows) - 2,
                style="bold" if row is result.total else None,
            )  # fmt: skip
        tables.append(table)
    return tables


def render_report(result: Report, width: int = 120, holds: LedgerSpan | None = None) -> RenderableType:
    """The report for a terminal ``width`` columns wide: tables of the rows and their total (spend;
    cache, audio and latency; tokens), then the sessions whose cache share is low. ``holds``: what the
    whole ledger holds, to say where its rows are when the range has none."""
    span = f"{result.since.isoformat()} to {result.until.isoformat()} (UTC)"
    if not result.rows:
        first, last = (holds.first_response_at, holds.last_response_at) if holds else (None, None)
        known = (
            f" The ledger holds responses from {first:%Y-%m-%d} to {last:%Y-%m-%d}." if first and last else ""
        )
        return Text(f"Nothing was recorded from {span}.{known}")
    parts: list[RenderableType] = [Text(f"Usage from {span}, by {result.group_by.value}", style="bold")]
    for title, names in TERMINAL_TABLES:
        parts += _tables(title, names, result, width)
    if result.low_cache:
        flags = Table(title="Sessions with a cache share under 50%", title_justify="left", title_style="bold")
        for header in ("session", "user", "cache share", "reason", "why"):
            flags.add_column(
                header, no_wrap=header != "why", justify="right" if header == "cache share" else "left"
            )
        for flag in result.low_cache:
            share = format_figure("cache_share", flag.cache_share)
            # Text, not markup: user names and ids come from clients and may hold "[...]".
            flags.add_row(
                Text(flag.session_id), Text(flag.user or _NONE), share, flag.reason.value, flag.explanation
            )
        parts.append(flags)
    note = f"“on gpt-realtime-mini”: the same tokens priced on {result.what_if_model}, tools apart."
    parts.append(Text(note, style="dim"))
    return Group(*parts)
