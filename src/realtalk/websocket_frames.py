"""RFC 6455 frames on the server side of a WebSocket, sans I/O: the gateway's data path.

After uvicorn and the app have done the HTTP upgrade, the gateway reads and writes its client's
frames itself (``embedded_server.DirectWebSocket``) instead of going through ASGI messages: per
audio frame that saves a queue, two task switches, and websockets' generator parser, which cost
more than the relay's own work (bench/gateway.py). This module is the codec for that path; the
``websockets`` package still does the opening handshake.

Server side only: every client frame must be masked (RFC 6455 §5.1), frames we send are not.
No extension is negotiated (permessage-deflate is off), so the reserved bits must be zero.
Fragmented messages are reassembled; control frames may arrive between fragments.
"""

from __future__ import annotations

import struct
from typing import Final

from websockets.speedups import apply_mask

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameReader",
    "close_payload",
    "encode_frame",
    "parse_close",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPCODES: Final = frozenset({OP_TEXT, OP_BINARY})
_CONTROL_OPCODES: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_FINAL_DATA: Final = frozenset({0x80 | OP_TEXT, 0x80 | OP_BINARY})
_HEAD16: Final = struct.Struct("!BBH")
_HEAD64: Final = struct.Struct("!BBQ")
_UINT16: Final = struct.Struct("!H")
_UINT64: Final = struct.Struct("!Q")


class FrameError(Exception):
    """The peer broke the protocol: close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class FrameReader:
    """Masked client frames in, whole messages and control frames out, in arrival order.

    ``feed(data)`` returns ``[(opcode, payload), ...]``: ``OP_TEXT``/``OP_BINARY`` with the whole
    (reassembled) message, or a control frame. Text is not decoded here (the caller decodes, and a
    decoding error is a 1007 close). Raises ``FrameError`` on a protocol error (1002) or a message
    over ``max_message_bytes`` (1009); the reader is unusable afterwards.
    """

    __slots__ = ("_fragment_opcode", "_fragment_size", "_fragments", "_max", "_pending")

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._pending = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame or message held so far."""
        return len(self._pending) + self._fragment_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._pending:
            data = self._pending + data
        elif not self._fragments and len(data) >= 8 and data[1] == 0xFE and data[0] in _FINAL_DATA:
            # The common case, one read = one whole masked text or binary frame of 126-65535 bytes
            # (an audio chunk), without the general loop.
            length = (data[2] << 8) | data[3]
            if len(data) == length + 8 and length <= self._max:
                return [(data[0] & 0x0F, apply_mask(data[8:], data[4:8]))]
        out: list[tuple[int, bytes]] = []
        size = len(data)
        pos = 0
        while size - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            if b0 & 0x70:
                raise FrameError(1002, "reserved bits set: no extension was negotiated")
            if not b1 & 0x80:
                raise FrameError(1002, "client frames must be masked")
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = _UINT16.unpack_from(data, pos + 2)[0]
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = _UINT64.unpack_from(data, pos + 2)[0]
                header = 10
            if opcode in _CONTROL_OPCODES:
                if not b0 & 0x80 or length > 125:
                    raise FrameError(1002, "control frames must be whole and at most 125 bytes")
            elif opcode not in _DATA_OPCODES and opcode != OP_CONT:
                raise FrameError(1002, f"unknown opcode {opcode}")
            elif length + (self._fragment_size if opcode == OP_CONT else 0) > self._max:
                raise FrameError(1009, f"message over {self._max} bytes")
            start = pos + header + 4
            end = start + length
            if end > size:
                break
            payload = apply_mask(data[start:end], data[start - 4 : start])
            pos = end
            fin = b0 & 0x80
            if opcode in _DATA_OPCODES:
                if self._fragments:
                    raise FrameError(1002, "a new message began before the fragmented one ended")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._start_fragments(opcode, payload)
            elif opcode == OP_CONT:
                if not self._fragments:
                    raise FrameError(1002, "a continuation frame with no message to continue")
                self._fragments.append(payload)
                self._fragment_size += length
                if fin:
                    out.append((self._fragment_opcode, b"".join(self._fragments)))
                    self._fragments = []
                    self._fragment_size = 0
            else:
                out.append((opcode, payload))
        self._pending = data[pos:] if pos < size else b""
        return out

    def _start_fragments(self, opcode: int, payload: bytes) -> None:
        self._fragments = [payload]
        self._fragment_opcode = opcode
        self._fragment_size = len(payload)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (what a server sends)."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return _HEAD16.pack(0x80 | opcode, 126, length) + payload
    return _HEAD64.pack(0x80 | opcode, 127, length) + payload


def close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; ``reason`` is cut to fit the 125-byte limit."""
    encoded = reason.encode("utf-8")[:123]
    return _UINT16.pack(code) + encoded.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a received close frame; an empty one is 1005 (RFC 6455 §7.1.5)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "a close frame with a one-byte payload")
    code = _UINT16.unpack_from(payload)[0]
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(1007, "the close reason is not UTF-8") from None
    return code, reason
