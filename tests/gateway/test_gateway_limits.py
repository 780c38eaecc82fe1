"""Limits: concurrent sessions (global, per user), duration, idle time, message size, event rate,
and the per-session dollar budget."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from .conftest import OTHER_TOKEN, TOKEN, b64, text_turn

AUTH = {"gateway_tokens": f"{TOKEN},{OTHER_TOKEN}"}


async def test_the_global_session_limit_refuses_the_next_client_before_any_upstream_connection(
    emulator, gateway, client
) -> None:
    async with emulator() as emu, gateway(emu, gateway_max_sessions=1) as gw, client(gw) as first:
        await first.until("session.created")
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw):
                pass
        assert refused.value.response.status_code == 429
        assert emu.stats.handshakes == 1


async def test_the_per_user_limit_counts_sessions_of_one_token(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_max_sessions_per_user=1, **AUTH) as gw:
        async with client(gw, token=TOKEN) as first:
            await first.until("session.created")
            with pytest.raises(InvalidStatus) as refused:
                async with client(gw, token=TOKEN):
                    pass
            assert refused.value.response.status_code == 429
            async with client(gw, token=OTHER_TOKEN) as other:
                await other.until("session.created")
        assert emu.stats.connections_accepted == 2
        # The slot is given back when the session ends.
        await emu.stats.wait_for(lambda s: s.active_sessions == 0)
        async with client(gw, token=TOKEN) as again:
            await again.until("session.created")


async def test_the_session_duration_limit_ends_the_session_with_a_reason(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_max_session_s=0.5) as gw, client(gw, ui=True) as c:
        await c.until("session.created")
        await c.send({"type": "input_audio_buffer.clear"})  # not idle: the duration is what ends it
        code, reason = await c.closed()
        text = "The session reached the gateway's time limit of 0.5 s; connect again."
        assert (code, reason) == (1008, text)
        assert [e["error"]["message"] for e in c.events if e["type"] == "error"] == [text]
        assert "session_duration" in [e["error"]["code"] for e in c.events if e["type"] == "error"]
        notices = [e for e in c.events if e["type"] == "realtalk.notice"]
        assert notices[-1]["code"] == "session_duration"
        await emu.stats.wait_for(lambda s: s.sessions[0].closed)
        assert emu.stats.sessions[0].close_code == 1000


async def test_an_idle_client_is_disconnected(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_idle_timeout_s=0.3) as gw, client(gw) as c:
        code, reason = await c.closed()
        assert (code, reason) == (
            1008,
            "The client sent nothing for 0.3 s, so the gateway closed the idle session.",
        )
        await emu.stats.wait_for(lambda s: s.sessions[0].closed)


async def test_an_oversized_message_is_refused_and_not_forwarded(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_max_message_bytes=4096) as gw, client(gw) as c:
        await c.until("session.updated")
        await c.send({"type": "input_audio_buffer.append", "audio": b64(bytes(4800)), "event_id": "evt_big"})
        error = await c.error()
        assert error["code"] == "message_too_large" and "4096" in error["message"]
        await c.send({"type": "input_audio_buffer.append", "audio": b64(bytes(480))})
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
        assert [e["audio"] for e in emu.stats.events_received("input_audio_buffer.append")] == ["<480 bytes>"]


async def test_events_above_the_rate_limit_are_refused_and_not_forwarded(emulator, gateway, client) -> None:
    limits = {"gateway_max_events_per_s": 0.01, "gateway_event_burst": 3}
    async with emulator() as emu, gateway(emu, **limits) as gw, client(gw) as c:
        await c.until("session.created")
        for index in range(6):
            await c.send({"type": "input_audio_buffer.clear", "event_id": f"evt_{index}"})
        errors = [await c.error() for _ in range(3)]
        assert [e["code"] for e in errors] == ["rate_limit_exceeded"] * 3
        await emu.stats.wait_for(lambda s: len(s.events_received("input_audio_buffer.clear")) == 3)
        assert [e["event_id"] for e in emu.stats.events_received("input_audio_buffer.clear")] == [
            "evt_0",
            "evt_1",
            "evt_2",
        ]


async def test_the_budget_ends_the_session_with_a_notice_the_ui_shows(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_budget_usd="0.001") as gw, client(gw, ui=True) as c:
        await c.until("realtalk.session")
        for event in text_turn("spend some money"):
            await c.send(event)
        code, reason = await c.closed()
        assert code == 1008 and reason.startswith("session budget of $0.001 reached")
        types = c.types()
        assert types.index("response.done") < types.index("realtalk.cost")
        error = next(e["error"] for e in c.events if e["type"] == "error")
        assert error["code"] == "budget_exceeded"
        notice = next(e for e in c.events if e["type"] == "realtalk.notice")
        assert (notice["level"], notice["code"]) == ("error", "budget_exceeded")
        await emu.stats.wait_for(lambda s: s.sessions[0].closed)
        assert (emu.stats.sessions[0].close_code, emu.stats.sessions[0].close_reason) == (
            1000,
            "session budget reached",
        )


async def test_a_session_under_budget_goes_on(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu, gateway_budget_usd="5") as gw, client(gw, ui=True) as c:
        for event in text_turn("cheap"):
            await c.send(event)
        cost = await c.until("realtalk.cost")
        assert 0 < float(cost["total_usd"]) < 5
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
        assert not emu.stats.sessions[0].closed
