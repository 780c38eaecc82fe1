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

from collections.abc import AsyncIterator
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
    "connect_to_emulator",
    "parse_scenario",
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
