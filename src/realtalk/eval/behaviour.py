"""The instructions and tools suites: does the model do what its system prompt and its tools ask?

*instructions*: the case's ``instructions`` are the session's system prompt (after the profile's
own); the question is spoken; the reply's transcript is scored by the case's ``rules`` with the
pure functions below, one check per rule, and, when a grader model is configured, by the grader's
verdict through the Responses API. *tools*: the case's function tools are offered; the request is
spoken; the first call's name and arguments are checked. Nobody answers the call: the case only
asks which call the model made.

The rules, exactly (case-insensitive throughout; the reply is scored without the responder's fixed
preamble, ``CaseContext.reply_prefix``):

- ``language``: the language whose function words (``STOP_WORDS``: about 30 per language) occur most
  often among the reply's words, if at least two do and no other language has as many;
- ``max_words``: words are runs of letters and digits (with inner ' or -); ``max_sentences``:
  sentences end at ., ! or ? followed by a space or the end (a reply without one is one sentence);
- ``refusal`` (rule ``refuse: true``): the reply contains one of ``REFUSAL_PHRASES``;
- ``must_include`` / ``must_not_include``: each phrase as whole words.

Tool arguments (``right_arguments``): every key of the case's ``arguments`` must be in the call's
arguments with an equal value: texts equal after trimming, case-insensitively; numbers equal by
value (5 == 5.0), but a number never equals a text ("5" is not 5: the schema said integer); other
values (booleans, lists, objects) equal exactly.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from realtalk.client.delegation import DelegationSettings, DelegationTool, ExpertUnavailable
from realtalk.errors import ConfigError
from realtalk.eval.alphanumeric import with_transcription
from realtalk.eval.cases import Case
from realtalk.eval.suite import CaseContext, CaseOutcome, Grader
from realtalk.eval.turns import speak_turn, strip_prefix
from realtalk.protocol.text_prices import TextPrices

__all__ = [
    "GRADER_INSTRUCTIONS",
    "REFUSAL_PHRASES",
    "STOP_WORDS",
    "TOOLS_INSTRUCTIONS",
    "arguments_match",
    "check_rules",
    "count_sentences",
    "count_words",
    "detect_language",
    "grade",
    "run_instructions",
    "run_tools",
]

STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the a an and or but is are was were be it this that of to in on for with what you your i my "
        "we not do does have has can will".split()
    ),
    "fr": frozenset(
        "le la les un une des et ou mais est sont était être ce cette de du au aux en dans pour avec "
        "que qui vous je nous ne pas il elle".split()
    ),
    "de": frozenset(
        "der die das ein eine und oder aber ist sind war sein es dies von zu im in auf für mit was "
        "sie ich wir nicht du hat kann wird".split()
    ),
    "es": frozenset(
        "el la los las un una y o pero es son era ser esto eso de del al en para con que qué usted "
        "yo nosotros no lo se por".split()
    ),
    "it": frozenset(
        "il lo la gli le un una e o ma è sono era essere questo di del della al in per con che "
        "io noi non si ha".split()
    ),
}
"""Function words per language (``detect_language``); a word may count for several languages."""

REFUSAL_PHRASES: tuple[str, ...] = (
    "can't help",
    "cannot help",
    "can not help",
    "can't discuss",
    "cannot discuss",
    "can't talk about",
    "cannot talk about",
    "not able to",
    "unable to",
    "i'm sorry",
    "i am sorry",
    "sorry, but",
    "i won't",
    "i will not",
    "not allowed to",
    "i can't",
    "i cannot",
    "i'm not able",
)
"""Phrases of declining (the ``refusal`` check)."""

TOOLS_INSTRUCTIONS = "Use a tool when one fits the request; otherwise answer briefly."
GRADER_INSTRUCTIONS = (
    "You grade a voice assistant's reply against the system prompt it was given. Answer with PASS or "
    "FAIL on the first line, then one sentence saying why. PASS only if the reply follows every "
    "instruction of the system prompt and does what the expected behaviour describes."
)
_GRADER_OUTPUT_TOKENS = 200
_VERDICT = re.compile(r"^\W*(PASS|FAIL)\b", re.IGNORECASE)
_APOSTROPHE = "\u2019"  # a typographic apostrophe, read as '
_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")


# --- the rules (pure) ---------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return [word.casefold().replace(_APOSTROPHE, "'") for word in _WORD.findall(text)]


def count_words(text: str) -> int:
    """Words in ``text``: runs of letters and digits, with inner apostrophes or hyphens."""
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    """Sentences in ``text``: pieces ending at ., ! or ? that hold a word; at least one if any word."""
    pieces = [piece for piece in _SENTENCE_END.split(text) if _WORD.search(piece)]
    return len(pieces)


def detect_language(text: str) -> str | None:
    """The language (``en``, ``fr``, ``de``, ``es``, ``it``) whose function words occur most often
    in ``text``; ``None`` with fewer than two, or a tie."""
    words = _words(text)
    counts = {code: sum(word in stop for word in words) for code, stop in STOP_WORDS.items()}
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top == second:
        return None
    return best


def _contains(text: str, phrase: str) -> bool:
    pattern = r"(?<![^\W_])" + r"\s+".join(re.escape(w) for w in phrase.casefold().split()) + r"(?![^\W_])"
    return re.search(pattern, text.casefold().replace(_APOSTROPHE, "'")) is not None


def check_rules(rules: Mapping[str, Any], reply: str) -> dict[str, bool]:
    """One verdict per rule of ``rules`` (see the module docstring): ``language``, ``max_words``,
    ``max_sentences``, ``refusal`` (from ``refuse: true``), ``must_include``, ``must_not_include``."""
    checks: dict[str, bool] = {}
    if "language" in rules:
        checks["language"] = detect_language(reply) == rules["language"]
    if "max_words" in rules:
        checks["max_words"] = count_words(reply) <= rules["max_words"]
    if "max_sentences" in rules:
        checks["max_sentences"] = count_sentences(reply) <= rules["max_sentences"]
    if rules.get("refuse"):
        checks["refusal"] = any(_contains(reply, phrase) for phrase in REFUSAL_PHRASES)
    if "must_include" in rules:
        checks["must_include"] = all(_contains(reply, phrase) for phrase in rules["must_include"])
    if "must_not_include" in rules:
        checks["must_not_include"] = not any(_contains(reply, phrase) for phrase in rules["must_not_include"])
    return checks


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    return bool(expected == actual)


def arguments_match(expected: Mapping[str, Any], actual: Any) -> bool:
    """Whether the call's (parsed) arguments hold every key of ``expected`` with an equal value."""
    if not isinstance(actual, Mapping):
        return False
    return all(key in actual and _equal(value, actual[key]) for key, value in expected.items())


