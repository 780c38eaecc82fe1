"""Agent profile files: the TOML that ``realtalk talk --profile`` and ``realtalk serve --profile`` read.

A profile holds the session settings of ``AgentProfile`` (instructions, voice, turn detection, ...),
the tools realtalk runs, how the agent fills the silence while they run, and delegation of hard
questions to a text model over the Responses API::

    instructions = "You are the help desk of Contoso. Be brief."
    voice = "marin"
    tool_filler = "One moment, I am checking that."   # "" stays silent
    tool_filler_after_s = 1.0                          # said once a call has run this long
    tool_timeout_s = 10                                # each call's limit, unless the tool sets one

    [[tools]]
    function = "./tools.py:get_ticket"                 # a file next to the profile, or "package.module:fn"

    [[tools]]
    name = "book_room"
    url = "http://127.0.0.1:8081/book"                 # POST JSON
    description = "Book a room."
    parameters = {type = "object", properties = {room = {type = "string"}}, required = ["room"]}
    secret_env = "HOTEL_API_TOKEN"                     # sent in the Authorization header

    [delegate]                                         # a built-in tool: ask a stronger text model
    deployment = "gpt-5-mini"

A ``tools`` entry that has neither ``function`` nor ``url`` is a plain Realtime function definition
(``{type = "function", name, description, parameters}``) that realtalk does not run: in ``serve``
its calls go to the client, which answers them.

Reading a profile imports the Python modules its tools name: only load profiles you trust, as you
would only run code you trust.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from realtalk.client.delegation import QUESTION_DESCRIPTION, DelegationSettings
from realtalk.client.tools import Tool, load_tools, tool_definition
from realtalk.errors import ConfigError
from realtalk.protocol import AgentProfile
from realtalk.protocol.client import DEFAULT_TOOL_FILLER

__all__ = ["AgentFile", "ToolSettings", "load_agent_file", "parse_agent_mapping"]

_TOOL_KEYS: Final = frozenset({"tool_filler", "tool_filler_after_s", "tool_timeout_s", "delegate"})
_RUN_KEYS: Final = ("function", "url")


@dataclass(frozen=True)
class ToolSettings:
    """How tools run: the filler said while a call is slow, and the default time limit per call."""

    filler: str | None = DEFAULT_TOOL_FILLER
    filler_after_s: float = 1.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class AgentFile:
    """A loaded profile: the session settings, the tools realtalk runs, delegation, and the rest."""

    agent: AgentProfile
    """The session configuration; its ``tools`` declare every tool, run here or by the client."""
    tools: tuple[Tool, ...]
    """Tools realtalk runs (the delegation tool is added per session: it keeps a thread)."""
    delegate: DelegationSettings | None
    tool_settings: ToolSettings
    extra: Mapping[str, Any]
    """Keys the caller asked to keep (``serve`` keeps ``client_adjustable``)."""
    source: str

    @property
    def server_tool_names(self) -> frozenset[str]:
        """Names of the tools realtalk answers (never the client)."""
        names = {tool.name for tool in self.tools}
        if self.delegate is not None:
            names.add(self.delegate.name)
        return frozenset(names)


def _number(value: object, key: str, source: str, example: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"{source}: {key} must be a number of seconds > 0, got {value!r}", variable=key, example=example
        )
    return float(value)


def parse_agent_mapping(
    data: Mapping[str, Any],
    source: str,
    *,
    base_dir: Path,
    secret: Callable[[str], str | None],
    keep: frozenset[str] = frozenset(),
) -> AgentFile:
    """A profile from parsed TOML (see the module docstring); ``keep`` names extra keys to pass through.

    Raises:
        ConfigError: naming the file, the key and a correct example.
    """
    values = dict(data)
    extra = {key: values.pop(key) for key in keep if key in values}
    tool_values = {key: values.pop(key) for key in _TOOL_KEYS if key in values}
    filler = tool_values.get("tool_filler", DEFAULT_TOOL_FILLER)
    if not isinstance(filler, str):
        raise ConfigError(
            f'{source}: tool_filler must be text ("" to stay silent)',
            variable="tool_filler",
            example='tool_filler = "One moment, I am checking that."',
        )
    settings = ToolSettings(
        filler=filler.strip() or None,
        filler_after_s=_number(
            tool_values.get("tool_filler_after_s", 1.0), "tool_filler_after_s", source, "1.0"
        ),
        timeout_s=_number(tool_values.get("tool_timeout_s", 10.0), "tool_timeout_s", source, "10"),
    )
    delegate = _delegate(tool_values.get("delegate"), source)
    entries = values.pop("tools", [])
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise ConfigError(
            f"{source}: tools must be a list of tables ([[tools]] entries)",
            variable="tools",
            example='[[tools]]\nfunction = "./tools.py:get_ticket"',
        )
    try:
        tools = load_tools(entries, base_dir=base_dir, secret=secret)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", variable=exc.variable) from None
    declared = [dict(entry) for entry in entries if not any(key in entry for key in _RUN_KEYS)]
    definitions = [tool_definition(tool) for tool in tools]
    if delegate is not None:
        definitions.append(delegation_definition(delegate))
    try:
        agent = AgentProfile.from_mapping(values)
        agent = replace(agent, tools=(*agent.tools, *definitions, *declared))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", variable=exc.variable) from None
    return AgentFile(agent, tools, delegate, settings, extra, source)


def _delegate(value: object, source: str) -> DelegationSettings | None:
    if value is None:
        return None
    example = '[delegate]\ndeployment = "gpt-5-mini"'
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: delegate must be a table", variable="delegate", example=example)
    try:
        return DelegationSettings.from_profile(value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", variable=exc.variable) from None


def delegation_definition(settings: DelegationSettings) -> dict[str, Any]:
    """The Realtime function definition of the delegation tool."""
    return {
        "type": "function",
        "name": settings.name,
        "description": settings.description,
        "parameters": {
            "type": "object",
            "properties": {"question": {"type": "string", "description": QUESTION_DESCRIPTION}},
            "required": ["question"],
        },
    }


def load_agent_file(
    path: Path, *, secret: Callable[[str], str | None], keep: frozenset[str] = frozenset()
) -> AgentFile:
    """Read and check a profile file; its tools' modules are imported (relative paths from its folder).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds an invalid profile or tool.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the profile {path}: {exc.strerror}",
            variable="--profile",
            example="--profile agent.toml",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"the profile {path} is not valid TOML: {exc}", variable="--profile", example='voice = "marin"'
        ) from None
    return parse_agent_mapping(data, str(path), base_dir=path.resolve().parent, secret=secret, keep=keep)
