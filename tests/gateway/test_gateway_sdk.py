"""The official SDK, unmodified, pointed at the gateway instead of Azure: a voice turn and a barge-in."""

from __future__ import annotations

import base64
import json
from typing import Any

from realtalk.emulator import parse_scenario

from .conftest import fixture_pcm

LONG_REPLY = " ".join(["This is a long answer that keeps going so that the user can interrupt it."] * 6)


async def _until(conn: Any, event_type: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    while True:
        event = json.loads(await conn.recv_bytes())
        seen.append(event)
        if event["type"] == event_type:
            return event


async def _stream(conn: Any, pcm: bytes, chunk_ms: int = 100) -> None:
    step = chunk_ms * 48
    for offset in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[offset : offset + step]).decode())


async def test_the_sdk_runs_a_voice_turn_through_the_gateway(emulator, gateway, sdk) -> None:
    async with emulator() as emu, gateway(emu) as gw, sdk(gw) as conn:
        created = await conn.recv()  # parsed by the SDK's own types
        assert created.type == "session.created"
        seen: list[dict[str, Any]] = []
        await _until(conn, "session.updated", seen)  # the gateway's authoritative update
        await _stream(conn, fixture_pcm("question"))
        stopped = await _until(conn, "input_audio_buffer.speech_stopped", seen)
        done = await _until(conn, "response.done", seen)

        assert done["response"]["status"] == "completed"
        types = [event["type"] for event in seen]
        assert types.index("input_audio_buffer.speech_started") < types.index("input_audio_buffer.committed")
        audio = b"".join(
            base64.b64decode(e["delta"]) for e in seen if e["type"] == "response.output_audio.delta"
        )
        assert len(audio) > 24_000  # more than half a second of reply, every byte forwarded
        assert stopped["audio_end_ms"] > 4_000
        # Every append the SDK sent reached the emulator (they are forwarded as the same text).
        appended = emu.stats.events_received("input_audio_buffer.append")
        assert len(appended) == -(-len(fixture_pcm("question")) // 4800)


async def test_the_sdk_barges_in_and_its_own_truncate_reaches_the_server(emulator, gateway, sdk) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=4.0, scenario=scenario) as emu, gateway(emu) as gw, sdk(gw) as conn:
        seen: list[dict[str, Any]] = []
        await _until(conn, "session.updated", seen)
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me"}]}
        )
        await conn.response.create()
        added = await _until(conn, "response.output_item.added", seen)
        for _ in range(3):
            await _until(conn, "response.output_audio.delta", seen)
        await _stream(conn, fixture_pcm("question"))
        await _until(conn, "input_audio_buffer.speech_started", seen)
        done = await _until(conn, "response.done", seen)
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"

        item_id = added["item"]["id"]
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=200)
        truncated = await _until(conn, "conversation.item.truncated", seen)
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 200)
        sent = emu.stats.events_received("conversation.item.truncate")
        assert [(e["item_id"], e["audio_end_ms"]) for e in sent] == [(item_id, 200)]
