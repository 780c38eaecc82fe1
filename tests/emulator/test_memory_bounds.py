"""The emulator's memory is bounded per session, and nothing of a closed session's traffic stays.

Issue 13, defect 7: a long fuzz run grew the emulator from 107 to 600 MB (its stats kept every
event payload of every session, closed or not), and a soak grew it ~48 MB/min (each conversation
kept every item's audio for ever). These tests drive an in-process emulator over real sockets and
measure with ``tracemalloc``, so they do not depend on how the emulator accounts for itself.
"""

from __future__ import annotations

import base64
import gc
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from realtalk.emulator import Emulator, EmulatorStats

MODEL = "gpt-realtime-1.5"
MARKER = "PAYLOAD-MARKER-7"
BULKY_TEXT = MARKER + "x" * 100_000
BULKY_AUDIO_B64 = base64.b64encode(b"\x01\x02" * 60_000).decode("ascii")  # 120 kB, 2.5 s of PCM16


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _url(emu: Emulator) -> str:
    return f"{emu.websocket_base_url}/realtime?model={MODEL}"


async def _until(ws: ClientConnection, event_type: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == event_type:
            return event


async def _session_with_payloads(emu: Emulator) -> None:
    """One short session whose events carry bulky payloads: text, audio, junk of an unknown type."""
    async with connect(_url(emu), additional_headers={"api-key": "k"}, max_size=None) as ws:
        await _until(ws, "session.created")
        await ws.send(json.dumps({"type": "no.such.event", "event_id": "evt_junk", "junk": BULKY_TEXT}))
        await _until(ws, "error")
        item = {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_audio", "audio": BULKY_AUDIO_B64},
                {"type": "input_text", "text": BULKY_TEXT},
            ],
        }
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await _until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": BULKY_AUDIO_B64}))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "evt_marker"}))
        await _until(ws, "input_audio_buffer.cleared")


def _kept_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _kept_strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _kept_strings(inner)


async def _wait_all_closed(stats: EmulatorStats) -> None:
    await stats.wait_for(lambda s: s.active_sessions == 0, timeout_s=10)


async def test_closed_sessions_leave_counters_not_payloads_and_memory_stays_flat(emulator, traced) -> None:
    n = 20
    async with emulator(pace=None) as emu:
        for _ in range(n):
            await _session_with_payloads(emu)
        await _wait_all_closed(emu.stats)
        after_n = _traced_bytes()
        for _ in range(3 * n):
            await _session_with_payloads(emu)
        await _wait_all_closed(emu.stats)
        after_4n = _traced_bytes()
        grown = after_4n - after_n
        # 60 more sessions, each of which sent ~450 kB: before the fix this grew by tens of MB.
        assert grown < 60 * 16 * 1024, f"grew {grown / 1024:.0f} KiB over 60 closed sessions"
        stats = emu.stats
        # The counters count every session and every event...
        assert stats.connections_accepted == 4 * n
        assert [s.client_event_counts["conversation.item.create"] for s in stats.sessions] == [1] * (4 * n)
        assert all(s.client_events_total == 4 and s.closed for s in stats.sessions)
        # ... while only the latest few closed sessions keep their (payload-free) event summaries.
        with_history = [s for s in stats.sessions if s.client_events]
        assert len(with_history) <= EmulatorStats.CLOSED_SESSIONS_WITH_EVENTS
        assert with_history == list(stats.sessions)[-len(with_history) :]
        kept = list(_kept_strings(stats.events_received()))
        assert not [s for s in kept if MARKER in s or BULKY_AUDIO_B64[:64] in s]
        assert max(len(s) for s in kept) <= EmulatorStats.MAX_STRING_CHARS_KEPT


async def test_an_open_session_keeps_a_bounded_history_of_event_summaries(emulator, traced) -> None:
    async with emulator(pace=None) as emu:
        async with connect(_url(emu), additional_headers={"api-key": "k"}, max_size=None) as ws:
            await _until(ws, "session.created")

            async def junk(count: int) -> int:
                for index in range(count):
                    await ws.send(
                        json.dumps({"type": "no.such.event", "event_id": f"e{index}", "junk": BULKY_TEXT})
                    )
                    await _until(ws, "error")
                return _traced_bytes()

            before = await junk(50)
            after = await junk(200)
            # 200 more events of 100 kB each: 20 MB if kept.
            assert after - before < 2 * 1024 * 1024, f"grew {(after - before) / 1024:.0f} KiB"
            record = emu.stats.sessions[0]
            assert record.client_events_total == 250
            assert record.client_events[-1]["event_id"] == "e199"  # the latest are kept
            assert record.client_events[-1]["junk"] == f"<{len(BULKY_TEXT)} characters>"
    # 200 more events of 100 kB each: 20 MB if kept.
    assert after - before < 2 * 1024 * 1024, f"grew {(after - before) / 1024:.0f} KiB"


