"""``realtalk report`` on a scripted SQLite ledger: the terminal table, ``--csv``, ``--json`` and
``--html`` agree on every figure, the figures are the ones worked out by hand, and a missing, empty
or switched-off ledger is a clear error.

The command is mounted on a Typer app of its own (the real ``realtalk`` app is wired elsewhere).
Each output is read back independently: the table and the page by parsing their text (``$1,234.5678``,
``62.50%``), CSV and JSON as data, so a figure that one of them got wrong cannot hide.
"""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from realtalk.cli.report import TERMINAL_TABLES, report
from realtalk.ledger import Ledger, ResponseRecord, SessionRecord, upgrade
from realtalk.ledger.report_html import FIGURES, SPEND_FIGURES, TOKEN_FIGURES
from realtalk.protocol.cost import prices_for, turn_cost

from ..ledger.test_report import DAY_1, DAY_2, DAY_3, SINCE, TOTAL, TURNS, UNTIL, fill

RANGE = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat())
CENT_FRACTIONS = Decimal("0.0001")


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings or .env from the developer's checkout; the default ledger under tmp_path."""
    monkeypatch.setenv("XDG_DATA_HOME", str(isolated_env / "data"))


def run_report(*args: str) -> Result:
    app = typer.Typer()
    app.command()(report)
    # Wide enough that each terminal table stays whole.
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "260"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def write_ledger(url: str, sessions: list[SessionRecord] | None = None) -> None:
    """The scripted ledger (``tests/ledger/test_report.py``), or ``sessions`` with one response each."""

    async def write() -> None:
        async with await Ledger.open(url) as ledger:
            if sessions is None:
                await fill(ledger)
                return
            for record in sessions:
                ledger.session_started(record)
                ledger.response_done(
                    ResponseRecord(
                        record.session_id, "r", record.user, "d", "gpt-realtime-1.5", "completed",
                        record.started_at, text_in=100,
                    )
                )  # fmt: skip
            await ledger.flush()

    asyncio.run(write())


def session_record(session_id: str, user: str, started_at: datetime) -> SessionRecord:
    return SessionRecord(session_id, user, "d", "gpt-realtime-1.5", "websocket", "ui", started_at)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    write_ledger(url)
    return url


def agrees(name: str, shown: str, exact: Any) -> bool:
    """Whether a figure as shown (``$0.1408``, ``59.26%``, ``1,500``, an en dash) is the exact one
    rounded."""
    if exact is None:
        return shown == "\N{EN DASH}"
    number = Decimal(shown.replace(",", "").removeprefix("$").removesuffix("%"))
    if name.endswith("_usd"):
        return number == Decimal(exact).quantize(CENT_FRACTIONS, rounding=ROUND_HALF_EVEN)
    if name == "cache_share":
        return number == Decimal(exact) * 100
    return number == Decimal(str(exact))


def terminal_rows(output: str) -> dict[str, dict[str, str]]:
    """The figures of each row (by its key) as the terminal tables show them."""
    titles = dict(TERMINAL_TABLES)
    rows: dict[str, dict[str, str]] = {}
    names: tuple[str, ...] = ()
    for line in output.splitlines():
        if line.strip() in titles:
            names = titles[line.strip()]
        elif line.startswith("│") and names:
            key, *cells = (cell.strip() for cell in line.strip("│").split("│"))
            rows.setdefault(key, {}).update(zip(names, cells, strict=True))
        elif line.strip().startswith("Sessions with"):
            names = ()
    return rows


