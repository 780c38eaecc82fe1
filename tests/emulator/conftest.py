"""Shared machinery of the emulator tests: strict event validation and order checking.

Every event a test receives goes through :func:`validate_server_event` (the SDK's
``RealtimeServerEvent`` union, ``strict=True``, on the raw JSON, and no field the SDK does not
declare) and through a :class:`SequenceChecker` that knows the documented orders of §2.5 of the
protocol notes. Tests drive the emulator with the official SDK, unmodified; they read raw frames
(``conn.recv_bytes()``) so that nothing is parsed leniently before it is checked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter
from websockets.exceptions import ConnectionClosed

from realtalk.audio.pcm import read_wav
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
PHRASES = tuple(entry["text"] for entry in MANIFEST.values() if entry["text"])
MODEL = "gpt-realtime-1.5"
KEY = "test-key"
EVENT_TIMEOUT_S = 15.0

SERVER_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

# The SDK types session.created/updated's `session` with the *request* model, which lacks the
# server-assigned fields the protocol notes document (§2.4): those three, and only those, may be extra.
_ALLOWED_EXTRAS = {
    "session.created": {"session.id", "session.object", "session.expires_at"},
    "session.updated": {"session.id", "session.object", "session.expires_at"},
}


def _extra_fields(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            yield from _extra_fields(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _extra_fields(item, f"{path}[{index}]")


def validate_server_event(raw: bytes | str) -> dict[str, Any]:
    """Validate one raw server frame strictly against the SDK's union; return it decoded."""
    model = SERVER_EVENTS.validate_json(raw, strict=True)
    data: dict[str, Any] = json.loads(raw)
    assert model.type == data["type"]
    unknown = sorted(set(_extra_fields(model, "")) - _ALLOWED_EXTRAS.get(data["type"], set()))
    assert not unknown, f"{data['type']} carries fields the SDK does not declare: {unknown}"
    assert data["event_id"].startswith("event_"), data["event_id"]
    return data


