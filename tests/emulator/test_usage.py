"""Token usage rules (§2.4, §3.3): rates, the input context, cached prefixes."""

from __future__ import annotations

from realtalk.emulator.usage import (
    CacheTracker,
    Segment,
    assistant_audio_tokens,
    response_usage,
    text_tokens,
    transcription_usage,
    user_audio_tokens,
)

from .conftest import check_usage


def test_the_documented_rates() -> None:
    assert user_audio_tokens(1000) == 10
    assert assistant_audio_tokens(1000) == 20
    assert text_tokens("abcdefgh") == 2 and text_tokens("") == 0


def test_a_prefix_processed_by_an_earlier_response_is_cached() -> None:
    cache = CacheTracker()
    instructions, user, reply = Segment("i", 50), Segment("u:0", 0, 30), Segment("a:1", 10, 40)
    assert cache.cached([instructions, user]) == (0, 0)
    cache.remember([instructions, user, reply])
    assert cache.cached([instructions, user, reply, Segment("u2:0", 0, 20)]) == (60, 70)
    assert cache.cached([Segment("i-changed", 50), user]) == (0, 0)


def test_response_usage_follows_the_subset_rules() -> None:
    usage = response_usage(
        [Segment("i", 119), Segment("u", 0, 13)], (64, 0), output_text_tokens=30, output_audio_tokens=91
    )
    check_usage(usage)
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (132, 121, 253)
    assert usage["input_token_details"]["cached_tokens"] == 64


def test_transcription_usage_is_by_duration_for_whisper_and_by_tokens_otherwise() -> None:
    assert transcription_usage("whisper-1", 2500, "hello", None) == {"type": "duration", "seconds": 2.5}
    tokens = transcription_usage("gpt-4o-transcribe", 2500, "hello there", "names")
    assert tokens["input_token_details"] == {"text_tokens": 2, "audio_tokens": 25}
    assert tokens["total_tokens"] == tokens["input_tokens"] + tokens["output_tokens"]
