"""One Realtime session: the server side of one WebSocket connection.

Theory of operation. :meth:`RealtimeSession.receive` takes each client message in arrival order:
it decodes and checks it (``validation.py``), then dispatches it to one handler per event type.
A handler either sends its reply events, or raises a :class:`RealtimeApiError`, which becomes an
``error`` event echoing the client's ``event_id`` and changes nothing; the connection stays open.
Unexpected exceptions are logged briefly and answered with a ``server_error``.

Everything the session sends goes through one bounded :class:`Outbox` (``outbox.py``), so events
keep their order whichever task emits them. Work that outlives a message runs in the session's
tasks, cancelled when the connection ends:

- responses (``response.py``): at most one in the default conversation, any number out of band;
- transcriptions of committed audio (the recogniser blocks, so it runs in a thread);
- timers: the session limit, the idle timeout, and the drop fault.

The audio path: ``input_audio_buffer.append`` → :class:`InputAudio` (decode, clock, VAD) → on
speech start, barge-in (cancel the active response, awaited so its closing events come first,
§2.5 E); on speech stop, commit the speech as a user item, then create a response when
``create_response`` is on (§2.5 B). State is per instance: nothing is shared between connections
except the instance's read-only engines.

Memory per session is bounded whatever the client sends: the outbox (``outbox.py``), the input
audio buffer (``audio_input.py``: a short tail while nobody speaks, ``max_buffer_ms`` at most), the
conversation (``conversation.py``: ``max_items``, and the audio of its latest items within
``EmulatorConfig.max_conversation_audio_bytes``), the recent recognitions (their text, never their
audio: ``transcription.py``) and cached contexts (``usage.py``), the tokens spent in the last minute
(one entry a second), and the stats' record of the session (``stats.py``: counters, and a history
of summaries bounded in bytes). A long spoken conversation levels off after a few turns at under
1 MiB besides the conversation's audio; what still grows is the conversation's items (every one
retrievable), ~1.5 KiB a turn (``tests/emulator/test_long_conversation_memory.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from realtalk.emulator import errors, events
from realtalk.emulator.audio_input import InputAudio, VadEvent
from realtalk.emulator.config import EmulatorConfig
from realtalk.emulator.conversation import ROOT, Conversation, Item
from realtalk.emulator.engines import Engines, Transcription, VadSettings
from realtalk.emulator.errors import RealtimeApiError
from realtalk.emulator.events import new_id
from realtalk.emulator.items import context_segments, item_from_client, resolve_input, response_params
from realtalk.emulator.outbox import Close, Drop, Outbox
from realtalk.emulator.responder import (
    CloseSocket,
    DropConnection,
    FunctionResult,
    Responder,
    SendError,
    ToolSpec,
    TurnContext,
)
from realtalk.emulator.response import ResponseRun, estimated_output_tokens, rate_limits
from realtalk.emulator.session_config import (
    apply_update,
    check_response_params,
    default_session,
    input_format_type,
)
from realtalk.emulator.stats import SessionRecord, summarise_client_event
from realtalk.emulator.transcription import Transcriber
from realtalk.emulator.usage import CacheTracker
from realtalk.emulator.validation import CLIENT_EVENT_TYPES, check_client_event

__all__ = ["Playout", "RealtimeSession"]

_PARSER_LIMIT = "a number or the nesting is too large to parse"

logger = logging.getLogger(__name__)

MAX_APPEND_AUDIO_BYTES = 15 * 1024 * 1024  # §3.3: at most 15 MiB of audio per append
_MAX_TRANSCRIPT_WAIT_S = 10.0
_RATE_WINDOW_S = 60.0


class Playout(Protocol):
    """Server-side playback of a call's audio (``calls.py``): a WebSocket session has none."""

    def halt(self) -> None:
        """Speech started while ``interrupt_response`` is on: stop playing now."""

    async def barge_in(self) -> None:
        """After ``halt`` and the response's cancellation: truncate where playback stopped."""

    async def clear(self) -> None:
        """``output_audio_buffer.clear``: drop the queued audio, truncate at the ms played."""


