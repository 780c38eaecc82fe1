"""Fuzzed client events, and a driver that sends them to a Realtime server and checks every answer.

The events are mutations of valid GA client events (every type of §3 of the protocol reference)
plus text that is not an event at all: broken JSON, JSON that is not an object, integers past
Python's 4,300-digit limit, nesting deeper than the parser's recursion limit, lone surrogates,
floats out of range, wrong types in every field, unknown fields and types, oversize strings.
``random.Random(seed)`` makes a run repeatable: a failure names its seed and index.

The driver (``fuzz``) sends them in batches over one connection. After each batch it sends a
probe (an unknown event type with its own ``event_id``) and waits for the probe's ``error``: the
server is still reading, in order. Events that are invalid at any server's boundary (not JSON, not
an object, no or unknown ``type``) must each have been answered with an ``error`` by then, with
their ``event_id`` where they had a readable one. A close is recorded with its code and reason: a
documented close (a code other than 1006 and 1011, with a reason) is followed by a new connection,
and an abrupt one (1006: no close frame; 1011: the server failed) is what the tests count as a
failure. The server must still answer a probe on a fresh connection at the end.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

Connect = Callable[[], Awaitable[ClientConnection]]

_AUDIO_B64 = base64.b64encode(bytes(4800)).decode()

# One valid event of each GA client type (protocol reference §3).
VALID_EVENTS: tuple[dict[str, Any], ...] = (
    {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "marin"}}}},
    {"type": "input_audio_buffer.append", "audio": _AUDIO_B64},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    },
    {"type": "conversation.item.retrieve", "item_id": "item_fuzz"},
    {"type": "conversation.item.truncate", "item_id": "item_fuzz", "content_index": 0, "audio_end_ms": 10},
    {"type": "conversation.item.delete", "item_id": "item_fuzz"},
    {"type": "response.create", "response": {"output_modalities": ["audio"]}},
    {"type": "response.cancel"},
    {"type": "output_audio_buffer.clear"},
)

# Placeholders replaced in the serialised text (json.dumps cannot write these values).
_HUGE_INT = "__HUGE_INT__"
_LONE_SURROGATE = "__LONE_SURROGATE__"
_WEIRD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    "",
    "x" * 5000,
    "\u202e\u0000\ufeff",
    [],
    {},
    [1, "a", None],
    {"nested": {"deeper": [{}]}},
    _HUGE_INT,
    _LONE_SURROGATE,
)


@dataclass(frozen=True)
class FuzzEvent:
    """One frame to send: its text, the ``event_id`` it carries (if any), and whether every server
    must answer it with an ``error`` (it is not an event at all)."""

    text: str
    event_id: str | None
    must_error: bool


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _leaves(item, (*path, index))


def _set(target: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _delete(target: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


def _serialise(event: Any) -> str:
    text = json.dumps(event)
    text = text.replace(f'"{_HUGE_INT}"', "9" * 5000)
    return text.replace(_LONE_SURROGATE, "\\ud800")


def _weird(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(_WEIRD_VALUES))


def _mutated(rng: random.Random, index: int) -> FuzzEvent:
    event = copy.deepcopy(rng.choice(VALID_EVENTS))
    event_id = f"fuzz_{index}"
    event["event_id"] = event_id
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _leaves(event) if p != ("event_id",)]
        move = rng.random()
        if move < 0.45 and paths:
            _set(event, rng.choice(paths), _weird(rng))
        elif move < 0.6 and paths:
            path = rng.choice(paths)
            if path != ("type",):
                _delete(event, path)
        elif move < 0.75:
            event[rng.choice(("extra", "session_id", "Type", "audio"))] = _weird(rng)
        elif move < 0.85:
            event["event_id"] = _weird(rng)
            event_id = None
        else:
            event["type"] = rng.choice(("", "session.create", "response.done", "x" * 300, "realtalk.nope"))
    kind = event.get("type")
    unknown_type = not isinstance(kind, str) or kind not in {e["type"] for e in VALID_EVENTS}
    if unknown_type and isinstance(kind, str) and kind.startswith("realtalk."):
        unknown_type = True
    readable_id = event_id if isinstance(event.get("event_id"), str) else None
    text = _serialise(event)
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        readable_id = None  # not JSON to Python's parser (a 5,000-digit integer): no id to echo
    return FuzzEvent(text, readable_id, unknown_type)


def _not_an_event(rng: random.Random, index: int) -> FuzzEvent:
    choices = (
        "",
        "not json",
        "{",
        '{"type": "response.create"',
        "[]",
        "null",
        "42",
        '"session.update"',
        "9" * 5000,
        '{"type": ' + "9" * 5000 + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"type": "\\ud800", "event_id": "fuzz_surrogate_' + str(index) + '"}',
        '{"type": NaN}',
        '{"type": "response.create", "response": {"max_output_tokens": 1e999}}',
        '{"event_id": "fuzz_no_type_' + str(index) + '"}',
    )
    text = rng.choice(choices)
    event_id = None
    if text.startswith('{"event_id": "fuzz_no_type_') or "fuzz_surrogate_" in text:
        event_id = text.split('"')[-2]
    # The max_output_tokens one is a well-formed event with a bad value: it gets an error, but
    # from whichever side validates values; the others are not events at all.
    return FuzzEvent(text, event_id, must_error=not text.startswith('{"type": "response.create", "resp'))


def fuzz_events(seed: int, count: int) -> Iterator[FuzzEvent]:
    """``count`` fuzzed frames, repeatable from ``seed``."""
    rng = random.Random(seed)
    for index in range(count):
        yield _not_an_event(rng, index) if rng.random() < 0.2 else _mutated(rng, index)


@dataclass
class FuzzTally:
    """What one fuzz run saw."""

    sent: int = 0
    errors: int = 0
    must_error: int = 0
    unanswered: list[str] = field(default_factory=list)
    documented_closes: list[tuple[int, str]] = field(default_factory=list)
    abrupt_closes: list[tuple[int, str]] = field(default_factory=list)
    connections: int = 0
    probes: int = 0


async def _probe(ws: ClientConnection, probe_id: str, seen: dict[str, int], tally: FuzzTally) -> int:
    """Send a probe and read up to its answer; the number of other ``error`` events read."""
    await ws.send(json.dumps({"type": "realtalk.fuzz_probe", "event_id": probe_id}))
    errors = 0
    async with asyncio.timeout(15.0):
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") != "error":
                continue
            tally.errors += 1
            answered = event.get("error", {}).get("event_id")
            if answered == probe_id:
                tally.probes += 1
                return errors
            errors += 1
            if isinstance(answered, str):
                seen[answered] = seen.get(answered, 0) + 1


def _record_close(exc: ConnectionClosed, tally: FuzzTally) -> None:
    close = exc.rcvd
    code, reason = (close.code, close.reason) if close is not None else (1006, "")
    if code in (1006, 1011) or not reason:
        tally.abrupt_closes.append((code, reason))
    else:
        tally.documented_closes.append((code, reason))


async def fuzz(connect: Connect, *, seed: int, count: int, batch: int = 25) -> FuzzTally:
    """Send ``count`` fuzzed frames through connections from ``connect``; check the answers."""
    tally = FuzzTally()
    events = list(fuzz_events(seed, count))
    position = 0
    while position < len(events):
        tally.connections += 1
        ws = await connect()
        try:
            while position < len(events):
                chunk = events[position : position + batch]
                seen: dict[str, int] = {}
                for event in chunk:
                    await ws.send(event.text)
                    tally.sent += 1
                    tally.must_error += event.must_error
                    position += 1
                errors = await _probe(ws, f"probe_{seed}_{position}", seen, tally)
                for event in chunk:
                    if event.must_error and event.event_id is not None and event.event_id not in seen:
                        tally.unanswered.append(f"seed {seed}: {event.text[:120]!r}")
                # Those with no readable id: at least one error each.
                if errors < sum(event.must_error for event in chunk):
                    texts = [
                        event.text[:60] for event in chunk if event.must_error and event.event_id is None
                    ]
                    tally.unanswered.append(f"seed {seed}: fewer errors than invalid events among {texts!r}")
        except ConnectionClosed as exc:
            _record_close(exc, tally)
        finally:
            await ws.close()
    # The server is still there and reading.
    ws = await connect()
    try:
        await _probe(ws, f"probe_{seed}_final", {}, tally)
    finally:
        await ws.close()
    return tally
