"""Scenario files: scripted replies and faults for the emulator, in YAML or JSON.

A scenario lists one turn per response, consumed in the order responses are created within a
session (every session starts again at the first turn). When the turns run out the emulator goes
on with the spoken echo, or cycles through the turns again with ``after: repeat``::

    # support-bot.yaml
    session_limit_s: 120            # optional: this scenario's maximum session duration
    faults:                         # optional: any field of realtalk.emulator.faults.Faults
      first_audio_delay_ms: 300
    after: echo                     # echo (default) | repeat
    mishear:                        # optional: scripted recognition errors, applied in this order
      B: P                          # whole words, case-insensitive: "B" -> "P" leaves "Bob" alone
      "4": for                      # a number also matches its spoken digits ("four")
      four two: for two             # several words match in sequence
    turns:
      - say: "Hello! How can I help you today?"
      - say: "Let me look that up."  # a spoken preamble (output 0) ...
        call:                        # ... then a function call (output 1); a list calls several
          name: get_weather
          arguments: {city: Oslo}    # an object, or a JSON string
      - say: "It is seven degrees in Oslo."
        delay_ms: 1500               # slow first audio for this turn only
      - error: {code: server_error, message: "The server had an error.", type: server_error}
      - say: "Goodbye!"
        close: {code: 1000, reason: "bye"}   # close the socket after this response
      - drop: true                   # abort the transport: no close frame
      - echo: true                   # the echo model answers this turn (reads a tool's output back)
    responses:                      # optional: the Responses API's answers (POST /openai/v1/responses)
      - "Paris is the capital of France."
      - say: "About two million people live there."
        delay_ms: 1500               # answer late (streamed: after response.in_progress)
      - delay_ms: 30000              # the default answer, late
      - error: {status: 429, message: "Rate limit reached.", retry_after_s: 2}   # an HTTP error instead

``mishear`` changes what the emulator recognised in each spoken user turn, before anything uses
it: the ``input_audio_transcription`` transcript and the words the echo reads back both carry the
error (see ``realtalk.emulator.asr.apply_mishear``). Quote keys and values YAML would read as
numbers or booleans ("4", "no"); an empty value drops the words. They apply after the emulator's
own (``realtalk emulate --mishear``).

``say``, ``call``, ``delay_ms`` and one of ``close``/``drop`` may be combined; ``error`` stands alone.

``responses`` entries are played per thread of ``previous_response_id`` (see
``realtalk.emulator.responses_api``): a request without one takes the first entry, each request
continuing a thread its next one, failed requests included; then the default answer
(``"Expert answer <n> to: <question>"``). An entry is a text, or ``say`` and/or ``delay_ms``, or
``error`` (with an optional ``delay_ms``): ``status`` (400-599, default 500), ``message``, ``code``,
``type``, ``param`` and ``retry_after_s`` (a ``retry-after`` header); a 5xx or 429 has a default
message, code and type, other statuses need a ``message``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from realtalk.emulator.faults import Faults
from realtalk.emulator.responder import (
    Action,
    CallFunction,
    CloseSocket,
    DropConnection,
    EchoResponder,
    Reply,
    Responder,
    Say,
    SendError,
    TurnContext,
    dictated_reply,
)
from realtalk.emulator.responses_api import ScriptedError, ScriptedResponse

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioResponder",
    "check_mishear",
    "load_scenario",
    "parse_scenario",
]

_TURN_KEYS = frozenset({"say", "call", "error", "close", "drop", "delay_ms", "echo"})
_TOP_KEYS = frozenset({"turns", "after", "faults", "session_limit_s", "responses", "mishear"})
_RESPONSE_KEYS = frozenset({"say", "delay_ms", "error"})
_RESPONSE_ERROR_KEYS = frozenset({"status", "message", "code", "type", "param", "retry_after_s"})


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the turn and the key at fault."""


@dataclass(frozen=True)
class Scenario:
    turns: tuple[Reply, ...]
    after: Literal["echo", "repeat"] = "echo"
    faults: Mapping[str, Any] | None = None
    session_limit_s: float | None = None
    responses: tuple[ScriptedResponse, ...] = ()  # the Responses API's scripted answers
    mishear: tuple[tuple[str, str], ...] = ()  # (heard, written), in order: see asr.apply_mishear

    def apply_faults(self, base: Faults) -> Faults:
        return Faults.from_mapping(dict(self.faults), base=base) if self.faults else base

    def responder(self) -> Responder:
        """A fresh responder for one session."""
        return ScenarioResponder(self)


