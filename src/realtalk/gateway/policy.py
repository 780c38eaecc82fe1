"""What clients may send through the gateway, and what they may see: a pure module.

Theory of operation. The gateway owns the session: its protocol core sends the profile as the
authoritative ``session.update`` when the server's ``session.created`` arrives, before any client
event is forwarded. After that, every client event that is not a fast-path audio append (see
framing.py) is parsed once and checked here against an allowlist (issue 5, item 2):

==============================  =============================================================
``input_audio_buffer.append``   ``audio`` must be base64
``input_audio_buffer.commit``   as is
``input_audio_buffer.clear``    as is
``conversation.item.create``    a user ``message`` (input_text/input_audio/input_image parts) or
                                a ``function_call_output``; never system or assistant items
``response.create``             without ``instructions``, ``tools``, ``prompt`` or ``input``;
                                voice, modalities, token cap and tool choice only where the
                                profile makes them client-adjustable
``response.cancel``             as is
``conversation.item.truncate``  as is
``conversation.item.retrieve``  as is (read-only)
``session.update``              only the settings the profile lists in ``client_adjustable``;
                                no-ops (``model`` the session already uses, ``tools: []``) are
                                accepted and left out of what goes upstream
==============================  =============================================================

Anything else is refused: the client gets a protocol ``error`` event (``invalid_request_error``,
a code, a message naming the rule, its ``event_id`` echoed) and nothing is forwarded. Unknown
fields are refused too: the server would reject them, and a relay that forwards what it does not
understand is how beta-era fields and instruction overrides slip through.

On the way back, ``session.created`` and ``session.updated`` reach the client without the
instructions and the stored prompt, and with each tool reduced to its type and name
(lessons.md, mistake 2).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Final

from realtalk.gateway.framing import b64_decoded_length
from realtalk.gateway.profile import ADJUSTABLE_SETTINGS

__all__ = [
    "ALLOWED_EVENT_TYPES",
    "ClientEventPolicy",
    "Refusal",
    "SessionView",
    "error_event",
    "redact_session_event",
    "server_event_id",
    "without_noops",
]

_ADJUSTABLE_BY_PATH: Final = {path: name for name, path in ADJUSTABLE_SETTINGS.items()}

_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "input_audio_buffer.append": frozenset({"type", "event_id", "audio"}),
    "input_audio_buffer.commit": frozenset({"type", "event_id"}),
    "input_audio_buffer.clear": frozenset({"type", "event_id"}),
    "conversation.item.create": frozenset({"type", "event_id", "item", "previous_item_id"}),
    "conversation.item.truncate": frozenset({"type", "event_id", "item_id", "content_index", "audio_end_ms"}),
    "response.create": frozenset({"type", "event_id", "response"}),
    "response.cancel": frozenset({"type", "event_id", "response_id"}),
    "session.update": frozenset({"type", "event_id", "session"}),
    # Read-only: openai-agents retrieves each item after its transcript and after a truncate.
    "conversation.item.retrieve": frozenset({"type", "event_id", "item_id"}),
}
ALLOWED_EVENT_TYPES: Final = tuple(_FIELDS)

_USER_CONTENT_TYPES: Final = frozenset({"input_text", "input_audio", "input_image"})
_MESSAGE_FIELDS: Final = frozenset({"id", "type", "role", "content", "object", "status"})
_OUTPUT_FIELDS: Final = frozenset({"id", "type", "call_id", "output", "object", "status"})
_RESPONSE_OVERRIDES_NEVER: Final = {
    "instructions": "the instructions are the server's",
    "tools": "the tools are the server's",
    "prompt": "the stored prompt is the server's",
    "input": "a response's input would replace the conversation (and could carry system messages)",
}
_RESPONSE_ADJUSTABLE: Final = {
    "output_modalities": "output_modality",
    "max_output_tokens": "max_output_tokens",
    "tool_choice": "tool_choice",
}
_SESSION_NEVER: Final = {
    "instructions": "the instructions are set by the server's agent profile",
    "tools": "the tools are set by the server's agent profile",
    "prompt": "the stored prompt is set by the server's agent profile",
    "model": "the model is the server's deployment",
}


@dataclass
class SessionView:
    """What the gateway knows of one session, to tell a no-op from a change: the model names it
    uses (the client's ``?model=``, the deployment, the upstream's model) and its current settings
    (the latest ``session.created``/``session.updated`` from upstream, unredacted)."""

    models: set[str] = field(default_factory=set)
    current: Mapping[str, Any] | None = None
    # Function calls the gateway answers itself (its profile's tools): a client may not answer them,
    # or retrieve their items. Bounded by the caller (a few per turn, forgotten oldest first).
    server_call_ids: set[str] = field(default_factory=set)
    hidden_item_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Refusal:
    """Why a client event is not forwarded: an ``error.code``, a message naming the rule, the param."""

    code: str
    message: str
    param: str | None = None


def _server_tool_refusal(event_type: str, event: Mapping[str, Any], view: SessionView) -> Refusal | None:
    # Ids are checked to be strings first: a client's list or object is not hashable.
    if event_type == "conversation.item.create":
        item = event.get("item")
        call_id = item.get("call_id") if isinstance(item, Mapping) else None
        if (
            isinstance(item, Mapping)
            and item.get("type") == "function_call_output"
            and isinstance(call_id, str)
            and call_id in view.server_call_ids
        ):
            return Refusal(
                "item_not_allowed",
                "Rule 'server tools': this function call is answered by the gateway, not the client.",
                "item.call_id",
            )
    elif event_type == "conversation.item.retrieve" and _str_in(event.get("item_id"), view.hidden_item_ids):
        return Refusal(
            "item_not_allowed", "Rule 'server tools': the gateway's tool items are not shown.", "item_id"
        )
    return None


def _str_in(value: object, ids: AbstractSet[str]) -> bool:
    return isinstance(value, str) and value in ids


def server_event_id() -> str:
    """A fresh server-style event id (``event_`` + 21 alphanumerics, §2.1)."""
    return "event_" + secrets.token_hex(11)[:21]


def error_event(
    refusal: Refusal, client_event_id: str | None, *, error_type: str = "invalid_request_error"
) -> str:
    """The protocol ``error`` event (§2.4) that answers a refused client event, as JSON text."""
    return json.dumps(
        {
            "type": "error",
            "event_id": server_event_id(),
            "error": {
                "type": error_type,
                "code": refusal.code,
                "message": refusal.message,
                "param": refusal.param,
                "event_id": client_event_id,
            },
        },
        separators=(",", ":"),
    )


def redact_session_event(
    event: Mapping[str, Any], hidden_tools: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``session.created``/``session.updated`` as a client may see it: no instructions, no stored
    prompt, tools reduced to ``{"type", "name"}`` (MCP tools to ``{"type", "server_label"}``), and
    the tools the gateway runs itself (``hidden_tools``) not even named."""
    redacted = dict(event)
    session = redacted.get("session")
    if isinstance(session, Mapping):
        visible = {k: v for k, v in session.items() if k not in ("instructions", "prompt")}
        tools = session.get("tools")
        if isinstance(tools, list):
            visible["tools"] = [
                _tool_name_only(tool)
                for tool in tools
                if not (isinstance(tool, Mapping) and _str_in(tool.get("name"), hidden_tools))
            ]
        redacted["session"] = visible
    return redacted


