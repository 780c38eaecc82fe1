"""A ``POST /responses`` body, checked (§7 of the protocol notes), and the API's refusals.

:func:`parse_request` turns a decoded body into a :class:`ResponsesRequest` or raises a
:class:`ResponsesApiError`: the HTTP status and OpenAI's ``{"error": {message, type, param, code}}``,
400 naming the field at fault, in the API's general validation wording (``realtalk.emulator.errors``).

The emulated model reads text: ``input`` is a string or a list of messages (``role`` user, system,
developer or assistant; ``content`` a string or ``input_text``/``output_text`` parts) and
``function_call_output`` items. Parameters that do not change its answer (``temperature``,
``reasoning``, ``tools``, ``text``...) are accepted and kept in :attr:`ResponsesRequest.settings`, for
the response object to repeat; ``background``, ``conversation`` and ``prompt`` are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from realtalk.emulator import errors
from realtalk.emulator.errors import RealtimeApiError
from realtalk.emulator.validation import json_kind

__all__ = [
    "MIN_MAX_OUTPUT_TOKENS",
    "ContextItem",
    "ResponsesApiError",
    "ResponsesRequest",
    "bad_request",
    "invalid_json_body",
    "parse_request",
    "previous_response_not_found",
    "response_not_found",
]

MIN_MAX_OUTPUT_TOKENS = 16  # the API's minimum for max_output_tokens

Role = Literal["user", "system", "developer", "assistant", "tool"]

# Parameters the API defines that do not change what the emulated model answers: accepted, and
# those the response object carries are repeated in it.
_IGNORED_KEYS = frozenset(
    {
        "access_programs",
        "background_options",
        "context_management",
        "image",
        "include",
        "max_tool_calls",
        "moderation",
        "parallel_tool_calls",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)
_HANDLED_KEYS = frozenset(
    {
        "background",
        "conversation",
        "input",
        "instructions",
        "max_output_tokens",
        "metadata",
        "model",
        "previous_response_id",
        "prompt",
        "store",
        "stream",
    }
)
_MESSAGE_ROLES = ("user", "system", "developer", "assistant")
_ITEM_TYPES = ("message", "function_call_output")


class ResponsesApiError(Exception):
    """A refused request: its HTTP status and OpenAI's error (``message``, ``type``, ``param``, ``code``)."""

    def __init__(
        self, status: int, error: RealtimeApiError, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error = self.error
        return {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": error.param,
                "code": error.code,
            }
        }


def bad_request(error: RealtimeApiError) -> ResponsesApiError:
    return ResponsesApiError(400, error)


def invalid_json_body() -> ResponsesApiError:
    # [unconfirmed] exact text; the REST API's code for an unparsable body is null.
    return bad_request(RealtimeApiError(None, "We could not parse the JSON body of your request."))


def previous_response_not_found(response_id: str) -> ResponsesApiError:
    # As Azure answers it (microsoft/agent-framework#6419, dotnet/extensions#7704: HTTP 400 from
    # /openai/v1/responses), and OpenAI alike: a 400, not a 404, with this code and text.
    return bad_request(
        RealtimeApiError(
            "previous_response_not_found",
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
        )
    )


def response_not_found(response_id: str) -> ResponsesApiError:
    # GET/DELETE of an unknown id, as Azure answers it (BerriAI/litellm#34422): 404, null param and code.
    return ResponsesApiError(404, RealtimeApiError(None, f"Response with id '{response_id}' not found."))


# --- the request ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextItem:
    """One message the model sees; ``tool`` is a ``function_call_output``."""

    role: Role
    text: str


@dataclass(frozen=True, kw_only=True)
class ResponsesRequest:
    """A checked ``POST /responses`` body."""

    model: str
    input: tuple[ContextItem, ...]
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # ignored parameters, as sent


def _expect(value: Any, expected: type | tuple[type, ...], name: str, param: str) -> None:
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
        raise bad_request(errors.invalid_type(param, name, json_kind(value)))


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def parse_request(body: Any) -> ResponsesRequest:
    """Check a decoded ``POST /responses`` body; :class:`ResponsesApiError` (400) names the field at fault."""
    if not isinstance(body, dict):
        raise bad_request(errors.invalid_type("body", "an object", json_kind(body)))
    for key in body:
        if key not in _HANDLED_KEYS and key not in _IGNORED_KEYS:
            raise bad_request(errors.unknown_parameter(key))
    model = body.get("model")
    if model is None:
        raise bad_request(errors.missing_required_parameter("model"))
    _expect(model, str, "a string", "model")
    if not model:
        raise bad_request(errors.invalid_value_message("model", "Invalid 'model': empty string."))
    previous = body.get("previous_response_id")
    if previous is not None:
        _expect(previous, str, "a string", "previous_response_id")
    if body.get("conversation") is not None:
        if previous is not None:
            # [unconfirmed] code and text; §7: the two cannot be combined.
            raise bad_request(
                RealtimeApiError(
                    "mutually_exclusive_parameters",
                    "Mutually exclusive parameters: provide either 'previous_response_id' or "
                    "'conversation', not both.",
                    param="previous_response_id",
                )
            )
        raise bad_request(_unsupported("conversation"))
    if body.get("background"):
        raise bad_request(_unsupported("background"))
    if body.get("prompt") is not None:
        raise bad_request(_unsupported("prompt"))
    if "input" not in body or body["input"] is None:
        raise bad_request(errors.missing_required_parameter("input"))
    instructions = body.get("instructions")
    if instructions is not None:
        _expect(instructions, str, "a string", "instructions")
    store = _optional_bool(body, "store", default=True)
    stream = _optional_bool(body, "stream", default=False)
    max_output_tokens = body.get("max_output_tokens")
    if max_output_tokens is not None:
        _expect(max_output_tokens, int, "an integer", "max_output_tokens")
        if max_output_tokens < MIN_MAX_OUTPUT_TOKENS:
            raise bad_request(
                errors.below_min_value(
                    "max_output_tokens", MIN_MAX_OUTPUT_TOKENS, max_output_tokens, integer=True
                )
            )
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)
    for key in ("reasoning", "text"):
        if body.get(key) is not None:
            _expect(body[key], dict, "an object", key)
    if body.get("tools") is not None:
        _expect(body["tools"], list, "an array", "tools")
    return ResponsesRequest(
        model=model,
        input=_parse_input(body["input"]),
        instructions=instructions,
        previous_response_id=previous,
        store=store,
        stream=stream,
        max_output_tokens=max_output_tokens,
        metadata=_parse_metadata(body.get("metadata")),
        settings={k: v for k, v in body.items() if k in _IGNORED_KEYS and v is not None},
    )


