"""Checking client events against the official SDK's types, with the API's error codes.

The SDK's models accept unknown fields and coerce loosely, and pydantic's errors for unions are
hard to map to one API error. So this module walks a decoded JSON value alongside the SDK type
that describes it (``openai.types.realtime.*``) and raises the first problem as the API would
report it:

- a key the type does not declare      → ``unknown_parameter``   (beta fields such as
  ``session.temperature`` land here, which is how the GA API refuses a beta-shaped update)
- a required key that is absent        → ``missing_required_parameter``
- a value of the wrong JSON kind       → ``invalid_type``
- a value outside a ``Literal``        → ``invalid_value`` listing the supported values

Unions of models are resolved by their ``type`` discriminator (and ``role`` for messages), as the
API does. Range rules the SDK types cannot express (0 ≤ threshold ≤ 1, ...) live with the code
that applies the values (``session_config.py``).
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from openai.types.realtime import ConversationItem, RealtimeClientEvent
from openai.types.realtime.response_item_reference import ResponseItemReference
from pydantic import BaseModel

from realtalk.emulator import errors

__all__ = ["CLIENT_EVENT_TYPES", "check_client_event", "check_value", "json_kind"]


def _unwrap_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


@cache
def _client_event_models() -> dict[str, type[BaseModel]]:
    union = _unwrap_annotated(RealtimeClientEvent)
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(union):
        (event_type,) = get_args(model.model_fields["type"].annotation)
        models[event_type] = model
    return models


# The order the API lists them in its "Supported values" message.
CLIENT_EVENT_TYPES: tuple[str, ...] = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)


def check_client_event(event: dict[str, Any]) -> str:
    """Check a decoded client event; return its type or raise the API's error for it."""
    if "type" not in event:
        raise errors.missing_type()
    event_type = event["type"]
    if not isinstance(event_type, str):
        raise errors.invalid_type("type", "a string", json_kind(event_type))
    model = _client_event_models().get(event_type)
    if model is None:
        raise errors.unknown_event_type(event_type, CLIENT_EVENT_TYPES)
    response = event.get("response")
    if (
        event_type == "response.create"
        and isinstance(response, dict)
        and isinstance(response.get("input"), list)
    ):
        # `input` may mix items with {"type": "item_reference", "id": ...}: the SDK's model of the
        # event only knows items (its *WithReferences* param type knows both).
        for index, entry in enumerate(response["input"]):
            path = f"response.input[{index}]"
            if isinstance(entry, dict) and entry.get("type") == "item_reference":
                check_value(entry, ResponseItemReference, path)
            else:
                check_value(entry, ConversationItem, path)
        check_value({**event, "response": {k: v for k, v in response.items() if k != "input"}}, model, "")
        return event_type
    check_value(event, model, "")
    return event_type


def json_kind(value: Any) -> str:
    """How the API names a JSON value's kind in ``invalid_type`` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _expected(annotation: Any) -> str:
    """The JSON kind an annotation asks for, in the API's words."""
    annotation = _unwrap_annotated(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        kinds = sorted({_expected(arg) for arg in get_args(annotation) if arg is not type(None)})
        return " or ".join(kinds)
    if origin is Literal:
        return json_kind(get_args(annotation)[0])
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's annotations use typing.List
        return "an array"
    if origin in (dict, typing.Dict) or _is_model(annotation):  # noqa: UP006
        return "an object"
    return {str: "a string", int: "an integer", float: "a decimal", bool: "a boolean"}.get(
        annotation, "a value"
    )


def _matches_kind(value: Any, annotation: Any) -> bool:
    """Whether the value is of the JSON kind the annotation asks for (not yet whether it is valid)."""
    annotation = _unwrap_annotated(annotation)
    origin = get_origin(annotation)
    if annotation is Any or annotation is object:
        return True
    if annotation is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_matches_kind(value, arg) for arg in get_args(annotation))
    if origin is Literal:
        return any(type(value) is type(option) for option in get_args(annotation))
    if origin in (list, typing.List):  # noqa: UP006
        return isinstance(value, list)
    if origin in (dict, typing.Dict) or _is_model(annotation):  # noqa: UP006
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (str, bool):
        return type(value) is annotation
    return True


