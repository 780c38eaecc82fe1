"""Scenario files: parsing, errors that name the turn, and the order turns are played in."""

from __future__ import annotations

import json

import pytest

from realtalk.emulator import (
    CallFunction,
    CloseSocket,
    DropConnection,
    Faults,
    Say,
    ScenarioError,
    SendError,
    TurnContext,
    load_scenario,
    parse_scenario,
)
from realtalk.emulator.responder import FunctionResult
from realtalk.emulator.scenario import ScenarioResponder

YAML_SCENARIO = """
session_limit_s: 120
faults:
  first_audio_delay_ms: 300
turns:
  - say: "Hello! How can I help you today?"
  - say: "Let me look that up."
    call:
      name: get_weather
      arguments: {city: Oslo}
  - "A bare string is something to say."
  - error: {code: server_error, message: "The server had an error.", type: server_error}
  - say: "Goodbye!"
    close: {code: 1000, reason: bye}
    delay_ms: 1500
  - drop: true
"""


def test_a_yaml_scenario_file_is_read_into_replies(tmp_path) -> None:
    path = tmp_path / "support.yaml"
    path.write_text(YAML_SCENARIO)
    scenario = load_scenario(path)
    assert scenario.session_limit_s == 120
    assert scenario.apply_faults(Faults()) == Faults(first_audio_delay_ms=300)
    hello, lookup, bare, failure, goodbye, drop = scenario.turns
    assert hello.actions == (Say("Hello! How can I help you today?"),)
    assert lookup.actions == (Say("Let me look that up."), CallFunction("get_weather", '{"city": "Oslo"}'))
    assert bare.actions == (Say("A bare string is something to say."),)
    assert failure.actions == (SendError("server_error", "The server had an error.", "server_error"),)
    assert (
        goodbye.actions == (Say("Goodbye!"), CloseSocket(1000, "bye"))
        and goodbye.first_audio_delay_ms == 1500
    )
    assert drop.actions == (DropConnection(),)


def test_a_json_scenario_file_is_read_too(tmp_path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps({"turns": [{"call": [{"name": "a"}, {"name": "b", "arguments": '{"x": 1}'}]}]})
    )
    (turn,) = load_scenario(path).turns
    assert turn.outputs == (CallFunction("a", "{}"), CallFunction("b", '{"x": 1}'))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"turns": [{"sing": "la"}]}, "turn 1: unknown key(s) sing"),
        ({"turns": [{"say": "x", "error": {"message": "m"}}]}, "turn 1: 'error' replaces the response"),
        ({"turns": [{"say": "x"}, {"close": 1006}]}, "turn 2: close code 1006 cannot be sent by a server"),
        (
            {"turns": [{"call": {"name": "f", "arguments": "{oops"}}]},
            "turn 1: 'arguments' is a string but not JSON",
        ),
        ({"turns": [{}]}, "turn 1: nothing to do"),
        ({"faults": {"explode": True}}, "unknown fault(s) explode"),
        ({"after": "loop"}, "'after' must be 'echo' or 'repeat'"),
        ({"turn": []}, "unknown key(s) turn"),
        ([1, 2], "a scenario must be a mapping"),
    ],
)
def test_a_malformed_scenario_is_refused_naming_what_is_wrong(data, message) -> None:
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_scenario(data)


def test_an_unreadable_file_is_a_scenario_error(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)


def test_turns_are_played_in_order_then_the_echo_answers() -> None:
    responder = parse_scenario({"turns": ["one", "two"]}).responder()
    said = [responder.reply(TurnContext(response_number=n, user_text="hi")).actions for n in range(1, 4)]
    assert said == [(Say("one"),), (Say("two"),), (Say("You said: hi"),)]


def test_after_repeat_cycles_through_the_turns() -> None:
    responder = parse_scenario({"turns": ["one", "two"], "after": "repeat"}).responder()
    said = [responder.reply(TurnContext(response_number=n)).actions[0] for n in range(1, 6)]
    assert said == [Say("one"), Say("two"), Say("one"), Say("two"), Say("one")]


def test_each_session_gets_its_own_responder() -> None:
    scenario = parse_scenario({"turns": ["first"]})
    assert scenario.responder().reply(TurnContext(1)).actions == (Say("first"),)
    assert scenario.responder().reply(TurnContext(1)).actions == (Say("first"),)


def test_a_dictated_sentence_is_said_without_using_up_a_scripted_turn() -> None:
    responder = ScenarioResponder(parse_scenario({"turns": [{"say": "First."}, {"say": "Second."}]}))
    filler = TurnContext(1, instructions='Say exactly this, and nothing else: "One moment."')
    assert responder.reply(TurnContext(1)).actions == (Say("First."),)
    assert responder.reply(filler).actions == (Say("One moment."),)
    assert responder.reply(TurnContext(2)).actions == (Say("Second."),)


def test_an_echo_turn_leaves_that_response_to_the_echo_model_mid_script() -> None:
    scenario = parse_scenario(
        {"turns": [{"call": {"name": "get_ticket"}}, {"echo": True}, {"say": "Anything else?"}]}
    )
    responder = ScenarioResponder(scenario)
    assert isinstance(responder.reply(TurnContext(1)).actions[0], CallFunction)
    assert responder.needs_user_text(2) is True  # the echo model may need what the user said
    result = FunctionResult("call_1", "get_ticket", '{"status": "open"}')
    assert responder.reply(TurnContext(2, function_result=result)).actions == (
        Say('The get_ticket function returned: {"status": "open"}'),
    )
    assert responder.needs_user_text(3) is False
    assert responder.reply(TurnContext(3)).actions == (Say("Anything else?"),)
    with pytest.raises(ScenarioError, match="'echo: true' stands alone"):
        parse_scenario({"turns": [{"echo": True, "say": "x"}]})
