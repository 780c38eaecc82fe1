"""What the agent is (``AgentProfile``) and how it becomes a GA ``session.update``.

The profile is validated when it is built, so a wrong voice or an out-of-range speed is a
``ConfigError`` on the user's machine, not an ``error`` event from the server mid-call. Beta-era
field names are refused with the GA replacement named (§2.6: one beta field rejects the whole update).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

from openai.types.realtime import RealtimeSessionCreateRequestParam

from realtalk.errors import ConfigError, LocalProtocolError

__all__ = [
    "AUDIO_FORMATS",
    "VOICES",
    "AgentProfile",
    "AudioFormatName",
    "AudioFormatSpec",
    "InputTranscription",
    "SemanticVad",
    "ServerVad",
    "Voice",
    "audio_format_from_wire",
    "check_ga_session",
]

Voice = Literal["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
VOICES: Final[tuple[str, ...]] = get_args(Voice)
AudioFormatName = Literal["pcm24k", "pcmu", "pcma"]
Eagerness = Literal["low", "medium", "high", "auto"]
NoiseReduction = Literal["near_field", "far_field"]
OutputModality = Literal["audio", "text"]


@dataclass(frozen=True)
class AudioFormatSpec:
    """One wire audio format (§3.1): how it is written in a session, and how to count its samples."""

    name: AudioFormatName
    wire: Mapping[str, Any]
    sample_rate_hz: int
    bytes_per_sample: int


AUDIO_FORMATS: Final[Mapping[AudioFormatName, AudioFormatSpec]] = MappingProxyType(
    {
        "pcm24k": AudioFormatSpec("pcm24k", MappingProxyType({"type": "audio/pcm", "rate": 24000}), 24000, 2),
        "pcmu": AudioFormatSpec("pcmu", MappingProxyType({"type": "audio/pcmu"}), 8000, 1),
        "pcma": AudioFormatSpec("pcma", MappingProxyType({"type": "audio/pcma"}), 8000, 1),
    }
)
_FORMAT_BY_WIRE_TYPE: Final = {spec.wire["type"]: spec for spec in AUDIO_FORMATS.values()}


def audio_format_from_wire(wire_format: object) -> AudioFormatSpec:
    """Map a GA format object (SDK model or dict, ``{"type": "audio/pcmu"}``) to its spec.

    A missing format means the GA default, PCM16 at 24 kHz.
    """
    if wire_format is None:
        return AUDIO_FORMATS["pcm24k"]
    wire_type = (
        wire_format.get("type") if isinstance(wire_format, Mapping) else getattr(wire_format, "type", None)
    )
    return _FORMAT_BY_WIRE_TYPE.get(wire_type, AUDIO_FORMATS["pcm24k"])


@dataclass(frozen=True)
class _BetaField:
    ga_name: str
    ga_example: str
    profile_hint: str


# §2.6: beta field → GA replacement. Used both for raw GA session dicts and for profile files.
_BETA_FIELDS: Final[Mapping[str, _BetaField]] = MappingProxyType(
    {
        "input_audio_format": _BetaField(
            "audio.input.format", '{"type": "audio/pcm", "rate": 24000}', 'input_format = "pcm24k"'
        ),
        "output_audio_format": _BetaField(
            "audio.output.format", '{"type": "audio/pcm", "rate": 24000}', 'output_format = "pcm24k"'
        ),
        "modalities": _BetaField(
            "output_modalities", '["audio"] or ["text"], not both', 'output_modality = "audio"'
        ),
        "temperature": _BetaField("(nothing)", "the GA protocol has no temperature; remove it", "remove it"),
        "input_audio_transcription": _BetaField(
            "audio.input.transcription",
            '{"model": "gpt-4o-transcribe", "language": "en"}',
            'transcription = {model = "gpt-4o-transcribe"}',
        ),
        "input_audio_noise_reduction": _BetaField(
            "audio.input.noise_reduction", '{"type": "near_field"}', 'noise_reduction = "near_field"'
        ),
        "max_response_output_tokens": _BetaField(
            "max_output_tokens", '4096 or "inf"', 'max_output_tokens = "inf"'
        ),
    }
)
# Fields that are ours in a profile but beta-era at the top level of a raw GA session.
_BETA_TOP_LEVEL_ONLY: Final[Mapping[str, _BetaField]] = MappingProxyType(
    {
        "voice": _BetaField("audio.output.voice", '"marin"', 'voice = "marin"'),
        "speed": _BetaField("audio.output.speed", "1.0", "speed = 1.0"),
        "turn_detection": _BetaField(
            "audio.input.turn_detection", '{"type": "server_vad"}', 'turn_detection = {type = "server_vad"}'
        ),
    }
)
_BETA_FORMATS: Final[Mapping[str, AudioFormatName]] = MappingProxyType(
    {"pcm16": "pcm24k", "g711_ulaw": "pcmu", "g711_alaw": "pcma"}
)


def _beta_field_message(name: str, beta: _BetaField) -> str:
    if beta.ga_name == "(nothing)":
        return f"'{name}' is a beta-era field; {beta.ga_example}"
    return f"'{name}' is a beta-era field; in the GA protocol it is {beta.ga_name} ({beta.ga_example})"


def _beta_format_message(value: str) -> str:
    ga = json.dumps(dict(AUDIO_FORMATS[_BETA_FORMATS[value]].wire))
    return f"'{value}' is a beta-era audio format name; in the GA protocol it is {ga}"


def check_ga_session(session: Mapping[str, Any]) -> None:
    """Refuse a raw GA ``session`` object that the server would reject as beta-shaped.

    Raises:
        LocalProtocolError: ``type`` is missing, a beta-era field is present (the message names its
            GA replacement), or an audio format is a beta string such as ``"pcm16"``.
    """
    for name in session:
        beta = _BETA_FIELDS.get(name) or _BETA_TOP_LEVEL_ONLY.get(name)
        if beta is not None:
            raise LocalProtocolError(_beta_field_message(name, beta))
    if "type" not in session:
        # §0.2: missing_required_parameter, param "session.type".
        raise LocalProtocolError('session.type is required in the GA protocol: add "type": "realtime"')
    audio = session.get("audio")
    if isinstance(audio, Mapping):
        for direction in ("input", "output"):
            section = audio.get(direction)
            fmt = section.get("format") if isinstance(section, Mapping) else None
            if isinstance(fmt, str):
                if fmt in _BETA_FORMATS:
                    raise LocalProtocolError(f"audio.{direction}.format: {_beta_format_message(fmt)}")
                raise LocalProtocolError(
                    f"audio.{direction}.format must be an object such as "
                    f'{{"type": "audio/pcm", "rate": 24000}}, not the string {fmt!r}'
                )


def _fail(message: str, field_name: str, example: str) -> ConfigError:
    return ConfigError(message, variable=field_name, example=example)


def _check_bool(value: object, field_name: str) -> None:
    if not isinstance(value, bool):
        raise _fail(f"{field_name} must be true or false, got {value!r}", field_name, f"{field_name} = true")


@dataclass(frozen=True)
class ServerVad:
    """Server voice activity detection (``server_vad``): respond after a silence."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not 0.0 <= self.threshold <= 1.0:
            raise _fail(f"threshold must be between 0.0 and 1.0, got {self.threshold!r}", "threshold", "0.5")
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _fail(f"{name} must be a whole number of milliseconds >= 0, got {value!r}", name, "300")
        _check_bool(self.create_response, "create_response")
        _check_bool(self.interrupt_response, "interrupt_response")
        timeout = self.idle_timeout_ms
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int) or not 5000 <= timeout <= 30000
        ):
            # §3.3: idle_timeout_ms is 5,000-30,000 or null.
            raise _fail(
                f"idle_timeout_ms must be 5000-30000 or unset, got {timeout!r}", "idle_timeout_ms", "10000"
            )

    def to_wire(self) -> dict[str, Any]:
        """The GA ``audio.input.turn_detection`` object."""
        wire: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }
        if self.idle_timeout_ms is not None:
            wire["idle_timeout_ms"] = self.idle_timeout_ms
        return wire


