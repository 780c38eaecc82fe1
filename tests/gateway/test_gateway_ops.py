"""Operations: health, readiness, metrics, JSON logs, the embedded emulator, the exposure rule."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest

from realtalk.errors import ConfigError
from realtalk.gateway import create_app
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.logs import JsonFormatter

from .conftest import TOKEN, b64, gateway_settings, text_turn


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_and_readiness_probe_the_upstream_with_a_real_handshake(emulator, gateway) -> None:
    async with emulator() as emu, gateway(emu) as gw, httpx.AsyncClient(base_url=gw.http_base_url) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert emu.stats.connections_accepted == 1
        await http.get("/readyz")
        assert emu.stats.connections_accepted == 1  # cached for a few seconds
        gw.state.draining = True
        assert (await http.get("/readyz")).status_code == 503


async def test_readiness_fails_when_the_upstream_is_unreachable(gateway, caplog) -> None:
    endpoint = f"http://127.0.0.1:{_unused_port()}"
    async with (
        gateway(None, azure_openai_endpoint=endpoint) as gw,
        httpx.AsyncClient(base_url=gw.http_base_url) as http,
    ):
        ready = await http.get("/readyz")
        assert (await http.get("/healthz")).status_code == 200
    # A probe is told not-ready in words that reveal nothing of the upstream; the log says why.
    assert ready.status_code == 503
    assert ready.json() == {"ready": False, "detail": "The upstream Realtime service is not reachable."}
    assert any(
        "not ready: upstream unreachable" in r.getMessage() and endpoint.rsplit(":", 1)[1] in r.getMessage()
        for r in caplog.records
    )


async def test_readiness_names_an_external_local_emulator_as_such_in_the_log_and_nothing_to_clients(
    emulator, gateway, caplog
) -> None:
    async with emulator() as emu, gateway(emu) as gw, httpx.AsyncClient(base_url=gw.http_base_url) as http:
        ready = await http.get("/readyz")
    assert ready.json() == {"ready": True, "detail": "ready"}
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream: ")]
    assert started and "embedded" not in started[0] and "a local endpoint" in started[0], started


async def test_metrics_count_sessions_events_bytes_latency_tokens_dollars_and_refusals(
    emulator, gateway, client
) -> None:
    async with emulator() as emu, gateway(emu) as gw:
        async with client(gw) as c:
            await c.send('{"type":"input_audio_buffer.append","audio":"' + b64(bytes(4800)) + '"}')
            await c.send({"type": "conversation.item.delete", "item_id": "x"})
            await c.error()
            for event in text_turn("count me"):
                await c.send(event)
            await c.until("response.done")
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            text = (await http.get("/metrics")).text
    assert "realtalk_gateway_sessions_total 1.0" in text
    assert (
        'realtalk_gateway_events_total{direction="client_to_upstream",type="input_audio_buffer.append"} 1.0'
        in text
    )
    assert 'realtalk_gateway_events_total{direction="upstream_to_client",type="response.done"} 1.0' in text
    assert 'realtalk_gateway_refusals_total{reason="event_not_allowed"} 1.0' in text
    assert 'realtalk_gateway_added_latency_seconds_count{direction="client_to_upstream"}' in text
    assert 'realtalk_gateway_tokens_total{kind="output",modality="audio"}' in text
    assert 'realtalk_gateway_cost_usd_total{modality="audio"}' in text
    bytes_in = next(
        line
        for line in text.splitlines()
        if line.startswith('realtalk_gateway_bytes_total{direction="client_to_upstream"}')
    )
    assert float(bytes_in.split()[-1]) > 6400


async def test_with_a_metrics_token_only_its_bearer_reads_metrics(emulator, gateway, caplog) -> None:
    scraper = "scraper-token-0123456789"
    async with (
        emulator() as emu,
        gateway(emu, gateway_tokens=TOKEN, gateway_metrics_token=scraper) as gw,
        httpx.AsyncClient(base_url=gw.http_base_url) as http,
    ):
        refused = [
            await http.get("/metrics"),
            await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}),  # a user's token
            await http.get("/metrics", headers={"Authorization": f"Bearer {scraper}x"}),
            await http.get("/metrics", headers={"Authorization": b"Bearer \xc3\xa9\xff"}),  # not UTF-8
        ]
        allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
        health = await http.get("/healthz")  # probes stay open
    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    assert refused[0].json()["error"]["code"] == "unauthorized"
    assert allowed.status_code == 200
    assert 'realtalk_gateway_refusals_total{reason="metrics_unauthorized"} 4.0' in allowed.text
    assert health.status_code == 200
    assert scraper not in caplog.text


def test_a_short_metrics_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="REALTALK_GATEWAY_METRICS_TOKEN must be at least 16"):
        GatewayConfig.from_settings(gateway_settings(None, gateway_metrics_token="short"))


async def test_logs_carry_both_session_ids_and_never_a_token_or_audio(
    emulator, gateway, client, caplog
) -> None:
    audio = b64(b"\x07" * 4800)
    async with emulator() as emu, gateway(emu, gateway_tokens=TOKEN) as gw, client(gw, token=TOKEN) as c:
        await c.until("session.updated")
        await c.send('{"type":"input_audio_buffer.append","audio":"' + audio + '"}')
        await c.send({"type": "input_audio_buffer.clear"})
        await c.until("input_audio_buffer.cleared")
    lines = [
        JsonFormatter().format(record)
        for record in caplog.records
        if record.name.startswith("realtalk.gateway")
    ]
    decoded = [json.loads(line) for line in lines]
    configured = next(line for line in decoded if line["message"] == "session configured")
    assert configured["session_id"].startswith("gw_")
    assert configured["upstream_session_id"] == emu.stats.sessions[0].session_id
    assert configured["subject"].startswith("token:")
    for line in lines:
        assert TOKEN not in line and audio[:64] not in line


async def test_socket_chatter_stays_out_of_the_info_log(emulator, gateway, client, caplog) -> None:
    # picows logs every connection and disconnection at INFO, without a session id: with a
    # readiness probe every few seconds that would be most of the log.
    caplog.set_level(logging.INFO)
    async with emulator() as emu, gateway(emu) as gw:
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            assert (await http.get("/readyz")).status_code == 200
        async with client(gw) as c:
            await c.until("session.updated")
    names = {record.name for record in caplog.records if record.levelno < logging.WARNING}
    assert any(name == "realtalk.gateway.session" for name in names)  # the session's own lines
    assert not [name for name in names if name.startswith("realtalk.gateway.upstream")]


async def test_without_an_endpoint_the_gateway_runs_the_emulator_in_process_and_says_so(
    gateway, client, caplog
) -> None:
    async with gateway(None) as gw, client(gw, ui=True) as c:
        session = await c.until("realtalk.session")
        assert session["upstream"] == "emulator"
        for event in text_turn("anyone there"):
            await c.send(event)
        assert (await c.until("response.done"))["response"]["status"] == "completed"
    assert any("embedded emulator" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_the_ui_page_and_its_static_files_are_served(gateway, tmp_path) -> None:
    async with gateway(None) as gw:
        (gw.state.static_dir / "app.js").write_text("export const ok = true;")
        async with httpx.AsyncClient(base_url=gw.http_base_url) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "<title>realtalk</title>" in page.text
            script = await http.get("/static/app.js")
            assert script.status_code == 200 and "ok = true" in script.text


def test_without_authentication_the_gateway_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without client authentication"):
        create_app(gateway_settings(None, gateway_host="0.0.0.0"))
    create_app(gateway_settings(None, gateway_host="0.0.0.0", gateway_tokens=TOKEN))
    create_app(gateway_settings(None, gateway_host="::1"))


def test_a_profile_that_opens_the_instructions_to_clients_is_refused(tmp_path) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('instructions = "x"\nclient_adjustable = ["instructions"]\n')
    with pytest.raises(ConfigError, match="'instructions' cannot be client-adjustable"):
        create_app(gateway_settings(None, gateway_profile=profile))
