"""Faults production meets, through the gateway: each ends with a reason and leaves nothing behind.

Every test here runs under ``no_leaks``: once the gateway and the emulator are stopped, no task
the test started is still running and no socket it opened is still open. The gateway runs the
way ``realtalk serve`` runs it and on the plain-ASGI fallback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.session import RealtimeSession
from realtalk.emulator import Faults
from realtalk.errors import HandshakeRejected
from realtalk.protocol.endpoint import resolve_endpoint

from .support import MODEL

TEXT_TURN = [
    {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    },
    {"type": "response.create"},
]


async def _close_of(url: str, events: list[dict[str, Any]], timeout_s: float = 15.0) -> tuple[int, str]:
    """Open a client, send ``events``, read until the server closes; its close code and reason."""
    async with connect(url, close_timeout=1.0) as ws:
        for event in events:
            await ws.send(json.dumps(event))
        try:
            async with asyncio.timeout(timeout_s):
                async for _ in ws:
                    pass
        except ConnectionClosed:
            pass
        close = ws.protocol.close_rcvd
        return (close.code, close.reason) if close is not None else (1006, "")


@pytest.fixture(params=["direct", "asgi"])
def asgi(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "asgi")


async def test_an_upstream_drop_closes_the_client_with_a_reason_and_frees_its_slot(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    faults = Faults(drop_after_s=0.3)
    limits = {"gateway_max_sessions_per_user": 1}
    async with stack(emulator={"faults": faults}, gateway=limits, asgi=asgi) as (_emu, gw):
        url = f"{gw.websocket_base_url}/realtime?model={MODEL}"
        code, reason = await _close_of(url, [])
        assert code == 1011
        assert reason  # a sentence the client can show
        # The slot came back: the one session this user may hold can be opened again.
        code, _ = await _close_of(url, [])
        assert code == 1011
        assert gw.state.sessions == set()


async def test_a_session_expiry_upstream_reaches_the_client_as_1001_with_azures_reason(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    async with stack(emulator={"session_limit_s": 0.5}, asgi=asgi) as (_emu, gw):
        url = f"{gw.websocket_base_url}/realtime?model={MODEL}"
        code, reason = await _close_of(url, TEXT_TURN)
    assert code == 1001
    assert "maximum duration" in reason


async def test_a_client_session_that_is_refused_on_reconnect_ends_with_the_reason_and_leaks_nothing(
    stack: Any, no_leaks: None
) -> None:
    # The emulator expires the first session; the reconnect's handshake gets a 401 (an expired key).
    faults = Faults(reject_from_connection=2)
    async with stack(emulator={"session_limit_s": 0.5, "faults": faults}) as (emu, _gw):
        endpoint = resolve_endpoint(emu.http_base_url, MODEL)
        session = RealtimeSession(endpoint, ApiKeyCredential("reliability-key", style="bearer"))
        await session.start()
        status = await asyncio.wait_for(session.wait_closed(), 15)
        await session.close()
    assert status.state == "closed"
    assert isinstance(status.error, HandshakeRejected) and status.error.status == 401
    assert "reliability-key" not in str(status.error)


async def test_a_client_session_through_the_gateway_survives_upstream_expiry_and_closes_cleanly(
    stack: Any, no_leaks: None
) -> None:
    async with stack(emulator={"session_limit_s": 1.0}) as (_emu, gw):
        endpoint = resolve_endpoint(gw.http_base_url, MODEL)
        session = RealtimeSession(endpoint, ApiKeyCredential("unused-in-open-mode", style="bearer"))
        await session.start()
        deadline = asyncio.get_running_loop().time() + 15
        while session.connections < 2 or session.status.state != "connected":
            assert asyncio.get_running_loop().time() < deadline, session.status
            await asyncio.sleep(0.05)
        await session.close()
        status = await asyncio.wait_for(session.wait_closed(), 5)
    assert status.state == "closed" and status.error is None
