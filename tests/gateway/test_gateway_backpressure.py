"""Backpressure: a client that does not read is bounded and then closed; one we stop reading is not
idle, and an upstream that does not read ends the session.

Each runs three ways (direct, compiled path off, plain ASGI: see conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import websockets
from websockets.asyncio.server import ServerConnection

from .conftest import MODEL, b64

STALL_S = 1.0
BUFFER_BYTES = 64 * 1024


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _masked(payload: bytes) -> bytes:
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def _upgrade(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /openai/v1/realtime?model=" + MODEL.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def _read_to_close(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Read every frame the gateway sent (the client finally reads); its close code and reason."""
    async with asyncio.timeout(30):
        while True:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
            if head[0] & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


async def test_a_client_that_sends_and_never_reads_is_bounded_then_closed_as_not_reading(
    emulator, gateway, caplog
) -> None:
    limits = {
        "gateway_client_buffer_bytes": BUFFER_BYTES,
        "gateway_client_stall_s": STALL_S,
        "gateway_max_events_per_s": 1e6,
        "gateway_event_burst": 1_000_000,
    }
    async with emulator() as emu, gateway(emu, **limits) as gw:
        port = int(gw.http_base_url.rsplit(":", 1)[1])
        reader, writer = await _upgrade(port)
        rss_before = _rss_kib()
        # `{}` frames as fast as the socket takes them, for up to 8 MiB: each is answered with an
        # `error` ~50 times its size. Reading is never done until the end.
        flood = _masked(b"{}") * 8192
        sent = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + STALL_S + 3
        try:
            while sent < 8 * 1024 * 1024 and loop.time() < until:
                writer.write(flood)
                async with asyncio.timeout(max(0.01, until - loop.time())):
                    await writer.drain()
                sent += len(flood)
        except (TimeoutError, ConnectionError):
            pass  # the gateway stopped reading us: what it should do
        grown_kib = _rss_kib() - rss_before
        code, reason = await _read_to_close(reader)
        writer.close()
    # Without the bound, 8 MiB of `{}` grew the gateway by ~200 MiB.
    assert grown_kib < 16 * 1024, f"the gateway grew by {grown_kib} KiB for a client that does not read"
    assert code == 1008
    assert reason == "The client did not read what the gateway sent for 1 s, so it was closed."
    # Thousands of refused events, but the log is not flooded: the first few, then a count.
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused a client event")]
    assert len(refusals) == 5, len(refusals)
    (ended,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session ended")]
    counted = int(ended.rsplit("; ", 1)[1].split(" x ")[0])
    assert counted > 1000, ended


@asynccontextmanager
async def an_upstream_that_stops_reading() -> AsyncIterator[str]:
    """A Realtime server that says session.created and then never reads again (a stalled Azure)."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(
            json.dumps({"type": "session.created", "event_id": "e1", "session": {"type": "realtime"}})
        )
        await ws.wait_closed()  # never recv(): with max_queue=1 its reading pauses at once

    async with websockets.serve(
        handler, "127.0.0.1", 0, max_queue=1, max_size=None, close_timeout=0.5
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def test_a_stalled_upstream_pauses_the_client_without_idling_it_then_ends_the_session(
    gateway, client
) -> None:
    upstream_stall_s = 5.0
    async with (
        an_upstream_that_stops_reading() as url,
        gateway(
            None,
            azure_openai_endpoint=url,
            azure_openai_api_key="k",
            gateway_idle_timeout_s=1.0,
            gateway_upstream_stall_s=upstream_stall_s,
        ) as gw,
        client(gw) as c,
    ):
        await c.until("session.created")
        chunk = {"type": "input_audio_buffer.append", "audio": b64(bytes(48_000))}
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = started + 3.0  # three idle limits of sending into a stalled upstream
        sending = asyncio.create_task(_send_until(c, chunk, until))
        closed = asyncio.create_task(c.closed(timeout_s=upstream_stall_s + 10))
        done, _ = await asyncio.wait({closed}, timeout=3.0)
        # The gateway held the client's reading paused (its upstream took nothing): that is not idleness.
        assert not done, f"closed while the client was sending: {c.ws.protocol.close_rcvd}"
        # An upstream that never reads again ends the session (else it, and the client's slot, are
        # held for ever: the gateway cannot see a paused client leave).
        code, reason = await closed
        ended_after = loop.time() - started
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
    assert code == 1011
    assert reason == "The Realtime service did not read what the gateway sent for 5 s; connect again."
    assert ended_after < upstream_stall_s + 5, ended_after


async def _send_until(c, chunk: dict[str, object], until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        await c.send(chunk)
        await asyncio.sleep(0.02)
