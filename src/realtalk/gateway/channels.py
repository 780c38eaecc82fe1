"""The two sockets of a gateway session, as the session uses them.

* ``ClientChannel``: what the session needs of its client's socket. ``DirectWebSocket``
  (embedded_server.py: uvicorn's socket, a callback per frame) is one; ``AsgiChannel`` is the other,
  for an ASGI server that is not realtalk's: a reader task and a writer task over ASGI messages,
  its outbox bounded in bytes like the direct socket's send buffer.
* ``UpstreamListener``: the upstream (picows) socket's frames and flow control, handed to the
  session as they arrive (audio deltas to the compiled fast path when it is built).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final, Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtalk.embedded_server import FrameSink
from realtalk.gateway.endings import ws_close_code

if TYPE_CHECKING:
    from realtalk.gateway.relay import GatewaySession

__all__ = ["AsgiChannel", "ClientChannel", "UpstreamListener"]

_ASGI_CLOSE_WAIT_S: Final = 5.0


class ClientChannel(Protocol):
    """The client's side of a session, as the session uses it (see ``DirectWebSocket``)."""

    def send_text(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    @property
    def closed(self) -> bool: ...


class UpstreamListener(WSListener):
    """The upstream socket's frames, handed to the session as they arrive."""

    def __init__(self, session: GatewaySession) -> None:
        self._session = session
        self._fast = session.fast_path
        self._fragments: list[bytes] | None = None
        self._told = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        # Before the first frame, which may come in the same read as the 101.
        self._session.upstream_connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT:
            if frame.fin:
                if self._fast is not None:
                    self._fast.upstream_frame(frame)
                else:
                    self._session.upstream_text(frame.get_payload_as_bytes())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
        elif msg_type == WSMsgType.CONTINUATION:
            if self._fragments is not None:
                self._fragments.append(frame.get_payload_as_bytes())
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._session.upstream_text(data)
        elif msg_type == WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if not transport.is_close_frame_sent:
                transport.send_close(ws_close_code(code) if code != 1005 else WSCloseCode.OK)
            transport.disconnect()
            self._tell(code, reason)
        elif msg_type == WSMsgType.BINARY:
            self._session.log.warning("upstream sent a binary frame (%d bytes); ignored", frame.payload_size)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._tell(None, "")

    def _tell(self, code: int | None, reason: str) -> None:
        if not self._told:
            self._told = True
            self._session.upstream_closed(code, reason)

    def pause_writing(self) -> None:
        self._session.upstream_writable(False)

    def resume_writing(self) -> None:
        self._session.upstream_writable(True)


class AsgiChannel:
    """The client's side through plain ASGI messages (an ASGI server other than realtalk's): a
    reader task feeds the session's callbacks, a writer task sends what it queues."""

    def __init__(self, websocket: WebSocket, sink: FrameSink, limit_bytes: int) -> None:
        self._ws = websocket
        self._sink = sink
        # Bounded in bytes like the direct path's send buffer: above ``limit_bytes`` queued the sink
        # hears client_writable(False) (and stops producing), below a quarter of it True again.
        self._outbox: asyncio.Queue[bytes | tuple[int, str]] = asyncio.Queue()
        self._queued_bytes = 0
        self._high_bytes = limit_bytes
        self._low_bytes = limit_bytes // 4
        self._readable = asyncio.Event()
        self._readable.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._told = False
        self._close_queued = False
        self._writable = True

    async def accept(self, subprotocol: str | None) -> None:
        await self._ws.accept(subprotocol=subprotocol)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    @property
    def closed(self) -> bool:
        return self._closing

    def send_text(self, data: bytes) -> None:
        if self._closing:
            return
        self._outbox.put_nowait(data)
        self._queued_bytes += len(data)
        if self._writable and self._queued_bytes >= self._high_bytes:
            self._writable = False
            self._sink.client_writable(False)

    def close(self, code: int, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._told = True
            self._close_queued = True
            self._outbox.put_nowait((code, reason))

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def _tell(self, code: int, reason: str) -> None:
        if not self._told:
            self._told = True
            self._closing = True
            self._sink.client_closed(code, reason)

    async def _read(self) -> None:
        try:
            while True:
                await self._readable.wait()
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    self._tell(int(message.get("code") or 1005), str(message.get("reason") or ""))
                    return
                text = message.get("text")
                if text is not None:
                    self._sink.client_text(text.encode())
                else:
                    self._sink.client_binary(message.get("bytes") or b"")
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._tell(1006, "connection lost")

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, tuple):
                    await self._ws.close(item[0], item[1])
                    return
                await self._ws.send({"type": "websocket.send", "text": item.decode()})
                self._queued_bytes -= len(item)
                if not self._writable and self._queued_bytes <= self._low_bytes:
                    self._writable = True
                    self._sink.client_writable(True)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._tell(1006, "connection lost")

    async def finish(self) -> None:
        """Let the writer send what is queued (its close last), then stop both tasks."""
        if self._tasks and self._close_queued:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ASGI_CLOSE_WAIT_S):
                    await asyncio.wait({self._tasks[1]})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
