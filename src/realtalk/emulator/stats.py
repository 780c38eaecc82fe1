"""What an emulator instance saw, for tests to read: connections, sessions, events both ways.

Tests of the client and of the gateway use it to prove negatives ("the emulator saw no
connection", "this event was never forwarded") and to wait for a condition without sleeping:
:meth:`EmulatorStats.wait_for` wakes on every change.

Memory is bounded whatever clients send, however long the instance runs (a long fuzz run once grew
the emulator from 107 to 600 MB: it kept every event payload of every session, closed or not):

- Every session record keeps *counters*: client events by type (invalid frames under a few
  ``<...>`` kinds, never under a name the client chose), server events by type. The instance keeps
  the latest :attr:`EmulatorStats.MAX_SESSIONS_KEPT` records; its own counters count them all.
- An open session also keeps a recent history of client event *summaries*, never payloads: base64
  audio becomes its decoded size (``"<4800 bytes>"``), a string longer than
  :attr:`EmulatorStats.MAX_STRING_CHARS_KEPT` becomes its length (``"<100000 characters>"``),
  nesting deeper than ``_MAX_DEPTH`` becomes ``"<nested>"``. The history holds at most
  ``MAX_EVENTS_KEPT`` summaries and ``MAX_EVENT_BYTES_KEPT`` bytes, oldest dropped first; the bytes
  are counted as CPython allocates them (an upper bound: short strings, such as names and types,
  are shared between summaries but counted in each).
- When a session closes, its history stays only while it is among the latest
  :attr:`EmulatorStats.CLOSED_SESSIONS_WITH_EVENTS` closed sessions (a test reads what the
  session it just ended was sent); older closed sessions keep their counters only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EmulatorStats", "SessionRecord", "summarise_client_event"]

MAX_EVENTS_KEPT = 5_000  # per open session and direction: the latest ones
MAX_EVENT_BYTES_KEPT = 256 * 1024  # per open session: the summaries' size (an upper bound, see below)
MAX_STRING_CHARS_KEPT = 1_024  # longer strings are kept as their length
_MAX_DEPTH = 16  # deeper containers are kept as "<nested>"
_MAX_INTERNED_CHARS = 64  # shorter strings are shared between summaries (names, types, "<4800 bytes>")
# What CPython (64-bit) allocates, so that the budget bounds the real memory, not a guess at half of
# it: a str is 49 bytes + 1 per ASCII character; a dict 64 + 24 per slot (5 slots at least); a list
# 56 + 8 per entry; a number 32; each summary also costs a history slot and its size (40).
_STR_BYTES = 49
_DICT_BYTES = 64
_DICT_SLOT_BYTES = 24
_LIST_BYTES = 56
_POINTER_BYTES = 8
_NUMBER_BYTES = 32
_HISTORY_SLOT_BYTES = 40


def _string(value: str) -> tuple[str, int]:
    # Strings are counted whole even when shared, so the estimate stays an upper bound.
    kept = sys.intern(value) if len(value) <= _MAX_INTERNED_CHARS else value
    return kept, _STR_BYTES + len(value.encode("utf-8", "surrogatepass"))


def _summarise(value: Any, depth: int, key: str | None) -> tuple[Any, int]:
    """(summary of ``value``, an upper bound of its size in bytes)."""
    if isinstance(value, str):
        if key == "audio":
            value = f"<{len(value) * 3 // 4} bytes>"
        elif len(value) > MAX_STRING_CHARS_KEPT:
            value = f"<{len(value)} characters>"
        return _string(value)
    if isinstance(value, dict | list):
        if depth >= _MAX_DEPTH:
            return _string("<nested>")
        if isinstance(value, dict):
            summary: dict[str, Any] = {}
            size = _DICT_BYTES + _DICT_SLOT_BYTES * max(5, len(value))
            for name, inner in value.items():
                kept_name, name_size = _string(name)
                summary[kept_name], inner_size = _summarise(inner, depth + 1, name)
                size += inner_size + name_size
            return summary, size
        items = []
        size = _LIST_BYTES
        for inner in value:
            item, inner_size = _summarise(inner, depth + 1, None)
            items.append(item)
            size += inner_size + _POINTER_BYTES
        return items, size
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return _string(f"<{value.bit_length()}-bit integer>")  # a fuzzer's 4,000-digit number
    return value, _NUMBER_BYTES


def summarise_client_event(event: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The event without bulky payloads, and the summary's estimated size in bytes."""
    summary, size = _summarise(event, 0, None)
    return summary, size + _HISTORY_SLOT_BYTES