class ScenarioResponder:
    """Plays a scenario's turns in order, then falls back as the scenario's ``after`` says."""

    def __init__(self, scenario: Scenario, fallback: Responder | None = None) -> None:
        self._scenario = scenario
        self._fallback = fallback or EchoResponder()
        self._next_turn = 0

    def needs_user_text(self, response_number: int) -> bool:
        """Whether the next reply depends on what the user said (a scripted turn does not)."""
        upcoming = self._upcoming()
        if upcoming is not None and not upcoming.improvised:
            return False
        needs = getattr(self._fallback, "needs_user_text", None)
        return True if needs is None else bool(needs(response_number))

    def reply(self, turn: TurnContext) -> Reply:
        # Instructions that dictate a sentence (a tool filler) are obeyed, like a model would,
        # without using up a scripted turn.
        dictated = dictated_reply(turn)
        if dictated is not None:
            return dictated
        reply = self._upcoming()
        if reply is None:
            return self._fallback.reply(turn)
        self._next_turn += 1
        return self._fallback.reply(turn) if reply.improvised else reply

    def _upcoming(self) -> Reply | None:
        """The next scripted turn, or ``None`` when the script is over."""
        turns = self._scenario.turns
        if self._next_turn < len(turns):
            return turns[self._next_turn]
        if self._scenario.after == "repeat" and turns:
            return turns[self._next_turn % len(turns)]
        return None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def parse_scenario(data: Any) -> Scenario:
    """Build a scenario from decoded YAML/JSON (see the module docstring for the format)."""
    if not isinstance(data, Mapping):
        raise ScenarioError("a scenario must be a mapping with a 'turns' list")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ScenarioError(f"unknown key(s) {', '.join(unknown)}; expected: {', '.join(sorted(_TOP_KEYS))}")
    raw_turns = data.get("turns") or []
    if not isinstance(raw_turns, list):
        raise ScenarioError("'turns' must be a list")
    turns = tuple(_parse_turn(i + 1, raw) for i, raw in enumerate(raw_turns))
    after = data.get("after", "echo")
    if after not in ("echo", "repeat"):
        raise ScenarioError(f"'after' must be 'echo' or 'repeat', not {after!r}")
    faults = data.get("faults")
    if faults is not None:
        if not isinstance(faults, Mapping):
            raise ScenarioError("'faults' must be a mapping")
        try:
            Faults.from_mapping(dict(faults))
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"faults: {exc}") from exc
    limit = data.get("session_limit_s")
    if limit is not None and (not isinstance(limit, int | float) or limit <= 0):
        raise ScenarioError(f"'session_limit_s' must be a positive number, not {limit!r}")
    raw_responses = data.get("responses") or []
    if not isinstance(raw_responses, list):
        raise ScenarioError("'responses' must be a list")
    responses = tuple(_parse_response(i + 1, raw) for i, raw in enumerate(raw_responses))
    mishear = _parse_mishear(data.get("mishear"))
    return Scenario(
        turns=turns,
        after=after,
        faults=dict(faults) if faults else None,
        session_limit_s=limit,
        responses=responses,
        mishear=mishear,
    )


def check_mishear(pairs: Any) -> None:
    """Raise ``ValueError`` naming the fault unless ``pairs`` is a tuple of ``(heard, written)`` texts
    with a non-blank ``heard`` (``EmulatorConfig.mishear``, ``Scenario.mishear``)."""
    if not isinstance(pairs, tuple):
        raise ValueError(f"mishear must be a tuple of (heard, written) pairs, not {type(pairs).__name__}")
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ValueError(
                f"each mishear substitution must be a (heard, written) pair of texts, not {pair!r}"
            )
        if not pair[0].strip():
            raise ValueError(f"a mishear substitution needs words to replace: {pair!r} has a blank key")


def _mishear_text(what: str, value: Any) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        raise ScenarioError(
            f"mishear: {what} {value!r} must be a text (quote words YAML reads as booleans or null, "
            'e.g. "no": "know")'
        )
    return str(value)


def _parse_mishear(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ScenarioError(
            "'mishear' must be a mapping of heard words to what is written instead, e.g. {B: P, \"4\": for}"
        )
    pairs: list[tuple[str, str]] = []
    for heard, written in raw.items():
        key = _mishear_text("key", heard)
        if not key.strip():
            raise ScenarioError("mishear: a key is blank; give the words to replace")
        pairs.append((key, "" if written is None else _mishear_text(f"value of {key!r}", written)))
    return tuple(pairs)


def _parse_turn(number: int, raw: Any) -> Reply:
    where = f"turn {number}"
    if isinstance(raw, str):
        return Reply((Say(raw),))
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping or a text to say, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TURN_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected: {', '.join(sorted(_TURN_KEYS))}"
        )
    if "echo" in raw:
        if raw["echo"] is not True or len(raw) > 1:
            raise ScenarioError(f"{where}: 'echo: true' stands alone (the echo model answers this turn)")
        return Reply((), improvised=True)
    if "error" in raw and len(set(raw) - {"error"}) > 0:
        raise ScenarioError(f"{where}: 'error' replaces the response and cannot be combined with other keys")
    if "close" in raw and "drop" in raw:
        raise ScenarioError(f"{where}: use either 'close' or 'drop', not both")
    actions: list[Action] = []
    if "say" in raw:
        if not isinstance(raw["say"], str):
            raise ScenarioError(f"{where}: 'say' must be a text")
        actions.append(Say(raw["say"]))
    if "call" in raw:
        calls = raw["call"] if isinstance(raw["call"], list) else [raw["call"]]
        actions.extend(_parse_call(where, call) for call in calls)
    if "error" in raw:
        actions.append(_parse_error(where, raw["error"]))
    if "close" in raw:
        actions.append(_parse_close(where, raw["close"]))
    if raw.get("drop"):
        actions.append(DropConnection())
    delay = raw.get("delay_ms")
    if delay is not None and (not isinstance(delay, int) or delay < 0):
        raise ScenarioError(f"{where}: 'delay_ms' must be a non-negative integer")
    if not actions:
        raise ScenarioError(f"{where}: nothing to do; give 'say', 'call', 'error', 'close' or 'drop'")
    return Reply(tuple(actions), first_audio_delay_ms=delay)


