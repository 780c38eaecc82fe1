"""Injected faults: session limit, abrupt drops, scripted errors and closes (§1.6, issue 3 #8)."""

from __future__ import annotations

import asyncio

from realtalk.emulator import Faults, parse_scenario


async def test_the_session_limit_ends_with_session_expired_then_close_1001(emulator, session) -> None:
    async with emulator(session_limit_s=0.6) as emu, session(emu) as stream:
        assert stream.events[0]["session"]["expires_at"] > 0
        error = await stream.error()
        message = "Your session hit the maximum duration of 0.01 minutes."
        assert (error["type"], error["code"], error["message"]) == (
            "invalid_request_error",
            "session_expired",
            message,
        )
        closed = await stream.closed()
        assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1001, message)
        assert emu.stats.sessions[0].close_code == 1001


async def test_a_scenario_sets_its_own_session_limit(emulator, session) -> None:
    scenario = parse_scenario({"session_limit_s": 1.2, "turns": []})
    async with emulator(scenario=scenario) as emu, session(emu) as stream:
        assert (await stream.error())["message"] == "Your session hit the maximum duration of 0.02 minutes."


async def test_an_abrupt_drop_closes_without_a_close_frame(emulator, session) -> None:
    async with emulator(faults=Faults(drop_after_s=0.2)) as emu, session(emu) as stream:
        closed = await stream.closed()
        assert closed.rcvd is None  # no close frame: the client sees 1006
        assert emu.stats.sessions[0].dropped


async def test_a_drop_in_the_middle_of_a_reply(emulator, session) -> None:
    async with emulator(faults=Faults(drop_after_audio_ms=300)) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        closed = await stream.closed()
        assert closed.rcvd is None
        assert stream.types().count("response.output_audio.delta") == 3
        assert "response.done" not in stream.types()


async def test_scenario_turns_can_fail_and_close_the_socket(emulator, session) -> None:
    scenario = parse_scenario(
        {
            "turns": [
                {
                    "error": {
                        "code": "server_error",
                        "message": "The server had an error.",
                        "type": "server_error",
                    }
                },
                {"say": "Goodbye.", "close": {"code": 4000, "reason": "scenario over"}},
            ]
        }
    )
    async with emulator(scenario=scenario) as emu, session(emu) as stream:
        await stream.send({"type": "response.create", "event_id": "evt_r"})
        error = await stream.error()
        assert (error["type"], error["code"], error["event_id"]) == ("server_error", "server_error", "evt_r")
        await stream.send({"type": "response.create"})
        done = await stream.until("response.done")
        assert done["response"]["output"][0]["content"][0]["transcript"] == "Goodbye."
        closed = await stream.closed()
        assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (4000, "scenario over")


async def test_a_scenario_turn_can_drop_the_connection(emulator, session) -> None:
    async with emulator(scenario=parse_scenario({"turns": [{"drop": True}]})) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        closed = await stream.closed()
        assert closed.rcvd is None


async def test_scenario_faults_apply_on_top_of_the_instance_faults(emulator, session) -> None:
    scenario = parse_scenario({"faults": {"rate_limit_from_response": 1}, "turns": []})
    async with (
        emulator(scenario=scenario, faults=Faults(first_audio_delay_ms=10)) as emu,
        session(emu) as stream,
    ):
        await stream.send({"type": "response.create"})
        assert (await stream.error())["code"] == "rate_limit_exceeded"
        assert emu.config.effective_faults.first_audio_delay_ms == 10


async def test_a_scenario_turn_can_delay_its_first_audio(emulator, session) -> None:
    scenario = parse_scenario({"turns": [{"say": "Hmm, let me think.", "delay_ms": 300}]})
    async with emulator(pace=None, scenario=scenario) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        await stream.until("response.created")
        loop = asyncio.get_running_loop()
        created_at = loop.time()
        await stream.until("response.output_audio.delta")
        assert loop.time() - created_at >= 0.28
