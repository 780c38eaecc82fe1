"""Token usage as the service bills it, derived from the audio and text of a session.

Rates (OpenAI's "Managing costs" guide, §3.3 of the protocol notes): user audio 10 tokens per
second, assistant audio 20 tokens per second, text about one token per 4 characters.

Each response bills its whole input context again: instructions, tool definitions and every item
of the conversation so far (a truncated assistant item counts only the audio left). That context is
a list of :class:`Segment`; the part of it that an earlier response of the session already
processed (its input and its own output), as an unchanged prefix, is reported as cached, the way
the service's prompt cache reports it.
``response.done`` usage then follows the subset rules of §2.4: ``input_tokens`` =
text + audio + image, and each ``cached_tokens_details`` count is inside its modality's count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CacheTracker",
    "Segment",
    "assistant_audio_tokens",
    "response_usage",
    "text_tokens",
    "transcription_usage",
    "user_audio_tokens",
]

CHARS_PER_TEXT_TOKEN = 4
USER_AUDIO_TOKENS_PER_S = 10
ASSISTANT_AUDIO_TOKENS_PER_S = 20


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN) if text else 0


def user_audio_tokens(audio_ms: int) -> int:
    return math.ceil(audio_ms * USER_AUDIO_TOKENS_PER_S / 1000) if audio_ms > 0 else 0


def assistant_audio_tokens(audio_ms: int) -> int:
    return math.ceil(audio_ms * ASSISTANT_AUDIO_TOKENS_PER_S / 1000) if audio_ms > 0 else 0


@dataclass(frozen=True)
class Segment:
    """One piece of a response's input context. ``key`` changes whenever the content does."""

    key: str
    text_tokens: int = 0
    audio_tokens: int = 0


class CacheTracker:
    """Remembers the contexts earlier responses of one session sent, to report cached tokens."""

    def __init__(self) -> None:
        self._previous: list[tuple[str, ...]] = []

    def cached(self, segments: Sequence[Segment]) -> tuple[int, int]:
        """(cached text tokens, cached audio tokens) for this context."""
        keys = tuple(s.key for s in segments)
        best = 0
        for previous in self._previous:
            common = 0
            for mine, theirs in zip(keys, previous, strict=False):
                if mine != theirs:
                    break
                common += 1
            best = max(best, common)
        prefix = segments[:best]
        return sum(s.text_tokens for s in prefix), sum(s.audio_tokens for s in prefix)

    def remember(self, segments: Sequence[Segment]) -> None:
        """A response has processed ``segments`` (its input, then its output): the service keeps
        them cached for the session's next responses."""
        keys = tuple(s.key for s in segments)
        # A context that this one starts with can never give a longer common prefix than this one:
        # drop it. In a conversation each context extends the last, so one or two are kept, not 8
        # (each as long as the conversation).
        self._previous = [p for p in self._previous if keys[: len(p)] != p]
        self._previous.append(keys)
        del self._previous[:-8]  # bounded: recent contexts are the ones a cache would still hold


def response_usage(
    segments: Sequence[Segment],
    cached: tuple[int, int],
    *,
    output_text_tokens: int,
    output_audio_tokens: int,
) -> dict[str, Any]:
    """The ``usage`` object of ``response.done``."""
    input_text = sum(s.text_tokens for s in segments)
    input_audio = sum(s.audio_tokens for s in segments)
    cached_text, cached_audio = cached
    input_tokens = input_text + input_audio
    output_tokens = output_text_tokens + output_audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": 0,
            "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            },
        },
        "output_token_details": {"text_tokens": output_text_tokens, "audio_tokens": output_audio_tokens},
    }


def transcription_usage(
    model: str | None, audio_ms: int, transcript: str, prompt: str | None
) -> dict[str, Any]:
    """The ``usage`` of ``input_audio_transcription.completed``: by duration for ``whisper-1``,
    by tokens for the gpt-4o transcribe models."""
    if model == "whisper-1":
        return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
    audio = user_audio_tokens(audio_ms)
    prompt_tokens = text_tokens(prompt or "")
    output = text_tokens(transcript)
    return {
        "type": "tokens",
        "input_tokens": audio + prompt_tokens,
        "output_tokens": output,
        "total_tokens": audio + prompt_tokens + output,
        "input_token_details": {"text_tokens": prompt_tokens, "audio_tokens": audio},
    }
