"""A local server that speaks the Azure OpenAI GA Realtime protocol, for development and tests.

::

    async with Emulator(EmulatorConfig(pace=20)) as emu:
        client = AsyncOpenAI(websocket_base_url=emu.websocket_base_url, api_key="any-key")
        async with client.realtime.connect(model="gpt-realtime-1.5") as conn:
            ...

It is written from the protocol notes, independently of ``realtalk.client`` and
``realtalk.protocol`` (it must not import them), so that a misreading of the protocol is not shared
by both sides. Every event it sends validates against the official SDK's types.
"""

from realtalk.emulator.config import DEFAULT_DEPLOYMENTS, EmulatorConfig
from realtalk.emulator.engines import Engines, load_engines
from realtalk.emulator.faults import Faults
from realtalk.emulator.responder import (
    CallFunction,
    CloseSocket,
    DropConnection,
    EchoResponder,
    Reply,
    Responder,
    Say,
    SendError,
    TurnContext,
)
from realtalk.emulator.runner import Emulator
from realtalk.emulator.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from realtalk.emulator.stats import EmulatorStats, SessionRecord

__all__ = [
    "DEFAULT_DEPLOYMENTS",
    "CallFunction",
    "CloseSocket",
    "DropConnection",
    "EchoResponder",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "Engines",
    "Faults",
    "Reply",
    "Responder",
    "Say",
    "Scenario",
    "ScenarioError",
    "SendError",
    "SessionRecord",
    "TurnContext",
    "load_engines",
    "load_scenario",
    "parse_scenario",
]
