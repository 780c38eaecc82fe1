"""The gateway's agent profile file: what the server decides, and what clients may adjust.

``realtalk serve --profile agent.toml`` reads a TOML file with the fields of ``AgentProfile`` (the
same names as a ``realtalk talk`` profile) plus one gateway key::

    instructions = "You are the front desk of the Grand Hotel. Be brief."
    voice = "marin"
    turn_detection = {type = "server_vad", silence_duration_ms = 500}
    transcription = {model = "gpt-4o-transcribe", language = "en"}
    client_adjustable = ["voice", "turn_detection"]

    [[tools]]
    function = "./tools.py:get_room_rate"   # run by the gateway (see realtalk.client.agent_file)

The gateway sends this profile as the authoritative ``session.update`` of every session. A client's
own ``session.update`` may only touch the settings named in ``client_adjustable``; instructions,
tools, the stored prompt and the model are never adjustable (lessons.md, mistake 2). The tools a
profile names are run by the gateway: their definitions, calls and outputs never reach a client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from realtalk.client.agent_file import AgentFile, load_agent_file, parse_agent_mapping
from realtalk.errors import ConfigError
from realtalk.protocol import AgentProfile, InputTranscription
from realtalk.protocol.session_config import DEFAULT_TRANSCRIPTION_MODEL

__all__ = [
    "ADJUSTABLE_SETTINGS",
    "DEFAULT_CLIENT_ADJUSTABLE",
    "GatewayProfile",
    "load_profile",
    "profile_from_mapping",
]

ADJUSTABLE_SETTINGS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        # profile name → path inside the GA session object (§2.2)
        "voice": ("audio", "output", "voice"),
        "speed": ("audio", "output", "speed"),
        "output_format": ("audio", "output", "format"),
        "input_format": ("audio", "input", "format"),
        "turn_detection": ("audio", "input", "turn_detection"),
        "transcription": ("audio", "input", "transcription"),
        "noise_reduction": ("audio", "input", "noise_reduction"),
        "output_modality": ("output_modalities",),
        "max_output_tokens": ("max_output_tokens",),
        "tool_choice": ("tool_choice",),
    }
)
"""Settings a profile may open to clients, and where each lives in a ``session`` object."""

_NEVER_ADJUSTABLE: Final = frozenset({"instructions", "tools", "prompt", "model"})
# transcription is open by default: SDKs (openai-agents, pipecat) set it on every session.update,
# and refusing it lost their voice and VAD settings with it (issue 13, defect 11).
DEFAULT_CLIENT_ADJUSTABLE: Final = ("voice", "speed", "turn_detection", "transcription", "noise_reduction")
_EXAMPLE = 'client_adjustable = ["voice", "turn_detection"]'
_KEEP: Final = frozenset({"client_adjustable", "sip"})  # sip: phone calls (gateway/sip_policy.py)


@dataclass(frozen=True)
class GatewayProfile:
    """The agent every gateway session gets, and what its clients may change."""

    agent: AgentProfile
    client_adjustable: frozenset[str]
    source: str
    file: AgentFile | None = None
    """The whole profile: the tools the gateway runs, delegation, the filler (``None``: no tools)."""

    @property
    def server_tool_names(self) -> frozenset[str]:
        """Tools the gateway runs itself: their definitions, calls and outputs never reach a client."""
        return self.file.server_tool_names if self.file is not None else frozenset()


def _no_secrets(name: str) -> str | None:
    return None


def profile_from_mapping(
    data: Mapping[str, Any],
    source: str,
    *,
    base_dir: Path | None = None,
    secret: Callable[[str], str | None] = _no_secrets,
) -> GatewayProfile:
    """A profile from parsed TOML: an agent profile file (``realtalk.client.agent_file``) plus
    ``client_adjustable``.

    Raises:
        ConfigError: an unknown or beta-era field, an invalid value or tool, or a ``client_adjustable``
            entry that is not adjustable (instructions and tools never are).
    """
    file = parse_agent_mapping(data, source, base_dir=base_dir or Path.cwd(), secret=secret, keep=_KEEP)
    return _gateway_profile(file)


def load_profile(path: Path | None, *, secret: Callable[[str], str | None] = _no_secrets) -> GatewayProfile:
    """Read a profile file; ``None`` gives the default agent with the default adjustable settings.

    ``secret`` resolves the environment variables that HTTP tools name (``secret_env``).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds an invalid profile.
    """
    if path is None:
        agent = AgentProfile(transcription=InputTranscription(model=DEFAULT_TRANSCRIPTION_MODEL))
        return GatewayProfile(agent, frozenset(DEFAULT_CLIENT_ADJUSTABLE), "built-in default profile")
    return _gateway_profile(load_agent_file(path, secret=secret, keep=_KEEP))


def _gateway_profile(file: AgentFile) -> GatewayProfile:
    source = file.source
    adjustable = file.extra.get("client_adjustable", list(DEFAULT_CLIENT_ADJUSTABLE))
    if not isinstance(adjustable, list) or not all(isinstance(name, str) for name in adjustable):
        raise ConfigError(
            f"{source}: client_adjustable must be a list of setting names",
            variable="client_adjustable",
            example=_EXAMPLE,
        )
    for name in adjustable:
        if name in _NEVER_ADJUSTABLE:
            raise ConfigError(
                f"{source}: {name!r} cannot be client-adjustable: the gateway owns the instructions, "
                "the tools, the prompt and the model, so that no client can rewrite the agent",
                variable="client_adjustable",
                example=_EXAMPLE,
            )
        if name not in ADJUSTABLE_SETTINGS:
            raise ConfigError(
                f"{source}: unknown client_adjustable setting {name!r}; adjustable settings: "
                f"{', '.join(ADJUSTABLE_SETTINGS)}",
                variable="client_adjustable",
                example=_EXAMPLE,
            )
    return GatewayProfile(file.agent, frozenset(adjustable), source, file)