def _invalid_value(param: str, value: Any, supported: Sequence[str]) -> RealtimeApiError:
    # The API's wording ("Invalid value: 'x'. Supported values are: ...") names the field in ``param``
    # only; here the message names it too, since a test (or a person) reads the message first.
    listed = ", ".join(f"'{v}'" for v in supported)
    return errors.invalid_value_message(
        param, f"Invalid value for '{param}': '{value}'. Supported values are: {listed}."
    )


def _unsupported(param: str) -> RealtimeApiError:
    return RealtimeApiError(
        "unsupported_parameter",
        f"Unsupported parameter: '{param}' is not supported by the realtalk emulator's Responses API.",
        param=param,
    )


def _optional_bool(body: dict[str, Any], key: str, *, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    _expect(value, bool, "a boolean", key)
    return bool(value)


def _check_number(body: dict[str, Any], key: str, minimum: float, maximum: float) -> None:
    value = body.get(key)
    if value is None:
        return
    _expect(value, (int, float), "a number", key)
    if value < minimum:
        raise bad_request(errors.below_min_value(key, minimum, value, integer=False))
    if value > maximum:
        raise bad_request(errors.above_max_value(key, maximum, value, integer=False))


def _parse_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    _expect(value, dict, "an object", "metadata")
    if len(value) > 16:
        raise bad_request(
            errors.invalid_value_message(
                "metadata", f"Invalid 'metadata': too many properties. Expected at most 16, got {len(value)}."
            )
        )
    for key, inner in value.items():
        if len(key) > 64:
            raise bad_request(errors.string_above_max_length(f"metadata.{key}", 64, len(key)))
        _expect(inner, str, "a string", f"metadata.{key}")
        if len(inner) > 512:
            raise bad_request(errors.string_above_max_length(f"metadata.{key}", 512, len(inner)))
    return dict(value)


def _parse_input(value: Any) -> tuple[ContextItem, ...]:
    if isinstance(value, str):
        return (ContextItem("user", value),)
    _expect(value, list, "a string or an array", "input")
    if not value:
        raise bad_request(
            RealtimeApiError(
                "empty_array",
                "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty "
                "array instead.",
                param="input",
            )
        )
    return tuple(_parse_item(item, f"input[{index}]") for index, item in enumerate(value))


def _parse_item(item: Any, where: str) -> ContextItem:
    _expect(item, dict, "an object", where)
    item_type = item.get("type", "message")
    if item_type == "function_call_output":
        for key in ("call_id", "output"):
            if key not in item:
                raise bad_request(errors.missing_required_parameter(f"{where}.{key}"))
        _expect(item["call_id"], str, "a string", f"{where}.call_id")
        output = item["output"]
        if isinstance(output, list):
            return ContextItem("tool", _parts_text(output, f"{where}.output", ("input_text",)))
        _expect(output, str, "a string or an array", f"{where}.output")
        return ContextItem("tool", output)
    if item_type != "message":
        raise bad_request(_invalid_value(f"{where}.type", item_type, _ITEM_TYPES))
    role = item.get("role")
    if role is None:
        raise bad_request(errors.missing_required_parameter(f"{where}.role"))
    if role not in _MESSAGE_ROLES:
        raise bad_request(_invalid_value(f"{where}.role", role, _MESSAGE_ROLES))
    if "content" not in item:
        raise bad_request(errors.missing_required_parameter(f"{where}.content"))
    content = item["content"]
    if isinstance(content, str):
        return ContextItem(role, content)
    _expect(content, list, "a string or an array", f"{where}.content")
    part_types = ("output_text", "refusal") if role == "assistant" else ("input_text",)
    return ContextItem(role, _parts_text(content, f"{where}.content", part_types))


def _parts_text(parts: list[Any], where: str, part_types: tuple[str, ...]) -> str:
    texts: list[str] = []
    for index, part in enumerate(parts):
        here = f"{where}[{index}]"
        _expect(part, dict, "an object", here)
        part_type = part.get("type")
        if part_type not in part_types:
            # Images, files and audio are valid API input the emulated model cannot read: refused by name.
            raise bad_request(_invalid_value(f"{here}.type", part_type, part_types))
        key = "refusal" if part_type == "refusal" else "text"
        if key not in part:
            raise bad_request(errors.missing_required_parameter(f"{here}.{key}"))
        _expect(part[key], str, "a string", f"{here}.{key}")
        texts.append(part[key])
    return "".join(texts)
