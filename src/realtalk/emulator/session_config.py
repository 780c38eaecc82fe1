"""The session object: GA defaults, ``session.update`` merging, and the rules the SDK types cannot
express (value ranges, voice names, one output modality).

The session is kept as the JSON object the server sends in ``session.created``/``session.updated``
(§2.2, §2.4). Defaults are those of a real ``session.created`` captured on the GA API: server VAD
with threshold 0.5, 300 ms prefix padding and 200 ms silence, ``create_response`` and
``interrupt_response`` on, no idle timeout, no transcription or noise reduction, ``truncation
"auto"``, ``max_output_tokens "inf"``.

An update changes only the keys it carries; ``null`` clears ``turn_detection``, ``transcription``,
``noise_reduction`` and ``tracing``. A ``turn_detection`` of the same ``type`` as the current one
keeps the fields the update leaves out; a new type starts from that type's defaults (the SDK's
documented ones: silence 500 ms). Any refused update changes nothing (:func:`apply_update`
builds a new object and raises before the caller swaps it in).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from realtalk.emulator import errors

__all__ = [
    "VOICES",
    "apply_update",
    "check_response_params",
    "default_session",
    "input_format_type",
    "output_format_type",
]

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
DEFAULT_VOICE = "marin"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful, friendly voice assistant. Your voice and personality should be warm and "
    "engaging, with a lively and playful tone. Talk quickly and keep answers short. You are running "
    "in the realtalk emulator, which repeats what it understood instead of thinking."
)

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

# (path, minimum, maximum, integer): the documented ranges (§2.2, §3.3).
_RANGES: tuple[tuple[tuple[str, ...], float | None, float | None, bool], ...] = (
    (("audio", "input", "turn_detection", "threshold"), 0.0, 1.0, False),
    (("audio", "input", "turn_detection", "prefix_padding_ms"), 0, None, True),
    (("audio", "input", "turn_detection", "silence_duration_ms"), 0, None, True),
    (("audio", "input", "turn_detection", "idle_timeout_ms"), 5000, 30000, True),
    (("audio", "input", "noise_reduction", "strength"), 0.0, None, False),
    (("audio", "output", "speed"), 0.25, 1.5, False),
    (("max_output_tokens",), 1, 4096, True),
    (("truncation", "retention_ratio"), 0.0, 1.0, False),
)


def _server_vad_defaults(silence_duration_ms: int) -> dict[str, Any]:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": silence_duration_ms,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def _turn_detection_defaults(kind: str) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        }
    return _server_vad_defaults(500)


def default_session(session_id: str, model: str, expires_at: int) -> dict[str, Any]:
    """The session object of ``session.created``."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _server_vad_defaults(200),
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": DEFAULT_VOICE, "speed": 1.0},
        },
        "include": None,
    }


def _normalise_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    kind = fmt.get("type", "audio/pcm")
    return {"type": kind, "rate": 24000} if kind == "audio/pcm" else {"type": kind}


def _dig(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _check_ranges(data: Mapping[str, Any], prefix: str) -> None:
    for path, minimum, maximum, integer in _RANGES:
        value = _dig(data, path)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        param = ".".join((prefix, *path)) if prefix else ".".join(path)
        if minimum is not None and value < minimum:
            raise errors.below_min_value(param, minimum, value, integer=integer)
        if maximum is not None and value > maximum:
            raise errors.above_max_value(param, maximum, value, integer=integer)


def _check_voice(voice: Any, param: str) -> None:
    if isinstance(voice, str) and voice not in VOICES:
        raise errors.invalid_value(param, voice, VOICES)


def _check_modalities(modalities: Any, param: str) -> None:
    if isinstance(modalities, list):
        if len(set(modalities)) > 1:
            raise errors.both_modalities(param)
        if not modalities:
            raise errors.invalid_value_message(param, f"Invalid '{param}': expected 'audio' or 'text'.")


def _check_tools(tools: Any, param: str) -> None:
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, Mapping) and tool.get("type", "function") == "function" and not tool.get("name"):
            raise errors.missing_required_parameter(f"{param}[{index}].name")


def apply_update(
    current: Mapping[str, Any], update: Mapping[str, Any], *, audio_produced: bool
) -> dict[str, Any]:
    """The session after ``update`` (already checked against the SDK types), or the API's error."""
    if update["type"] != "realtime":
        raise errors.cannot_change_session_type(str(update["type"]))
    if "model" in update and update["model"] != current["model"]:
        raise errors.cannot_change_model(current["model"], str(update["model"]))
    _check_ranges(update, "session")
    _check_modalities(update.get("output_modalities"), "session.output_modalities")
    _check_tools(update.get("tools"), "session.tools")
    new_voice = _dig(update, ("audio", "output", "voice"))
    _check_voice(new_voice, "session.audio.output.voice")
    if new_voice is not None and audio_produced and new_voice != current["audio"]["output"]["voice"]:
        raise errors.cannot_update_voice()

    session = copy.deepcopy(dict(current))
    for key, value in update.items():
        if key in ("type", "audio", "model"):
            continue
        session[key] = copy.deepcopy(value)
    audio_update = update.get("audio") or {}
    for direction in ("input", "output"):
        changes = audio_update.get(direction) or {}
        target = session["audio"][direction]
        for key, value in changes.items():
            if key == "format":
                target[key] = _normalise_format(value)
            elif key == "turn_detection" and value is not None:
                previous = target.get("turn_detection")
                if isinstance(previous, Mapping) and previous.get("type") == value.get("type"):
                    base = dict(previous)
                else:
                    base = _turn_detection_defaults(value["type"])
                target[key] = {**base, **copy.deepcopy(value)}
            else:
                target[key] = copy.deepcopy(value)
    return session


def check_response_params(params: Mapping[str, Any]) -> None:
    """The rules of ``response.create``'s ``response`` object beyond its SDK type."""
    _check_ranges(params, "response")
    _check_modalities(params.get("output_modalities"), "response.output_modalities")
    _check_tools(params.get("tools"), "response.tools")
    _check_voice(_dig(params, ("audio", "output", "voice")), "response.audio.output.voice")
    conversation = params.get("conversation")
    if conversation is not None and conversation not in ("auto", "none"):
        raise errors.invalid_value("response.conversation", conversation, ("auto", "none"))
    metadata = params.get("metadata")
    if isinstance(metadata, Mapping):
        if len(metadata) > 16:
            raise errors.invalid_value_message(
                "response.metadata",
                f"Invalid 'response.metadata': too many properties. Expected at most 16, "
                f"but got {len(metadata)} instead.",
            )
        for key, value in metadata.items():
            if len(key) > 64:
                raise errors.string_above_max_length(f"response.metadata.{key}", 64, len(key))
            if len(str(value)) > 512:
                raise errors.string_above_max_length(f"response.metadata.{key}", 512, len(str(value)))


def input_format_type(session: Mapping[str, Any]) -> FormatType:
    kind: FormatType = session["audio"]["input"]["format"]["type"]
    return kind


def output_format_type(fmt: Mapping[str, Any]) -> FormatType:
    kind: FormatType = fmt.get("type", "audio/pcm")
    return kind
