"""A long spoken conversation: what one emulator session holds levels off after a few turns.

Issue 13, defect 7 (the soak): 200 sessions talking through the gateway to ``realtalk emulate``
left the emulator at ~8.7 MB per open session, still growing after hundreds of turns. The user
speaks a fixture in 100 ms ``input_audio_buffer.append`` chunks, the server VAD ends the turn and
the emulator answers with audio (fast engines, no pacing), as ``bench/soak.py`` does; every fifth
turn the client also sends an invalid event. Measured with ``tracemalloc`` in this process (the
emulator's and the client's allocations), so it does not depend on how the emulator accounts for
itself: the session's whole footprint, and its growth from turn 30 to turn 150.
"""

from __future__ import annotations

import base64
import gc
import json
import tracemalloc
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from .conftest import fixture_pcm

MODEL = "gpt-realtime-1.5"
CHUNK_BYTES = 100 * 48  # 100 ms of 24 kHz PCM16
# The fixture "stop please wait" (speech 1.0-2.7 s) from 0.6 s on: the VAD hears it start and end.
SPEECH = fixture_pcm("stop")[600 * 48 :]
CHUNKS = [base64.b64encode(SPEECH[i : i + CHUNK_BYTES]).decode() for i in range(0, len(SPEECH), CHUNK_BYTES)]
AUDIO_BUDGET_BYTES = 256 * 1024  # the conversation's audio (bounded and tested elsewhere): kept small here
MEASURED_FROM_TURN = 30
TURNS = 150
# The whole session, with its 256 KiB of conversation audio (before the fix: 5.3 MiB, as ~32
# recognitions kept their segment's audio alive through a failure's traceback).
MAX_SESSION_BYTES = 1536 * 1024
# What still grows is the conversation itself, every item retrievable: ids, items and transcripts,
# ~1.5 KiB a turn (bounded by max_items and the session's lifetime). Before the fix: 5.3 KiB a turn
# (a fresh usage-cache key per item per response, and summaries counted at half their size).
MAX_GROWTH_BYTES_PER_TURN = 3 * 1024


async def _until(ws: ClientConnection, event_type: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == event_type:
            return event


async def _turn(ws: ClientConnection, number: int) -> int:
    """One spoken turn, answered; returns the responses it got. The session is quiet afterwards:
    every response done, and the answer to an invalid event (sent last) read."""
    if number % 5 == 0:
        await ws.send("{}")
        await _until(ws, "error")
    for chunk in CHUNKS:
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
    await ws.send(json.dumps({"type": "no.such.event", "event_id": f"evt_{number}"}))
    stopped = done = 0
    answered = False
    while not answered or done < stopped:
        kind = json.loads(await ws.recv())["type"]
        stopped += kind == "input_audio_buffer.speech_stopped"
        done += kind == "response.done"
        answered = answered or kind == "error"
    return done


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.slow
async def test_a_long_spoken_conversation_levels_off(emulator) -> None:
    tracemalloc.start()
    try:
        async with emulator(pace=None, max_conversation_audio_bytes=AUDIO_BUDGET_BYTES) as emu:
            url = f"{emu.websocket_base_url}/realtime?model={MODEL}"
            before_session = _traced_bytes()
            async with connect(
                url, additional_headers={"api-key": "k"}, max_size=None, ping_interval=None
            ) as ws:
                await _until(ws, "session.created")
                for number in range(1, MEASURED_FROM_TURN + 1):
                    await _turn(ws, number)
                at_first = _traced_bytes()
                for number in range(MEASURED_FROM_TURN + 1, TURNS + 1):
                    await _turn(ws, number)
                at_last = _traced_bytes()
            record = emu.stats.sessions[0]
    finally:
        tracemalloc.stop()
    # Every turn was heard and answered (the energy VAD may hear "stop | please wait" as two).
    stopped = record.server_event_counts["input_audio_buffer.speech_stopped"]
    assert stopped >= TURNS
    assert record.server_event_counts["response.done"] == stopped
    held = at_last - before_session
    grown = at_last - at_first
    turns = TURNS - MEASURED_FROM_TURN
    assert held < MAX_SESSION_BYTES, f"the session holds {held / 1024:.0f} KiB after {TURNS} turns"
    assert grown < MAX_GROWTH_BYTES_PER_TURN * turns, (
        f"grew {grown / 1024:.0f} KiB over {turns} turns ({grown / 1024 / turns:.2f} KiB a turn)"
    )
