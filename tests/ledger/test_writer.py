"""The ledger's writer, on SQLite and on a real PostgreSQL server: exact rows, durable within a
second, never blocking, never counting a replay twice, surviving a database restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import fields
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from realtalk.ledger import Ledger, ResponseRecord, responses_between, session_count, upgrade
from realtalk.ledger.schema import sessions
from realtalk.protocol.cost import CostTracker, Usage, prices_for

from .conftest import T0, PostgresServer, response, session

DB_PASSWORD_SECRET = "ledger-db-secret-0123"  # the secret scan fails the run if a log holds it

# A response.done usage as the service sends it: cached tokens inside the text and audio counts.
USAGE = {
    "total_tokens": 6747,
    "input_tokens": 5935,
    "output_tokens": 812,
    "input_token_details": {
        "text_tokens": 1187,
        "audio_tokens": 4748,
        "image_tokens": 0,
        "cached_tokens": 3584,
        "cached_tokens_details": {"text_tokens": 1024, "audio_tokens": 2560, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 163, "audio_tokens": 649},
}
DAY = timedelta(days=1)


def billed_turn(played_samples: int = 18_000, received_samples: int = 72_000) -> CostTracker:
    tracker = CostTracker(prices_for("gpt-realtime-1.5-2026-02-23"))
    tracker.record_playback("resp_1", played_samples=played_samples, received_samples=received_samples)
    tracker.add_turn("resp_1", "cancelled", Usage.from_response_usage(USAGE))
    return tracker


def record_of(tracker: CostTracker, tools_usd: Decimal = Decimal(0)) -> ResponseRecord:
    turn = tracker.last_turn
    assert turn is not None
    return ResponseRecord.from_turn(
        turn,
        session_id="sess_1",
        user="alice",
        deployment="voice-eu",
        pricing_model="gpt-realtime-1.5",
        created_at=T0,
        audio_generated_ms=3000,
        audio_heard_ms=750,
        voice_to_voice_ms=612.5,
        tools_usd=tools_usd,
    )


async def test_a_response_row_holds_the_cores_figures_to_the_last_decimal(ledger: Ledger) -> None:
    tracker = billed_turn()
    turn = tracker.last_turn
    assert turn is not None and turn.unheard_audio_usd > 0
    ledger.session_started(session())
    ledger.response_done(record_of(tracker, tools_usd=Decimal("0.00123")))
    await ledger.flush()

    [row] = await responses_between(ledger, T0, T0 + DAY)
    usage, cost = turn.usage, turn.cost
    assert (row.text_in, row.text_cached, row.audio_in, row.audio_cached) == (1187, 1024, 4748, 2560)
    assert (row.text_out, row.audio_out, row.image_in, row.image_cached) == (163, 649, 0, 0)
    assert (row.text_cached, row.audio_cached) == (usage.cached_text_in, usage.cached_audio_in)
    for part in ("text_in", "text_cached", "text_out", "audio_in", "audio_cached", "audio_out", "image_in"):
        assert getattr(row, f"{part}_usd") == getattr(cost, f"{part}_usd"), part
    assert row.cost_usd == turn.cost_usd + Decimal("0.00123")
    assert row.tools_usd == Decimal("0.00123")
    assert row.unheard_audio_usd == turn.unheard_audio_usd  # 3/4 of the audio unheard: exact
    parts = [getattr(row, f.name) for f in fields(row) if f.name.endswith("_usd")]
    assert sum(parts) == 2 * row.cost_usd + row.unheard_audio_usd  # cost_usd: the sum of the parts
    assert (row.status, row.response_id, row.created_at) == ("cancelled", "resp_1", T0)
    assert (row.audio_generated_ms, row.audio_heard_ms, row.voice_to_voice_ms) == (3000, 750, 612.5)


async def test_an_unheard_share_that_is_a_repeating_fraction_is_kept_to_the_nano_dollar(
    ledger: Ledger,
) -> None:
    tracker = billed_turn(played_samples=24_000, received_samples=72_000)  # 2/3 unheard
    turn = tracker.last_turn
    assert turn is not None
    ledger.response_done(record_of(tracker))
    await ledger.flush()

    [row] = await responses_between(ledger, T0, None)
    assert row.unheard_audio_usd == turn.unheard_audio_usd.quantize(Decimal("1e-9"))
    assert abs(row.unheard_audio_usd - turn.unheard_audio_usd) < Decimal("1e-9")


async def test_money_never_passes_through_a_float(ledger: Ledger) -> None:
    # Neither survives a float: 1e-9 next to a large figure, and 18 significant digits.
    tiny, large = Decimal("0.000000001"), Decimal("123456789.123456789")
    assert Decimal(float(large)) != large
    ledger.response_done(
        ResponseRecord(
            "sess_1", "resp_1", "alice", "voice-eu", "gpt-realtime-1.5", "completed", T0,
            cost_usd=large + tiny, tools_usd=tiny, audio_out_usd=large,
        )
    )  # fmt: skip
    await ledger.flush()

    [row] = await responses_between(ledger, T0, None)
    assert (row.tools_usd, row.audio_out_usd, row.cost_usd) == (tiny, large, Decimal("123456789.123456790"))
    assert str(row.tools_usd) == "1E-9"


def test_sqlite_stores_money_as_an_integer_of_nano_dollars(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"

    async def write() -> None:
        async with await Ledger.open(url) as ledger:
            ledger.response_done(response(cost_usd="0.000000001"))

    asyncio.run(write())
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        assert db.execute("SELECT cost_usd, typeof(cost_usd) FROM responses").fetchone() == (1, "integer")


async def test_a_row_is_readable_from_another_connection_within_one_second_without_flush(
    ledger: Ledger, empty_db_url: str
) -> None:
    async with await Ledger.open(empty_db_url) as reader:
        ledger.session_started(session())
        ledger.response_done(response())
        sent = time.monotonic()
        while not await responses_between(reader, T0, None):
            assert time.monotonic() - sent <= 1.0, "the row was not committed within one second"
            await asyncio.sleep(0.02)
        assert await session_count(reader, since=T0) == 1


async def test_a_full_queue_drops_and_counts_rows_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Ledger.open(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}", max_queue=10) as ledger:
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="realtalk.ledger"):
            # No await in between: the writer cannot drain, so the queue holds exactly 10.
            for n in range(2025):
                ledger.response_done(response(response_id=f"resp_{n}"))
        elapsed_s = time.perf_counter() - started
        assert ledger.dropped_rows == 2015
        assert elapsed_s < 0.5
        drops = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(drops) == 3  # once per 1000: the 1st, 1001st and 2001st
        await ledger.flush()
        assert len(await responses_between(ledger, T0, None)) == 10
        assert ledger.pending_rows == 0


async def test_a_replayed_response_is_counted_once_and_responses_without_an_id_are_all_kept(
    ledger: Ledger,
) -> None:
    ledger.session_started(session())
    ledger.session_started(session())
    for _ in range(3):
        ledger.response_done(response(response_id="resp_1"))
    await ledger.flush()
    ledger.response_done(response(response_id="resp_1"))  # in a later batch too
    ledger.response_done(response(response_id=None))
    ledger.response_done(response(response_id=None))
    await ledger.flush()

    rows = await responses_between(ledger, T0, None)
    assert sorted(str(row.response_id) for row in rows) == ["None", "None", "resp_1"]
    assert await session_count(ledger, since=T0) == 1
    assert ledger.rejected_rows == 0


async def test_a_response_whose_session_row_was_lost_still_gets_a_session(ledger: Ledger) -> None:
    ledger.response_done(response("sess_lost", user="bob"))
    await ledger.flush()
    assert await session_count(ledger, since=T0, user="bob") == 1
    assert [row.session_id for row in await responses_between(ledger, T0, None)] == ["sess_lost"]


async def test_the_end_of_a_session_is_recorded(ledger: Ledger) -> None:
    ledger.session_started(session())
    ledger.session_ended("sess_1", T0 + timedelta(minutes=3), "client closed")
    await ledger.aclose()

    async with await Ledger.open(ledger.engine.url) as reader, reader.engine.connect() as connection:
        row = (await connection.execute(select(sessions))).one()
    assert (row.ended_at, row.end_reason) == (T0 + timedelta(minutes=3), "client closed")
    assert (row.transport, row.client, row.started_at) == ("websocket", "ui", T0)


async def test_rows_queued_when_the_ledger_closes_are_written(ledger: Ledger, empty_db_url: str) -> None:
    for n in range(50):
        ledger.response_done(response(response_id=f"resp_{n}"))
    await ledger.aclose()
    ledger.response_done(response(response_id="late"))
    assert ledger.dropped_rows == 1

    async with await Ledger.open(empty_db_url) as reader:
        assert len(await responses_between(reader, T0, None)) == 50


def test_a_naive_time_is_refused_when_the_record_is_made() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        response(created_at=T0.replace(tzinfo=None))


@pytest.mark.system_package("postgresql")
async def test_a_row_the_database_refuses_is_skipped_and_the_rest_of_its_batch_written(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres.create_database()
    await upgrade(url)
    async with await Ledger.open(url) as ledger:
        ledger.response_done(response(response_id="ok_1"))
        ledger.response_done(response(response_id="x" * 200))  # longer than the column allows
        ledger.response_done(response(response_id="ok_2"))
        with caplog.at_level(logging.ERROR, logger="realtalk.ledger"):
            async with asyncio.timeout(10):
                await ledger.flush()
        assert ledger.rejected_rows == 1
        assert [row.response_id for row in await responses_between(ledger, T0, None)] == ["ok_1", "ok_2"]
    assert any("refused a row" in record.getMessage() for record in caplog.records)


@pytest.mark.system_package("postgresql")
@pytest.mark.slow
async def test_the_writer_survives_a_postgresql_restart_and_writes_the_rows_queued_meanwhile(
    private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_postgres.create_database().replace("postgres@", f"postgres:{DB_PASSWORD_SECRET}@")
    await upgrade(url)
    caplog.set_level(logging.WARNING, logger="realtalk.ledger")
    async with await Ledger.open(url, flush_interval_s=0.05) as ledger:
        ledger.session_started(session())
        ledger.response_done(response(response_id="before"))
        await ledger.flush()

        await asyncio.to_thread(private_postgres.stop)
        for n in range(20):
            ledger.response_done(response(response_id=f"during_{n}"))
            await asyncio.sleep(0.05)  # callers go on; the writer fails and retries meanwhile
        assert ledger.pending_rows == 20
        await asyncio.to_thread(private_postgres.start)

        async with asyncio.timeout(15):
            await ledger.flush()
        rows = await responses_between(ledger, T0, None)
        assert len(rows) == 21 and ledger.dropped_rows == ledger.rejected_rows == 0

    messages = [record.getMessage() for record in caplog.records]
    assert any("failed" in message and "retrying" in message for message in messages), messages
    assert any("is back" in message for message in messages), messages
    assert not any(DB_PASSWORD_SECRET in message for message in messages)
    assert any("***" in message for message in messages)