class RealtimeSession:
    """The server state of one connection (or call); see the module docstring."""

    def __init__(
        self,
        *,
        model: str,
        config: EmulatorConfig,
        engines: Engines,
        responder: Responder,
        outbox: Outbox,
        record: SessionRecord,
        notify: Callable[[], None] = lambda: None,
        initial_update: dict[str, Any] | None = None,
        playout: Playout | None = None,
    ) -> None:
        self.id = record.session_id
        self._playout = playout
        self._config = config
        self._faults = config.effective_faults
        self._limit_s = config.effective_session_limit_s
        self._engines = engines
        self._responder = responder
        self._outbox = outbox
        self._record = record
        self._notify = notify
        self._model = model
        self.session = default_session(self.id, model, int(time.time() + self._limit_s))
        if initial_update:  # a minted ek_ key's session configuration (checked when it was minted)
            self.session = apply_update(
                self.session, {"type": "realtime", **initial_update}, audio_produced=False
            )
        self.conversation = Conversation(max_audio_bytes=config.max_conversation_audio_bytes)
        self.input = InputAudio()
        self._vad_key: tuple[Any, ...] | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self._active: ResponseRun | None = None
        self._out_of_band: set[ResponseRun] = set()
        self._responses_created = 0
        self._audio_produced = False
        self._audio_sent_ms = 0
        self._transcriber = Transcriber(engines, self._spawn, self._emit, mishear=config.effective_mishear)
        self._cache = CacheTracker()
        self._tokens_used: deque[tuple[float, int]] = deque(maxlen=128)  # (start s, tokens) a second
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle_timer: asyncio.Task[Any] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit_buffer,
            "input_audio_buffer.clear": self._clear_buffer,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.delete": self._item_delete,
            "conversation.item.truncate": self._item_truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "output_audio_buffer.clear": self._output_audio_clear,
        }
        self._configure_input()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Send ``session.created`` and start the session's timers."""
        await self._emit(events.session_created(self.session))
        self._spawn(self._expire_after(self._limit_s))
        if self._faults.drop_after_s is not None:
            self._spawn(self._drop_after(self._faults.drop_after_s))

    async def aclose(self) -> None:
        """Stop everything the session started (the connection is gone)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Cancelled before it ran (the session closed at once): close the coroutine, which
        # would otherwise warn that it was never awaited.
        task.add_done_callback(lambda done: coro.close() if done.cancelled() else None)
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except RealtimeApiError as exc:
            await self._emit(events.error(exc.to_object(None)))
        except Exception as exc:
            logger.error(
                "emulator session %s: internal error: %r",
                self.id,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            await self._emit(events.error(errors.server_error().to_object(None)))
        return None

    async def _emit(self, event: dict[str, Any]) -> None:
        await self._outbox.put(event)

    # --- incoming messages ---------------------------------------------------------------------

    async def receive_bytes(self) -> None:
        await self._emit(events.error(errors.binary_frame().to_object(None)))

    async def receive(self, text: str) -> None:
        """Handle one client text frame."""
        # A frame's size in bytes; encoding to count only matters near the limit (4 bytes/char max).
        size = len(text.encode("utf-8")) if len(text) * 4 > self._config.max_event_bytes else len(text)
        if size > self._config.max_event_bytes:
            self._record.client_event({"type": None, "oversized_bytes": size}, 256, "<oversized>")
            await self._emit(
                events.error(errors.event_too_large(size, self._config.max_event_bytes).to_object(None))
            )
            return
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # Any parser failure is the client's malformed event, answered and survived: a syntax
            # error, nesting past the recursion limit, or an integer past Python's 4,300-digit
            # conversion limit (a bare ValueError, which once dropped the connection).
            self._record.client_event({"type": None, "invalid_json": True}, 256, "<invalid json>")
            detail = str(exc) if isinstance(exc, json.JSONDecodeError) else _PARSER_LIMIT
            await self._emit(events.error(errors.invalid_json(detail).to_object(None)))
            return
        if not isinstance(data, dict):
            self._record.client_event({"type": None, "not_an_object": True}, 256, "<not an object>")
            await self._emit(events.error(errors.not_an_object().to_object(None)))
            return
        client_event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
        # Counted under its type only when it is one: a fuzzer's made-up types would grow the counters.
        kind = data.get("type")
        self._record.client_event(
            *summarise_client_event(data), kind if kind in CLIENT_EVENT_TYPES else "<unknown type>"
        )
        try:
            event_type = check_client_event(data)
            await self._handlers[event_type](data)
        except RealtimeApiError as exc:
            await self._emit(events.error(exc.to_object(client_event_id)))
        except Exception as exc:
            logger.error(
                "emulator session %s: internal error on %s: %r",
                self.id,
                data.get("type"),
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            await self._emit(events.error(errors.server_error().to_object(client_event_id)))
        finally:
            self._notify()

    # --- session.update --------------------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        self.session = apply_update(self.session, event["session"], audio_produced=self._audio_produced)
        self._configure_input()
        await self._emit(events.session_updated(self.session))

    def _turn_detection(self) -> dict[str, Any] | None:
        detection: dict[str, Any] | None = self.session["audio"]["input"]["turn_detection"]
        return detection

    def _configure_input(self) -> None:
        self.input.set_format(input_format_type(self.session))
        detection = self._turn_detection()
        key = None if detection is None else tuple(sorted((k, str(v)) for k, v in detection.items()))
        if key == self._vad_key:
            return
        self._vad_key = key
        self._speech_item_id = None
        if detection is None:
            self.input.set_vad(None)
            return
        if detection["type"] == "semantic_vad":
            eagerness = detection.get("eagerness") or "auto"
            silence = self._engines.semantic_silence_ms.get(
                eagerness, self._engines.semantic_silence_ms.get("auto", 500)
            )
            settings = VadSettings(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=silence)
        else:
            settings = VadSettings(
                threshold=detection.get("threshold", 0.5),
                prefix_padding_ms=detection.get("prefix_padding_ms", 300),
                silence_duration_ms=detection.get("silence_duration_ms", 500),
            )
        self.input.set_vad(self._engines.make_vad(settings), settings.prefix_padding_ms)

    # --- input audio buffer --------------------------------------------------------------------

    async def _append(self, event: dict[str, Any]) -> None:
        encoded: str = event["audio"]
        if len(encoded) * 3 // 4 > MAX_APPEND_AUDIO_BYTES:
            raise errors.string_above_max_length("audio", (MAX_APPEND_AUDIO_BYTES + 2) // 3 * 4, len(encoded))
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.invalid_audio("expected base64-encoded audio") from exc
        for found in self.input.append(raw):
            await self._on_vad(found)

    async def feed_input(self, raw: bytes) -> None:
        """Audio from a call's media leg, in the input format: handled exactly like an append."""
        try:
            for found in self.input.append(raw):
                await self._on_vad(found)
        except RealtimeApiError as exc:
            await self._emit(events.error(exc.to_object(None)))
        except Exception as exc:
            logger.error("emulator session %s: internal error on call audio: %r", self.id, exc)
            await self._emit(events.error(errors.server_error().to_object(None)))
        finally:
            self._notify()

    async def _on_vad(self, found: VadEvent) -> None:
        detection = self._turn_detection()
        if found.kind == "start":
            self._speech_item_id = new_id("item")
            self._speech_start_ms = found.stream_ms
            self._cancel_idle_timer()
            await self._emit(events.speech_started(found.stream_ms, self._speech_item_id))
            interrupt = detection is not None and detection.get("interrupt_response", True)
            if interrupt and self._playout is not None:
                self._playout.halt()  # a call: the caller hears nothing more of the reply from now
            if interrupt and self._active is not None:
                await self._cancel_run(self._active, "turn_detected")
            if interrupt and self._playout is not None:
                await self._playout.barge_in()  # a call: the server stops playback and truncates
            return
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        await self._emit(events.speech_stopped(found.stream_ms, item_id))
        segment = self.input.take(self._speech_start_ms, found.stream_ms)
        await self._commit(item_id, segment.raw, segment.pcm24)
        if detection is not None and detection.get("create_response", True) and self._active is None:
            await self._create_response({}, None)

    async def _commit_buffer(self, event: dict[str, Any]) -> None:
        buffered_ms = self.input.buffered_ms
        if buffered_ms < errors.MIN_COMMIT_MS:
            raise errors.commit_empty(buffered_ms)
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        segment = self.input.take()
        self.input.reset_vad()
        await self._commit(item_id, segment.raw, segment.pcm24)

    async def _clear_buffer(self, event: dict[str, Any]) -> None:
        self.input.clear()
        self._speech_item_id = None
        await self._emit(events.cleared())

    async def _commit(self, item_id: str, raw: bytes, pcm24: bytes) -> None:
        item = Item(
            {
                "id": item_id,
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
            audio=raw,
            audio_format=self.input.fmt,
        )
        previous = self.conversation.append(item)
        await self._emit(events.committed(item_id, previous))
        await self._emit(events.item_added(item.wire(), previous))
        await self._emit(events.item_done(item.wire(), previous))
        self._transcriber.start(item, pcm24, self.session["audio"]["input"]["transcription"])

    # --- conversation items --------------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        previous_item_id = event.get("previous_item_id")
        if (
            previous_item_id is not None
            and previous_item_id != ROOT
            and self.conversation.get(previous_item_id) is None
        ):
            raise errors.previous_item_not_found(previous_item_id)
        item = item_from_client(event["item"], self.input.fmt)
        if self.conversation.get(item.id) is not None:
            raise errors.duplicate_item_id(item.id)
        if previous_item_id is None:
            previous = self.conversation.append(item)
        else:
            previous = self.conversation.insert_after(item, previous_item_id)
        await self._emit(events.item_added(item.wire(), previous))
        await self._emit(events.item_done(item.wire(), previous))

    async def _item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation.get(event["item_id"])
        if item is None:
            raise errors.item_not_found("retrieve", event["item_id"])
        await self._emit(events.item_retrieved(item.wire(with_audio=True)))

    async def _item_delete(self, event: dict[str, Any]) -> None:
        if not self.conversation.delete(event["item_id"]):
            raise errors.item_not_found("delete", event["item_id"])
        await self._emit(events.item_deleted(event["item_id"]))

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        audio_end_ms: int = event["audio_end_ms"]
        content_index: int = event["content_index"]
        if audio_end_ms < 0:
            raise errors.below_min_value("audio_end_ms", 0, audio_end_ms, integer=True)
        if content_index < 0:
            raise errors.below_min_value("content_index", 0, content_index, integer=True)
        item = self.conversation.get(event["item_id"])
        if item is None:
            raise errors.item_not_found("truncate", event["item_id"])
        if not item.has_output_audio or not item.has_audio or content_index != 0:
            raise errors.truncate_unsupported_content()
        if audio_end_ms > item.audio_ms:
            raise errors.truncate_beyond_audio(item.audio_ms, audio_end_ms)
        item.cut_audio(audio_end_ms)  # also an item whose bytes were released: its length is kept
        for part in item.data["content"]:
            if part.get("type") == "output_audio":
                # The server drops the transcript so the context holds no text the user did not hear.
                part["transcript"] = None
        item.version += 1
        await self._emit(events.item_truncated(item.id, content_index, audio_end_ms))

    async def truncate_played(self, item_id: str, audio_end_ms: int) -> bool:
        """A call's server-side truncation at the ms played (clamped to the item's audio)."""
        item = self.conversation.get(item_id)
        if item is None or not item.has_output_audio or not item.has_audio:
            return False
        end_ms = max(0, min(audio_end_ms, item.audio_ms))
        await self._item_truncate({"item_id": item_id, "content_index": 0, "audio_end_ms": end_ms})
        return True

    async def _output_audio_clear(self, event: dict[str, Any]) -> None:
        if self._playout is not None:
            await self._playout.clear()
            return
        raise errors.invalid_value_message(
            "type", "output_audio_buffer.clear is only supported on WebRTC and SIP connections."
        )

    # --- responses -----------------------------------------------------------------------------

    async def _response_create(self, event: dict[str, Any]) -> None:
        overrides = event.get("response") or {}
        check_response_params(overrides)
        await self._create_response(overrides, event.get("event_id"))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id")
        runs = [self._active, *self._out_of_band] if response_id else [self._active]
        target = next(
            (r for r in runs if r is not None and (response_id is None or r.id == response_id)), None
        )
        if target is None or target.finished.is_set():
            raise errors.cancel_not_active()
        await self._cancel_run(target, "client_cancelled")

    async def _cancel_run(self, run: ResponseRun, reason: Any) -> None:
        run.cancel(reason)
        await run.finished.wait()

    async def _create_response(self, overrides: dict[str, Any], client_event_id: str | None) -> None:
        params = response_params(self.session, overrides)
        input_items = resolve_input(self.conversation, overrides.get("input"), self.input.fmt)
        if params.conversation == "auto" and self._active is not None:
            raise errors.active_response(self._active.id)
        self._responses_created += 1
        limit = self._faults.rate_limit_tokens_per_min
        if self._faults.rate_limited(self._responses_created):
            await self._emit(
                events.rate_limits_updated(rate_limits(limit, 0, self._faults.rate_limit_reset_s))
            )
            raise errors.rate_limit_exceeded(self._model, limit, limit, 1000, self._faults.rate_limit_reset_s)
        segments = context_segments(
            params, input_items if input_items is not None else list(self.conversation)
        )
        run = ResponseRun(
            params=params,
            conversation=self.conversation,
            emit=self._emit,
            synthesizer=self._engines.synthesizer,
            pace=self._config.pace,
            chunk_ms=self._config.audio_chunk_ms,
            first_audio_delay_ms=self._faults.first_audio_delay_ms,
            input_segments=segments,
            cached=self._cache.cached(segments),
            on_audio_sent=self._on_audio_sent,
        )
        if run.in_default_conversation:
            self._active = run
        else:
            self._out_of_band.add(run)
        self._spawn(self._drive(run, input_items, client_event_id, self._responses_created))

    async def _drive(
        self,
        run: ResponseRun,
        input_items: list[Item] | None,
        client_event_id: str | None,
        response_number: int,
    ) -> None:
        try:
            turn = await self._turn_context(run, input_items, response_number)
            reply = self._responder.reply(turn)
            refusal = next((a for a in reply.actions if isinstance(a, SendError)), None)
            if refusal is not None:
                error = RealtimeApiError(
                    refusal.code, refusal.message, param=refusal.param, error_type=refusal.error_type
                )
                await self._emit(events.error(error.to_object(client_event_id)))
                return
            now = time.monotonic()
            while self._tokens_used and now - self._tokens_used[0][0] > _RATE_WINDOW_S:
                self._tokens_used.popleft()
            tokens = estimated_output_tokens(reply)
            used = sum(spent for _, spent in self._tokens_used) + tokens
            if self._tokens_used and now - self._tokens_used[-1][0] < 1.0:
                # Within a second of the last entry: add to it, so the window holds ~60 entries.
                self._tokens_used[-1] = (self._tokens_used[-1][0], self._tokens_used[-1][1] + tokens)
            else:
                self._tokens_used.append((now, tokens))
            limit = self._faults.rate_limit_tokens_per_min
            await run.run(reply, rate_limits(limit, limit - used, used / limit * _RATE_WINDOW_S))
            self._cache.remember(run.processed_segments())
        finally:
            run.finished.set()  # also when it never started (a scripted error): nobody waits forever
            if self._active is run:
                self._active = None
            self._out_of_band.discard(run)
        for action in reply.actions:
            if isinstance(action, CloseSocket):
                await self._outbox.put(Close(action.code, action.reason))
            elif isinstance(action, DropConnection):
                await self._outbox.put(Drop())
        self._arm_idle_timer(run.audio_ms)

    async def _turn_context(
        self, run: ResponseRun, input_items: list[Item] | None, response_number: int
    ) -> TurnContext:
        items = input_items if input_items is not None else list(self.conversation)
        latest = next(
            (i for i in reversed(items) if i.role in ("user", "system") or i.type == "function_call_output"),
            None,
        )
        user_text: str | None = None
        user_audio_ms: int | None = None
        function_result: FunctionResult | None = None
        if latest is not None and latest.type == "function_call_output":
            call_id = latest.data.get("call_id", "")
            call = next(
                (i for i in items if i.type == "function_call" and i.data.get("call_id") == call_id), None
            )
            name = call.data.get("name") if call is not None else None
            function_result = FunctionResult(call_id, name, latest.data.get("output", ""))
        elif latest is not None:
            user_text = latest.text()
            if latest.has_audio:
                user_audio_ms = latest.audio_ms
                recognition = self._transcriber.result(latest.id)
                # A scripted reply does not depend on the transcript: do not make it wait, as the
                # real service does not wait for input transcription before answering.
                needs_text = getattr(self._responder, "needs_user_text", None)
                wanted = needs_text is None or needs_text(response_number)
                if user_text is None and recognition is not None and wanted:
                    result = await run.unless_cancelled(recognition, _MAX_TRANSCRIPT_WAIT_S)
                    if isinstance(result, Transcription) and result.text.strip():
                        user_text = result.text
        tools = tuple(
            ToolSpec(t.get("name", ""), t.get("description") or "", t.get("parameters") or {})
            for t in run.params.tools
            if t.get("type", "function") == "function" and t.get("name")
        )
        return TurnContext(
            response_number=response_number,
            user_text=user_text,
            user_audio_ms=user_audio_ms,
            function_result=function_result,
            tools=tools,
            tool_choice=run.params.tool_choice,
            instructions=run.params.instructions,
            text_mode=run.params.text_mode,
        )

    async def _on_audio_sent(self, audio_ms: int) -> None:
        self._audio_produced = True
        self._audio_sent_ms += audio_ms
        threshold = self._faults.drop_after_audio_ms
        if threshold is not None and self._audio_sent_ms >= threshold:
            await self._outbox.put(Drop())

    # --- timers --------------------------------------------------------------------------------

    async def _expire_after(self, limit_s: float) -> None:
        await asyncio.sleep(limit_s)
        error = errors.session_expired(limit_s)
        await self._emit(events.error(error.to_object(None)))
        await self._outbox.put(Close(1001, error.message))

    async def _drop_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._outbox.put(Drop())

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _arm_idle_timer(self, reply_audio_ms: int) -> None:
        """``idle_timeout_ms`` (server VAD only) counts from when the reply's audio has played."""
        detection = self._turn_detection()
        timeout_ms = (
            (detection or {}).get("idle_timeout_ms")
            if (detection or {}).get("type") == "server_vad"
            else None
        )
        self._cancel_idle_timer()
        if not timeout_ms:
            return
        pace = self._config.pace
        delay_s = 0.0 if pace is None else (reply_audio_ms + timeout_ms) / 1000 / pace
        self._idle_timer = self._spawn(self._idle_timeout(delay_s))

    async def _idle_timeout(self, delay_s: float) -> None:
        start_ms = self.input.stream_ms
        await asyncio.sleep(delay_s)
        if self._active is not None or self.input.in_speech:
            return
        item_id = new_id("item")
        await self._emit(events.timeout_triggered(start_ms, self.input.stream_ms, item_id))
        self.input.take()
        await self._commit(item_id, b"", b"")
        await self._create_response({}, None)