@dataclass
class SessionRecord:
    """One accepted WebSocket connection (one Realtime session); see the module docstring."""

    session_id: str
    deployment: str
    credential_kind: str  # "api-key" | "bearer" | "query" | "ephemeral" | "call" (SIP)
    transport: str = "websocket"  # "websocket" | "webrtc" | "sip"
    call_id: str | None = None  # the call's id (rtc_...) for a WebRTC or SIP session
    opened_at: float = field(default_factory=time.time)
    client_events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_KEPT))
    server_events: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_KEPT))
    client_event_counts: dict[str, int] = field(default_factory=dict)
    server_event_counts: dict[str, int] = field(default_factory=dict)
    close_code: int | None = None
    close_reason: str = ""
    dropped: bool = False
    closed: bool = False
    _sizes: deque[int] = field(default_factory=deque, repr=False)

    @property
    def client_event_types(self) -> list[str]:
        """The types of the client events still in the history (see ``client_event_counts``)."""
        return [str(e.get("type")) for e in self.client_events]

    @property
    def client_events_total(self) -> int:
        return sum(self.client_event_counts.values())

    @property
    def kept_event_bytes(self) -> int:
        """The estimated size of the client event summaries this record holds."""
        return sum(self._sizes)

    def client_event(self, summary: dict[str, Any], size_bytes: int, kind: str) -> None:
        """Count a client event under ``kind`` and keep its summary in the recent history."""
        self.client_event_counts[kind] = self.client_event_counts.get(kind, 0) + 1
        if self.closed:
            return
        if len(self.client_events) == MAX_EVENTS_KEPT:
            self._sizes.popleft()  # the deque drops its oldest summary on append
        self.client_events.append(summary)
        self._sizes.append(size_bytes)
        kept = sum(self._sizes)
        while kept > MAX_EVENT_BYTES_KEPT and len(self.client_events) > 1:
            self.client_events.popleft()
            kept -= self._sizes.popleft()

    def server_event(self, event_type: str) -> None:
        self.server_event_counts[event_type] = self.server_event_counts.get(event_type, 0) + 1
        self.server_events.append(event_type)

    def forget_events(self) -> None:
        """Drop the event history; the counters stay."""
        self.client_events.clear()
        self.server_events.clear()
        self._sizes.clear()


class EmulatorStats:
    """Counters and per-session records of one emulator instance."""

    MAX_SESSIONS_KEPT = 1_000  # the latest sessions' records; the counters count them all
    CLOSED_SESSIONS_WITH_EVENTS = 8  # the latest closed sessions that keep their event history
    MAX_STRING_CHARS_KEPT = MAX_STRING_CHARS_KEPT

    def __init__(self) -> None:
        self.handshakes = 0  # WebSocket upgrade requests seen, accepted or not
        self.rejected: dict[int, int] = {}  # HTTP status → count
        self.connections_accepted = 0
        self.sessions_closed = 0
        self.sessions: deque[SessionRecord] = deque(maxlen=self.MAX_SESSIONS_KEPT)
        self.client_secrets_minted = 0
        self.responses_requests = 0  # POST /responses requests seen (the Responses API), answered or not
        self.calls_created: dict[str, int] = {}  # transport ("webrtc" | "sip") → calls created
        self.calls_ended: dict[str, int] = {}  # transport → calls ended
        self.sidebands_attached = 0  # sideband WebSockets (?call_id=) accepted
        self._closed_with_events: deque[SessionRecord] = deque()
        self._changed = asyncio.Event()

    @property
    def active_sessions(self) -> int:
        return self.connections_accepted - self.sessions_closed

    @property
    def active_calls(self) -> int:
        return sum(self.calls_created.values()) - sum(self.calls_ended.values())

    @property
    def kept_event_bytes(self) -> int:
        """The estimated size of all the event summaries kept (bounded; see the module docstring)."""
        return sum(s.kept_event_bytes for s in self.sessions)

    def events_received(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Every client event summary still kept (optionally of one type), in order."""
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

    def responses_request(self) -> None:
        self.responses_requests += 1
        self.notify()

    def reject(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1
        self.notify()

    def open_session(self, record: SessionRecord) -> SessionRecord:
        self.connections_accepted += 1
        self.sessions.append(record)
        self.notify()
        return record

    def call_created(self, transport: str) -> None:
        self.calls_created[transport] = self.calls_created.get(transport, 0) + 1
        self.notify()

    def call_ended(self, transport: str) -> None:
        self.calls_ended[transport] = self.calls_ended.get(transport, 0) + 1
        self.notify()

    def sideband_attached(self) -> None:
        self.sidebands_attached += 1
        self.notify()

    def close_session(self, record: SessionRecord) -> None:
        """The connection ended: keep the record's counters, and its history for a while."""
        if record.closed:
            return
        record.closed = True
        self.sessions_closed += 1
        self._closed_with_events.append(record)
        while len(self._closed_with_events) > self.CLOSED_SESSIONS_WITH_EVENTS:
            self._closed_with_events.popleft().forget_events()
        self.notify()