USER_AUDIO = base64.b64encode(b"\x10\x00\xf0\xff" * 120_000).decode("ascii")  # 480 kB: 10 s of PCM16


async def _audio_turn(ws: ClientConnection) -> tuple[str, str, int]:
    """A user audio item and a spoken reply: (user item id, assistant item id, reply audio bytes)."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": USER_AUDIO}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    user_id = (await _until(ws, "conversation.item.done"))["item"]["id"]
    await ws.send(json.dumps({"type": "response.create"}))
    reply_bytes = 0
    while (event := json.loads(await ws.recv()))["type"] != "response.done":
        if event["type"] == "response.output_audio.delta":
            reply_bytes += len(base64.b64decode(event["delta"]))
    [output] = event["response"]["output"]
    return user_id, output["id"], reply_bytes


async def _retrieve(ws: ClientConnection, item_id: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
    return (await _until(ws, "conversation.item.retrieved"))["item"]  # type: ignore[no-any-return]


async def test_a_long_conversation_keeps_a_bounded_amount_of_audio(emulator, traced) -> None:
    async with emulator(pace=None) as emu:
        async with connect(_url(emu), additional_headers={"api-key": "k"}, max_size=None) as ws:
            await _until(ws, "session.created")
            for _ in range(8):  # 8 x 10 s of user audio: past the default budget already
                await _audio_turn(ws)
            before = _traced_bytes()
            for _ in range(24):
                await _audio_turn(ws)
            after = _traced_bytes()
    # 24 more turns of 480 kB of user audio (plus the replies): over 11 MB if every item kept its
    # audio. Bounded, it stays within the default budget (2 MiB), already full before the first sample.
    assert after - before < 2 * 1024 * 1024, f"grew {(after - before) / 1024:.0f} KiB over 24 audio turns"


async def test_old_items_keep_their_length_and_text_while_the_latest_keep_their_audio(emulator) -> None:
    budget = 1024 * 1024  # room for the latest two user items and their replies, not more
    async with emulator(pace=None, max_conversation_audio_bytes=budget) as emu:
        async with connect(_url(emu), additional_headers={"api-key": "k"}, max_size=None) as ws:
            await _until(ws, "session.created")
            turns = [await _audio_turn(ws) for _ in range(5)]
            (first_user, first_reply, first_reply_bytes) = turns[0]
            (last_user, last_reply, last_reply_bytes) = turns[-1]
            # The latest items still come back whole from conversation.item.retrieve...
            latest = await _retrieve(ws, last_reply)
            assert len(base64.b64decode(latest["content"][0]["audio"])) == last_reply_bytes
            assert (await _retrieve(ws, last_user))["content"][0]["audio"] == USER_AUDIO
            # ... older ones without their audio, but with their transcript.
            old_reply = await _retrieve(ws, first_reply)
            assert "audio" not in old_reply["content"][0]
            assert old_reply["content"][0]["transcript"].startswith("I heard 10.0 seconds")
            assert "audio" not in (await _retrieve(ws, first_user))["content"][0]
            # Truncation still knows the old reply's length, as the service does (§2.5 E).
            reply_ms = first_reply_bytes // 48
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": first_reply,
                        "content_index": 0,
                        "audio_end_ms": reply_ms + 50,
                    }
                )
            )
            error = (await _until(ws, "error"))["error"]
            assert (
                f"Audio content of {reply_ms}ms is already shorter than {reply_ms + 50}ms" in error["message"]
            )
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": first_reply,
                        "content_index": 0,
                        "audio_end_ms": 500,
                    }
                )
            )
            assert (await _until(ws, "conversation.item.truncated"))["audio_end_ms"] == 500
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": first_reply,
                        "content_index": 0,
                        "audio_end_ms": 501,
                    }
                )
            )
            assert "already shorter than 501ms" in (await _until(ws, "error"))["error"]["message"]
