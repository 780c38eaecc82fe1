"""Realistic GA server frames for the protocol tests, shaped after §2.4 and §2.5 of the protocol doc.

``ServerWire`` builds JSON text frames the way the server sends them (event ids, ``obfuscation``
on deltas, ``audio`` content parts but ``output_audio`` item content, usage as in ``response.done``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

# §2.4 response.done example usage.
EXAMPLE_USAGE: dict[str, Any] = {
    "total_tokens": 253,
    "input_tokens": 132,
    "output_tokens": 121,
    "input_token_details": {
        "text_tokens": 119,
        "audio_tokens": 13,
        "image_tokens": 0,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
}


class ServerWire:
    """Builds server frames; every frame gets a fresh ``event_…`` id."""

    EXAMPLE_USAGE = EXAMPLE_USAGE
    SAMPLES_PER_100_MS = 2400  # PCM16 at 24 kHz

    @staticmethod
    def pcm(samples: int, bytes_per_sample: int = 2) -> bytes:
        """``samples`` of silence (PCM16 by default; G.711 has 1 byte per sample)."""
        return b"\x01" * (samples * bytes_per_sample)

    def __init__(self) -> None:
        self._ids = self._counter()

    @staticmethod
    def _counter() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    def frame(self, event_type: str, **fields: Any) -> str:
        return json.dumps({"type": event_type, "event_id": f"event_{next(self._ids):04d}", **fields})

    # -- session (§2.5 A) -------------------------------------------------------------------------

    def session(
        self,
        *,
        turn_detection: dict[str, Any] | None = None,
        output_format: dict[str, Any] | None = None,
        input_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_C9xYz",
            "model": "gpt-realtime-1.5",
            "expires_at": 1767225600,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "audio": {
                "input": {
                    "format": input_format or {"type": "audio/pcm", "rate": 24000},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": turn_detection
                    if turn_detection is not None
                    else {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "idle_timeout_ms": None,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {
                    "format": output_format or {"type": "audio/pcm", "rate": 24000},
                    "voice": "marin",
                    "speed": 1.0,
                },
            },
        }

    def session_created(self, **kwargs: Any) -> str:
        return self.frame("session.created", session=self.session(**kwargs))

    def session_updated(self, **kwargs: Any) -> str:
        return self.frame("session.updated", session=self.session(**kwargs))

    # -- input buffer ---------------------------------------------------------------------------

    def speech_started(self, item_id: str, audio_start_ms: int) -> str:
        return self.frame("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)

    def speech_stopped(self, item_id: str, audio_end_ms: int) -> str:
        return self.frame("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)

    def committed(self, item_id: str, previous_item_id: str | None) -> str:
        return self.frame("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)

    def user_audio_item(self, item_id: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }

    def item_added(self, item: dict[str, Any], previous_item_id: str | None, *, name: str = "added") -> str:
        return self.frame(f"conversation.item.{name}", previous_item_id=previous_item_id, item=item)

    def item_done(self, item: dict[str, Any], previous_item_id: str | None) -> str:
        return self.frame("conversation.item.done", previous_item_id=previous_item_id, item=item)

    def user_turn(
        self, item_id: str, previous_item_id: str | None, *, start_ms: int, end_ms: int
    ) -> list[str]:
        """§2.5 B, the user half: VAD events, commit, and the user item."""
        item = self.user_audio_item(item_id)
        return [
            self.speech_started(item_id, start_ms),
            self.speech_stopped(item_id, end_ms),
            self.committed(item_id, previous_item_id),
            self.item_added(item, previous_item_id),
            self.item_done(item, previous_item_id),
        ]

    def transcription_delta(self, item_id: str, delta: str) -> str:
        return self.frame(
            "conversation.item.input_audio_transcription.delta",
            item_id=item_id,
            content_index=0,
            delta=delta,
            obfuscation="x",
        )

    def transcription_completed(self, item_id: str, transcript: str) -> str:
        return self.frame(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={
                "type": "tokens",
                "input_tokens": 14,
                "output_tokens": 5,
                "total_tokens": 19,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
            },
        )

    # -- responses (§2.5 B, D, E) -----------------------------------------------------------------

    def response(
        self,
        response_id: str,
        *,
        status: str = "in_progress",
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        reason: str | None = None,
        conversation_id: str | None = "conv_C9a",
    ) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": {"type": status, "reason": reason}
            if status not in ("in_progress", "completed")
            else None,
            "output": output or [],
            "conversation_id": conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
            "usage": usage,
            "metadata": None,
        }

    def response_created(self, response_id: str, **kwargs: Any) -> str:
        return self.frame("response.created", response=self.response(response_id, **kwargs))

    def rate_limits(self) -> str:
        return self.frame(
            "rate_limits.updated",
            rate_limits=[{"name": "tokens", "limit": 40000, "remaining": 38490, "reset_seconds": 2.265}],
        )

    def assistant_item(
        self, item_id: str, *, status: str = "in_progress", transcript: str | None = None
    ) -> dict[str, Any]:
        content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
        return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def assistant_start(
        self, response_id: str, item_id: str, previous_item_id: str | None, output_index: int = 0
    ) -> list[str]:
        item = self.assistant_item(item_id)
        ids = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": output_index,
            "content_index": 0,
        }
        return [
            self.frame(
                "response.output_item.added",
                response_id=response_id,
                output_index=output_index,
                item={**item, "object": "realtime.item"},
            ),
            self.item_added(item, previous_item_id),
            self.frame("response.content_part.added", **ids, part={"type": "audio", "transcript": ""}),
        ]

    def transcript_delta(self, response_id: str, item_id: str, delta: str) -> str:
        return self.frame(
            "response.output_audio_transcript.delta",
            response_id=response_id,
            item_id=item_id,
            output_index=0,
            content_index=0,
            delta=delta,
            obfuscation="LBqdwEYsSEHbF",
        )

    def audio_delta(self, response_id: str, item_id: str, audio: bytes) -> str:
        return self.frame(
            "response.output_audio.delta",
            response_id=response_id,
            item_id=item_id,
            output_index=0,
            content_index=0,
            delta=base64.b64encode(audio).decode("ascii"),
        )

    def assistant_finish(
        self,
        response_id: str,
        item_id: str,
        previous_item_id: str | None,
        transcript: str,
        *,
        status: str = "completed",
    ) -> list[str]:
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        final = self.assistant_item(item_id, status=status, transcript=transcript)
        return [
            self.frame("response.output_audio.done", **ids),
            self.frame("response.output_audio_transcript.done", **ids, transcript=transcript),
            self.frame("response.content_part.done", **ids, part={"type": "audio", "transcript": transcript}),
            self.frame("response.output_item.done", response_id=response_id, output_index=0, item=final),
            self.item_done(final, previous_item_id),
        ]

    def response_done(
        self,
        response_id: str,
        *,
        status: str = "completed",
        reason: str | None = None,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> str:
        return self.frame(
            "response.done",
            response=self.response(
                response_id,
                status=status,
                output=output,
                reason=reason,
                usage=usage if usage is not None else EXAMPLE_USAGE,
            ),
        )

    def function_call(
        self,
        response_id: str,
        item_id: str,
        call_id: str,
        name: str,
        arguments: str,
        previous_item_id: str | None,
        output_index: int = 0,
    ) -> list[str]:
        """§2.5 D, one function call item from added to done."""
        started = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        final = {**started, "status": "completed", "arguments": arguments}
        common = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": output_index,
            "call_id": call_id,
        }
        return [
            self.frame(
                "response.output_item.added", response_id=response_id, output_index=output_index, item=started
            ),
            self.item_added(started, previous_item_id),
            self.frame("response.function_call_arguments.delta", **common, delta=arguments[:5]),
            self.frame("response.function_call_arguments.delta", **common, delta=arguments[5:]),
            self.frame("response.function_call_arguments.done", **common, name=name, arguments=arguments),
            self.frame(
                "response.output_item.done", response_id=response_id, output_index=output_index, item=final
            ),
            self.item_done(final, previous_item_id),
        ]

    def function_call_output_item(self, item_id: str, call_id: str, output: str) -> dict[str, Any]:
        return {"id": item_id, "type": "function_call_output", "call_id": call_id, "output": output}

    def truncated(self, item_id: str, audio_end_ms: int) -> str:
        return self.frame(
            "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=audio_end_ms
        )

    def error(
        self,
        code: str | None,
        message: str,
        *,
        event_id: str | None = None,
        error_type: str = "invalid_request_error",
        param: str | None = None,
    ) -> str:
        return self.frame(
            "error",
            error={
                "type": error_type,
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        )


@pytest.fixture
def wire() -> ServerWire:
    return ServerWire()
