"""Server events in, client events out: the one place JSON meets types.

Server events are parsed once, here, into the official SDK models (``openai.types.realtime``).
Client events are plain dicts typed with the SDK's ``*Param`` TypedDicts and serialised compactly.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, get_args

import pydantic
from openai.types.realtime import (
    ConversationItemCreateEventParam,
    ConversationItemDeleteEventParam,
    ConversationItemParam,
    ConversationItemTruncateEventParam,
    InputAudioBufferAppendEventParam,
    InputAudioBufferClearEventParam,
    InputAudioBufferCommitEventParam,
    RealtimeResponseCreateParamsParam,
    RealtimeServerEvent,
    RealtimeSessionCreateRequestParam,
    ResponseCancelEventParam,
    ResponseCreateEventParam,
    SessionUpdateEventParam,
)

from realtalk.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "KNOWN_SERVER_EVENT_TYPES",
    "MAX_APPEND_AUDIO_BYTES",
    "ServerEvent",
    "UnknownServerEvent",
    "conversation_item_create",
    "conversation_item_delete",
    "conversation_item_truncate",
    "function_call_output_item",
    "input_audio_buffer_append",
    "input_audio_buffer_clear",
    "input_audio_buffer_commit",
    "parse_server_data",
    "parse_server_event",
    "response_cancel",
    "response_create",
    "serialize_client_event",
    "session_update",
    "user_text_item",
]

logger = logging.getLogger(__name__)

ServerEvent = RealtimeServerEvent
"""Any server event the SDK knows (a discriminated union of SDK models)."""

# The SDK marks its union with its own PropertyInfo(discriminator="type"), which pydantic ignores.
# Adding a pydantic discriminator makes validation a dict lookup on "type" instead of trying all
# 46 members, and makes a bad known event fail with that member's errors only.
_SERVER_EVENT_ADAPTER: Final[pydantic.TypeAdapter[RealtimeServerEvent]] = pydantic.TypeAdapter(
    Annotated[RealtimeServerEvent, pydantic.Field(discriminator="type")]
)

KNOWN_SERVER_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    literal
    for member in get_args(get_args(RealtimeServerEvent)[0])
    for literal in get_args(member.model_fields["type"].annotation)
)
"""Every ``type`` the installed SDK has a model for."""

# §2.2: "≤ 15 MiB per event" for input_audio_buffer.append; the limit applies to the event, so we
# check the base64 text, which is what travels.
MAX_APPEND_AUDIO_BYTES: Final = 15 * 1024 * 1024


@dataclass(frozen=True)
class UnknownServerEvent:
    """A server event whose ``type`` the installed SDK does not know (newer protocol).

    Never fatal (§2.1: clients must ignore what they do not understand); kept so callers can log it.
    """

    type: str
    event_id: str | None
    data: Mapping[str, Any] = field(repr=False)


def parse_server_event(text: str | bytes) -> ServerEvent | UnknownServerEvent:
    """Parse one server text frame into an SDK event model.

    Returns :class:`UnknownServerEvent` for event types the SDK does not know. Unknown fields on
    known events are kept by the SDK models and logged at DEBUG level.

    Raises:
        RemoteProtocolError: the frame is not a JSON object with a string ``type``, or it is a known
            event type whose fields do not validate. The session can continue after this.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # decoding, syntax, integer-digit and depth limits
        detail = (
            str(exc) if isinstance(exc, json.JSONDecodeError) else "a number or nesting too large to parse"
        )
        raise RemoteProtocolError(f"server sent a frame that is not JSON: {detail}") from None
    return parse_server_data(data)


def parse_server_data(data: object) -> ServerEvent | UnknownServerEvent:
    """Like :func:`parse_server_event`, for a frame the caller already decoded with ``json.loads``.

    For relays that look at the decoded frame themselves: the JSON text is parsed once.
    """
    if not isinstance(data, dict):
        raise RemoteProtocolError(f"server sent JSON that is not an object: {type(data).__name__}")
    event_type = data.get("type")
    if not isinstance(event_type, str):
        raise RemoteProtocolError("server sent an event without a string 'type' field")
    if event_type not in KNOWN_SERVER_EVENT_TYPES:
        event_id = data.get("event_id")
        logger.info("ignoring unknown server event type %r", event_type)
        return UnknownServerEvent(
            type=event_type, event_id=event_id if isinstance(event_id, str) else None, data=data
        )
    try:
        event = _SERVER_EVENT_ADAPTER.validate_python(data)
    except pydantic.ValidationError as exc:
        raise RemoteProtocolError(
            f"server sent an invalid {event_type!r} event: {_describe_validation_error(exc)}"
        ) from None
    if logger.isEnabledFor(logging.DEBUG):
        for path in _unknown_field_paths(event, event_type):
            logger.debug("ignoring unknown field %s", path)
    return event


