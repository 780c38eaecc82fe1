"""Function calls and their round trip (§2.5 D)."""

from __future__ import annotations

import json

from realtalk.emulator import parse_scenario

from .conftest import fixture_pcm

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL_ORDER = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.function_call_arguments.delta",
]


def _user_text(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_a_tool_call_round_trip(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER_TOOL]}}
        )
        assert (await stream.until("session.updated"))["session"]["tools"] == [WEATHER_TOOL]
        await stream.send(
            {"type": "conversation.item.create", "item": _user_text("what is the weather like in oslo today")}
        )
        start = len(stream.events)
        await stream.send({"type": "response.create"})
        done = await stream.until("response.done")
        types = stream.types(start + 2)  # after the user item's added/done
        assert types[: len(CALL_ORDER)] == CALL_ORDER
        assert types[-4:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        arguments_done = next(
            e for e in stream.events if e["type"] == "response.function_call_arguments.done"
        )
        assert arguments_done["name"] == "get_weather"
        assert json.loads(arguments_done["arguments"]) == {"city": "oslo"}
        deltas = "".join(
            e["delta"] for e in stream.events if e["type"] == "response.function_call_arguments.delta"
        )
        assert deltas == arguments_done["arguments"]
        call = done["response"]["output"][0]
        assert call["type"] == "function_call" and call["status"] == "completed"
        assert (
            call["call_id"] == arguments_done["call_id"] and call["arguments"] == arguments_done["arguments"]
        )

        await stream.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": '{"temp_c": 7}',
                },
            }
        )
        output_item = await stream.until(
            "conversation.item.added", where=lambda e: e["item"]["type"] == "function_call_output"
        )
        assert output_item["previous_item_id"] == call["id"]
        await stream.until("conversation.item.done")
        assert stream.types()[-1] == "conversation.item.done"  # no response until asked (§2.5 D)
        await stream.send({"type": "response.create"})
        follow_up = (await stream.until("response.done"))["response"]
        assert (
            follow_up["output"][0]["content"][0]["transcript"]
            == 'The get_weather function returned: {"temp_c": 7}'
        )


async def test_a_spoken_request_calls_the_tool_it_mentions(emulator, session, speech_engines) -> None:
    async with emulator(engines=speech_engines) as emu, session(emu) as stream:
        await stream.send(
            {"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER_TOOL]}}
        )
        await stream.until("session.updated")
        await stream.append_audio(fixture_pcm("question"))
        arguments = await stream.until("response.function_call_arguments.done")
        assert json.loads(arguments["arguments"]) == {"city": "oslo"}
        await stream.until("response.done")


async def test_tool_choice_none_keeps_the_model_from_calling(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        update = {"type": "realtime", "tools": [WEATHER_TOOL], "tool_choice": "none"}
        await stream.send({"type": "session.update", "session": update})
        await stream.send({"type": "conversation.item.create", "item": _user_text("the weather in oslo")})
        await stream.send({"type": "response.create"})
        done = await stream.until("response.done")
        assert done["response"]["output"][0]["type"] == "message"


async def test_a_scenario_turn_speaks_a_preamble_then_calls_a_function(emulator, session) -> None:
    scenario = parse_scenario(
        {
            "turns": [
                {
                    "say": "Let me check.",
                    "call": {"name": "lookup", "arguments": {"id": 42}, "call_id": "call_fixed"},
                }
            ]
        }
    )
    async with emulator(scenario=scenario) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        done = (await stream.until("response.done"))["response"]
        message, call = done["output"]
        assert message["content"][0]["transcript"] == "Let me check."
        assert (call["name"], call["call_id"], json.loads(call["arguments"])) == (
            "lookup",
            "call_fixed",
            {"id": 42},
        )
        added = [e for e in stream.events if e["type"] == "response.output_item.added"]
        assert [e["output_index"] for e in added] == [0, 1]