class SequenceChecker:
    """Checks a session's event stream, event by event, against the orders of §2.5.

    A response's events sit between its ``response.created`` and ``response.done``; each output
    item goes ``output_item.added`` → (``conversation.item.added``) → ``content_part.added`` →
    deltas → ``output_audio.done``/``output_text.done`` (after ``output_audio_transcript.done``'s
    partner) → ``content_part.done`` → ``output_item.done`` → (``conversation.item.done``); a
    function call goes added → argument deltas → ``arguments.done`` → ``output_item.done``. User
    turns go ``speech_started`` → ``speech_stopped`` → ``committed`` → item added/done, and
    transcription events follow their item's commit. Content parts say ``audio``/``text``; items
    say ``output_audio``/``output_text`` (§0.4). Usage follows the subset rules of §2.4.
    """

    def __init__(self) -> None:
        self.count = 0
        self.open_responses: dict[str, dict[str, Any]] = {}
        self.done_responses: set[str] = set()
        self.items: dict[str, str] = {}  # item id → phase
        self.speech: dict[str, str] = {}  # user item id → last VAD/commit step
        self.committed: set[str] = set()
        self.transcribed: set[str] = set()
        self.pending_conversation_add: str | None = None

    def feed(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if self.count == 0:
            assert kind == "session.created", f"the first event must be session.created, not {kind}"
        else:
            assert kind != "session.created", "session.created must come once, first"
        self.count += 1
        if self.pending_conversation_add is not None:
            assert (
                kind == "conversation.item.added" and event["item"]["id"] == self.pending_conversation_add
            ), (
                f"conversation.item.added must follow output_item.added of {self.pending_conversation_add}, "
                f"got {kind}"
            )
            self.pending_conversation_add = None
        handler = getattr(self, "_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(event)
        response_id = event.get("response_id")
        if response_id is not None:
            assert response_id in self.open_responses, (
                f"{kind} for a response that is not open: {response_id}"
            )

    # --- responses -----------------------------------------------------------------------------

    def _response_created(self, event: dict[str, Any]) -> None:
        response = event["response"]
        assert response["status"] == "in_progress" and response["output"] == [] and response["usage"] is None
        assert response["id"] not in self.open_responses and response["id"] not in self.done_responses
        self.open_responses[response["id"]] = response

    def _response_done(self, event: dict[str, Any]) -> None:
        response = event["response"]
        assert response["id"] in self.open_responses, "response.done without response.created"
        created = self.open_responses.pop(response["id"])
        self.done_responses.add(response["id"])
        assert response["conversation_id"] == created["conversation_id"]
        for item in response["output"]:
            phase = self.items.get(item["id"])
            assert phase == "done", f"response.done lists item {item['id']} in phase {phase}"
            assert all("audio" not in part for part in item.get("content", [])), (
                "response.done carries no audio"
            )
        status = response["status"]
        details = response["status_details"]
        if status == "cancelled":
            assert details["type"] == "cancelled" and details["reason"] in (
                "turn_detected",
                "client_cancelled",
            )
        elif status == "incomplete":
            assert details["type"] == "incomplete"
        check_usage(response["usage"])

    def _response_output_item_added(self, event: dict[str, Any]) -> None:
        item = event["item"]
        assert item["status"] == "in_progress"
        assert item["id"] not in self.items
        if item["type"] == "message":
            assert item["content"] == [] and item["role"] == "assistant"
            self.items[item["id"]] = "added"
        else:
            assert item["type"] == "function_call" and item["arguments"] == ""
            self.items[item["id"]] = "call"
        if self.open_responses[event["response_id"]]["conversation_id"] is not None:
            self.pending_conversation_add = item["id"]

    def _response_content_part_added(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "added"
        assert event["part"]["type"] in ("audio", "text"), "content parts say audio/text, not output_*"
        self.items[event["item_id"]] = "streaming-" + event["part"]["type"]

    def _response_output_audio_delta(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "streaming-audio"
        assert base64.b64decode(event["delta"], validate=True)

    def _response_output_audio_transcript_delta(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "streaming-audio"

    def _response_output_audio_done(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "streaming-audio"
        self.items[event["item_id"]] = "audio-done"

    def _response_output_audio_transcript_done(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "audio-done", "transcript.done follows output_audio.done"
        self.items[event["item_id"]] = "text-done"

    def _response_output_text_delta(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "streaming-text"

    def _response_output_text_done(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "streaming-text"
        self.items[event["item_id"]] = "text-done"

    def _response_content_part_done(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "text-done"
        assert event["part"]["type"] in ("audio", "text")
        self.items[event["item_id"]] = "part-done"

    def _response_function_call_arguments_delta(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "call"

    def _response_function_call_arguments_done(self, event: dict[str, Any]) -> None:
        assert self.items.get(event["item_id"]) == "call"
        json.loads(event["arguments"])
        self.items[event["item_id"]] = "part-done"

    def _response_output_item_done(self, event: dict[str, Any]) -> None:
        item = event["item"]
        phase = self.items.get(item["id"])
        if item["status"] == "completed":
            assert phase == "part-done", f"output_item.done (completed) in phase {phase}"
        else:
            assert item["status"] == "incomplete"
            assert phase in ("part-done", "call"), f"output_item.done (incomplete) in phase {phase}"
        for part in item.get("content", []):
            assert part["type"] in ("output_audio", "output_text"), "items say output_audio/output_text"
            assert "audio" not in part, "events other than item.retrieved carry no audio"
        self.items[item["id"]] = "done"

    # --- user turns ----------------------------------------------------------------------------

    def _input_audio_buffer_speech_started(self, event: dict[str, Any]) -> None:
        assert event["item_id"] not in self.speech
        self.speech[event["item_id"]] = "started"

    def _input_audio_buffer_speech_stopped(self, event: dict[str, Any]) -> None:
        assert self.speech.get(event["item_id"]) == "started", "speech_stopped without speech_started"
        self.speech[event["item_id"]] = "stopped"

    def _input_audio_buffer_committed(self, event: dict[str, Any]) -> None:
        assert self.speech.get(event["item_id"]) in (None, "stopped", "started")
        self.speech[event["item_id"]] = "committed"
        self.committed.add(event["item_id"])

    def _conversation_item_added(self, event: dict[str, Any]) -> None:
        item = event["item"]
        if item.get("role") == "user" and any(p["type"] == "input_audio" for p in item["content"]):
            for part in item["content"]:
                assert "audio" not in part, "conversation.item.added never carries audio"

    def _conversation_item_input_audio_transcription_delta(self, event: dict[str, Any]) -> None:
        assert event["item_id"] in self.committed, "transcription before its commit"
        assert event["item_id"] not in self.transcribed

    def _conversation_item_input_audio_transcription_completed(self, event: dict[str, Any]) -> None:
        assert event["item_id"] in self.committed, "transcription before its commit"
        self.transcribed.add(event["item_id"])

    def _conversation_item_input_audio_transcription_failed(self, event: dict[str, Any]) -> None:
        assert event["item_id"] in self.committed, "transcription failure before its commit"


def check_usage(usage: dict[str, Any]) -> None:
    """The subset rules of §2.4: cached inside input, input = text + audio + image."""
    details = usage["input_token_details"]
    cached = details["cached_tokens_details"]
    assert usage["input_tokens"] == details["text_tokens"] + details["audio_tokens"] + details["image_tokens"]
    assert details["cached_tokens"] == cached["text_tokens"] + cached["audio_tokens"] + cached["image_tokens"]
    for modality in ("text_tokens", "audio_tokens", "image_tokens"):
        assert 0 <= cached[modality] <= details[modality]
    output = usage["output_token_details"]
    assert usage["output_tokens"] == output["text_tokens"] + output["audio_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


class EventStream:
    """A test's view of one SDK connection: every event validated and order-checked.

    :meth:`until` looks for the next matching event after the last one it returned (or after
    index ``since`` of :attr:`events`), among the events already read first, then reading more.
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.checker = SequenceChecker()
        self._cursor = 0

    async def next(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), timeout_s)
        event = validate_server_event(raw)
        self.checker.feed(event)
        self.events.append(event)
        return event

    async def until(
        self,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout_s: float = EVENT_TIMEOUT_S,
        since: int | None = None,
    ) -> dict[str, Any]:
        """The next event of ``event_type`` matching ``where``, reading more events as needed."""
        async with asyncio.timeout(timeout_s):
            index = self._cursor if since is None else since
            while True:
                while index >= len(self.events):
                    await self.next()
                event = self.events[index]
                index += 1
                if event["type"] == event_type and where(event):
                    self._cursor = index
                    return event

    async def error(self, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        event = await self.until("error", timeout_s=timeout_s)
        return event["error"]  # type: ignore[no-any-return]

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def send_raw(self, text: str) -> None:
        await self.conn.send_raw(text)

    async def closed(self, timeout_s: float = EVENT_TIMEOUT_S) -> ConnectionClosed:
        """Read (and check) events until the connection closes; return the close."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    await self.next()
                except ConnectionClosed as exc:
                    return exc

    def types(self, since: int = 0) -> list[str]:
        return [e["type"] for e in self.events[since:]]

    async def append_audio(self, pcm: bytes, chunk_ms: int = 100, bytes_per_ms: int = 48) -> None:
        step = chunk_ms * bytes_per_ms
        for offset in range(0, len(pcm), step):
            await self.conn.input_audio_buffer.append(
                audio=base64.b64encode(pcm[offset : offset + step]).decode()
            )


def fixture_pcm(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fast_engines() -> Engines:
    """Energy VAD, no recogniser, tone synthesiser: real engines that cost next to nothing."""
    return load_engines("energy", "none", "tone")


@pytest.fixture(scope="session")
def speech_engines() -> Engines:
    """Energy VAD, PocketSphinx with the fixtures' sentences, espeak-ng (tone if missing)."""
    return load_engines("energy", "auto", "auto", phrases=PHRASES)


@pytest.fixture
def emulator(fast_engines: Engines, caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., Any]]:
    """``async with emulator(pace=..., faults=...) as emu``: an emulator with fast engines.

    A test that used it fails if anything was logged at ERROR meanwhile: no traceback of the
    server, uvicorn or asyncio may reach the log, whatever the client sent.
    """
    caplog.set_level(logging.WARNING)

    @asynccontextmanager
    async def start(engines: Engines | None = None, **config: Any) -> AsyncIterator[Emulator]:
        config.setdefault("pace", 40.0)
        async with Emulator(EmulatorConfig(**config), engines=engines or fast_engines) as emu:
            yield emu

    yield start
    errors = [
        r for phase in ("setup", "call") for r in caplog.get_records(phase) if r.levelno >= logging.ERROR
    ]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@pytest.fixture
def session() -> Callable[..., Any]:
    """``async with session(emu) as stream``: an SDK connection, its ``session.created`` read."""

    @asynccontextmanager
    async def open_session(
        emu: Emulator, *, model: str = MODEL, api_key: str = KEY, **connect: Any
    ) -> AsyncIterator[EventStream]:
        client = AsyncOpenAI(websocket_base_url=emu.websocket_base_url, api_key=api_key)
        # A test that leaves while the emulator is still streaming must not wait 10 s for the
        # close handshake behind unread frames.
        connect.setdefault("websocket_connection_options", {"close_timeout": 1.0})
        async with client.realtime.connect(model=model, **connect) as conn:
            stream = EventStream(conn)
            created = await stream.next()
            assert created["type"] == "session.created"
            yield stream
        await client.close()

    return open_session
