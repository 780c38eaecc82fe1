"""Fuzzed events at the gateway and at the emulator: every one answered, no abrupt close, still up.

400 events per target by default (CI), 10,000 in the long mode (``bench/reliability.py``). See
``fuzzing.py`` for what is sent and what is checked.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from .fuzzing import fuzz
from .support import FUZZ_EVENTS, MODEL, record

pytestmark = pytest.mark.slow


def _check(tally: Any) -> None:
    assert tally.abrupt_closes == [], f"abrupt closes: {tally.abrupt_closes[:5]}"
    assert tally.unanswered == [], (
        f"{len(tally.unanswered)} invalid events got no error: {tally.unanswered[:5]}"
    )
    assert tally.sent == FUZZ_EVENTS
    # Each batch's probe came back: the server read everything, in order.
    assert tally.probes >= tally.sent // 25


@pytest.mark.parametrize("seed", [1, 2])
async def test_fuzzed_events_at_the_gateway_are_all_answered_and_never_drop_the_client(
    stack: Any, no_leaks: None, seed: int
) -> None:
    limits = {
        "gateway_max_events_per_s": 1_000_000.0,
        "gateway_event_burst": 1_000_000,
        "gateway_budget_usd": 0,
    }
    async with stack(gateway=limits) as (_emu, gw):
        url = f"{gw.websocket_base_url}/realtime?model={MODEL}"

        async def open_gateway() -> ClientConnection:
            return await connect(url, max_size=None, close_timeout=1.0)

        tally = await fuzz(open_gateway, seed=seed, count=FUZZ_EVENTS)
        # Upstream survived too: no session of the emulator ended in a failure.
        assert gw.state.sessions == set() or all(not s.ending for s in gw.state.sessions)
    record(f"fuzz-gateway-{seed}", asdict(tally))
    _check(tally)


@pytest.mark.parametrize("seed", [1, 2])
async def test_fuzzed_events_at_the_emulator_are_all_answered_and_never_drop_the_client(
    stack: Any, no_leaks: None, seed: int
) -> None:
    async with stack() as (emu, _gw):
        url = f"{emu.websocket_base_url}/realtime?model={MODEL}"

        async def open_emulator() -> ClientConnection:
            return await connect(
                url, additional_headers={"api-key": "fuzz-key"}, max_size=None, close_timeout=1.0
            )

        tally = await fuzz(open_emulator, seed=seed, count=FUZZ_EVENTS)
    record(f"fuzz-emulator-{seed}", asdict(tally))
    _check(tally)
