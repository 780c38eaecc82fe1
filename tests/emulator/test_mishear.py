"""Scripted mishearing (issue 18): the emulator can be told to get words wrong, so that eval scoring
is shown to catch errors. ``EmulatorConfig.mishear``, a scenario's ``mishear:``, ``--mishear``."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import realtalk.cli.emulate as emulate_cli
from realtalk.emulator import Emulator, EmulatorConfig, Engines
from realtalk.emulator.asr import apply_mishear, make_recognizer
from realtalk.emulator.conversation import Item
from realtalk.emulator.scenario import ScenarioError, parse_scenario
from realtalk.emulator.transcription import Transcriber

from .conftest import MANIFEST, PHRASES, fixture_pcm

TICKET = (
    "the ticket number is x r four eight nine two"  # the ticket fixture's words, as a recogniser writes them
)

# --- the substitution itself -----------------------------------------------------------------------


def test_matching_is_by_whole_word_and_ignores_case() -> None:
    assert apply_mishear("bob said b then B", [("B", "P")]) == "bob said P then P"
    assert apply_mishear("abba b's b", [("b", "p")]) == "abba b's p"


def test_a_key_of_several_words_matches_them_in_sequence() -> None:
    assert apply_mishear("table four two please four", [("four two", "for two")]) == (
        "table for two please four"
    )
    assert apply_mishear("X  R four", [("x r", "ex are")]) == "ex are four"


def test_a_number_in_a_key_also_matches_its_spoken_digits() -> None:
    assert apply_mishear(TICKET, [("4", "for")]) == "the ticket number is x r for eight nine two"
    assert apply_mishear("code 42 or four two", [("42", "x")]) == "code x or x"


def test_substitutions_apply_in_order_each_to_the_previous_result() -> None:
    assert apply_mishear("four", [("four", "for"), ("for", "fore")]) == "fore"
    assert apply_mishear("four", [("for", "fore"), ("four", "for")]) == "for"


def test_replacements_are_literal_and_an_empty_one_drops_the_words() -> None:
    assert apply_mishear("x marks", [("x", r"\1 $0")]) == r"\1 $0 marks"
    assert apply_mishear("uh hello uh", [("uh", "")]) == "hello"
    assert apply_mishear("a.b (c)", []) == "a.b (c)"  # none: untouched


def test_the_config_refuses_malformed_substitutions() -> None:
    with pytest.raises(ValueError, match="blank key"):
        EmulatorConfig(mishear=(("  ", "x"),))
    with pytest.raises(ValueError, match=r"\(heard, written\) pair"):
        EmulatorConfig(mishear=(("b",),))  # type: ignore[arg-type]
    assert EmulatorConfig(mishear=(("b", "p"),)).effective_mishear == (("b", "p"),)


# --- scenario files --------------------------------------------------------------------------------


def test_a_scenario_mishear_mapping_keeps_its_order_and_follows_the_configs() -> None:
    scenario = parse_scenario({"mishear": {"B": "P", 4: "for", "um": None}})
    assert scenario.mishear == (("B", "P"), ("4", "for"), ("um", ""))
    config = EmulatorConfig(mishear=(("x", "y"),), scenario=scenario)
    assert config.effective_mishear == (("x", "y"), ("B", "P"), ("4", "for"), ("um", ""))


@pytest.mark.parametrize(
    ("mishear", "message"),
    [
        (["B", "P"], "'mishear' must be a mapping of heard words"),
        ({"": "x"}, "mishear: a key is blank"),
        ({True: "x"}, "mishear: key True must be a text"),
        ({"no": False}, "mishear: value of 'no' False must be a text"),
        ({"b": ["p"]}, "mishear: value of 'b' ['p'] must be a text"),
    ],
)
def test_a_malformed_scenario_mishear_is_a_scenario_error_naming_it(mishear: Any, message: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario({"mishear": mishear})
    assert message in str(raised.value)


# --- the CLI -------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(emulate_cli.emulate)
    return app


def test_the_mishear_flag_reaches_the_config_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EmulatorConfig] = []

    async def serve(config: EmulatorConfig, console: Console) -> None:
        seen.append(config)

    monkeypatch.setattr(emulate_cli, "_serve", serve)
    flags = ["--mishear", "B=P", "--mishear", "4=for", "--mishear", "four two = for two", "--mishear", "um="]
    result = CliRunner().invoke(_app(), flags)
    assert result.exit_code == 0, result.output
    assert seen[0].mishear == (("B", "P"), ("4", "for"), ("four two", "for two"), ("um", ""))


@pytest.mark.parametrize("value", ["BP", "=P"])
def test_a_mishear_flag_without_heard_equals_written_is_a_usage_error(value: str) -> None:
    result = CliRunner().invoke(_app(), ["--mishear", value], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "is not HEARD=WRITTEN" in result.output


def test_the_help_and_banner_name_the_mishearing(fast_engines: Engines) -> None:
    help_text = CliRunner().invoke(_app(), ["--help"], env={"COLUMNS": "200"}).output
    assert "--mishear" in help_text and "HEARD=WRITTEN" in help_text

    async def banner() -> str:
        config = EmulatorConfig(mishear=(("B", "P"), ("um", "")))
        async with Emulator(config, engines=fast_engines) as emu:
            console = Console(record=True, width=200)
            console.print(emulate_cli.render_banner(emu, fast_engines.description))
            return console.export_text()

    assert re.search(r"Mishears +B → P, um → \(nothing\)", asyncio.run(banner()))


# --- real speech ---------------------------------------------------------------------------------


async def test_the_transcriber_gives_the_misheard_text_to_events_and_to_the_responder() -> None:
    pytest.importorskip("pocketsphinx")
    recognizer = make_recognizer("pocketsphinx", phrases=PHRASES)
    engines = Engines(
        make_vad=lambda _settings: None,  # type: ignore[arg-type,return-value]
        recognizer=recognizer,
        synthesizer=None,  # type: ignore[arg-type]
        semantic_silence_ms={},
    )
    emitted: list[dict[str, Any]] = []
    tasks: list[asyncio.Task[Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        emitted.append(event)

    def spawn(coro: Any) -> asyncio.Task[Any]:
        tasks.append(asyncio.ensure_future(coro))
        return tasks[-1]

    pcm = fixture_pcm("question")
    heard = recognizer.transcribe(pcm).text  # a phrase model decodes the same audio the same way
    assert {"weather", "oslo"} <= set(heard.split())
    substitutions = [("weather", "whether"), ("oslo", "oz low")]
    misheard = apply_mishear(heard, substitutions)
    assert "whether" in misheard.split() and "oz low" in misheard and "oslo" not in misheard

    transcriber = Transcriber(engines, spawn, emit, mishear=substitutions)
    item = Item({"id": "item_1", "type": "message", "role": "user", "content": [{"type": "input_audio"}]})
    transcriber.start(item, pcm, {"model": "gpt-4o-transcribe"})
    await asyncio.gather(*tasks)
    result = transcriber.result("item_1")
    assert result is not None and result.result().text == misheard  # what TurnContext.user_text gets
    completed = [e for e in emitted if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert completed[0]["transcript"] == misheard
    deltas = [e["delta"] for e in emitted if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert "".join(deltas) == misheard
    assert item.data["content"][0]["transcript"] == misheard


QUESTION = MANIFEST["question"]["text"]  # "what is the weather like in oslo today": heard exactly


async def _spoken_turn(emulator: Any, session: Any, engines: Engines, **config: Any) -> tuple[str, str]:
    """The question fixture spoken to an emulator: (input transcript, the echo's reply transcript)."""
    async with emulator(engines=engines, **config) as emu, session(emu) as stream:
        await stream.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
                },
            }
        )
        await stream.until("session.updated")
        await stream.append_audio(fixture_pcm("question"), chunk_ms=40)
        done = await stream.until("response.done")
        completed = await stream.until("conversation.item.input_audio_transcription.completed", since=0)
    reply = done["response"]["output"][0]["content"][0]["transcript"]
    return completed["transcript"], reply


async def test_without_substitutions_the_question_is_heard_and_echoed_as_spoken(
    emulator, session, speech_engines
) -> None:
    transcript, reply = await _spoken_turn(emulator, session, speech_engines)
    assert transcript == QUESTION
    assert reply == f"You said: {QUESTION}"


async def test_a_configured_mishearing_reaches_the_transcript_and_the_echo(
    emulator, session, speech_engines
) -> None:
    transcript, reply = await _spoken_turn(
        emulator, session, speech_engines, mishear=(("weather", "whether"), ("OSLO", "oz low"))
    )
    misheard = "what is the whether like in oz low today"
    assert transcript == misheard
    assert reply == f"You said: {misheard}"


async def test_a_scenarios_mishearing_reaches_the_transcript_and_the_echo(
    emulator, session, speech_engines
) -> None:
    scenario = parse_scenario({"mishear": {"in oslo": "in oz low", "oz": "ahs"}, "turns": []})
    transcript, reply = await _spoken_turn(emulator, session, speech_engines, scenario=scenario)
    misheard = "what is the weather like in ahs low today"  # in order: "in oz low", then "oz" -> "ahs"
    assert transcript == misheard
    assert reply == f"You said: {misheard}"