# --- the grader ---------------------------------------------------------------------------------


async def grade(
    grader: Grader, *, instructions: str, user: str, reply: str, expected: str
) -> tuple[bool | None, str, Decimal | None]:
    """Ask the grader model whether ``reply`` follows ``instructions``: (verdict, its reason or why
    there is none, its cost in USD or ``None`` when the model has no list prices). Never raises for
    the grader's own failures: a verdict of ``None`` says the grader could not decide."""
    settings = DelegationSettings(
        deployment=grader.model,
        name="grade_reply",
        instructions=GRADER_INSTRUCTIONS,
        max_output_tokens=_GRADER_OUTPUT_TOKENS,
    )
    try:
        tool = DelegationTool(
            settings, rest_base_url=grader.endpoint.rest_base_url, credential=grader.credential
        )
        priced = True
    except ConfigError:
        # No list prices for this model name: grade anyway; the cost is not counted.
        zero = TextPrices(input=Decimal(0), cached_input=Decimal(0), output=Decimal(0))
        tool = DelegationTool(
            settings, rest_base_url=grader.endpoint.rest_base_url, credential=grader.credential, prices=zero
        )
        priced = False
    question = (
        f"System prompt:\n{instructions}\n\nThe user said:\n{user}\n\nThe assistant replied:\n{reply}\n\n"
        f"Expected behaviour:\n{expected}"
    )
    try:
        result = await tool.invoke({"question": question})
    except (ExpertUnavailable, ValueError) as exc:
        return None, f"the grader gave no verdict: {exc}", (tool.cost_usd if priced else None)
    finally:
        await tool.aclose()
    answer = str(result.value.get("answer", "")) if isinstance(result.value, Mapping) else str(result.value)
    found = _VERDICT.search(answer)
    reason = answer.strip()[:300]
    if found is None:
        return (
            None,
            f"the grader's answer has no PASS or FAIL line: {reason!r}",
            (result.cost_usd if priced else None),
        )
    return found[1].upper() == "PASS", reason, (result.cost_usd if priced else None)


