"""What an emulator instance saw, for tests to read: connections, sessions, events both ways.

Tests of the client and of the gateway use it to prove negatives ("the emulator saw no
connection", "this event was never forwarded") and to wait for a condition without sleeping:
:meth:`EmulatorStats.wait_for` wakes on every change. Records keep event *summaries* (type,
``event_id``, audio sizes instead of audio), in bounded deques, for the latest sessions.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EmulatorStats", "SessionRecord"]

_MAX_EVENTS_KEPT = 5_000  # per session and direction: the latest ones
_MAX_SESSIONS_KEPT = 1_000  # the latest sessions' records; the counters count them all


def summarise_client_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event without bulky payloads: base64 audio is replaced by its decoded size."""
    summary = dict(event)
    audio = summary.get("audio")
    if isinstance(audio, str):
        summary["audio"] = f"<{len(audio) * 3 // 4} bytes>"
    return summary


@dataclass
class SessionRecord:
    """One accepted WebSocket connection (one Realtime session)."""

    session_id: str
    deployment: str
    credential_kind: str  # "api-key" | "bearer" | "query" | "ephemeral"
    opened_at: float = field(default_factory=time.time)
    client_events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_MAX_EVENTS_KEPT))
    server_events: deque[str] = field(default_factory=lambda: deque(maxlen=_MAX_EVENTS_KEPT))
    close_code: int | None = None
    close_reason: str = ""
    dropped: bool = False
    closed: bool = False

    @property
    def client_event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.client_events]


class EmulatorStats:
    """Counters and per-session records of one emulator instance."""

    def __init__(self) -> None:
        self.handshakes = 0  # WebSocket upgrade requests seen, accepted or not
        self.rejected: dict[int, int] = {}  # HTTP status → count
        self.connections_accepted = 0
        self.sessions: deque[SessionRecord] = deque(maxlen=_MAX_SESSIONS_KEPT)
        self.client_secrets_minted = 0
        self._changed = asyncio.Event()

    @property
    def active_sessions(self) -> int:
        return sum(1 for s in self.sessions if not s.closed)

    def events_received(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every client event summary of every session (optionally of one type), in order."""
        found = [e for s in self.sessions for e in s.client_events]
        return found if event_type is None else [e for e in found if e.get("type") == event_type]

    def notify(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[EmulatorStats], bool], timeout_s: float = 5.0) -> None:
        """Return once ``predicate(stats)`` holds; raise ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    # --- called by the server -----------------------------------------------------------------

    def handshake(self) -> int:
        self.handshakes += 1
        self.notify()
        return self.handshakes

    def reject(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        self.notify()

    def open_session(self, record: SessionRecord) -> SessionRecord:
        self.connections_accepted += 1
        self.sessions.append(record)
        self.notify()
        return record
