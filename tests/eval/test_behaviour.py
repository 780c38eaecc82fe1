"""The instructions and tools suites: the rules (pure), then runs against the emulator on 127.0.0.1
with the built-in WAV fixtures: the echo's deterministic scores, scripted replies and calls that pass
or fail the checks, and a grader model answering through the emulator's Responses API."""

from __future__ import annotations

from typing import Any

import pytest

from realtalk.client.credentials import ApiKeyCredential
from realtalk.eval.behaviour import (
    arguments_match,
    check_rules,
    count_sentences,
    count_words,
    detect_language,
)
from realtalk.eval.cases import Case, builtin_cases, case_phrases
from realtalk.eval.runner import EMULATOR_ECHO_PREFIX, RunResult, run_cases
from realtalk.eval.suite import Grader
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.testing import Emulator, EmulatorConfig, parse_scenario

PRICES = prices_for("gpt-realtime-1.5")
INSTRUCTIONS = builtin_cases("instructions")
TOOLS = builtin_cases("tools")
KEY = "eval-behaviour-test-key"


# --- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The capital of Italy is Rome, and it is a beautiful city.", "en"),
        ("La capitale de l'Italie est Rome, et c'est une ville que je trouve belle.", "fr"),
        ("Die Hauptstadt von Italien ist Rom und sie ist sehr schön.", "de"),
        ("La capital de Italia es Roma y es una ciudad muy bonita.", "es"),
        ("La capitale dell'Italia è Roma e non è una città piccola.", "it"),
    ],
)
def test_the_language_of_a_sentence_is_detected_from_its_function_words(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_too_little_evidence_is_no_language() -> None:
    assert detect_language("Rome.") is None
    assert detect_language("") is None


def test_words_and_sentences_are_counted() -> None:
    assert count_words("It's a well-known fact: 42 cats.") == 6
    assert count_sentences("One. Two! Three? Four") == 4
    assert count_sentences("No full stop at the end") == 1
    assert count_sentences("The value is 3.5 today.") == 1
    assert count_sentences("") == 0


def test_each_rule_gives_its_own_check() -> None:
    rules = {"language": "fr", "max_words": 6, "max_sentences": 1, "must_include": ["Ada"]}
    assert check_rules(rules, "My name is Ada.") == {
        "language": False,  # English
        "max_words": True,
        "max_sentences": True,
        "must_include": True,
    }
    assert check_rules(rules, "Bonjour. Je suis Adam et je suis votre assistant.") == {
        "language": True,
        "max_words": False,
        "max_sentences": False,
        "must_include": False,  # whole words: "Adam" is not "Ada"
    }


def test_a_refusal_is_recognised_and_a_forecast_is_not_one() -> None:
    rules = {"refuse": True, "must_not_include": ["degrees", "rain"]}
    assert check_rules(rules, "I'm sorry, I can't help with the weather. Anything else?") == {
        "refusal": True,
        "must_not_include": True,
    }
    assert check_rules(rules, "Tomorrow in Oslo: 4 degrees and light rain.") == {
        "refusal": False,
        "must_not_include": False,
    }
    assert check_rules(rules, "I\u2019m sorry, that is not something I discuss.")["refusal"] is True


def test_arguments_match_texts_without_case_numbers_by_value_and_never_a_number_as_text() -> None:
    assert arguments_match({"city": "Oslo"}, {"city": " oslo ", "units": "metric"})
    assert arguments_match({"minutes": 5}, {"minutes": 5.0})
    assert not arguments_match({"minutes": 5}, {"minutes": "5"})
    assert not arguments_match({"minutes": 5}, {})
    assert not arguments_match({"flag": True}, {"flag": 1})
    assert not arguments_match({"city": "Oslo"}, "city=Oslo")  # arguments that were not JSON


# --- against the emulator -------------------------------------------------------------------------


async def _run(cases: tuple[Case, ...], *, grader_model: str | None = None, **config: Any) -> RunResult:
    async with Emulator(
        EmulatorConfig(keys=(KEY,), pace=None, phrases=case_phrases(cases), **config)
    ) as emulator:
        endpoint = resolve_endpoint(emulator.http_base_url, "gpt-realtime-1.5")
        credential = ApiKeyCredential(KEY, style="bearer")
        grader = Grader(endpoint, credential, grader_model) if grader_model else None
        return await run_cases(
            cases,
            endpoint=endpoint,
            credential=credential,
            profile=None,
            prices=PRICES,
            speed=4.0,
            endpoint_kind="emulator",
            reply_prefix=EMULATOR_ECHO_PREFIX,
            grader=grader,
        )


async def test_the_echo_fails_the_instructions_it_ignores_and_passes_the_one_it_happens_to_meet() -> None:
    run = await _run(INSTRUCTIONS)
    checks = {case.case_id: case.checks for case in run.cases}
    assert all(case.status == "ok" for case in run.cases), run.cases
    assert checks["language-french-1"] == {"language": False}  # it echoes English
    assert checks["length-short-1"] == {"max_words": True, "max_sentences": True}  # a short echo
    assert checks["refusal-weather-1"] == {"refusal": False, "must_not_include": True}
    assert checks["persona-name-1"] == {"must_include": False}
    words = {case.case_id: case.metrics["reply_words"] for case in run.cases}
    assert words["length-short-1"] == 5  # "explain how the internet works", the preamble removed
    assert all(case.cost_usd > 0 for case in run.cases)


async def test_a_reply_that_follows_the_instructions_passes() -> None:
    french = next(case for case in INSTRUCTIONS if case.id == "language-french-1")
    refusal = next(case for case in INSTRUCTIONS if case.id == "refusal-weather-1")
    (run_fr,) = (
        await _run(
            (french,), scenario=parse_scenario({"turns": [{"say": "La capitale de l'Italie est Rome."}]})
        )
    ).cases
    assert run_fr.checks == {"language": True}, run_fr
    declined = "I'm sorry, I cannot help with the weather. Can I help with something else?"
    (run_no,) = (await _run((refusal,), scenario=parse_scenario({"turns": [{"say": declined}]}))).cases
    assert run_no.checks == {"refusal": True, "must_not_include": True}, run_no


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("PASS\nThe reply is in French.", True),
        ("FAIL\nThe reply is in English.", False),
        ("The reply seems fine to me.", None),
    ],
)
async def test_the_grader_models_verdict_is_a_check_and_no_verdict_is_undecided(
    answer: str, verdict: bool | None
) -> None:
    french = next(case for case in INSTRUCTIONS if case.id == "language-french-1")
    scenario = parse_scenario({"responses": [answer]})
    (result,) = (await _run((french,), grader_model="gpt-4.1-mini", scenario=scenario)).cases
    assert result.status == "ok", result
    assert result.checks["grader"] is verdict
    assert result.checks["language"] is False  # the rules still apply
    reason = result.details["grader_reason"]
    assert (answer.splitlines()[0] in reason) if verdict is not None else ("no PASS or FAIL" in reason)