def _tool_name_only(tool: object) -> dict[str, Any]:
    if not isinstance(tool, Mapping):
        return {}
    kept = ("type", "server_label") if tool.get("type") == "mcp" else ("type", "name")
    return {key: tool[key] for key in kept if key in tool}


class ClientEventPolicy:
    """The allowlist of one gateway (pure; one instance may serve every connection)."""

    def __init__(self, client_adjustable: frozenset[str]) -> None:
        self.client_adjustable = client_adjustable
        self._rules: dict[str, Callable[[Mapping[str, Any]], Refusal | None]] = {
            "input_audio_buffer.append": self._append,
            "conversation.item.create": self._item_create,
        }

    def check(self, event: Mapping[str, Any], *, view: SessionView | None = None) -> Refusal | None:
        """``None`` when ``event`` (a decoded client event) may be forwarded, else why not.

        A no-op in a ``session.update`` or a ``response.create`` is accepted whatever the profile
        allows (``view`` says what the session is now): a setting equal to the session's current
        value, ``model`` equal to one the session uses, ``tools: []`` and ``instructions: ""`` (the
        client has none of its own). SDKs send these on every update (pipecat, openai-agents); a
        refusal would lose the rest of it. ``without_noops`` takes them out before it goes upstream."""
        event_type = event.get("type")
        if not isinstance(event_type, str):
            return Refusal("invalid_event", "The 'type' field is missing or is not a string.", "type")
        event_id = event.get("event_id")
        if event_id is not None and not isinstance(event_id, str):
            return Refusal("invalid_event", "The 'event_id' field must be a string.", "event_id")
        fields = _FIELDS.get(event_type)
        if fields is None:
            return Refusal(
                "event_not_allowed",
                f"Rule 'client event allowlist': {event_type!r} is not forwarded by this gateway. "
                f"Allowed events: {', '.join(ALLOWED_EVENT_TYPES)}.",
                "type",
            )
        for name in event:
            if name not in fields:
                return Refusal(
                    "field_not_allowed",
                    f"Rule 'known fields only': {event_type} has no field {name!r} this gateway forwards.",
                    name,
                )
        view = view or SessionView()
        if event_type == "session.update":
            return self._session_update(event, view)
        if event_type == "response.create":
            return self._response_create(event, view)
        if view is not None and (refusal := _server_tool_refusal(event_type, event, view)) is not None:
            return refusal
        rule = self._rules.get(event_type)
        return rule(event) if rule is not None else None

    # -- rules -------------------------------------------------------------------------------

    def _append(self, event: Mapping[str, Any]) -> Refusal | None:
        audio = event.get("audio")
        if not isinstance(audio, str) or b64_decoded_length(audio) is None:
            return Refusal("invalid_value", "Rule 'audio is base64': 'audio' must be base64 text.", "audio")
        return None

    def _item_create(self, event: Mapping[str, Any]) -> Refusal | None:
        item = event.get("item")
        if not isinstance(item, Mapping):
            return Refusal("invalid_value", "conversation.item.create needs an 'item' object.", "item")
        kind = item.get("type")
        if kind == "function_call_output":
            return _unknown_field(item, _OUTPUT_FIELDS, "item")
        if kind != "message" or item.get("role") != "user":
            return Refusal(
                "item_not_allowed",
                "Rule 'conversation items': clients may only create user messages and "
                "function_call_output items (system and assistant items are the server's).",
                "item.role" if kind == "message" else "item.type",
            )
        refusal = _unknown_field(item, _MESSAGE_FIELDS, "item")
        if refusal is not None:
            return refusal
        content = item.get("content")
        if not isinstance(content, list):
            return Refusal("invalid_value", "A user message needs a 'content' list.", "item.content")
        for index, part in enumerate(content):
            part_type = part.get("type") if isinstance(part, Mapping) else None
            if not isinstance(part_type, str) or part_type not in _USER_CONTENT_TYPES:
                return Refusal(
                    "item_not_allowed",
                    "Rule 'conversation items': user message content must be input_text, input_audio "
                    f"or input_image, not {part_type!r}.",
                    f"item.content[{index}].type",
                )
        return None

    def _response_create(self, event: Mapping[str, Any], view: SessionView) -> Refusal | None:
        response = event.get("response")
        if response is None:
            return None
        if not isinstance(response, Mapping):
            return Refusal("invalid_value", "'response' must be an object.", "response")
        for name, value in response.items():
            param = f"response.{name}"
            if name in ("conversation", "metadata") or _is_noop((name,), value, view):
                continue
            if name in _RESPONSE_OVERRIDES_NEVER:
                return Refusal(
                    "field_not_allowed",
                    f"Rule 'no instruction or tool overrides': {param} cannot be set by clients "
                    f"({_RESPONSE_OVERRIDES_NEVER[name]}).",
                    param,
                )
            if name == "audio":
                refusal = self._nested_settings(value, ("audio",), param, view)
                if refusal is not None:
                    return refusal
                continue
            setting = _RESPONSE_ADJUSTABLE.get(name)
            if setting is None:
                return Refusal(
                    "field_not_allowed",
                    f"Rule 'known fields only': response.create has no field {name!r}.",
                    param,
                )
            if setting not in self.client_adjustable:
                return self._not_adjustable(setting, param)
        return None

    def _session_update(self, event: Mapping[str, Any], view: SessionView) -> Refusal | None:
        session = event.get("session")
        if not isinstance(session, Mapping):
            return Refusal("invalid_value", "session.update needs a 'session' object.", "session")
        for name, value in session.items():
            param = f"session.{name}"
            if name == "type":
                if value != "realtime":
                    return Refusal("invalid_value", "session.type must be 'realtime'.", param)
                continue
            if _is_noop((name,), value, view):
                continue
            if name in _SESSION_NEVER:
                return Refusal(
                    "field_not_allowed",
                    f"Rule 'client-adjustable settings': {param} cannot be changed by clients "
                    f"({_SESSION_NEVER[name]}). {self._adjustable_list()}",
                    param,
                )
            if name == "audio":
                refusal = self._nested_settings(value, ("audio",), param, view)
                if refusal is not None:
                    return refusal
                continue
            setting = _ADJUSTABLE_BY_PATH.get((name,))
            if setting is None:
                return Refusal(
                    "field_not_allowed",
                    f"Rule 'client-adjustable settings': {param} cannot be changed by clients. "
                    f"{self._adjustable_list()}",
                    param,
                )
            if setting not in self.client_adjustable:
                return self._not_adjustable(setting, param)
        return None

    def _nested_settings(
        self, value: object, path: tuple[str, ...], param: str, view: SessionView
    ) -> Refusal | None:
        # audio.{input,output}.<setting>: each leaf must be a client-adjustable setting.
        if not isinstance(value, Mapping):
            return Refusal("invalid_value", f"{param} must be an object.", param)
        for direction, section in value.items():
            section_param = f"{param}.{direction}"
            if direction not in ("input", "output") or not isinstance(section, Mapping):
                return Refusal(
                    "field_not_allowed",
                    f"{section_param} is not a setting clients may change.",
                    section_param,
                )
            for leaf, leaf_value in section.items():
                leaf_param = f"{section_param}.{leaf}"
                if _is_noop((*path, direction, leaf), leaf_value, view):
                    continue
                setting = _ADJUSTABLE_BY_PATH.get((*path, direction, leaf))
                if setting is None:
                    return Refusal(
                        "field_not_allowed",
                        f"Rule 'client-adjustable settings': {leaf_param} cannot be changed by clients. "
                        f"{self._adjustable_list()}",
                        leaf_param,
                    )
                if setting not in self.client_adjustable:
                    return self._not_adjustable(setting, leaf_param)
        return None

    def _not_adjustable(self, setting: str, param: str) -> Refusal:
        return Refusal(
            "field_not_allowed",
            f"Rule 'client-adjustable settings': {param} ({setting}) is not client-adjustable in this "
            f"gateway's profile. {self._adjustable_list()}",
            param,
        )

    def _adjustable_list(self) -> str:
        names = ", ".join(sorted(self.client_adjustable)) or "none"
        return f"Client-adjustable: {names}."