class _Page(HTMLParser):
    """The cells of the page's tables: ``cells[table id][row key][data-field]``, and low-cache rows."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, dict[str, str]]] = {}
        self.low_cache: dict[str, dict[str, str]] = {}
        self._table = self._row = self._field = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id") or ""
        elif tag == "tr":
            self._row = found.get("data-key") or found.get("data-session") or ""
        elif tag == "td" and found.get("data-field"):
            self._field = found["data-field"] or ""

    def handle_data(self, data: str) -> None:
        if self._field:
            target = self.low_cache if self._table == "low-cache" else self.cells.setdefault(self._table, {})
            target.setdefault(self._row, {})[self._field] = data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._field = ""


def test_the_table_csv_json_and_html_agree_on_every_figure(ledger_url: str, tmp_path: Path) -> None:
    paths = {kind: tmp_path / f"report.{kind}" for kind in ("csv", "json", "html")}
    result = run_report(
        "--url", ledger_url, *RANGE, "--csv", str(paths["csv"]), "--json", str(paths["json"]),
        "--html", str(paths["html"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    document = json.loads(paths["json"].read_text())
    exact = {row["day"]: row for row in document["rows"]} | {"total": document["total"]}
    assert list(exact) == ["2026-05-18", "2026-05-19", "2026-05-20", "total"]

    with paths["csv"].open(newline="") as file:
        from_csv = {row.pop("day"): row for row in csv.DictReader(file)}
    assert list(from_csv) == list(exact)[:-1]  # the CSV holds the rows, not the total
    for key, row in from_csv.items():
        assert list(row) == list(FIGURES)
        for name, text in row.items():
            value = exact[key][name]
            assert (text == "") if value is None else Decimal(text) == Decimal(str(value)), (key, name)

    shown = terminal_rows(result.stdout)
    assert list(shown) == list(exact)
    page = _Page()
    page.feed(paths["html"].read_text())
    for key, figures in exact.items():
        assert set(shown[key]) == {n for _, names in TERMINAL_TABLES for n in names}
        for name, text in shown[key].items():
            assert agrees(name, text, figures[name]), ("table", key, name, text, figures[name])
        for table, names in (("spend", SPEND_FIGURES), ("tokens", TOKEN_FIGURES)):
            assert set(page.cells[table][key]) == set(names)
            for name in names:
                text = page.cells[table][key][name]
                assert agrees(name, text, figures[name]), ("html", key, name, text, figures[name])

    flagged = {flag["session_id"]: flag for flag in document["low_cache_sessions"]}
    assert {k: (v["reason"], v["cache_share"]) for k, v in flagged.items()} == {
        "sess_bob": ("too short", "0"),
        "sess_night": ("unknown", "0"),
    }
    assert {k: v["reason"] for k, v in page.low_cache.items()} == {
        "sess_bob": "too short",
        "sess_night": "unknown",
    }
    for session_id, flag in flagged.items():
        assert agrees("cache_share", page.low_cache[session_id]["cache_share"], flag["cache_share"])
        assert session_id in result.stdout
    assert "too short for the prompt cache" in result.stdout


def test_the_json_figures_are_the_ones_worked_out_by_hand(ledger_url: str) -> None:
    result = run_report("--url", ledger_url, *RANGE, "--json", "-")
    assert result.exit_code == 0, result.stderr

    document = json.loads(result.stdout)  # the table goes nowhere: stdout is the JSON alone
    assert (document["group_by"], document["since"], document["until"]) == ("day", "2026-05-18", "2026-05-20")
    renamed = {"cost_usd": "total_usd"}
    for row, expected in zip(
        [*document["rows"], document["total"]], (DAY_1, DAY_2, DAY_3, TOTAL), strict=True
    ):
        for name, value in expected.items():
            found = row[renamed.get(name, name)]
            assert (found == value) if isinstance(value, (int, float)) else Decimal(found) == value, name
    mini = prices_for("gpt-realtime-mini")
    in_range = (turn_cost(t.usage, mini).total_usd for t in TURNS if SINCE <= t.created_at.date() <= UNTIL)
    assert Decimal(document["total"]["what_if_mini_usd"]) == sum(in_range, Decimal(0))


def test_rows_can_be_by_user_deployment_or_session(ledger_url: str) -> None:
    keys = {}
    for by in ("user", "deployment", "session"):
        result = run_report("--url", ledger_url, *RANGE, "--by", by, "--csv", "-")
        assert result.exit_code == 0, result.stderr
        keys[by] = [row[by] for row in csv.DictReader(result.stdout.splitlines())]
    assert keys == {
        "user": ["alice", "(no user)", "bob", "carol"],
        "deployment": ["voice-eu", "voice-us"],
        "session": ["sess_alice", "sess_night", "sess_bob", "sess_carol"],
    }


def test_the_configured_ledger_is_read_when_no_url_is_given(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTALK_LEDGER_URL", ledger_url)
    result = run_report(*RANGE, "--json", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total"]["responses"] == 7


def test_the_default_range_is_the_last_seven_utc_days(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    now = datetime.now(UTC)
    recent, old = now - timedelta(days=6), now - timedelta(days=7)
    write_ledger(url, [session_record("recent", "u", recent), session_record("old", "u", old)])

    document = json.loads(run_report("--url", url, "--json", "-").stdout)
    today = now.date()
    assert (document["since"], document["until"]) == (
        (today - timedelta(days=6)).isoformat(),
        today.isoformat(),
    )
    assert (document["total"]["sessions"], document["total"]["responses"]) == (1, 1)


def test_a_range_with_nothing_in_it_says_so(ledger_url: str) -> None:
    result = run_report("--url", ledger_url, "--since", "2020-01-01", "--until", "2020-01-02")
    assert result.exit_code == 0
    assert "Nothing was recorded from 2020-01-01 to 2020-01-02" in result.output
    assert "The ledger holds responses from 2026-05-17 to 2026-05-21." in result.output


def test_a_missing_ledger_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ledger.db"
    result = run_report("--url", f"sqlite+aiosqlite:///{missing}")
    assert result.exit_code == 1
    assert "there is no ledger at" in result.output and str(missing) in result.output
    assert not missing.exists() and not missing.parent.exists()

    default = run_report()  # the default file, under XDG_DATA_HOME: never written here
    assert default.exit_code == 1 and "there is no ledger at" in default.output


def test_an_empty_ledger_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    asyncio.run(upgrade(url))
    result = run_report("--url", url)
    assert result.exit_code == 1
    assert "is empty: no session has been recorded yet" in result.output

    (tmp_path / "other.db").touch()  # a file, but not a ledger
    result = run_report("--url", f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    assert result.exit_code == 1 and "has no ledger tables" in result.output


def test_a_ledger_turned_off_is_said_to_be_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTALK_LEDGER_URL", "off")
    result = run_report()
    assert result.exit_code == 1 and "the ledger is turned off" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-05-20", "--until", "2026-05-19"), "is after --until"),
        (("--csv", "-", "--json", "-"), "only one of --csv and --json"),
        (("--by", "week"), "'week' is not one of"),
        (("--since", "20 May"), "does not match the format"),
    ],
)
def test_bad_options_are_usage_errors(ledger_url: str, args: tuple[str, ...], message: str) -> None:
    result = run_report("--url", ledger_url, *args)
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")


def test_an_unreachable_database_is_an_error_that_hides_its_password() -> None:
    result = run_report("--url", "postgresql+asyncpg://realtalk:s3cret-pw@127.0.0.1:1/ledger")
    assert result.exit_code == 1
    assert "cannot read the ledger postgresql+asyncpg://realtalk:***@127.0.0.1:1/ledger" in result.output
    assert "s3cret-pw" not in result.output


def test_a_file_that_cannot_be_written_is_an_error(ledger_url: str, tmp_path: Path) -> None:
    result = run_report("--url", ledger_url, *RANGE, "--html", str(tmp_path / "no-such-folder" / "r.html"))
    assert result.exit_code == 1 and "cannot write" in result.output


def test_names_from_clients_are_shown_as_text_never_as_markup(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    names = ["[red]mallory[/red]", "<img src=x onerror=alert(1)>"]
    start = datetime(2026, 5, 18, 9, tzinfo=UTC)
    write_ledger(url, [session_record(f"s{n}", name, start) for n, name in enumerate(names)])

    result = run_report("--url", url, *RANGE, "--by", "user", "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    assert "[red]mallory[/red]" in result.stdout
    html = (tmp_path / "r.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html
