"""What the emulated model says: the pluggable responder and its default, a spoken echo.

A responder is asked once per response for a :class:`Reply`, a short list of actions:

- :class:`Say` a text (spoken in audio mode, written in text mode),
- :class:`CallFunction` with JSON arguments (an output item of type ``function_call``),
- :class:`SendError` (an ``error`` event instead of a response),
- :class:`CloseSocket` with a close code, or :class:`DropConnection` (no close frame), after the
  response.

One responder instance serves one session (it may keep per-session state, like a scenario's turn
counter) and is never shared between connections. Responders are pure: no I/O, no clock.

:class:`EchoResponder`, the default, repeats what it understood ("You said: ..."), reports the
length of audio it could not recognise, reads back function results, and calls a configured
function tool when the user mentions it (see :func:`choose_tool_call`).

Like a real model, every responder obeys per-response instructions that dictate one sentence
(``Say exactly this, and nothing else: "..."``, what realtalk sends as a filler while a tool runs):
see :func:`dictated_reply`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Action",
    "CallFunction",
    "CloseSocket",
    "DropConnection",
    "EchoResponder",
    "FunctionResult",
    "Reply",
    "Responder",
    "Say",
    "SendError",
    "ToolSpec",
    "TurnContext",
    "dictated_reply",
]


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallFunction:
    name: str
    arguments: str = "{}"  # a JSON string, as on the wire
    call_id: str | None = None  # None: the emulator makes one up


@dataclass(frozen=True)
class SendError:
    code: str
    message: str
    error_type: str = "server_error"
    param: str | None = None


@dataclass(frozen=True)
class CloseSocket:
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True)
class DropConnection:
    pass


Action = Say | CallFunction | SendError | CloseSocket | DropConnection


@dataclass(frozen=True)
class Reply:
    """The actions of one response, in order: outputs (``Say``, ``CallFunction``) become output
    items 0, 1, ...; ``SendError`` replaces the response; ``CloseSocket``/``DropConnection`` end
    the connection after it."""

    actions: tuple[Action, ...]
    first_audio_delay_ms: int | None = None  # overrides the instance's fault for this reply
    # A scripted turn that leaves this response to the echo model (it reads a tool's output back).
    improvised: bool = False

    @property
    def outputs(self) -> tuple[Say | CallFunction, ...]:
        return tuple(a for a in self.actions if isinstance(a, Say | CallFunction))


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionResult:
    call_id: str
    name: str | None
    output: str


@dataclass(frozen=True)
class TurnContext:
    """What a responder may look at when it is asked for a reply."""

    response_number: int  # 1-based, counting this session's responses
    user_text: str | None = None  # the latest user item: typed text or recognised speech
    user_audio_ms: int | None = None  # its audio length when it was spoken
    function_result: FunctionResult | None = None  # set when the latest item is a tool's output
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | Mapping[str, Any] = "auto"
    instructions: str = ""
    text_mode: bool = False


class Responder(Protocol):
    def reply(self, turn: TurnContext) -> Reply: ...


_DICTATED = re.compile(r'\bsay exactly this, and nothing else:\s*"(?P<text>[^"]+)"', re.IGNORECASE)


def dictated_reply(turn: TurnContext) -> Reply | None:
    """The reply that instructions dictating a sentence ask for, with no tool call; else ``None``."""
    found = _DICTATED.search(turn.instructions or "")
    return Reply((Say(found["text"]),)) if found else None


class EchoResponder:
    """The default responder: a spoken echo of what it understood."""

    def reply(self, turn: TurnContext) -> Reply:
        dictated = dictated_reply(turn)
        if dictated is not None:
            return dictated
        if turn.function_result is not None:
            result = turn.function_result
            output = result.output if len(result.output) <= 200 else result.output[:200] + "..."
            return Reply((Say(f"The {result.name or 'function'} function returned: {output}"),))
        call = choose_tool_call(turn)
        if call is not None:
            return Reply((call,))
        if turn.user_text:
            return Reply((Say(f"You said: {turn.user_text.strip()}"),))
        if turn.user_audio_ms is not None:
            return Reply((Say(f"I heard {turn.user_audio_ms / 1000:.1f} seconds of audio."),))
        return Reply((Say("Hello! This is the realtalk emulator. Say something and I will repeat it."),))


_STOP_WORDS = frozenset({"get", "set", "the", "for", "and", "with", "from", "tool", "function", "call"})
_PLACE_MARKERS = ("in", "for", "about", "at", "to", "of", "on")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _mentions(tool: ToolSpec, text: str) -> bool:
    words = set(_words(text))
    name_words = [w for w in re.split(r"[^a-z0-9]+", tool.name.lower()) if w]
    if tool.name.lower() in text.lower():
        return True
    return any(w in words for w in name_words if len(w) >= 4 and w not in _STOP_WORDS)


def choose_tool_call(turn: TurnContext) -> CallFunction | None:
    """The default tool rule: call a function when ``tool_choice`` forces it, or when the user's
    words mention its name (``get_weather`` is mentioned by "what is the weather")."""
    if not turn.tools or turn.tool_choice == "none":
        return None
    text = turn.user_text or ""
    chosen: ToolSpec | None = None
    if isinstance(turn.tool_choice, Mapping):
        wanted = turn.tool_choice.get("name")
        chosen = next((t for t in turn.tools if t.name == wanted), None)
    elif turn.tool_choice == "required":
        chosen = next((t for t in turn.tools if _mentions(t, text)), turn.tools[0])
    else:
        chosen = next((t for t in turn.tools if _mentions(t, text)), None)
    if chosen is None:
        return None
    return CallFunction(chosen.name, json.dumps(guess_arguments(chosen.parameters, text)))


def guess_arguments(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Arguments that satisfy a JSON schema's required properties, taken from the user's words
    where a simple guess works ("weather in oslo" → ``{"city": "oslo"}``)."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names: Sequence[str] = required if isinstance(required, list) else list(properties)
    words = _words(text)
    arguments: dict[str, Any] = {}
    for name in names:
        spec = properties.get(name)
        arguments[name] = _guess_value(spec if isinstance(spec, Mapping) else {}, words, text)
    return arguments


def _guess_value(spec: Mapping[str, Any], words: list[str], text: str) -> Any:
    enum = spec.get("enum")
    if isinstance(enum, list) and enum:
        return next((v for v in enum if str(v).lower() in words), enum[0])
    kind = spec.get("type")
    numbers = [w for w in words if w.isdigit()]
    if kind == "integer":
        return int(numbers[0]) if numbers else 0
    if kind == "number":
        return float(numbers[0]) if numbers else 0.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    for marker in _PLACE_MARKERS:
        if marker in words[:-1]:
            return words[words.index(marker) + 1]
    return text.strip()
