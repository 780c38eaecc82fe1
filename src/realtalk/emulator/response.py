"""One response, from ``response.created`` to ``response.done``, streamed at a real-time pace.

Theory of operation. A :class:`ResponseRun` turns a responder's :class:`Reply` into the events of
§2.5 B (a spoken message), the text-modality variant, and §2.5 D (a function call); a reply may
hold a spoken preamble at ``output_index`` 0 and function calls after it. For a spoken message it
synthesises the text, then sends ``audio_chunk_ms`` of audio per ``response.output_audio.delta``
on a fixed schedule (chunk *k* leaves at ``k * chunk / pace`` seconds after the first), each
preceded by the transcript words that fall within it (words are placed in proportion to their
characters).

A run can be cancelled (``response.cancel``, or barge-in when ``interrupt_response`` is on):
:meth:`cancel` wakes the pacing wait, and the run closes what it opened with the "done" events
(item ``status: incomplete``) and ends with ``response.done`` ``status: cancelled``. The caller
awaits the run after cancelling it, so these events come before anything the caller sends next
(§2.5 E). ``max_output_tokens`` is honoured the same way, ending ``incomplete``.

Usage (``usage.py``) counts the audio and text actually sent.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from realtalk.audio.g711 import G711_SAMPLE_RATE_HZ, alaw_encode, ulaw_encode
from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.audio.resample import resample
from realtalk.emulator import events
from realtalk.emulator.audio_input import BYTES_PER_MS
from realtalk.emulator.conversation import Conversation, Item
from realtalk.emulator.engines import Synthesizer
from realtalk.emulator.events import new_id
from realtalk.emulator.responder import CallFunction, Reply, Say
from realtalk.emulator.session_config import output_format_type
from realtalk.emulator.usage import Segment, assistant_audio_tokens, response_usage, text_tokens

__all__ = ["ResponseParams", "ResponseRun"]

T = TypeVar("T")
Emit = Callable[[dict[str, Any]], Awaitable[None]]
CancelReason = Literal["turn_detected", "client_cancelled"]
_TEXT_WORD_MS = 40  # text-modality pacing: one word per 40 ms of real time (at pace 1)
_ARGUMENT_CHUNK_CHARS = 12


@dataclass(frozen=True)
class ResponseParams:
    """A response's effective parameters: the session's, overridden by ``response.create``."""

    conversation: Literal["auto", "none"]
    output_modalities: tuple[str, ...]
    output_format: dict[str, Any]
    voice: Any
    speed: float
    instructions: str
    tools: tuple[dict[str, Any], ...]
    tool_choice: Any
    max_output_tokens: int | Literal["inf"]
    metadata: dict[str, str] | None

    @property
    def text_mode(self) -> bool:
        return "text" in self.output_modalities

    @property
    def voice_name(self) -> str:
        return self.voice if isinstance(self.voice, str) else "marin"


class _Stop(Exception):
    """Internal: the run must stop streaming (cancelled or out of output tokens)."""


class ResponseRun:
    """Streams one response; owned by one session."""

    def __init__(
        self,
        *,
        params: ResponseParams,
        conversation: Conversation | None,
        emit: Emit,
        synthesizer: Synthesizer,
        pace: float | None,
        chunk_ms: int,
        first_audio_delay_ms: int,
        input_segments: list[Segment],
        cached: tuple[int, int],
        on_audio_sent: Callable[[int], Awaitable[None]],
    ) -> None:
        self.id = new_id("resp")
        self.params = params
        self._conversation = conversation if params.conversation == "auto" else None
        self._emit = emit
        self._synthesizer = synthesizer
        self._pace = pace
        self._chunk_ms = chunk_ms
        self._first_audio_delay_s = first_audio_delay_ms / 1000
        self._input_segments = input_segments
        self._cached = cached
        self._on_audio_sent = on_audio_sent
        self._cancel_reason: CancelReason | None = None
        self._wake = asyncio.Event()
        self._reply = Reply(())
        self._output: list[Item] = []
        self._out_text_tokens = 0
        self._out_audio_ms = 0
        self._incomplete = False
        self._first_delta_sent = False
        self.finished = asyncio.Event()
        self.produced_audio = False

    # --- control -------------------------------------------------------------------------------

    @property
    def in_default_conversation(self) -> bool:
        return self._conversation is not None

    def cancel(self, reason: CancelReason) -> None:
        """Ask the run to stop; await :attr:`finished` to let its closing events go out first."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
            self._wake.set()

    async def unless_cancelled(self, awaitable: Awaitable[T], timeout_s: float) -> T | None:
        """Await ``awaitable`` unless the run is cancelled (or ``timeout_s`` passes) first."""
        waiter = asyncio.ensure_future(awaitable)
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter, wake}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        return waiter.result() if waiter.done() and not waiter.cancelled() else None

    def processed_segments(self) -> list[Segment]:
        """The context this response has processed: its input, then its output items."""
        return [*self._input_segments, *(item.segment() for item in self._output)]

    @property
    def audio_ms(self) -> int:
        """Reply audio sent so far."""
        return self._out_audio_ms

    def _check(self) -> None:
        if self._cancel_reason is not None:
            raise _Stop

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=seconds)
            except TimeoutError:
                pass
        self._check()

    def _paced(self, media_ms: float) -> float:
        return 0.0 if self._pace is None else media_ms / 1000 / self._pace

    async def _first_delta(self) -> None:
        if not self._first_delta_sent:
            self._first_delta_sent = True
            await self._sleep(self._first_audio_delay_s)

    # --- the run -------------------------------------------------------------------------------

    def _response_object(self, status: str, status_details: dict[str, Any] | None) -> dict[str, Any]:
        final = status != "in_progress"
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": status_details,
            "output": [item.wire() for item in self._output] if final else [],
            "conversation_id": self._conversation.id if self._conversation is not None else None,
            "output_modalities": list(self.params.output_modalities),
            "max_output_tokens": self.params.max_output_tokens,
            "audio": {"output": {"format": dict(self.params.output_format), "voice": self.params.voice}},
            "usage": self._usage() if final else None,
            "metadata": dict(self.params.metadata) if self.params.metadata is not None else None,
        }

    def _usage(self) -> dict[str, Any]:
        return response_usage(
            self._input_segments,
            self._cached,
            output_text_tokens=self._out_text_tokens,
            output_audio_tokens=assistant_audio_tokens(self._out_audio_ms),
        )

    async def run(self, reply: Reply, rate_limits: list[dict[str, Any]]) -> None:
        """Send the whole response; returns after ``response.done``."""
        self._reply = reply
        if reply.first_audio_delay_ms is not None:  # a scenario turn's own slow first audio
            self._first_audio_delay_s = reply.first_audio_delay_ms / 1000
        try:
            await self._emit(events.response_created(self._response_object("in_progress", None)))
            await self._emit(events.rate_limits_updated(rate_limits))
            for output_index, output in enumerate(self._reply.outputs):
                if self._cancel_reason is not None or self._incomplete:
                    break
                if isinstance(output, Say):
                    await self._message(output_index, output.text)
                else:
                    await self._function_call(output_index, output)
            if self._cancel_reason is not None:
                status, details = "cancelled", {"type": "cancelled", "reason": self._cancel_reason}
            elif self._incomplete:
                status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
            else:
                status, details = "completed", None
            await self._emit(events.response_done(self._response_object(status, details)))
        finally:
            self.finished.set()

    async def _open_item(self, output_index: int, item: Item) -> str | None:
        self._output.append(item)
        await self._emit(events.output_item_added(self.id, output_index, item.wire(with_object=True)))
        previous: str | None = None
        if self._conversation is not None:
            previous = self._conversation.append(item)
            await self._emit(events.item_added(item.wire(), previous))
        return previous

    async def _close_item(
        self, output_index: int, item: Item, previous: str | None, *, complete: bool
    ) -> None:
        item.data["status"] = "completed" if complete else "incomplete"
        item.version += 1
        await self._emit(events.output_item_done(self.id, output_index, item.wire(with_object=True)))
        if self._conversation is not None:
            await self._emit(events.item_done(item.wire(), previous))

    def _over_budget(self, extra_text_tokens: int, extra_audio_ms: int) -> bool:
        limit = self.params.max_output_tokens
        if limit == "inf":
            return False
        total = self._out_text_tokens + extra_text_tokens
        total += assistant_audio_tokens(self._out_audio_ms + extra_audio_ms)
        return total > limit

    # --- a message -----------------------------------------------------------------------------

    async def _message(self, output_index: int, text: str) -> None:
        text_mode = self.params.text_mode
        fmt = output_format_type(self.params.output_format)
        item = Item(
            {
                "id": new_id("item"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
            audio=None if text_mode else b"",
            audio_format=fmt,
        )
        previous = await self._open_item(output_index, item)
        part_type = "text" if text_mode else "audio"
        text_key = "text" if text_mode else "transcript"
        await self._emit(
            events.content_part_added(self.id, item.id, output_index, {"type": part_type, text_key: ""})
        )
        said: list[str] = []
        item.data["content"] = [{"type": f"output_{part_type}", text_key: ""}]
        try:
            if text_mode:
                await self._stream_text(output_index, item, text, said)
            else:
                await self._stream_audio(output_index, item, text, said)
        except _Stop:
            pass
        complete = self._cancel_reason is None and not self._incomplete
        spoken = "".join(said)
        item.data["content"] = [{"type": f"output_{part_type}", text_key: spoken}]
        if text_mode:
            await self._emit(events.text_done(self.id, item.id, output_index, spoken))
        else:
            await self._emit(events.audio_done(self.id, item.id, output_index))
            await self._emit(events.audio_transcript_done(self.id, item.id, output_index, spoken))
        await self._emit(
            events.content_part_done(self.id, item.id, output_index, {"type": part_type, text_key: spoken})
        )
        await self._close_item(output_index, item, previous, complete=complete)

    async def _stream_text(self, output_index: int, item: Item, text: str, said: list[str]) -> None:
        await self._first_delta()
        started = time.monotonic()
        for index, word in enumerate(_words(text)):
            tokens = text_tokens("".join(said) + word) - text_tokens("".join(said))
            if self._over_budget(tokens, 0):
                self._incomplete = True
                return
            await self._sleep(started + self._paced(index * _TEXT_WORD_MS) - time.monotonic())
            said.append(word)
            self._out_text_tokens += tokens
            item.data["content"] = [{"type": "output_text", "text": "".join(said)}]
            await self._emit(events.text_delta(self.id, item.id, output_index, word))

    async def _stream_audio(self, output_index: int, item: Item, text: str, said: list[str]) -> None:
        pcm24 = await asyncio.to_thread(
            self._synthesizer.synthesize, text, voice=self.params.voice_name, speed=self.params.speed
        )
        self._check()
        fmt = output_format_type(self.params.output_format)
        encoded = _encode(pcm24, fmt)
        bytes_per_ms = BYTES_PER_MS[fmt]
        chunk_bytes = self._chunk_ms * bytes_per_ms
        total_ms = max(1, len(encoded) // bytes_per_ms)
        words = _words(text)
        starts_ms = _word_starts_ms(words, total_ms)
        next_word = 0
        await self._first_delta()
        started = time.monotonic()
        assert item.has_audio
        if not encoded:  # nothing to hear: the transcript still goes out
            for word in words:
                said.append(word)
                await self._emit(events.audio_transcript_delta(self.id, item.id, output_index, word))
            self._out_text_tokens += text_tokens("".join(said))
            return
        for chunk_index, offset in enumerate(range(0, len(encoded), chunk_bytes)):
            chunk = encoded[offset : offset + chunk_bytes]
            chunk_end_ms = (offset + len(chunk)) // bytes_per_ms
            last = offset + chunk_bytes >= len(encoded)
            word_stop = len(words) if last else next_word
            while not last and word_stop < len(words) and starts_ms[word_stop] < chunk_end_ms:
                word_stop += 1
            new_words = words[next_word:word_stop]
            before = "".join(said)
            extra_tokens = text_tokens(before + "".join(new_words)) - text_tokens(before)
            chunk_ms = len(chunk) // bytes_per_ms
            if self._over_budget(extra_tokens, chunk_ms):
                self._incomplete = True
                return
            await self._sleep(started + self._paced(chunk_index * self._chunk_ms) - time.monotonic())
            for word in new_words:
                said.append(word)
                await self._emit(events.audio_transcript_delta(self.id, item.id, output_index, word))
            next_word = word_stop
            self._out_text_tokens += extra_tokens
            item.add_audio(chunk)
            if self._conversation is not None:
                self._conversation.bound_audio()
            item.data["content"] = [{"type": "output_audio", "transcript": "".join(said)}]
            self.produced_audio = True
            await self._emit(
                events.audio_delta(self.id, item.id, output_index, base64.b64encode(chunk).decode("ascii"))
            )
            self._out_audio_ms += chunk_ms
            await self._on_audio_sent(chunk_ms)
        # No wait for the last chunk to play: like the service, generation ends before playback
        # does, so response.done arrives while the client is still playing (§2.5 E).

    # --- a function call ----------------------------------------------------------------------

    async def _function_call(self, output_index: int, call: CallFunction) -> None:
        call_id = call.call_id or new_id("call", 16)
        item = Item(
            {
                "id": new_id("item"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call_id,
                "name": call.name,
                "arguments": "",
            }
        )
        previous = await self._open_item(output_index, item)
        sent = ""
        complete = True
        try:
            for start in range(0, len(call.arguments), _ARGUMENT_CHUNK_CHARS):
                delta = call.arguments[start : start + _ARGUMENT_CHUNK_CHARS]
                if self._over_budget(text_tokens(sent + delta) + text_tokens(call.name), 0):
                    self._incomplete = True
                    raise _Stop
                await self._sleep(self._paced(_TEXT_WORD_MS))
                sent += delta
                item.data["arguments"] = sent
                await self._emit(
                    events.function_arguments_delta(self.id, item.id, output_index, call_id, delta)
                )
        except _Stop:
            complete = False
        self._out_text_tokens += text_tokens(call.name + sent)
        if complete:
            await self._emit(
                events.function_arguments_done(self.id, item.id, output_index, call_id, call.name, sent)
            )
        await self._close_item(output_index, item, previous, complete=complete)


def _words(text: str) -> list[str]:
    """Transcript deltas: words with their following whitespace, as a model streams them."""
    return re.findall(r"\S+\s*", text) or ([text] if text else [])


def _word_starts_ms(words: list[str], total_ms: int) -> list[float]:
    total_chars = sum(len(w) for w in words) or 1
    starts: list[float] = []
    position = 0
    for word in words:
        starts.append(position / total_chars * total_ms)
        position += len(word)
    return starts


def _encode(pcm24: bytes, fmt: str) -> bytes:
    if fmt == "audio/pcm":
        return pcm24
    pcm8 = resample(pcm24, WIRE_SAMPLE_RATE_HZ, G711_SAMPLE_RATE_HZ)
    return ulaw_encode(pcm8) if fmt == "audio/pcmu" else alaw_encode(pcm8)


def rate_limits(tokens_limit: int, tokens_remaining: int, reset_s: float) -> list[dict[str, Any]]:
    """The ``rate_limits`` of ``rate_limits.updated``: one ``tokens`` entry, as captured (§2.4)."""
    return [
        {
            "name": "tokens",
            "limit": tokens_limit,
            "remaining": max(0, tokens_remaining),
            "reset_seconds": round(max(0.0, reset_s), 3),
        }
    ]


_SPOKEN_CHARS_PER_S = 15


def estimated_output_tokens(reply: Reply) -> int:
    """A rough size of a reply (text tokens + audio tokens of speech at about 15 characters per
    second), for the ``remaining`` count of ``rate_limits.updated``."""
    chars = sum(len(o.text) for o in reply.outputs if isinstance(o, Say))
    return math.ceil(chars / 4) + math.ceil(chars / _SPOKEN_CHARS_PER_S * 20)
