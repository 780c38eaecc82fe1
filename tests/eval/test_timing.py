"""The interruption and latency suites (realtalk.eval.timing) against the emulator on 127.0.0.1,
with the built-in WAV fixtures, in real time (a VAD and a player only make sense at that pace)."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from realtalk.audio.pcm import float_to_pcm16, read_wav, silence
from realtalk.client.credentials import ApiKeyCredential
from realtalk.emulator.faults import Faults
from realtalk.eval.cases import LEAD_MS, builtin_cases, case_phrases
from realtalk.eval.runner import EMULATOR_ECHO_PREFIX
from realtalk.eval.suite import CHECKS, METRICS, CaseContext, CaseFailed, CaseOutcome, RateLimited
from realtalk.eval.timing import follows_intent, run_interruption, run_latency, speech_bounds
from realtalk.protocol import AgentProfile
from realtalk.protocol.cost import prices_for
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.testing import Emulator, EmulatorConfig

KEY = "timing-test-key"
INTERRUPTION = builtin_cases("interruption")
LATENCY = builtin_cases("latency")
# One phrase list for every emulator here: the recogniser's worker loads it once.
PHRASES = case_phrases(INTERRUPTION + LATENCY)
BLOCK_MS = 20


def _context(base_url: str, profile: AgentProfile | None = None) -> CaseContext:
    return CaseContext(
        endpoint=resolve_endpoint(base_url, "gpt-realtime-1.5"),
        credential=ApiKeyCredential(KEY, style="bearer"),
        profile=profile or AgentProfile(),
        prices=prices_for("gpt-realtime-1.5"),
        reply_prefix=EMULATOR_ECHO_PREFIX,
    )


@asynccontextmanager
async def emulated(pace: float | None = 1.0, **config: Any) -> AsyncIterator[CaseContext]:
    async with Emulator(EmulatorConfig(keys=(KEY,), phrases=PHRASES, pace=pace, **config)) as emulator:
        yield _context(emulator.http_base_url)


def _ok(outcome: CaseOutcome | BaseException) -> CaseOutcome:
    assert isinstance(outcome, CaseOutcome), repr(outcome)
    return outcome


def _metric(outcome: CaseOutcome, name: str) -> float:
    value = outcome.metrics[name]
    assert value is not None, (name, outcome)
    return value


# --- interruption --------------------------------------------------------------------------------


async def test_a_barge_in_is_heard_silenced_and_truncated_at_what_the_speaker_played() -> None:
    # The same question with a barge-in due long after its (about 5 s) echo has ended.
    too_short = dataclasses.replace(INTERRUPTION[0], id="too-short", interrupt_after_ms=30_000)
    async with emulated() as ctx:
        *outcomes, failed = await asyncio.gather(
            *(run_interruption(case, ctx) for case in INTERRUPTION),
            run_interruption(too_short, ctx),
            return_exceptions=True,
        )
    for case, result in zip(INTERRUPTION, outcomes, strict=True):
        outcome = _ok(result)
        assert set(outcome.metrics) <= set(METRICS) and set(outcome.checks) <= set(CHECKS)
        assert outcome.error is None, outcome
        heard = _metric(outcome, "onset_to_speech_started_ms")
        silent = _metric(outcome, "onset_to_silent_ms")
        # The server hears the onset within a VAD's confirmation time (plus the network and a block).
        assert 0 < heard < 600, outcome
        # The reply stops reaching the speaker as soon as speech_started arrives: within a block.
        assert 0 < silent <= heard + BLOCK_MS, outcome
        # The truncate says what the speaker was handed, to the millisecond.
        assert _metric(outcome, "truncation_error_ms") <= 40, outcome
        assert outcome.checks["truncated_at_played"] is True
        # The follow-up started once interrupt_after_ms had played; its speech came LEAD_MS later
        # (less if the reply's audio came late and the speaker had gaps).
        assert case.interrupt_after_ms is not None
        played_before = _metric(outcome, "played_before_barge_in_ms")
        assert case.interrupt_after_ms <= played_before <= case.interrupt_after_ms + LEAD_MS + BLOCK_MS
        assert outcome.details["interrupted_reply_status"] == "cancelled"
        assert outcome.details["interrupted_reply_played_ms"] >= played_before
        assert outcome.transcript == case.followup_text
        assert outcome.reply is not None and outcome.reply.startswith(EMULATOR_ECHO_PREFIX)
        assert outcome.checks["follows_new_intent"] is True, outcome
        assert outcome.latency_ms is not None and 400 < outcome.latency_ms < 3000, outcome
        assert outcome.cost_usd > 0
    assert isinstance(failed, CaseFailed), repr(failed)
    assert "ended before interrupt_after_ms (30000 ms) of it had played" in str(failed)
    assert failed.cost_usd > 0


async def test_a_misheard_barge_in_fails_follows_new_intent_in_that_case_only() -> None:
    # "paris" is in the first case's follow-up only: the echo answers about "rome" instead.
    affected, unaffected = INTERRUPTION[0], INTERRUPTION[1]
    assert "paris" in affected.expected.split() and "paris" not in (unaffected.followup_text or "")
    # Unpaced: each reply arrives whole at once, as from a service generating faster than real
    # time, so the first reply is complete before the barge-in and the truncate comes without a
    # cancel (the other path of the protocol's barge-in).
    async with emulated(pace=None, mishear=(("paris", "rome"),)) as ctx:
        wrong, right = await asyncio.gather(
            run_interruption(affected, ctx), run_interruption(unaffected, ctx)
        )
    assert wrong.transcript is not None and "rome" in wrong.transcript.split()
    assert wrong.checks["follows_new_intent"] is False, wrong
    assert right.checks["follows_new_intent"] is True, right
    for outcome in (wrong, right):
        # The barge-in itself went as well as ever: only the answer is wrong.
        assert outcome.details["interrupted_reply_status"] == "completed", outcome
        assert outcome.checks["truncated_at_played"] is True, outcome
        assert 0 < _metric(outcome, "onset_to_silent_ms") < 600, outcome


# --- latency -------------------------------------------------------------------------------------


async def test_latency_is_measured_at_the_speaker_and_sees_a_slow_first_audio() -> None:
    delay_ms = 1000
    common = LATENCY[:4]
    async with emulated() as ctx, emulated(faults=Faults(first_audio_delay_ms=delay_ms)) as slow_ctx:
        # The emulator's recogniser starts its worker process in the background: the first turns
        # of a test run would wait for it, and that is the emulator's slowness, not the one measured.
        await run_latency(LATENCY[6], ctx)
        fast, slow = await asyncio.gather(
            asyncio.gather(*(run_latency(case, ctx) for case in LATENCY)),
            asyncio.gather(*(run_latency(case, slow_ctx) for case in common)),
        )
    for case, outcome in zip(LATENCY, fast, strict=True):
        assert outcome.error is None, outcome
        assert outcome.checks == {"replied": True}
        assert outcome.transcript == case.text
        assert outcome.reply == f"{EMULATOR_ECHO_PREFIX} {case.text}"
        v2v = _metric(outcome, "voice_to_voice_ms")
        vad_end = _metric(outcome, "vad_end_ms")
        first_delta = _metric(outcome, "first_delta_ms")
        assert outcome.latency_ms == v2v
        # The server waits 500 ms of silence before it says speech stopped; a reply comes after.
        assert 400 < vad_end < 1500, outcome
        assert 0 < first_delta < 1500, outcome
        assert 400 < v2v < 3000, outcome
        # The first audio is handed to the speaker at the next block after it arrives.
        assert 0 <= v2v - (vad_end + first_delta) <= BLOCK_MS, outcome
        # The client core's own figure (LatencyMeasured: from the server's end of speech, on the
        # wall clock) agrees with the card's clock measured from the same point, within a block or
        # two (plus however far a busy event loop made the card fall behind). It is one block later
        # by construction: the core stamps a block as played when it is handed out, while the card
        # places its first sample at the block's start.
        details = outcome.details
        from_server_end = details["first_played_at_ms"] - details["server_speech_end_ms"]
        offset = details["client_voice_to_voice_ms"] - from_server_end - BLOCK_MS
        assert abs(offset) <= 2 * BLOCK_MS + details["card_max_lag_ms"], details
        assert outcome.cost_usd > 0
    for outcome in slow:
        assert outcome.checks == {"replied": True}
        # The first delta cannot come before the injected delay has passed.
        assert _metric(outcome, "first_delta_ms") >= delay_ms - BLOCK_MS, outcome
    for name in ("voice_to_voice_ms", "first_delta_ms"):
        grown = statistics.median(
            _metric(s, name) - _metric(f, name) for f, s in zip(fast[: len(common)], slow, strict=True)
        )
        # About the delay: the emulators' one recogniser worker, shared by all sessions, adds a
        # little queueing to the slow ones, never takes any away.
        assert delay_ms - 250 <= grown <= delay_ms + 400, (name, grown)


async def test_a_rate_limited_reply_raises_rate_limited() -> None:
    async with emulated(faults=Faults(rate_limit_from_response=1)) as ctx:
        with pytest.raises(RateLimited, match="rate_limit_exceeded"):
            await run_latency(LATENCY[6], ctx)


async def test_a_reply_that_never_comes_fails_the_case_naming_what_was_missing() -> None:
    async with emulated() as ctx:
        with pytest.raises(CaseFailed, match=r"timed out after 1\.5 s waiting for the reply's first audio"):
            await run_latency(LATENCY[6], dataclasses.replace(ctx, timeout_s=1.5))


async def test_push_to_talk_profiles_are_refused_before_connecting() -> None:
    # Port 9 (discard) on 127.0.0.1: nothing is connected to, the profile is refused first.
    ctx = _context("http://127.0.0.1:9", profile=AgentProfile(turn_detection=None))
    with pytest.raises(CaseFailed, match="needs server turn detection"):
        await run_latency(LATENCY[0], ctx)
    with pytest.raises(CaseFailed, match="needs server turn detection"):
        await run_interruption(INTERRUPTION[0], ctx)


# --- speech bounds -------------------------------------------------------------------------------


def _tone(ms: int, dbfs: float) -> bytes:
    t = np.arange(ms * 24) / 24_000
    return float_to_pcm16(10 ** (dbfs / 20) * np.sin(2 * np.pi * 220 * t))


def test_speech_bounds_finds_the_speech_between_the_silences() -> None:
    assert speech_bounds(silence(300) + _tone(500, -20) + silence(700)) == (300 * 24, 800 * 24)


def test_speech_bounds_ignores_a_noise_floor_and_finds_nothing_in_silence() -> None:
    rng = np.random.default_rng(1)
    noise = float_to_pcm16(10 ** (-70 / 20) * rng.standard_normal(1500 * 24))
    clip = np.frombuffer(silence(300) + _tone(500, -20) + silence(700), dtype="<i2").astype(np.int32)
    noisy = np.clip(clip + np.frombuffer(noise, dtype="<i2"), -32768, 32767).astype("<i2").tobytes()
    assert speech_bounds(noisy) == (300 * 24, 800 * 24)
    assert speech_bounds(silence(1000)) is None
    assert speech_bounds(noise) is None


def test_speech_bounds_of_a_fixture_start_after_its_lead_silence() -> None:
    pcm = read_wav(LATENCY[0].audio)[0]
    bounds = speech_bounds(pcm)
    assert bounds is not None
    start, end = bounds
    assert abs(start - LEAD_MS * 24) <= 2 * 120
    assert len(pcm) // 2 - end >= 600 * 24  # the tail silence (700 ms) is not speech


def test_an_answer_follows_the_intent_when_it_has_each_term_or_an_alternative_stemmed() -> None:
    assert follows_intent("cat|joke", "Why did the cats sit on the computer? To keep an eye on the mouse!")
    assert follows_intent("table|book|reservation", "I'm booking that for two.")
    assert follows_intent("weather paris", "I can't check live weather, but Paris is mild in spring.")
    assert not follows_intent("weather paris", "Rome was founded in 753 BC.")
    assert not follows_intent("weather paris", "The weather in Rome is sunny.")  # every term
    assert not follows_intent("timer", "Time flies.")  # a stem, not a prefix
