"""Fakes for testing your own voice agent without a sound card or an Azure account.

Everything realtalk's own tests use, in one place:

* a scripted server: ``Emulator`` (the local GA Realtime server) with ``EmulatorConfig``, ``Faults``
  and ``parse_scenario`` for scripted replies, function calls, errors and closes;
* in-memory audio: ``MemorySource`` (a "microphone" playing given PCM, then silence),
  ``SilenceSource``, ``MemorySink`` (a "speaker" that keeps every sample it was handed);
* a clockless sound card, ``VirtualDuplex``, driven in (fast) real time by ``PacedDriver``;
* ``connect_to_emulator``: a started ``RealtimeSession`` on an emulator.

::

    async with Emulator(EmulatorConfig(pace=4, scenario=parse_scenario({"turns": ["Hello!"]}))) as emu:
        async with connect_to_emulator(emu) as session:
            session.send_text("hi")
            ...
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from realtalk.audio.duplex import DuplexBlock, VirtualDuplex
from realtalk.audio.pcm import read_wav, silence
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import MemorySink, MemorySource, SilenceSource, WavSink, WavSource
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.session import RealtimeSession
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.emulator import Emulator, EmulatorConfig, Faults, parse_scenario
from realtalk.protocol import AgentProfile
from realtalk.protocol.endpoint import resolve_endpoint

__all__ = [
    "AgentProfile",
    "DuplexBlock",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "MemorySink",
    "MemorySource",
    "PacedDriver",
    "PlaybackBuffer",
    "SilenceSource",
    "VirtualDuplex",
    "VoiceLoop",
    "WavSink",
    "WavSource",
    "configuration_variables",
    "connect_to_emulator",
    "parse_scenario",
    "process_group_ended",
    "read_wav",
    "silence",
]


@asynccontextmanager
async def connect_to_emulator(
    emulator: Emulator, profile: AgentProfile | None = None, *, deployment: str = "gpt-realtime-1.5"
) -> AsyncIterator[RealtimeSession]:
    """A started ``RealtimeSession`` on ``emulator`` (using its first configured key, if any)."""
    key = emulator.config.keys[0] if emulator.config.keys else "realtalk-test"
    endpoint = resolve_endpoint(emulator.http_base_url, deployment)
    async with RealtimeSession(endpoint, ApiKeyCredential(key, style="bearer"), profile=profile) as session:
        yield session


# What a developer's shell may hold that would leak into a test: realtalk's own settings, proxies
# (they change the network path) and the variables that change how Rich renders.
_CONFIGURATION_PREFIXES = ("AZURE_OPENAI_", "OPENAI_", "REALTALK_")
_ALSO_CLEARED = frozenset(
    {"FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"}
    | {f"{scheme}_proxy" for scheme in ("http", "https", "all", "ws", "wss", "no")}
    | {f"{scheme}_PROXY" for scheme in ("HTTP", "HTTPS", "ALL", "WS", "WSS", "NO")}
)


def configuration_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names in ``environ`` (default ``os.environ``) a test should clear so it cannot pick up the
    developer's Azure settings: ``AZURE_OPENAI_*``, ``OPENAI_*``, ``REALTALK_*``, proxies and
    terminal-rendering variables."""
    names = os.environ if environ is None else environ
    return [name for name in names if name.startswith(_CONFIGURATION_PREFIXES) or name in _ALSO_CLEARED]


def process_group_ended(pgid: int, timeout_s: float = 10.0) -> bool:
    """Wait up to ``timeout_s`` for every process of group ``pgid`` to end; whether they all did
    (for tests that stop a command and check that nothing it started outlived it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
