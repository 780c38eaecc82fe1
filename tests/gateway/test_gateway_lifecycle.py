"""One side closing closes the other with a reason; graceful shutdown lets replies finish."""

from __future__ import annotations

import asyncio
import gc
import json
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtalk.emulator import Faults, parse_scenario
from realtalk.gateway import Gateway, create_app
from realtalk.gateway.relay import SHUTDOWN_SENTENCE, UPSTREAM_UNAVAILABLE_SENTENCE

from .conftest import b64, gateway_settings, text_turn

LONG_REPLY = " ".join(["This reply is long enough to be in flight when the server is asked to stop."] * 4)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_upstream_session_expiry_reaches_the_client_as_1001_with_the_reason(
    emulator, gateway, client
) -> None:
    async with emulator(session_limit_s=0.3) as emu, gateway(emu) as gw, client(gw, ui=True) as c:
        code, reason = await c.closed()
        assert code == 1001 and reason.startswith("Your session hit the maximum duration")
        expired = next(e["error"] for e in c.events if e["type"] == "error")
        assert expired["code"] == "session_expired"  # the server's own error event is forwarded first
        notice = next(e for e in c.events if e["type"] == "realtalk.notice")
        assert (notice["code"], notice["message"]) == ("upstream_closed", reason)


async def test_an_unreachable_upstream_closes_the_client_with_1011_and_a_sentence_the_detail_is_logged(
    gateway, client, caplog
) -> None:
    port = _unused_port()
    async with gateway(None, azure_openai_endpoint=f"http://127.0.0.1:{port}") as gw, client(gw) as c:
        code, reason = await c.closed()
    # The client is told what happened and what to do, not where the upstream is or why it failed.
    assert (code, reason) == (1011, UPSTREAM_UNAVAILABLE_SENTENCE)
    assert str(port) not in json.dumps(c.events)
    logged = [r.getMessage() for r in caplog.records if r.name == "realtalk.gateway.session"]
    assert any("upstream unavailable" in line and str(port) in line for line in logged), logged


async def test_an_upstream_that_refuses_the_gateways_key_is_not_explained_to_the_client(
    emulator, gateway, client, caplog
) -> None:
    async with (
        emulator(keys=("the-right-key",)) as emu,
        gateway(emu, azure_openai_api_key="a-wrong-key") as gw,
    ):
        async with client(gw) as c:
            code, reason = await c.closed()
    assert (code, reason) == (1011, UPSTREAM_UNAVAILABLE_SENTENCE)
    error = next(e["error"] for e in c.events if e["type"] == "error")
    assert error["message"] == UPSTREAM_UNAVAILABLE_SENTENCE
    # What the client was told, without the random event ids (a hex id may contain "401").
    told = json.dumps([{k: v for k, v in e.items() if k != "event_id"} for e in c.events])
    assert "401" not in told and "key" not in told.lower()
    assert any("401" in r.getMessage() for r in caplog.records if r.name == "realtalk.gateway.session")


async def test_an_upstream_that_drops_closes_the_client_with_1011(emulator, gateway, client) -> None:
    async with emulator(faults=Faults(drop_after_s=0.2)) as emu, gateway(emu) as gw, client(gw) as c:
        code, reason = await c.closed()
        assert (code, reason) == (1011, "upstream connection lost (1006)")


async def test_a_client_that_leaves_closes_the_upstream_with_1000(emulator, gateway, sdk) -> None:
    async with emulator() as emu, gateway(emu) as gw:
        async with sdk(gw) as conn:
            assert (await conn.recv()).type == "session.created"
            (session,) = gw.state.sessions
        await session.closed.wait()
        record = emu.stats.sessions[0]
        assert (record.close_code, record.close_reason) == (1000, "client disconnected")
        assert gw.state.admissions.active == 0 and not gw.state.sessions


