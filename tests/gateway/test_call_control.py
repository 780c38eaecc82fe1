"""The gateway's REST calls to the upstream for calls (``CallControl``), against a raw HTTP server
on 127.0.0.1 that can drop a connection the way a server whose keep-alive ran out does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from realtalk.client.credentials import ApiKeyCredential
from realtalk.gateway.call_control import CallControl, CallControlError
from realtalk.gateway.upstream import Upstream
from realtalk.protocol.endpoint import resolve_endpoint

KEY = "call-control-test-key-0123456789"


@asynccontextmanager
async def upstream(drop_first: int) -> AsyncIterator[tuple[Upstream, list[bytes]]]:
    """An upstream that closes the first ``drop_first`` requests' connections unanswered, then
    answers 200; the request heads it read are listed."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        if len(heads) <= drop_first:
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = resolve_endpoint(f"http://127.0.0.1:{port}", "gpt-realtime-1.5")
    try:
        yield Upstream(endpoint, ApiKeyCredential(KEY, source=None), "emulator"), heads
    finally:
        server.close()
        await server.wait_closed()


async def test_a_hangup_on_a_dropped_connection_is_sent_once_more() -> None:
    async with upstream(drop_first=1) as (up, heads):
        control = CallControl(up, timeout_s=5)
        try:
            await control.hangup("rtc_abc")
        finally:
            await control.aclose()
    assert len(heads) == 2
    assert all(head.startswith(b"POST /openai/v1/realtime/calls/rtc_abc/hangup ") for head in heads)
    assert all(f"api-key: {KEY}".encode() in head for head in heads)


async def test_an_accept_on_a_dropped_connection_is_not_repeated_and_says_what_failed() -> None:
    async with upstream(drop_first=1) as (up, heads):
        control = CallControl(up, timeout_s=5)
        try:
            with pytest.raises(CallControlError) as refused:
                await control.accept("rtc_abc", {"type": "realtime"})
        finally:
            await control.aclose()
    assert len(heads) == 1, "an accept is not sent twice: the first may have been taken"
    assert refused.value.status is None and refused.value.what == "accepting a call"
    assert KEY not in str(refused.value)


async def test_a_hangup_that_keeps_failing_is_an_error_after_the_second_try() -> None:
    async with upstream(drop_first=5) as (up, heads):
        control = CallControl(up, timeout_s=5)
        try:
            with pytest.raises(CallControlError):
                await control.hangup("rtc_abc")
        finally:
            await control.aclose()
    assert len(heads) == 2