_NONE_OF_MY_OWN: Final[Mapping[tuple[str, ...], object]] = {("tools",): [], ("instructions",): ""}


def _is_noop(path: tuple[str, ...], value: object, view: SessionView) -> bool:
    """Whether setting ``path`` (in the session's terms) to ``value`` changes nothing."""
    if path == ("model",):
        return isinstance(value, str) and value in view.models
    if path in _NONE_OF_MY_OWN and value == _NONE_OF_MY_OWN[path]:
        return True
    current: object = view.current
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return False
        current = current[key]
    return bool(current == value)


def without_noops(event: Mapping[str, Any], view: SessionView) -> dict[str, Any] | None:
    """``event`` (a ``session.update`` or ``response.create`` that passed ``check``) without its
    no-op settings, or ``None`` when it has none. They must not reach the upstream as sent:
    ``tools: []`` would remove the profile's tools, ``instructions: ""`` its instructions."""
    key = {"session.update": "session", "response.create": "response"}.get(str(event.get("type")))
    body = event.get(key) if key else None
    if key is None or not isinstance(body, Mapping):
        return None
    kept: dict[str, Any] = {}
    changed = False
    for name, value in body.items():
        if name == "type":
            kept[name] = value
        elif name == "audio" and isinstance(value, Mapping):
            audio = {
                direction: {
                    leaf: leaf_value
                    for leaf, leaf_value in section.items()
                    if not _is_noop(("audio", direction, leaf), leaf_value, view)
                }
                for direction, section in value.items()
                if isinstance(section, Mapping)
            }
            audio = {direction: section for direction, section in audio.items() if section}
            changed |= audio != value
            if audio:
                kept[name] = audio
        elif name not in ("conversation", "metadata") and _is_noop((name,), value, view):
            changed = True
        else:
            kept[name] = value
    return {**event, key: kept} if changed else None


def _unknown_field(item: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> Refusal | None:
    for name in item:
        if name not in allowed:
            return Refusal(
                "field_not_allowed",
                f"Rule 'known fields only': a {item.get('type')} item has no field {name!r}.",
                f"{prefix}.{name}",
            )
    return None
