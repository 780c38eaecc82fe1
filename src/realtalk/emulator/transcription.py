"""Recognising committed user audio, and the ``input_audio_transcription`` events (§2.4).

Every committed user item is recognised once, in a worker thread (the recogniser blocks): the
result feeds the echo responder, and, when the session has ``audio.input.transcription`` set,
the ``...input_audio_transcription.delta``/``.completed`` events (or ``.failed``). These arrive
asynchronously after ``input_audio_buffer.committed``, before or after the response events, as on
the service (§2.5 B). The recognised text is also written into the item's ``transcript``.

``mishear`` (``EmulatorConfig.effective_mishear``) scripts recognition errors: its substitutions
are applied to the recogniser's text once, here, so the transcript events, the item's transcript
and the responder's ``TurnContext.user_text`` all carry the same error (``asr.apply_mishear``).

The session keeps the latest few results (a response waits on its latest user item's), never the
audio they were recognised from: a result is a short text or a failure's code and message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from realtalk.emulator import events
from realtalk.emulator.asr import apply_mishear
from realtalk.emulator.conversation import Item
from realtalk.emulator.engines import Engines, Transcription, TranscriptionUnavailable
from realtalk.emulator.usage import transcription_usage

__all__ = ["Transcriber"]

Result = Transcription | TranscriptionUnavailable
_KEPT_RESULTS = 32  # enough for any response to find its latest user item


class Transcriber:
    """One session's recognitions (not shared between connections)."""

    def __init__(
        self,
        engines: Engines,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        emit: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        mishear: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._engines = engines
        self._mishear = tuple(mishear)
        self._spawn = spawn
        self._emit = emit
        self._results: dict[str, asyncio.Task[Result]] = {}

    def start(self, item: Item, pcm24: bytes, transcription: dict[str, Any] | None) -> None:
        """Recognise a committed item; send the transcription events when ``transcription`` is set."""
        prompt = (transcription or {}).get("prompt")
        hints = (*self._engines.phrases, prompt) if prompt else self._engines.phrases

        async def recognise() -> Result:
            try:
                heard = await asyncio.to_thread(self._engines.recognizer.transcribe, pcm24, 24000, hints)
            except TranscriptionUnavailable as exc:
                # Kept for the session's next responses: a fresh copy, without the traceback, whose
                # frames would hold the recogniser's locals, the whole segment's audio among them
                # (with no recogniser, ~32 segments of PCM per session: megabytes).
                return TranscriptionUnavailable(exc.code, exc.message)
            if not self._mishear:
                return heard
            return Transcription(apply_mishear(heard.text, self._mishear), heard.audio_seconds)

        task: asyncio.Task[Result] = self._spawn(recognise())
        self._results[item.id] = task
        while len(self._results) > _KEPT_RESULTS:
            del self._results[next(iter(self._results))]
        if transcription is not None:
            self._spawn(self._send(item, task, transcription))

    def result(self, item_id: str) -> asyncio.Task[Result] | None:
        """The recognition of an item, when one was started."""
        return self._results.get(item_id)

    async def _send(
        self, item: Item, recognition: asyncio.Task[Result], transcription: dict[str, Any]
    ) -> None:
        result = await recognition
        if isinstance(result, TranscriptionUnavailable):
            await self._emit(events.transcription_failed(item.id, result.code, result.message))
            return
        text = result.text
        model = transcription.get("model")
        # whisper-1 sends the whole transcript as one delta; the gpt-4o transcribe models stream words.
        pieces = [text] if model == "whisper-1" else [w + " " for w in text.split()]
        if pieces and pieces[-1].endswith(" "):
            pieces[-1] = pieces[-1][:-1]
        for piece in pieces:
            if piece:
                await self._emit(events.transcription_delta(item.id, piece))
        usage = transcription_usage(model, item.audio_ms, text, transcription.get("prompt"))
        await self._emit(events.transcription_completed(item.id, text, usage))
        for part in item.data["content"]:
            if part.get("type") == "input_audio":
                part["transcript"] = text