@dataclass(frozen=True)
class SemanticVad:
    """Semantic turn detection (``semantic_vad``): a model judges whether the user has finished."""

    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    def __post_init__(self) -> None:
        if self.eagerness not in get_args(Eagerness):
            raise _fail(
                f"eagerness must be one of low, medium, high, auto; got {self.eagerness!r}",
                "eagerness",
                '"auto"',
            )
        _check_bool(self.create_response, "create_response")
        _check_bool(self.interrupt_response, "interrupt_response")

    def to_wire(self) -> dict[str, Any]:
        """The GA ``audio.input.turn_detection`` object."""
        return {
            "type": "semantic_vad",
            "eagerness": self.eagerness,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


# The default input transcription of realtalk's front ends (talk, serve): live user transcripts
# are one of the first things users ask for. On Azure it names a deployment of that model.
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


@dataclass(frozen=True)
class InputTranscription:
    """Transcription of the user's audio (on Azure ``model`` is a deployment name)."""

    model: str
    language: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise _fail("transcription needs a model", "transcription.model", '"gpt-4o-transcribe"')
        if self.language is not None and not re.fullmatch(r"[a-z]{2,3}", self.language):
            raise _fail(
                f"transcription language must be an ISO-639-1 code, got {self.language!r}",
                "transcription.language",
                '"en"',
            )

    def to_wire(self) -> dict[str, Any]:
        """The GA ``audio.input.transcription`` object."""
        wire: dict[str, Any] = {"model": self.model}
        if self.language is not None:
            wire["language"] = self.language
        if self.prompt is not None:
            wire["prompt"] = self.prompt
        return wire


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_CHOICE_OPTIONS: Final = ("auto", "none", "required")


@dataclass(frozen=True)
class AgentProfile:
    """Everything that configures the agent's session; ``to_session()`` gives the GA object.

    Every field is sent on every update, so a profile describes the whole session (``None`` for
    ``turn_detection`` means manual, push-to-talk turns).
    """

    instructions: str | None = None
    voice: Voice = "marin"
    turn_detection: ServerVad | SemanticVad | None = ServerVad()
    transcription: InputTranscription | None = None
    noise_reduction: NoiseReduction | None = None
    speed: float = 1.0
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] = "auto"
    max_output_tokens: int | Literal["inf"] = "inf"
    output_modality: OutputModality = "audio"
    input_format: AudioFormatName = "pcm24k"
    output_format: AudioFormatName = "pcm24k"

    def __post_init__(self) -> None:
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise _fail("instructions must be text", "instructions", '"You are a helpful assistant."')
        if self.voice not in VOICES:
            raise _fail(
                f"voice {self.voice!r} is not a Realtime voice; use one of {', '.join(VOICES)}",
                "voice",
                '"marin"',
            )
        if not isinstance(self.turn_detection, ServerVad | SemanticVad | None):
            raise _fail(
                "turn_detection must be ServerVad(), SemanticVad() or None (manual turns)",
                "turn_detection",
                "ServerVad(silence_duration_ms=500)",
            )
        if self.noise_reduction not in (None, *get_args(NoiseReduction)):
            raise _fail(
                f"noise_reduction must be near_field, far_field or unset, got {self.noise_reduction!r}",
                "noise_reduction",
                '"near_field"',
            )
        if (
            isinstance(self.speed, bool)
            or not isinstance(self.speed, int | float)
            or not 0.25 <= self.speed <= 1.5
        ):
            raise _fail(f"speed must be between 0.25 and 1.5, got {self.speed!r}", "speed", "1.0")
        tokens = self.max_output_tokens
        if tokens != "inf" and (
            isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 4096
        ):
            raise _fail(
                f'max_output_tokens must be 1-4096 or "inf", got {tokens!r}', "max_output_tokens", '"inf"'
            )
        if self.output_modality not in get_args(OutputModality):
            raise _fail(
                f"output_modality must be audio or text, got {self.output_modality!r}",
                "output_modality",
                '"audio"',
            )
        for name in ("input_format", "output_format"):
            value = getattr(self, name)
            if value in _BETA_FORMATS:
                raise _fail(
                    _beta_format_message(value) + f"; in a realtalk profile write "
                    f"{name} = {_BETA_FORMATS[value]!r}",
                    name,
                    '"pcm24k"',
                )
            if value not in AUDIO_FORMATS:
                raise _fail(f"{name} must be pcm24k, pcmu or pcma, got {value!r}", name, '"pcm24k"')
        self._check_tools()

    def _check_tools(self) -> None:
        example = '{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}'
        names: set[str] = set()
        for tool in self.tools:
            if not isinstance(tool, Mapping) or tool.get("type") != "function":
                raise _fail(f"each tool must be a function tool dict, got {tool!r}", "tools", example)
            name = tool.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
                raise _fail(f"tool name must be 1-64 letters, digits, _ or -, got {name!r}", "tools", example)
            if name in names:
                raise _fail(f"tool {name!r} is defined twice", "tools", example)
            if not isinstance(tool.get("parameters", {}), Mapping):
                raise _fail(f"tool {name!r}: parameters must be a JSON schema object", "tools", example)
            names.add(name)
        choice = self.tool_choice
        if isinstance(choice, str):
            if choice not in _TOOL_CHOICE_OPTIONS:
                raise _fail(
                    f"tool_choice must be auto, none, required or a function, got {choice!r}",
                    "tool_choice",
                    '"auto"',
                )
        elif not isinstance(choice, Mapping) or choice.get("type") not in ("function", "mcp"):
            raise _fail(
                f"tool_choice {choice!r} is not valid", "tool_choice", '{"type": "function", "name": "x"}'
            )
        elif choice.get("type") == "function" and choice.get("name") not in names:
            raise _fail(
                f"tool_choice names {choice.get('name')!r}, which is not one of the tools",
                "tool_choice",
                '"auto"',
            )

    @property
    def interrupt_response(self) -> bool:
        """Whether the server cancels a response itself when the user starts speaking."""
        return self.turn_detection is not None and self.turn_detection.interrupt_response

    def to_session(self) -> RealtimeSessionCreateRequestParam:
        """The GA ``session`` object for ``session.update`` (§2.2), with ``type: "realtime"``."""
        audio_input: dict[str, Any] = {
            "format": dict(AUDIO_FORMATS[self.input_format].wire),
            "noise_reduction": {"type": self.noise_reduction} if self.noise_reduction else None,
            "transcription": self.transcription.to_wire() if self.transcription else None,
            "turn_detection": self.turn_detection.to_wire() if self.turn_detection else None,
        }
        audio_output: dict[str, Any] = {
            "format": dict(AUDIO_FORMATS[self.output_format].wire),
            "voice": self.voice,
            "speed": self.speed,
        }
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": [self.output_modality],
            "audio": {"input": audio_input, "output": audio_output},
            "tools": [dict(tool) for tool in self.tools],
            "tool_choice": self.tool_choice if isinstance(self.tool_choice, str) else dict(self.tool_choice),
            "max_output_tokens": self.max_output_tokens,
        }
        if self.instructions is not None:
            session["instructions"] = self.instructions
        return cast(RealtimeSessionCreateRequestParam, session)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AgentProfile:
        """Build a profile from plain data (a parsed TOML profile file).

        Beta-era names (``input_audio_format``, ``modalities``, ``temperature``, ``pcm16``, ...) are
        refused with the GA replacement; unknown keys are refused with the list of known ones.
        ``turn_detection`` is a table with ``type = "server_vad" | "semantic_vad"``, or ``"manual"``.
        """
        known = {f.name for f in fields(cls)}
        for key in data:
            beta = _BETA_FIELDS.get(key)
            if beta is not None:
                raise _fail(
                    f"{_beta_field_message(key, beta)}; in a realtalk profile write {beta.profile_hint}",
                    key,
                    beta.profile_hint,
                )
            if key not in known:
                raise _fail(
                    f"unknown profile key {key!r}; known keys: {', '.join(sorted(known))}",
                    key,
                    'voice = "marin"',
                )
        values = dict(data)
        if "turn_detection" in values:
            values["turn_detection"] = _turn_detection_from(values["turn_detection"])
        if "transcription" in values:
            values["transcription"] = _transcription_from(values["transcription"])
        if values.get("noise_reduction") in ("off", "none", False):
            values["noise_reduction"] = None
        if "tools" in values:
            tools = values["tools"]
            if not isinstance(tools, Sequence) or isinstance(tools, str):
                raise _fail(
                    "tools must be a list of function tools", "tools", '[{type = "function", name = "x"}]'
                )
            values["tools"] = tuple(tools)
        if isinstance(values.get("speed"), int) and not isinstance(values.get("speed"), bool):
            values["speed"] = float(values["speed"])
        if isinstance(values.get("speed"), float) and not math.isfinite(values["speed"]):
            raise _fail("speed must be a finite number", "speed", "1.0")
        try:
            return cls(**values)
        except TypeError as exc:  # a wrongly typed nested value that the field checks did not reach
            raise _fail(f"invalid profile: {exc}", "profile", 'voice = "marin"') from None