async def test_a_grader_that_fails_leaves_the_case_scored_by_its_rules() -> None:
    french = next(case for case in INSTRUCTIONS if case.id == "language-french-1")
    scenario = parse_scenario({"responses": [{"error": {"status": 500}}]})
    (result,) = (await _run((french,), grader_model="gpt-4.1-mini", scenario=scenario)).cases
    assert result.status == "ok" and result.checks["grader"] is None
    assert "no verdict" in result.details["grader_reason"]
    assert result.checks["language"] is False


async def test_the_tools_suite_checks_the_call_the_echo_model_makes() -> None:
    run = await _run(TOOLS)
    by_id = {case.case_id: case for case in run.cases}
    assert all(case.status == "ok" for case in run.cases), run.cases
    weather = by_id["weather-city-1"]
    assert weather.checks == {"tool_called": True, "right_tool": True, "right_arguments": True}
    assert weather.details["called"] == [{"name": "get_weather", "arguments": {"city": "oslo"}}]
    # The emulator's argument guess takes digits only: "five" gives 0 minutes, which the check catches.
    timer = by_id["timer-minutes-1"]
    assert timer.checks == {"tool_called": True, "right_tool": True, "right_arguments": False}
    assert timer.details["called"][0]["arguments"] == {"minutes": 0}
    assert by_id["no-tool-1"].checks == {"tool_called": True, "right_tool": None, "right_arguments": None}
    assert by_id["no-tool-1"].details["called"] == []


async def test_a_wrong_tool_or_wrong_arguments_fail_their_checks() -> None:
    weather = next(case for case in TOOLS if case.id == "weather-city-1")
    wrong_tool = parse_scenario({"turns": [{"call": {"name": "set_timer", "arguments": {"minutes": 5}}}]})
    (result,) = (await _run((weather,), scenario=wrong_tool)).cases
    assert result.checks == {"tool_called": True, "right_tool": False, "right_arguments": False}
    wrong_city = parse_scenario(
        {"turns": [{"call": {"name": "get_weather", "arguments": {"city": "Bergen"}}}]}
    )
    (result,) = (await _run((weather,), scenario=wrong_city)).cases
    assert result.checks == {"tool_called": True, "right_tool": True, "right_arguments": False}
    no_tool = next(case for case in TOOLS if case.id == "no-tool-1")
    eager = parse_scenario({"turns": [{"call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]})
    (result,) = (await _run((no_tool,), scenario=eager)).cases
    assert result.checks["tool_called"] is False


async def test_a_grader_with_list_prices_adds_its_cost_and_one_without_is_noted_not_guessed() -> None:
    french = next(case for case in INSTRUCTIONS if case.id == "language-french-1")
    scenario = parse_scenario({"responses": ["PASS\nFine."]})
    (plain,) = (await _run((french,))).cases
    (priced,) = (await _run((french,), grader_model="gpt-4.1-mini", scenario=scenario)).cases
    (unpriced,) = (await _run((french,), grader_model="my-grader", scenario=scenario, deployments=())).cases
    assert priced.checks["grader"] is True and unpriced.checks["grader"] is True
    assert priced.cost_usd > plain.cost_usd  # the grader's tokens at gpt-4.1-mini's list prices
    assert unpriced.cost_usd == plain.cost_usd
    assert "not counted" in unpriced.details["grader_cost"] and "grader_cost" not in priced.details
