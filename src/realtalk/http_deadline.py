"""uvicorn's HTTP/1.1 protocol with a deadline for a request's head (slowloris).

uvicorn times out an idle keep-alive connection, but has no timer from a connection's first byte
to the end of its request head: a client that sends ``GET / HTTP/1.1\\r\\nHost: x\\r\\n`` and then
nothing (or a byte a minute) holds a socket and a file descriptor for ever, and a few thousand such
clients exhaust the server (issue 13). ``HeadDeadlineProtocol`` starts a timer when a connection
opens and when each response completes; the timer stops once a whole request head has arrived.
A head not whole in ``head_timeout_s`` is answered ``408 Request Timeout`` and the connection is
closed, with one log line. Bodies are not timed here: no route of realtalk reads a large body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_HEAD_TIMEOUT_S", "HeadDeadlineProtocol"]

logger = logging.getLogger("realtalk.http")

# nginx allows 60 s for a request head, Apache 20-40 s; a Realtime client sends its upgrade in one
# write, so 10 s is generous and holds a slow attacker's socket six times less long.
DEFAULT_HEAD_TIMEOUT_S: Final = 10.0

_BODY: Final = b"The request's head did not arrive in time; send the whole request at once.\n"


class HeadDeadlineProtocol(H11Protocol):
    """``H11Protocol`` that answers 408 and closes when a request head takes over ``head_timeout_s``."""

    def __init__(self, *args: Any, head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole head arrived (or the upgrade took over)
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the next request on this keep-alive connection

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        logger.info("closed a connection whose request head took over %g s (HTTP 408)", self._head_timeout_s)
        if self.conn.our_state is h11.IDLE:
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: "
                + str(len(_BODY)).encode()
                + b"\r\n\r\n"
                + _BODY
            )
        self.transport.close()