def _turn_detection_from(value: object) -> ServerVad | SemanticVad | None:
    if value is None or value is False or value in ("manual", "none"):
        return None
    if isinstance(value, ServerVad | SemanticVad):
        return value
    example = 'turn_detection = {type = "server_vad", silence_duration_ms = 500} (or "manual")'
    if not isinstance(value, Mapping):
        raise _fail(f'turn_detection must be a table or "manual", got {value!r}', "turn_detection", example)
    options = dict(value)
    kind = options.pop("type", None)
    cls: type[ServerVad] | type[SemanticVad]
    if kind == "server_vad":
        cls = ServerVad
    elif kind == "semantic_vad":
        cls = SemanticVad
    else:
        raise _fail(
            f"turn_detection.type must be server_vad or semantic_vad, got {kind!r}", "turn_detection", example
        )
    allowed = {f.name for f in fields(cls)}
    unknown = set(options) - allowed
    if unknown:
        raise _fail(
            f"turn_detection ({kind}) does not take {', '.join(sorted(unknown))}; it takes "
            f"{', '.join(sorted(allowed))}",
            "turn_detection",
            example,
        )
    return cls(**options)


def _transcription_from(value: object) -> InputTranscription | None:
    if value is None or value is False:
        return None
    if isinstance(value, InputTranscription):
        return value
    if isinstance(value, str):
        return InputTranscription(model=value)
    example = 'transcription = {model = "gpt-4o-transcribe", language = "en"}'
    if not isinstance(value, Mapping) or set(value) - {"model", "language", "prompt"}:
        raise _fail(
            f"transcription must be a table with model, language, prompt; got {value!r}",
            "transcription",
            example,
        )
    return InputTranscription(**dict(value))