def _literal_field(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    field = model.model_fields.get(name)
    if field is None:
        return ()
    annotation = _unwrap_annotated(field.annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        literal_args = [arg for arg in get_args(annotation) if get_origin(arg) is Literal]
        return tuple(v for arg in literal_args for v in get_args(arg))
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    return ()


def _check_model_union(value: dict[str, Any], members: list[type[BaseModel]], path: str) -> None:
    """Pick the member by its ``type`` (then ``role``) discriminator, as the API does."""
    candidates = members
    for discriminator in ("type", "role"):
        if not all(_literal_field(m, discriminator) for m in candidates):
            break
        if discriminator not in value:
            if any(m.model_fields[discriminator].is_required() for m in candidates):
                raise errors.missing_required_parameter(_join(path, discriminator))
            break
        supported = [v for m in candidates for v in _literal_field(m, discriminator)]
        chosen = [m for m in candidates if value[discriminator] in _literal_field(m, discriminator)]
        if not chosen:
            if not isinstance(value[discriminator], str):
                raise errors.invalid_type(
                    _join(path, discriminator), "a string", json_kind(value[discriminator])
                )
            raise errors.invalid_value(
                _join(path, discriminator), value[discriminator], list(dict.fromkeys(supported))
            )
        candidates = chosen
        if len(candidates) == 1:
            break
    first_error: errors.RealtimeApiError | None = None
    for model in candidates:
        try:
            check_value(value, model, path)
        except errors.RealtimeApiError as exc:
            first_error = first_error or exc
        else:
            return
    assert first_error is not None
    raise first_error


def check_value(value: Any, annotation: Any, path: str) -> None:
    """Raise the API's error for the first way ``value`` does not fit ``annotation``."""
    annotation = _unwrap_annotated(annotation)
    origin = get_origin(annotation)
    if annotation is Any or annotation is object:
        return
    if origin in (Union, types.UnionType):
        args = [_unwrap_annotated(arg) for arg in get_args(annotation)]
        if value is None:
            if type(None) in args:
                return
            raise errors.invalid_type(path, _expected(annotation), "null")
        models = [arg for arg in args if _is_model(arg)]
        if isinstance(value, dict) and len(models) > 1:
            _check_model_union(value, models, path)
            return
        fitting = [arg for arg in args if arg is not type(None) and _matches_kind(value, arg)]
        if not fitting:
            raise errors.invalid_type(path, _expected(annotation), json_kind(value))
        # A plain `str` accepts any string, so it wins over a Literal of suggested names.
        if any(arg is str for arg in fitting) and isinstance(value, str):
            return
        check_value(value, fitting[0], path)
        return
    if not _matches_kind(value, annotation):
        raise errors.invalid_type(path, _expected(annotation), json_kind(value))
    if origin is Literal:
        options = get_args(annotation)
        if value not in options:
            raise errors.invalid_value(path, value, options)
    elif origin in (list, typing.List):  # noqa: UP006
        (item_annotation,) = get_args(annotation) or (Any,)
        for index, item in enumerate(value):
            check_value(item, item_annotation, _join(path, index))
    elif origin in (dict, typing.Dict):  # noqa: UP006
        dict_args = get_args(annotation)
        value_annotation = dict_args[1] if len(dict_args) == 2 else Any
        for key, item in value.items():
            check_value(item, value_annotation, _join(path, key))
    elif _is_model(annotation):
        _check_model(value, annotation, path)


def _check_model(value: dict[str, Any], model: type[BaseModel], path: str) -> None:
    fields = {(field.alias or name): field for name, field in model.model_fields.items()}
    for key in value:
        if key not in fields:
            raise errors.unknown_parameter(_join(path, key))
    for key, field in fields.items():
        if key not in value:
            if field.is_required():
                raise errors.missing_required_parameter(_join(path, key))
            continue
        check_value(value[key], field.annotation, _join(path, key))
