"""The default responder: a spoken echo, function results read back, the default tool rule."""

from __future__ import annotations

import json
from dataclasses import replace

from realtalk.emulator import CallFunction, EchoResponder, Say, TurnContext
from realtalk.emulator.responder import FunctionResult, Reply, ToolSpec, dictated_reply, guess_arguments

WEATHER = ToolSpec(
    "get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
)


def _said(turn: TurnContext) -> object:
    (action,) = EchoResponder().reply(turn).actions
    return action


def test_the_echo_repeats_what_it_understood() -> None:
    assert _said(TurnContext(1, user_text="what time is it")) == Say("You said: what time is it")


def test_the_echo_reports_audio_it_could_not_understand() -> None:
    assert _said(TurnContext(1, user_audio_ms=2400)) == Say("I heard 2.4 seconds of audio.")


def test_with_no_input_the_echo_greets() -> None:
    assert isinstance(_said(TurnContext(1)), Say)


def test_a_function_result_is_read_back() -> None:
    turn = TurnContext(2, function_result=FunctionResult("call_1", "get_weather", '{"temp_c": 7}'))
    assert _said(turn) == Say('The get_weather function returned: {"temp_c": 7}')


def test_a_mentioned_tool_is_called_with_arguments_from_the_words() -> None:
    call = _said(TurnContext(1, user_text="what is the weather like in oslo today", tools=(WEATHER,)))
    assert isinstance(call, CallFunction) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "oslo"}


def test_an_unmentioned_tool_is_not_called_unless_required() -> None:
    turn = TurnContext(1, user_text="tell me a joke", tools=(WEATHER,))
    assert isinstance(_said(turn), Say)
    forced = TurnContext(1, user_text="tell me a joke", tools=(WEATHER,), tool_choice="required")
    assert isinstance(_said(forced), CallFunction)
    named = TurnContext(
        1, user_text="hi", tools=(WEATHER,), tool_choice={"type": "function", "name": "get_weather"}
    )
    assert isinstance(_said(named), CallFunction)
    never = TurnContext(1, user_text="the weather please", tools=(WEATHER,), tool_choice="none")
    assert isinstance(_said(never), Say)


def test_guessed_arguments_satisfy_the_schema_types() -> None:
    schema = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "tags": {"type": "array"},
        },
    }
    assert guess_arguments(schema, "give me 3 in fahrenheit") == {
        "count": 3,
        "ratio": 3.0,
        "flag": True,
        "unit": "fahrenheit",
        "tags": [],
    }


def test_instructions_dictating_a_sentence_are_obeyed_without_calling_a_tool() -> None:
    turn = TurnContext(
        response_number=3,
        user_text="what is the status of ticket XR-4892",
        tools=(ToolSpec("get_ticket_status"),),
        instructions='Say exactly this, and nothing else: "One moment, I am checking that."',
    )
    assert EchoResponder().reply(turn) == Reply((Say("One moment, I am checking that."),))
    assert dictated_reply(replace(turn, instructions="You are a help desk.")) is None
