"""The bounded queue between a session and its WebSocket writer.

Everything a session sends goes through one :class:`Outbox`, drained by one writer task, so events
leave in the order they were emitted whichever task emitted them. The queue is bounded: a client
that stops reading slows the session down (``put`` waits) instead of growing memory. A
:class:`Close` or :class:`Drop` ends the stream; nothing put after it is sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

__all__ = ["Close", "Drop", "Outbox"]


@dataclass(frozen=True)
class Close:
    """Close the WebSocket with this code and reason, after the events queued before it."""

    code: int
    reason: str = ""


@dataclass(frozen=True)
class Drop:
    """Abort the transport without a close frame (the client sees 1006)."""


Outgoing = dict[str, Any] | Close | Drop


class Outbox:
    def __init__(self, maxsize: int = 256) -> None:
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize)
        self.ended = False

    async def put(self, message: Outgoing) -> None:
        if self.ended:
            return
        if isinstance(message, Close | Drop):
            self.ended = True
        await self._queue.put(message)

    async def get(self) -> Outgoing:
        return await self._queue.get()
