"""Why a gateway session ends, and what each side is told.

An ``Ending`` is decided once per session (the first wins): the close code and reason for the
client and for the upstream, and the ``error`` event and UI notice the client gets first. The
sentences a client reads are here, whole, so they are tested as text and read the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from picows import WSCloseCode

from realtalk.gateway.extension import NoticeLevel
from realtalk.gateway.policy import Refusal

__all__ = [
    "LIMIT_SENTENCES",
    "RESERVED_CLOSE_CODES",
    "SHUTDOWN_SENTENCE",
    "UPSTREAM_UNAVAILABLE_SENTENCE",
    "Ending",
    "close_reason",
    "ws_close_code",
]

# Close codes a server may send (RFC 6455 §7.4): 1004-1006 and 1015 are reserved.
RESERVED_CLOSE_CODES: Final = frozenset({1004, 1005, 1006, 1015})
_MAX_REASON_BYTES: Final = 123


# What a client is told when a limit ends its session: the `error` event's message, the UI's notice
# and the close reason (whole sentences; RFC 6455 caps a close reason at 123 bytes).
LIMIT_SENTENCES: Final = {
    "session_duration": "The session reached the gateway's time limit of {limit:g} s; connect again.",
    "idle_timeout": "The client sent nothing for {limit:g} s, so the gateway closed the idle session.",
    "client_not_reading": "The client did not read what the gateway sent for {limit:g} s, so it was closed.",
    "upstream_not_reading": (
        "The Realtime service did not read what the gateway sent for {limit:g} s; connect again."
    ),
}

# What every client is told (an `error` event, then the close reason) when a drain ends its session.
SHUTDOWN_SENTENCE: Final = "The gateway is restarting; connect again in a few seconds."
# ... and when no upstream session could be opened (the cause, which may name hosts, is logged).
UPSTREAM_UNAVAILABLE_SENTENCE: Final = "The Realtime service is not available right now; try again shortly."


@dataclass(frozen=True)
class Ending:
    """Why a session ends, and what each side is told. ``client_code=None``: the client is gone."""

    outcome: str
    client_code: int | None
    client_reason: str
    upstream_code: int = 1000
    upstream_reason: str = ""
    error: Refusal | None = None
    notice: tuple[NoticeLevel, str, str] | None = None


def close_reason(text: str) -> str:
    """``text`` cut to the 123 bytes a close frame's reason may hold."""
    encoded = text.encode("utf-8")
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[: _MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def ws_close_code(code: int) -> WSCloseCode:
    """``code`` as picows takes it (an unknown code becomes 1000)."""
    try:
        return WSCloseCode(code)
    except ValueError:
        return WSCloseCode.OK