def _parse_call(where: str, raw: Any) -> CallFunction:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ScenarioError(f"{where}: 'call' needs a 'name' (and optional 'arguments', 'call_id')")
    arguments = raw.get("arguments", {})
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{where}: 'arguments' is a string but not JSON: {exc}") from exc
        text = arguments
    else:
        text = json.dumps(arguments)
    call_id = raw.get("call_id")
    return CallFunction(raw["name"], text, str(call_id) if call_id is not None else None)


def _parse_error(where: str, raw: Any) -> SendError:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("message"), str):
        raise ScenarioError(f"{where}: 'error' needs a 'message' (and optional 'code', 'type', 'param')")
    return SendError(
        code=str(raw.get("code", "server_error")),
        message=raw["message"],
        error_type=str(raw.get("type", "server_error")),
        param=raw.get("param"),
    )


def _parse_close(where: str, raw: Any) -> CloseSocket:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"code": raw}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("code", 1000), int):
        raise ScenarioError(f"{where}: 'close' must be a close code or {{code, reason}}")
    code = raw.get("code", 1000)
    # RFC 6455 §7.4: the codes an endpoint may send (1005, 1006 and 1015 never go on the wire).
    if not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013) or 3000 <= code <= 4999):
        raise ScenarioError(f"{where}: close code {code} cannot be sent by a server")
    return CloseSocket(code, str(raw.get("reason", "")))


def _parse_response(number: int, raw: Any) -> ScriptedResponse:
    where = f"responses entry {number}"
    if isinstance(raw, str):
        return ScriptedResponse(text=raw)
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping or an answer text, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _RESPONSE_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected: {', '.join(sorted(_RESPONSE_KEYS))}"
        )
    if "error" in raw and "say" in raw:
        raise ScenarioError(f"{where}: 'error' replaces the answer and cannot be combined with 'say'")
    if not raw:
        raise ScenarioError(f"{where}: nothing to do; give 'say', 'delay_ms' or 'error'")
    text = raw.get("say")
    if text is not None and not isinstance(text, str):
        raise ScenarioError(f"{where}: 'say' must be a text")
    delay = raw.get("delay_ms", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise ScenarioError(f"{where}: 'delay_ms' must be a non-negative integer")
    error = _parse_response_error(where, raw["error"]) if "error" in raw else None
    return ScriptedResponse(text=text, delay_ms=delay, error=error)


def _parse_response_error(where: str, raw: Any) -> ScriptedError:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"status": raw}
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: 'error' must be an HTTP status or a mapping with 'status'")
    unknown = sorted(set(raw) - _RESPONSE_ERROR_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown 'error' key(s) {', '.join(unknown)}; "
            f"expected: {', '.join(sorted(_RESPONSE_ERROR_KEYS))}"
        )
    status = raw.get("status", 500)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise ScenarioError(f"{where}: error 'status' must be an HTTP error status (400-599), not {status!r}")
    if status >= 500:
        defaults = ScriptedError(status=status)
    elif status == 429:
        # [unconfirmed] text: the OpenAI API's shape of a requests-per-minute 429.
        message = "Rate limit reached for requests. Please try again later."
        defaults = ScriptedError(429, message, "rate_limit_exceeded", "requests")
    elif isinstance(raw.get("message"), str):
        defaults = ScriptedError(status, raw["message"], None, "invalid_request_error")
    else:
        raise ScenarioError(f"{where}: an error with status {status} needs a 'message'")
    for key in ("message", "type"):
        if key in raw and not isinstance(raw[key], str):
            raise ScenarioError(f"{where}: error '{key}' must be a text")
    for key in ("code", "param"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ScenarioError(f"{where}: error '{key}' must be a text or null")
    retry_after_s = raw.get("retry_after_s")
    if retry_after_s is not None and (
        not isinstance(retry_after_s, int) or isinstance(retry_after_s, bool) or retry_after_s < 0
    ):
        raise ScenarioError(f"{where}: error 'retry_after_s' must be a non-negative integer")
    return ScriptedError(
        status=status,
        message=raw.get("message", defaults.message),
        code=raw.get("code", defaults.code),
        error_type=raw.get("type", defaults.error_type),
        param=raw.get("param"),
        retry_after_s=retry_after_s,
    )