async def test_shutdown_tells_clients_lets_the_reply_finish_then_closes_with_1001(
    emulator, gateway, client
) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=10.0, scenario=scenario) as emu, gateway(emu, gateway_drain_s=10) as gw:
        async with client(gw, ui=True) as c:
            for event in text_turn("talk to me"):
                await c.send(event)
            await c.until("response.output_audio.delta")
            stopping = asyncio.create_task(gw.stop())
            notice = await c.until("realtalk.notice")
            assert notice["code"] == "server_shutting_down"
            # While draining: no new turn (no audio, no response.create).
            await c.send('{"type":"input_audio_buffer.append","audio":"' + b64(bytes(4800)) + '"}')
            assert (await c.error())["code"] == "server_shutting_down"
            await c.send({"type": "response.create", "event_id": "evt_late"})
            late = await c.error()
            assert (late["code"], late["event_id"]) == ("server_shutting_down", "evt_late")
            done = await c.until("response.done")
            assert done["response"]["status"] == "completed"
            code, reason = await c.closed()
            assert (code, reason) == (1001, SHUTDOWN_SENTENCE)
            await stopping
        assert [e.get("event_id") for e in emu.stats.events_received("response.create")] == [None]
        assert emu.stats.events_received("input_audio_buffer.append") == []
        await emu.stats.wait_for(lambda s: s.sessions[0].closed)
        assert emu.stats.sessions[0].close_code == 1000


async def test_shutdown_does_not_wait_longer_than_its_bound(emulator, gateway, client) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY * 4}]})
    async with emulator(pace=1.0, scenario=scenario) as emu, gateway(emu, gateway_drain_s=0.2) as gw:
        async with client(gw) as c:
            for event in text_turn("talk to me"):
                await c.send(event)
            await c.until("response.output_audio.delta")
            stopping = asyncio.create_task(gw.stop())
            code, reason = await c.closed()
            assert (code, reason) == (1001, SHUTDOWN_SENTENCE)
            assert "response.done" not in c.types()
            await stopping


async def test_while_draining_it_still_answers_503_with_retry_after_and_warns_every_client_before_1001(
    emulator, gateway, client
) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=10.0, scenario=scenario) as emu, gateway(emu, gateway_drain_s=10) as gw:
        async with client(gw) as c:  # an SDK-like client: no realtalk.* events
            for event in text_turn("talk to me"):
                await c.send(event)
            await c.until("response.output_audio.delta")
            stopping = asyncio.create_task(gw.stop())
            await asyncio.sleep(0.2)  # the drain has begun; the reply is still playing
            # A new client is refused with a status that says when to come back, not ECONNREFUSED.
            with pytest.raises(InvalidStatus) as refused:
                async with client(gw):
                    pass
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers["Retry-After"] == "5"
            async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 503
            # The reply finishes; then every client is told why in an `error` event before the close.
            done = await c.until("response.done")
            assert done["response"]["status"] == "completed"
            error = await c.error()
            assert error["code"] == "server_shutting_down"
            assert error["message"] == "The gateway is restarting; connect again in a few seconds."
            code, reason = await c.closed()
            assert (code, reason) == (1001, "The gateway is restarting; connect again in a few seconds.")
            await stopping


async def test_a_draining_gateway_refuses_new_clients(emulator, gateway, client) -> None:
    async with emulator() as emu, gateway(emu) as gw, client(gw) as c:
        await c.until("session.created")
        gw.state.draining = True
        with pytest.raises(InvalidStatus) as refused:
            async with client(gw):
                pass
        assert refused.value.response.status_code == 503
        assert emu.stats.handshakes == 1


async def test_a_gateway_that_owns_its_process_freezes_the_startup_heap_out_of_the_collector(
    emulator, tmp_path, fast_engines
) -> None:
    async with emulator() as emu:
        app = create_app(gateway_settings(emu), static_dir=tmp_path, emulator_engines=fast_engines)
        gc.unfreeze()
        try:
            async with Gateway(app, freeze_gc=True):
                frozen = gc.get_freeze_count()
            assert frozen > 10_000  # FastAPI, pydantic and the SDK's types: most of the heap
            gc.unfreeze()
            async with Gateway(create_app(gateway_settings(emu), static_dir=tmp_path)):
                assert gc.get_freeze_count() == 0  # the default (tests, embedding): untouched
        finally:
            gc.unfreeze()


async def test_the_retired_preview_path_gets_a_400_that_names_the_ga_path(emulator, gateway) -> None:
    async with emulator() as emu, gateway(emu) as gw:
        base = gw.http_base_url.replace("http://", "ws://")
        url = f"{base}/openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-realtime-preview"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
    response = refused.value.response
    assert response.status_code == 400
    body = json.loads(response.body)
    assert body["error"]["code"] == "beta_api_shape_disabled"
    assert "/openai/v1/realtime?model=<deployment>" in body["error"]["message"]
    assert emu.stats.handshakes == 0  # nothing was opened upstream
