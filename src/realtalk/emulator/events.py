"""Builders of the server events the emulator sends, as plain JSON-ready dicts.

Each function returns one event in its GA shape (§2.4 of the protocol notes), with a fresh
``event_id`` of the observed form ``event_<21 alphanumerics>``. The tests validate every event the
emulator sends against the official SDK's ``RealtimeServerEvent`` union, so these builders cannot
drift from the SDK's types unnoticed.

Two shapes are easy to confuse and are kept apart here on purpose (§0.4, §2.6): content-part
events say ``{"type": "audio"}`` / ``{"type": "text"}``, while items say ``output_audio`` /
``output_text``.
"""

from __future__ import annotations

import random
import string
from typing import Any

__all__ = ["new_id"]

Event = dict[str, Any]

_ALPHANUMERIC = string.ascii_letters + string.digits
# Ids are opaque labels, not secrets (ephemeral keys use `secrets`); a module Random is enough.
_random = random.Random()


def new_id(prefix: str, length: int = 21) -> str:
    """An id of the observed form ``<prefix>_<alphanumerics>``: event, sess, conv, item, resp, call."""
    return f"{prefix}_{''.join(_random.choices(_ALPHANUMERIC, k=length))}"


def _event(event_type: str, **fields: Any) -> Event:
    return {"type": event_type, "event_id": new_id("event"), **fields}


# --- session --------------------------------------------------------------------------------


def session_created(session: dict[str, Any]) -> Event:
    return _event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> Event:
    return _event("session.updated", session=session)


def error(error_object: dict[str, Any]) -> Event:
    return _event("error", error=error_object)


def rate_limits_updated(limits: list[dict[str, Any]]) -> Event:
    return _event("rate_limits.updated", rate_limits=limits)


# --- input audio buffer ---------------------------------------------------------------------


def speech_started(audio_start_ms: int, item_id: str) -> Event:
    return _event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)


def speech_stopped(audio_end_ms: int, item_id: str) -> Event:
    return _event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def committed(item_id: str, previous_item_id: str | None) -> Event:
    return _event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)


def cleared() -> Event:
    return _event("input_audio_buffer.cleared")


def timeout_triggered(audio_start_ms: int, audio_end_ms: int, item_id: str) -> Event:
    return _event(
        "input_audio_buffer.timeout_triggered",
        audio_start_ms=audio_start_ms,
        audio_end_ms=audio_end_ms,
        item_id=item_id,
    )


# --- conversation ---------------------------------------------------------------------------


def item_added(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.added", previous_item_id=previous_item_id, item=item)


def item_done(item: dict[str, Any], previous_item_id: str | None) -> Event:
    return _event("conversation.item.done", previous_item_id=previous_item_id, item=item)


def item_retrieved(item: dict[str, Any]) -> Event:
    return _event("conversation.item.retrieved", item=item)


def item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> Event:
    return _event(
        "conversation.item.truncated", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms
    )


def item_deleted(item_id: str) -> Event:
    return _event("conversation.item.deleted", item_id=item_id)


def transcription_delta(item_id: str, delta: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=delta
    )


def transcription_completed(item_id: str, transcript: str, usage: dict[str, Any]) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage=usage,
    )


def transcription_failed(item_id: str, code: str, message: str) -> Event:
    return _event(
        "conversation.item.input_audio_transcription.failed",
        item_id=item_id,
        content_index=0,
        error={"type": "transcription_error", "code": code, "message": message, "param": None},
    )


# --- responses ------------------------------------------------------------------------------


def response_created(response: dict[str, Any]) -> Event:
    return _event("response.created", response=response)


def response_done(response: dict[str, Any]) -> Event:
    return _event("response.done", response=response)


def output_item_added(response_id: str, output_index: int, item: dict[str, Any]) -> Event:
    return _event("response.output_item.added", response_id=response_id, output_index=output_index, item=item)


def output_item_done(response_id: str, output_index: int, item: dict[str, Any]) -> Event:
    return _event("response.output_item.done", response_id=response_id, output_index=output_index, item=item)


def _part_ids(response_id: str, item_id: str, output_index: int) -> dict[str, Any]:
    return {"response_id": response_id, "item_id": item_id, "output_index": output_index, "content_index": 0}


def content_part_added(response_id: str, item_id: str, output_index: int, part: dict[str, Any]) -> Event:
    return _event("response.content_part.added", **_part_ids(response_id, item_id, output_index), part=part)


def content_part_done(response_id: str, item_id: str, output_index: int, part: dict[str, Any]) -> Event:
    return _event("response.content_part.done", **_part_ids(response_id, item_id, output_index), part=part)


def audio_delta(response_id: str, item_id: str, output_index: int, delta_b64: str) -> Event:
    return _event(
        "response.output_audio.delta", **_part_ids(response_id, item_id, output_index), delta=delta_b64
    )


def audio_done(response_id: str, item_id: str, output_index: int) -> Event:
    return _event("response.output_audio.done", **_part_ids(response_id, item_id, output_index))


def audio_transcript_delta(response_id: str, item_id: str, output_index: int, delta: str) -> Event:
    return _event(
        "response.output_audio_transcript.delta", **_part_ids(response_id, item_id, output_index), delta=delta
    )


def audio_transcript_done(response_id: str, item_id: str, output_index: int, transcript: str) -> Event:
    return _event(
        "response.output_audio_transcript.done",
        **_part_ids(response_id, item_id, output_index),
        transcript=transcript,
    )


def text_delta(response_id: str, item_id: str, output_index: int, delta: str) -> Event:
    return _event("response.output_text.delta", **_part_ids(response_id, item_id, output_index), delta=delta)


def text_done(response_id: str, item_id: str, output_index: int, text: str) -> Event:
    return _event("response.output_text.done", **_part_ids(response_id, item_id, output_index), text=text)


def function_arguments_delta(
    response_id: str, item_id: str, output_index: int, call_id: str, delta: str
) -> Event:
    return _event(
        "response.function_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        delta=delta,
    )


def function_arguments_done(
    response_id: str, item_id: str, output_index: int, call_id: str, name: str, arguments: str
) -> Event:
    return _event(
        "response.function_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        name=name,
        arguments=arguments,
    )
