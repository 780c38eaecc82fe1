"""``realtalk talk``'s options, checked: the session configuration (``AgentProfile``) and the rest
of the run (``TalkOptions``). Combinations that cannot work are usage errors (exit 2), found
before anything is opened.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final

import typer

from realtalk.client.agent_file import AgentFile
from realtalk.errors import ConfigError
from realtalk.protocol.session_config import (
    VOICES,
    AgentProfile,
    InputTranscription,
    SemanticVad,
    ServerVad,
)

__all__ = [
    "Eagerness",
    "TalkOptions",
    "Transport",
    "VadMode",
    "build_profile",
    "check_devices",
    "check_transport",
    "merge_profile",
    "read_instructions",
    "voice_name",
]


class VadMode(enum.StrEnum):
    server = "server"
    semantic = "semantic"


class Transport(enum.StrEnum):
    """How the conversation travels: JSON events over a WebSocket, or media tracks over WebRTC."""

    websocket = "websocket"
    webrtc = "webrtc"


class Eagerness(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    auto = "auto"


@dataclass(frozen=True)
class TalkOptions:
    """The command line, checked; built by ``talk`` and used by ``converse``."""

    profile: AgentProfile
    agent_file: AgentFile | None = None  # --profile: its tools and delegation run in the session
    push_to_talk: bool = False
    input_device: str | None = None
    output_device: str | None = None
    input_wav: Path | None = None
    output_wav: Path | None = None
    headphones: bool = False
    aec: bool = False
    record: Path | None = None
    events: Path | None = None
    duration_s: float | None = None
    exit_after_turns: int | None = None
    speed: float = 1.0
    transport: Transport = Transport.websocket

    @property
    def virtual_device(self) -> bool:
        """WAV files stand in for the sound card (both sides) when either WAV option is given."""
        return self.input_wav is not None or self.output_wav is not None


def voice_name(value: str) -> str:
    """``--voice``'s callback: one of the Realtime voices, in lower case."""
    voice = value.strip().lower()
    if voice not in VOICES:
        raise typer.BadParameter(f"{value!r} is not a Realtime voice; choose one of {', '.join(VOICES)}.")
    return voice


def read_instructions(value: str | None) -> str | None:
    """``--instructions``'s callback: the text itself, or @FILE read."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read the instructions file {path}: {exc}") from None


def check_devices(
    *,
    input_device: str | None,
    output_device: str | None,
    input_wav: Path | None,
    output_wav: Path | None,
) -> None:
    """A sound card and WAV files do not mix: the WAV options replace the card on both sides."""
    wav_device = input_wav is not None or output_wav is not None
    if wav_device and (input_device is not None or output_device is not None):
        raise typer.BadParameter(
            "--input-device/--output-device choose a sound card; --input-wav/--output-wav replace it. "
            "Use one or the other.",
            param_hint="'--input-wav/--output-wav'",
        )


def check_transport(transport: Transport, *, speed: float) -> None:
    """WebRTC media runs in real time: the (hidden, for tests) ``--speed`` cannot apply to it."""
    if transport is Transport.webrtc and speed != 1.0:
        raise typer.BadParameter(
            "--speed paces the WebSocket transport only; WebRTC audio flows in real time.",
            param_hint="'--transport'",
        )


# Which options set which profile field: given on the command line, they override --profile.
_OPTION_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "voice": "voice",
        "instructions": "instructions",
        "transcription_model": "transcription",
        "vad": "turn_detection",
        "eagerness": "turn_detection",
        "vad_threshold": "turn_detection",
        "silence_ms": "turn_detection",
        "prefix_ms": "turn_detection",
        "ptt": "turn_detection",
    }
)


def merge_profile(base: AgentProfile, options: AgentProfile, given: set[str]) -> AgentProfile:
    """``--profile``'s session with the settings of the options ``given`` on the command line."""
    changes = {_OPTION_FIELDS[name]: None for name in given if name in _OPTION_FIELDS}
    return replace(base, **{field: getattr(options, field) for field in changes})


def build_profile(
    *,
    voice: str,
    instructions: str | None,
    transcription_model: str,
    vad: VadMode,
    eagerness: Eagerness | None,
    vad_threshold: float | None,
    silence_ms: int | None,
    prefix_ms: int | None,
    push_to_talk: bool,
) -> AgentProfile:
    """The session configuration the options describe; option combinations that cannot work are refused."""
    server_options = {
        "--vad-threshold": vad_threshold,
        "--silence-ms": silence_ms,
        "--prefix-ms": prefix_ms,
    }
    given = [name for name, value in server_options.items() if value is not None]
    turn_detection: ServerVad | SemanticVad | None
    if push_to_talk:
        if given or eagerness is not None or vad is not VadMode.server:
            raise typer.BadParameter(
                "push-to-talk turns are manual: --vad, --eagerness, --vad-threshold, --silence-ms and "
                "--prefix-ms do not apply with --ptt.",
                param_hint="'--ptt'",
            )
        turn_detection = None
    elif vad is VadMode.semantic:
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} only apply to --vad server; semantic VAD takes --eagerness.",
                param_hint="'--vad'",
            )
        turn_detection = SemanticVad(eagerness=(eagerness or Eagerness.auto).value)
    else:
        if eagerness is not None:
            raise typer.BadParameter(
                "--eagerness tunes --vad semantic; server VAD takes --vad-threshold, --silence-ms and "
                "--prefix-ms.",
                param_hint="'--eagerness'",
            )
        defaults = ServerVad()
        turn_detection = ServerVad(
            threshold=defaults.threshold if vad_threshold is None else vad_threshold,
            prefix_padding_ms=defaults.prefix_padding_ms if prefix_ms is None else prefix_ms,
            silence_duration_ms=defaults.silence_duration_ms if silence_ms is None else silence_ms,
        )
    model = transcription_model.strip()
    transcription = None if model.lower() in ("none", "off", "") else InputTranscription(model=model)
    try:
        return AgentProfile(
            instructions=instructions,
            voice=voice,  # type: ignore[arg-type]  # checked against VOICES by voice_name
            turn_detection=turn_detection,
            transcription=transcription,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
