"""``realtalk talk`` writes its usage to the ledger (the default SQLite file, or REALTALK_LEDGER_URL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from realtalk.ledger import Ledger, responses_between
from realtalk.ledger.schema import sessions

from .test_talk import SPEED, run_talk


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


async def _read(url: str) -> tuple[list[dict[str, object]], list[object]]:
    async with await Ledger.open(url) as ledger:
        async with ledger.engine.connect() as connection:
            session_rows = [dict(row._mapping) for row in await connection.execute(select(sessions))]
        now = datetime.now(UTC)
        responses = await responses_between(ledger, now - timedelta(hours=1), now + timedelta(hours=1))
    return session_rows, list(responses)


def test_a_conversation_is_in_the_ledger_with_the_cost_the_summary_shows(
    tmp_path: Path, _ledger_in_tmp: Path
) -> None:
    result = run_talk(
        "--output-wav", str(tmp_path / "out.wav"), "--transcription-model", "none",
        "--exit-after-turns", "2", "--speed", SPEED, stdin="hello there\nand again\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    url = f"sqlite+aiosqlite:///{_ledger_in_tmp / 'realtalk' / 'ledger.db'}"
    session_rows, responses = asyncio.run(_read(url))
    [session] = session_rows
    assert (session["transport"], session["client"], session["deployment"]) == (
        "terminal",
        "talk",
        "gpt-realtime-1.5",
    )
    assert session["ended_at"] is not None
    assert len(responses) == 2 and {r.session_id for r in responses} == {session["session_id"]}
    assert all(r.status == "completed" and r.audio_generated_ms > 0 and r.audio_out > 0 for r in responses)
    total = sum((r.cost_usd for r in responses), Decimal(0))
    # The summary prints the session's cost to the cent or better; the ledger holds it exactly.
    assert f"${total:.4f}" in result.output or f"${total:.3f}" in result.output, (total, result.output[-600:])


def test_the_ledger_can_be_turned_off(
    tmp_path: Path, _ledger_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTALK_LEDGER_URL", "off")
    result = run_talk(
        "--output-wav", str(tmp_path / "out.wav"), "--transcription-model", "none",
        "--exit-after-turns", "1", "--speed", SPEED, stdin="hello there\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (_ledger_in_tmp / "realtalk" / "ledger.db").exists()


def test_a_configured_ledger_url_that_cannot_be_used_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTALK_LEDGER_URL", "mysql://user:hunter2@db/ledger")
    result = run_talk("--output-wav", str(tmp_path / "out.wav"), "--duration", "1", stdin="")
    assert result.exit_code == 2
    assert "ledger" in result.output and "hunter2" not in result.output