def _describe_validation_error(exc: pydantic.ValidationError) -> str:
    # The first errors only: a union member that fails produces one error per alternative.
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:3]:
        # The first element of loc is the union tag (the event type); the rest is the field path.
        location = ".".join(str(part) for part in error["loc"][1:]) or "(event)"
        parts.append(f"{location}: {error['msg']}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _unknown_field_paths(value: object, path: str) -> Iterator[str]:
    if isinstance(value, pydantic.BaseModel):
        for name in value.model_extra or {}:
            yield f"{path}.{name}"
        for name in type(value).model_fields:
            yield from _unknown_field_paths(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, element in enumerate(value):
            yield from _unknown_field_paths(element, f"{path}[{index}]")


# Client events. Every builder takes an optional event_id: the server echoes it in error.event_id
# when the event fails (§2.1), which is how ClientProtocol tells which of its requests an error answers.


def serialize_client_event(event: Mapping[str, Any]) -> str:
    """Serialise a client event as one compact JSON text frame."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def session_update(
    session: RealtimeSessionCreateRequestParam, *, event_id: str | None = None
) -> SessionUpdateEventParam:
    """``session.update`` with a GA session object (it must carry ``type: "realtime"``)."""
    if session.get("type") != "realtime":
        # §0.2: without session.type the server answers missing_required_parameter.
        raise LocalProtocolError('a GA session.update needs session["type"] == "realtime"')
    event: SessionUpdateEventParam = {"type": "session.update", "session": session}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def input_audio_buffer_append(
    audio: bytes, *, event_id: str | None = None
) -> InputAudioBufferAppendEventParam:
    """``input_audio_buffer.append`` with raw audio bytes in the session input format."""
    encoded = base64.b64encode(audio).decode("ascii")
    if len(encoded) > MAX_APPEND_AUDIO_BYTES:
        raise LocalProtocolError(
            f"input_audio_buffer.append carries at most 15 MiB of base64 audio; got {len(encoded)} bytes. "
            "Send audio in chunks of about 100 ms."
        )
    event: InputAudioBufferAppendEventParam = {"type": "input_audio_buffer.append", "audio": encoded}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def input_audio_buffer_commit(*, event_id: str | None = None) -> InputAudioBufferCommitEventParam:
    """``input_audio_buffer.commit``: turn the buffered audio into a user item (manual turns)."""
    event: InputAudioBufferCommitEventParam = {"type": "input_audio_buffer.commit"}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def input_audio_buffer_clear(*, event_id: str | None = None) -> InputAudioBufferClearEventParam:
    """``input_audio_buffer.clear``: drop the buffered, uncommitted audio."""
    event: InputAudioBufferClearEventParam = {"type": "input_audio_buffer.clear"}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def user_text_item(text: str) -> ConversationItemParam:
    """A user message item holding typed text (§2.3)."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_text_item(text: str) -> ConversationItemParam:
    """An assistant message holding text (§2.3: the client may create assistant items, but not with audio)."""
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def function_call_output_item(call_id: str, output: str) -> ConversationItemParam:
    """A ``function_call_output`` item answering the function call ``call_id`` (§2.5 D)."""
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def conversation_item_create(
    item: ConversationItemParam, *, previous_item_id: str | None = None, event_id: str | None = None
) -> ConversationItemCreateEventParam:
    """``conversation.item.create``; ``previous_item_id="root"`` inserts at the start."""
    event: ConversationItemCreateEventParam = {"type": "conversation.item.create", "item": item}
    if previous_item_id is not None:
        event["previous_item_id"] = previous_item_id
    if event_id is not None:
        event["event_id"] = event_id
    return event


def conversation_item_truncate(
    item_id: str, *, audio_end_ms: int, content_index: int = 0, event_id: str | None = None
) -> ConversationItemTruncateEventParam:
    """``conversation.item.truncate``: tell the server how much of an assistant item was heard."""
    if audio_end_ms < 0:
        # §3.4 integer_below_min_value: the server rejects negative values.
        raise LocalProtocolError(f"audio_end_ms must be >= 0, got {audio_end_ms}")
    event: ConversationItemTruncateEventParam = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }
    if event_id is not None:
        event["event_id"] = event_id
    return event


def conversation_item_delete(
    item_id: str, *, event_id: str | None = None
) -> ConversationItemDeleteEventParam:
    """``conversation.item.delete``."""
    event: ConversationItemDeleteEventParam = {"type": "conversation.item.delete", "item_id": item_id}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def response_create(
    response: RealtimeResponseCreateParamsParam | None = None, *, event_id: str | None = None
) -> ResponseCreateEventParam:
    """``response.create``, with per-response overrides when given."""
    event: ResponseCreateEventParam = {"type": "response.create"}
    if response:
        event["response"] = response
    if event_id is not None:
        event["event_id"] = event_id
    return event


def response_cancel(
    response_id: str | None = None, *, event_id: str | None = None
) -> ResponseCancelEventParam:
    """``response.cancel``; without ``response_id`` the server cancels the active response."""
    event: ResponseCancelEventParam = {"type": "response.cancel"}
    if response_id is not None:
        event["response_id"] = response_id
    if event_id is not None:
        event["event_id"] = event_id
    return event
