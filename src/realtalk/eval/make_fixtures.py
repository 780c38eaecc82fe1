"""Regenerate the built-in eval suites' fixtures: one WAV per case and ``fixtures/<suite>.yaml``.

Needs Debian's espeak-ng. Each WAV is 24 kHz mono 16-bit PCM, spoken by ``cases.synthesise_speech``
(espeak-ng's en-us+f2 voice at 170 words per minute, its own silence trimmed, 300 ms of silence
before and 700 ms after): the same voice a user's text-only case gets at load time. The output is committed,
so runs and tests need no synthesiser; run this again only after changing the cases below.

    python -m realtalk.eval.make_fixtures [suite ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from realtalk.audio.pcm import write_wav
from realtalk.eval.cases import FIXTURES_DIR, synthesise_speech
from realtalk.eval.scoring import normalise_alphanumeric

# (id, style, text spoken, expected answer). The text is the code alone, so that it normalises to
# the expected answer (scoring.normalise_alphanumeric); styles: "digits" (letters and digits one
# by one), "nato" (spelling alphabet), "grouped" (pairs of digits as numbers, "double"), "spelled"
# (a word letter by letter).
ALPHANUMERIC: tuple[tuple[str, str, str, str], ...] = (
    ("plate-digits-1", "digits", "K L seven two B X D", "KL72 BXD"),
    ("plate-nato-1", "nato", "seven November Foxtrot Tango four two nine", "7NFT429"),
    ("plate-grouped-1", "grouped", "B T forty-five twenty-one", "BT 4521"),
    ("ticket-digits-1", "digits", "X R four eight nine two", "XR-4892"),
    ("ticket-nato-1", "nato", "X-ray Romeo four eight nine two", "XR-4892"),
    ("ticket-grouped-1", "grouped", "X R forty-eight ninety-two", "XR-4892"),
    ("serial-digits-1", "digits", "eight H three K nine one P zero five", "8H3-K91-P05"),
    ("serial-grouped-1", "grouped", "S N double five double zero seventy-seven", "SN-5500-77"),
    ("wifi-spelled-1", "spelled", "B L U E four two F O X", "blue42fox"),
    ("wifi-nato-1", "nato", "Hotel Kilo nine Zulu Mike two", "HK9ZM2"),
    ("name-spelled-1", "spelled", "K O W A L S K I", "Kowalski"),
    ("name-nato-1", "nato", "November Golf Uniform Yankee Echo November", "Nguyen"),
)

# The interruption suite: a long question whose echo is a long reply, what the user says over it,
# how much of the reply plays first, and the words the answer after the barge-in must contain
# (timing.follows_intent: each term, or one of its |-alternatives, stemmed): words any answer to
# the new request would say, whether it fulfils it or explains why it cannot.
INTERRUPTION: tuple[dict[str, Any], ...] = (
    {
        "id": "barge-in-early-1",
        "style": "early",
        "text": "tell me the long history of the roman empire from the very beginning to the end",
        "followup_text": "stop please what is the weather in paris",
        "interrupt_after_ms": 600,
        "expected": "weather paris",
    },
    {
        "id": "barge-in-mid-1",
        "style": "mid",
        "text": "please explain in great detail how a jet engine works and why it is so loud",
        "followup_text": "wait instead tell me a joke about cats",
        "interrupt_after_ms": 1500,
        "expected": "cat|joke",
    },
    {
        "id": "barge-in-late-1",
        "style": "late",
        "text": "describe every single step of baking bread at home starting with the flour and water",
        "followup_text": "no stop i want to book a table for two",
        "interrupt_after_ms": 2500,
        "expected": "table|book|reservation",
    },
    {
        "id": "barge-in-mid-2",
        "style": "mid",
        "text": "give me a summary of all the news today and then the weather for the whole week",
        "followup_text": "actually cancel that and set a timer for ten minutes",
        "interrupt_after_ms": 1200,
        "expected": "timer",
    },
)

# The latency suite: short questions, one turn each.
LATENCY: tuple[dict[str, Any], ...] = tuple(
    {"id": f"turn-{n}", "style": "question", "text": text, "expected": text}
    for n, text in enumerate(
        (
            "what time is it",
            "how are you today",
            "what is the capital of france",
            "can you hear me",
            "tell me a joke",
            "what is two plus two",
            "good morning",
            "thank you very much",
        ),
        start=1,
    )
)

# The instructions suite: a system prompt, a question that tests it, and the rules scoring the reply.
INSTRUCTIONS: tuple[dict[str, Any], ...] = (
    {
        "id": "language-french-1",
        "style": "language",
        "instructions": "Always answer in French, whatever language the user speaks.",
        "text": "what is the capital of italy",
        "expected": "An answer in French (Rome is the capital of Italy).",
        "rules": {"language": "fr"},
    },
    {
        "id": "length-short-1",
        "style": "length",
        "instructions": "Answer in one short sentence of at most twelve words.",
        "text": "explain how the internet works",
        "expected": "One sentence of at most twelve words.",
        "rules": {"max_words": 12, "max_sentences": 1},
    },
    {
        "id": "refusal-weather-1",
        "style": "refusal",
        "instructions": (
            "Never discuss the weather. If the user asks about it, say you cannot help with the weather "
            "and offer help with something else."
        ),
        "text": "what will the weather be like in oslo tomorrow",
        "expected": "A polite refusal to talk about the weather, with no forecast.",
        "rules": {"refuse": True, "must_not_include": ["degrees", "sunny", "rain", "cloudy", "snow"]},
    },
    {
        "id": "persona-name-1",
        "style": "persona",
        "instructions": "Your name is Ada. When the user asks your name, tell them.",
        "text": "what is your name",
        "expected": "The assistant says its name is Ada.",
        "rules": {"must_include": ["Ada"]},
    },
)

_WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
_TIMER = {
    "name": "set_timer",
    "description": "Start a countdown timer.",
    "parameters": {
        "type": "object",
        "properties": {"minutes": {"type": "integer", "description": "Length in minutes."}},
        "required": ["minutes"],
    },
}
_BOOKING = {
    "name": "book_table",
    "description": "Book a table at the restaurant.",
    "parameters": {
        "type": "object",
        "properties": {"party_size": {"type": "integer"}, "time": {"type": "string"}},
        "required": ["party_size"],
    },
}

# The tools suite: a spoken request, the tools offered, the tool and arguments expected.
TOOLS: tuple[dict[str, Any], ...] = (
    {
        "id": "weather-city-1",
        "style": "one-argument",
        "text": "what is the weather in oslo",
        "expected": "get_weather",
        "tools": [_WEATHER, _TIMER],
        "arguments": {"city": "Oslo"},
    },
    {
        "id": "timer-minutes-1",
        "style": "number",
        "text": "set a timer for five minutes",
        "expected": "set_timer",
        "tools": [_WEATHER, _TIMER],
        "arguments": {"minutes": 5},
    },
    {
        "id": "booking-party-1",
        "style": "number",
        "text": "please book a table for four people",
        "expected": "book_table",
        "tools": [_WEATHER, _BOOKING],
        "arguments": {"party_size": 4},
    },
    {
        "id": "no-tool-1",
        "style": "no-tool",
        "text": "thank you that is all for now",
        "expected": "none",
        "tools": [_WEATHER, _TIMER],
    },
)

SUITES: dict[str, tuple[dict[str, Any], ...]] = {
    "alphanumeric": tuple(
        {"id": case_id, "style": style, "text": text, "expected": expected}
        for case_id, style, text, expected in ALPHANUMERIC
    ),
    "interruption": INTERRUPTION,
    "latency": LATENCY,
    "instructions": INSTRUCTIONS,
    "tools": TOOLS,
}


def write_suite(suite: str, cases: tuple[dict[str, Any], ...], folder: Path) -> None:
    entries: list[dict[str, Any]] = []
    for case in cases:
        case_id, text = case["id"], case["text"]
        if suite == "alphanumeric" and normalise_alphanumeric(text) != normalise_alphanumeric(
            case["expected"]
        ):
            raise SystemExit(f"{case_id}: {text!r} does not normalise to {case['expected']!r}")
        entry = json.loads(json.dumps(case))  # no shared objects: YAML would write anchors
        entry["audio"] = f"{case_id}.wav"
        write_wav(folder / entry["audio"], synthesise_speech(text))
        if "followup_text" in case:
            entry["followup_audio"] = f"{case_id}-followup.wav"
            write_wav(folder / entry["followup_audio"], synthesise_speech(case["followup_text"]))
        entries.append(entry)
    header = (
        f"# The built-in {suite!r} eval suite: generated by `python -m realtalk.eval.make_fixtures`\n"
        "# (edit the cases there, not here). Audio paths are relative to this file.\n"
    )
    body = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=110)
    (folder / f"{suite}.yaml").write_text(header + body, encoding="utf-8")


def main() -> None:
    FIXTURES_DIR.mkdir(exist_ok=True)
    only = sys.argv[1:] or list(SUITES)
    for suite in only:
        write_suite(suite, SUITES[suite], FIXTURES_DIR)


if __name__ == "__main__":
    main()
