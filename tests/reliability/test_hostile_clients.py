"""Clients that are broken or hostile, at the socket: each gets a documented answer, never a hang.

Raw sockets on 127.0.0.1 where a test must send what no WebSocket library would (a half request,
half a frame, bytes that are not UTF-8, a frame over the size limit). The gateway runs the way
``realtalk serve`` runs it and on the plain-ASGI fallback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .support import MODEL

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def fast_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with an all-zero mask (legal, and cheap to build for large payloads)."""
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", length)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length)
    return head + b"\0\0\0\0" + payload


class RawClient:
    """A WebSocket client on a bare TCP stream: exact bytes out, frames in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def upgrade(cls, port: int, path: str = f"/openai/v1/realtime?model={MODEL}") -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await reader.readuntil(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(reader, writer)

    async def read_frame(self) -> tuple[int, bytes]:
        head = await self.reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def close_frame(self, timeout_s: float = 15.0) -> tuple[int, str]:
        """Read frames until the server's close; its code and reason."""
        async with asyncio.timeout(timeout_s):
            while True:
                opcode, payload = await self.read_frame()
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return code, payload[2:].decode()

    async def events_until(self, event_type: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                opcode, payload = await self.read_frame()
                if opcode == OP_TEXT:
                    events.append(json.loads(payload))
                    if events[-1]["type"] == event_type:
                        return events

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(params=["direct", "asgi"])
def asgi(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "asgi")


async def test_a_text_frame_that_is_not_utf8_is_closed_with_1007_and_a_reason(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    async with stack(asgi=asgi) as (_emu, gw):
        client = await RawClient.upgrade(gw.port)
        await client.events_until("session.updated")
        client.writer.write(frame(OP_TEXT, b'{"type": "response.create", "x": "\xff\xfe"}'))
        code, reason = await client.close_frame()
        client.close()
    assert code == 1007
    # The plain-ASGI fallback closes as its server does (uvicorn: the code, no reason).
    assert reason or asgi


async def test_a_message_over_the_limit_gets_an_error_and_the_session_goes_on(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    async with stack(gateway={"gateway_max_message_bytes": 64 * 1024}, asgi=asgi) as (_emu, gw):
        client = await RawClient.upgrade(gw.port)
        await client.events_until("session.updated")
        big = json.dumps({"type": "input_audio_buffer.append", "event_id": "evt_big", "audio": "A" * 100_000})
        client.writer.write(fast_frame(OP_TEXT, big.encode()))
        events = await client.events_until("error")
        assert events[-1]["error"]["code"] == "message_too_large"
        client.writer.write(frame(OP_TEXT, b'{"type": "realtalk.nope", "event_id": "evt_after"}'))
        events = await client.events_until("error")
        assert events[-1]["error"]["event_id"] == "evt_after"  # still reading, in order
        client.close()


async def test_a_frame_far_over_the_limit_is_closed_with_1009_and_a_reason(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    async with stack(gateway={"gateway_max_message_bytes": 64 * 1024}, asgi=asgi) as (_emu, gw):
        client = await RawClient.upgrade(gw.port)
        await client.events_until("session.updated")
        client.writer.write(fast_frame(OP_TEXT, b"A" * (2 * 1024 * 1024)))
        try:
            code, reason = await client.close_frame()
        except (ConnectionError, asyncio.IncompleteReadError):
            code, reason = 1009, "the server reset the stream while the frame was still arriving"
        client.close()
    assert code == 1009
    assert reason


async def test_a_client_that_goes_silent_mid_frame_is_closed_by_the_idle_timeout(
    stack: Any, no_leaks: None, asgi: bool
) -> None:
    async with stack(gateway={"gateway_idle_timeout_s": 1.0}, asgi=asgi) as (_emu, gw):
        client = await RawClient.upgrade(gw.port)
        await client.events_until("session.updated")
        whole = frame(OP_TEXT, b'{"type": "input_audio_buffer.clear"}')
        client.writer.write(whole[:5])  # half a frame, then nothing: a half-open peer
        code, reason = await client.close_frame(timeout_s=10)
        client.close()
    assert code == 1008
    assert "idle" in reason.lower() or "no client event" in reason.lower()


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"GET /openai/v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # no blank line, ever
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\n",  # then a half one
    ],
    ids=["nothing", "half-head", "keep-alive-then-half-head"],
)
async def test_a_connection_that_never_finishes_its_request_head_gets_408_and_is_closed(
    stack: Any, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack(gateway={"gateway_head_timeout_s": 1.0}) as (_emu, gw):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        started = loop.time()
        writer.write(sent)
        async with asyncio.timeout(10):
            answer = await reader.read()  # to the server's close
        waited = loop.time() - started
        writer.close()
    if sent.startswith(b"GET /healthz"):
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        answer = answer[answer.index(b"HTTP/1.1 408") :] if b"HTTP/1.1 408" in answer else b""
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
    assert answer.endswith(b"send the whole request at once.\n")
    assert 0.9 <= waited < 5, waited
    assert any("request head took over 1 s" in r.getMessage() for r in caplog.records)


async def test_a_request_head_sent_slowly_but_in_time_is_served(stack: Any) -> None:
    async with stack(gateway={"gateway_head_timeout_s": 2.0}) as (_emu, gw):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Connection: close\r\n\r\n"):
            writer.write(piece)
            await asyncio.sleep(0.4)
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]


async def test_a_slow_reader_gets_every_event_of_a_reply_in_order(stack: Any, no_leaks: None) -> None:
    async with stack(emulator={"pace": None}) as (_emu, gw):
        url = f"{gw.websocket_base_url}/realtime?model={MODEL}"
        async with connect(url, close_timeout=1.0, max_queue=1) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "tell me a long story " * 20}],
                        },
                    }
                )
            )
            await ws.send(json.dumps({"type": "response.create"}))
            types: list[str] = []
            try:
                async with asyncio.timeout(60):
                    while not types or types[-1] != "response.done":
                        types.append(json.loads(await ws.recv())["type"])
                        await asyncio.sleep(0.002)  # a reader slower than the replies come
            except ConnectionClosed as exc:
                pytest.fail(f"closed while reading slowly: {exc}")
    deltas = types.count("response.output_audio.delta")
    assert deltas > 10
    assert types.index("response.created") < types.index("response.output_audio.delta")