# --- the suites ---------------------------------------------------------------------------------


async def run_instructions(case: Case, ctx: CaseContext) -> CaseOutcome:
    """Speak the case to a session whose system prompt is the case's instructions; score the reply
    by its rules (and the grader, if any)."""
    instructions = case.instructions or ""
    profile = with_transcription(ctx.profile, instructions, ctx.transcription_model)
    turn = await speak_turn(case.audio, ctx, profile)
    outcome = CaseOutcome(
        transcript=turn.transcript, reply=turn.reply, cost_usd=turn.cost_usd, latency_ms=turn.latency_ms
    )
    outcome.error = turn.error
    outcome.details["server_model"] = turn.server_model
    if turn.reply is None:
        return outcome
    reply = strip_prefix(turn.reply, ctx.reply_prefix)
    outcome.metrics["reply_words"] = float(count_words(reply))
    outcome.checks.update(check_rules(case.rules, reply))
    if ctx.grader is not None:
        verdict, reason, cost = await grade(
            ctx.grader,
            instructions=instructions,
            user=turn.transcript or case.text,
            reply=reply,
            expected=case.expected,
        )
        outcome.checks["grader"] = verdict
        outcome.details["grader_reason"] = reason
        if cost is None:
            outcome.details["grader_cost"] = f"not counted: no list prices for {ctx.grader.model}"
        else:
            outcome.cost_usd += cost
    return outcome


async def run_tools(case: Case, ctx: CaseContext) -> CaseOutcome:
    """Speak the request with the case's tools offered; check the call the model made."""
    base = with_transcription(ctx.profile, TOOLS_INSTRUCTIONS, ctx.transcription_model)
    tools = tuple({"type": "function", **tool} for tool in case.tools)
    profile = dataclasses.replace(base, tools=tools, tool_choice="auto")
    turn = await speak_turn(case.audio, ctx, profile)
    called = []
    for call in turn.tool_calls:
        try:
            arguments: Any = json.loads(call.arguments)
        except json.JSONDecodeError:
            arguments = call.arguments
        called.append({"name": call.name, "arguments": arguments})
    expects_tool = case.expected.strip().casefold() != "none"
    first = called[0] if called else None
    checks: dict[str, bool | None] = {"tool_called": bool(called) == expects_tool}
    checks["right_tool"] = (first is not None and first["name"] == case.expected) if expects_tool else None
    checks["right_arguments"] = (
        (first is not None and arguments_match(case.arguments, first["arguments"]))
        if expects_tool and case.arguments is not None
        else None
    )
    details: dict[str, Any] = {"server_model": turn.server_model, "called": called}
    if case.arguments is not None:
        details["expected_arguments"] = dict(case.arguments)
    return CaseOutcome(
        transcript=turn.transcript,
        reply=turn.reply,
        cost_usd=turn.cost_usd,
        latency_ms=turn.latency_ms,
        checks=checks,
        details=details,
        error=turn.error,
    )
