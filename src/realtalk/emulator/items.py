"""From client requests to server state: items a client creates, and a response's parameters.

Both inputs were already checked against the SDK's types (``validation.py``); what is left are
the rules of §2.3: the server assigns ``id`` and ``status``, audio a client sends for a user item
is stored (never echoed back except by ``conversation.item.retrieve``), and an assistant item
cannot be created with audio.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Mapping
from typing import Any

from realtalk.emulator import errors
from realtalk.emulator.conversation import Conversation, Item
from realtalk.emulator.events import new_id
from realtalk.emulator.response import ResponseParams
from realtalk.emulator.session_config import FormatType
from realtalk.emulator.usage import Segment, text_tokens

__all__ = ["context_segments", "item_from_client", "resolve_input", "response_params"]


def item_from_client(raw: Mapping[str, Any], input_format: FormatType) -> Item:
    """The stored item for a client's ``conversation.item.create`` (or a response's inline input)."""
    data = {k: copy.deepcopy(v) for k, v in raw.items() if k not in ("object", "id", "status")}
    item_id = raw.get("id") or new_id("item")
    audio = bytearray()
    has_audio = False
    if data["type"] == "message":
        for part in data.get("content", []):
            if part.get("type") == "input_audio":
                has_audio = True
                encoded = part.pop("audio", None)
                if encoded:
                    try:
                        audio += base64.b64decode(encoded, validate=True)
                    except (binascii.Error, ValueError) as exc:
                        raise errors.invalid_audio("expected base64-encoded audio") from exc
                part.setdefault("transcript", None)
            elif part.get("type") == "output_audio":
                if part.get("audio"):
                    raise errors.client_audio_for_assistant()
                part.setdefault("transcript", None)
    elif data["type"] == "function_call":
        data.setdefault("call_id", new_id("call", 16))
    ordered = {"id": item_id, "type": data.pop("type"), "status": "completed", **data}
    return Item(ordered, audio=bytes(audio) if has_audio else None, audio_format=input_format)


def _normalise_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    kind = fmt.get("type", "audio/pcm")
    return {"type": kind, "rate": 24000} if kind == "audio/pcm" else {"type": kind}


def response_params(session: Mapping[str, Any], overrides: Mapping[str, Any]) -> ResponseParams:
    """The session's response settings with ``response.create``'s overrides on top (§2.2)."""
    session_output = session["audio"]["output"]
    override_output = (overrides.get("audio") or {}).get("output") or {}
    fmt = override_output.get("format") or session_output["format"]
    return ResponseParams(
        conversation="none" if overrides.get("conversation") == "none" else "auto",
        output_modalities=tuple(overrides.get("output_modalities") or session["output_modalities"]),
        output_format=_normalise_format(fmt),
        voice=override_output.get("voice") or session_output["voice"],
        speed=float(session_output.get("speed") or 1.0),
        instructions=overrides["instructions"] if "instructions" in overrides else session["instructions"],
        tools=tuple(overrides["tools"] if "tools" in overrides else session["tools"]),
        tool_choice=overrides["tool_choice"] if "tool_choice" in overrides else session["tool_choice"],
        max_output_tokens=overrides.get("max_output_tokens") or session["max_output_tokens"],
        metadata=dict(overrides["metadata"]) if overrides.get("metadata") is not None else None,
    )


def resolve_input(
    conversation: Conversation, raw_input: list[dict[str, Any]] | None, input_format: FormatType
) -> list[Item] | None:
    """A response's explicit ``input`` (items and ``item_reference``s), or None for the conversation."""
    if raw_input is None:
        return None
    items: list[Item] = []
    for index, entry in enumerate(raw_input):
        if entry.get("type") == "item_reference":
            found = conversation.get(entry["id"])
            if found is None:
                raise errors.invalid_value_message(
                    f"response.input[{index}].id",
                    f"Item with id '{entry['id']}' does not exist in the conversation.",
                )
            items.append(found)
        else:
            items.append(item_from_client(entry, input_format))
    return items


def context_segments(params: ResponseParams, items: list[Item]) -> list[Segment]:
    """What a response bills as input (§6.2): instructions, tool definitions, then the items."""
    segments = [Segment(f"instructions:{hash(params.instructions)}", text_tokens(params.instructions))]
    if params.tools:
        tools_json = json.dumps(params.tools, sort_keys=True)
        segments.append(Segment(f"tools:{hash(tools_json)}", text_tokens(tools_json)))
    segments.extend(item.segment() for item in items)
    return segments
