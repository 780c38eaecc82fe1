"""The ``realtalk.*`` extension for our browser UI: session facts, transcripts, cost, latency, and
playback reports that the gateway's protocol core turns into ``conversation.item.truncate``."""

from __future__ import annotations

import base64
from typing import Any

from realtalk.emulator import parse_scenario

from .conftest import MODEL, b64, fixture_pcm, text_turn

LONG_REPLY = " ".join(["This is a long answer that keeps going so that the user can interrupt it."] * 6)


async def _stream_like_the_ui(c: Any, pcm: bytes, chunk_ms: int = 40) -> None:
    step = chunk_ms * 48
    for offset in range(0, len(pcm), step):
        # Exactly the UI's shape: type first, compact JSON (a fast-path frame).
        await c.send(
            '{"type":"input_audio_buffer.append","audio":"' + b64(pcm[offset : offset + step]) + '"}'
        )


def _received_samples(c: Any, item_id: str) -> int:
    deltas = [e for e in c.events if e["type"] == "response.output_audio.delta" and e["item_id"] == item_id]
    return sum(len(base64.b64decode(e["delta"])) for e in deltas) // 2


async def test_the_ui_is_told_the_session_facts_once_it_is_ready(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw, ui=True) as c:
        session = await c.until("realtalk.session")
        assert c.types().index("session.updated") < c.types().index("realtalk.session")
        assert session["upstream"] == "emulator"
        assert (session["deployment"], session["budget_usd"], session["sample_rate_hz"]) == (
            MODEL,
            "1.00",
            24000,
        )
        assert session["session_id"].startswith("gw_")
        assert session["upstream_session_id"] == emu.stats.sessions[0].session_id


async def test_playback_reports_become_the_cores_truncate_with_the_played_position(
    emulator, gateway, client
) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=4.0, scenario=scenario) as emu, gateway(emu) as gw, client(gw, ui=True) as c:
        for event in text_turn("tell me"):
            await c.send(event)
        item_id = (await c.until("response.output_item.added"))["item"]["id"]
        while _received_samples(c, item_id) < 12_000:
            await c.until("response.output_audio.delta")
        await c.send({"type": "realtalk.playback", "item_id": item_id, "played_samples": 4_800})
        await c.send({"type": "realtalk.playback", "item_id": item_id, "played_samples": 7_200})
        await _stream_like_the_ui(c, fixture_pcm("question"))
        await c.until("input_audio_buffer.speech_started")
        # The UI flushed its player after 9,600 samples (400 ms at 24 kHz) and says so.
        await c.send({"type": "realtalk.flushed", "item_id": item_id, "played_samples": 9_600})
        truncated = await c.until("conversation.item.truncated")
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 400)
        sent = emu.stats.events_received("conversation.item.truncate")
        assert [(e["item_id"], e["content_index"], e["audio_end_ms"]) for e in sent] == [(item_id, 0, 400)]
        transcript = await c.until("realtalk.transcript", lambda e: any(line["cut"] for line in e["lines"]))
        cut = next(line for line in transcript["lines"] if line["item_id"] == item_id)
        assert (
            cut["role"] == "assistant"
            and LONG_REPLY.startswith(cut["text"])
            and len(cut["text"]) < len(LONG_REPLY)
        )
        # The reports themselves are the gateway's: never forwarded.
        assert not [e for e in emu.stats.events_received() if e["type"].startswith("realtalk.")]


async def test_a_voice_turn_gives_transcripts_cost_and_voice_to_voice_latency(
    emulator, gateway, client
) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw, ui=True) as c:
        await c.until("realtalk.session")
        await _stream_like_the_ui(c, fixture_pcm("question"))
        item_id = (await c.until("response.output_item.added"))["item"]["id"]
        await c.until("response.output_audio.delta")
        await c.send({"type": "realtalk.playback", "item_id": item_id, "played_samples": 2_400})
        latency = await c.until("realtalk.latency")
        assert latency["response_id"] and latency["voice_to_voice_ms"] > 0
        cost = await c.until("realtalk.cost")
        assert float(cost["total_usd"]) > 0 and cost["total_usd"] == cost["turn_usd"]
        assert cost["tokens"]["audio_in"] > 0 and cost["tokens"]["audio_out"] > 0
        transcript = [e for e in c.events if e["type"] == "realtalk.transcript"][-1]
        assert [line["role"] for line in transcript["lines"]] == ["user", "assistant"]
        assert transcript["lines"][-1]["text"].startswith("I heard")
        appended = emu.stats.events_received("input_audio_buffer.append")
        assert len(appended) == -(-len(fixture_pcm("question")) // 1920)


async def test_a_playback_report_for_an_unknown_item_is_dropped_and_the_session_goes_on(
    emulator, gateway, client
) -> None:
    # The page's player reports on its own clock: after a reconnect it may still report items of
    # the previous session. Those reports are dropped (never an error, never the session's end).
    async with emulator() as emu, gateway(emu) as gw, client(gw, ui=True) as c:
        await c.until("realtalk.session")
        await c.send(
            {"type": "realtalk.flushed", "item_id": "item_nope", "played_samples": 10, "event_id": "evt_f"}
        )
        await c.send({"type": "realtalk.playback", "item_id": "item_nope", "played_samples": 20})
        await c.send(
            {"type": "realtalk.playback", "item_id": "item_nope", "played_samples": -1, "event_id": "evt_n"}
        )
        error = await c.error()  # the first error is the malformed report's: the others got none
        assert (error["param"], error["event_id"]) == ("played_samples", "evt_n")
        assert [e["type"] for e in emu.stats.events_received()] == ["session.update"]


async def test_without_opting_in_a_client_gets_no_extension_events(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw) as c:
        for event in text_turn("hi"):
            await c.send(event)
        await c.until("response.done")
        assert not [t for t in c.types() if t.startswith("realtalk.")]
