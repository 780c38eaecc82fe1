"""The interruption and latency suites: timing replies through the client's real audio path.

Theory of operation. Each case runs one ``RealtimeSession`` wired to a ``VoiceLoop`` over a virtual
sound card (``_Card``, a ``VirtualDuplex``) that ``PacedDriver`` steps at real time, one 20 ms block
at a time: exactly how ``realtalk talk --input-wav`` runs, so what is measured is what a user of
the client hears. ``ctx.speed`` is ignored: a VAD and a player only make sense in real time.

Everything is measured on the card's sample clock. Sample ``n`` of the microphone stream and sample
``n`` of the speaker stream belong to the same instant, ``n / 24 kHz`` after the first block:

- the microphone (``_Mic``) plays scripted clips; a clip started between two blocks starts at the
  next block, so its samples have known places on the clock, and a speech onset or end inside it is
  found by energy in the WAV (``speech_bounds``);
- the card notes which samples of each block came from which reply item (``BlockRead.played``: the
  playback buffer hands an item's samples at the start of a block, the rest is silence), so the
  first and last sample of a reply handed to the speaker are exact;
- a session event is placed at the end of the blocks stepped when it arrived (the driver and the
  receive task share one event loop, so that is within one block after it really arrived, as
  long as the loop keeps up: how far the card fell behind the loop's clock at worst is kept in
  each case's details as ``card_max_lag_ms``, the figures' uncertainty on a busy machine).

Interruption: the question plays; once ``interrupt_after_ms`` of the reply has been handed to the
speaker, the follow-up plays over it. The client's barge-in (speech_started, flush, truncate) is
timed from the follow-up's speech onset, the truncate is compared with the samples the speaker
really got, and the answer after the barge-in must contain the case's expected words
(``follows_intent``).

Latency: the question plays, then silence; voice to voice is from the end of the speech in the WAV
to the first reply sample handed to the speaker, split at the server's speech_stopped and the first
audio delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from realtalk.audio.duplex import DuplexBlock, VirtualDuplex
from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ, pcm16_to_int16, read_wav
from realtalk.audio.playback import PlaybackBuffer
from realtalk.client.session import ConnectionStatus, RealtimeSession, SessionEvent
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.errors import HandshakeRejected
from realtalk.eval.alphanumeric import with_transcription
from realtalk.eval.cases import Case
from realtalk.eval.suite import CaseContext, CaseFailed, CaseOutcome, RateLimited
from realtalk.protocol import AgentProfile
from realtalk.protocol.app_events import (
    AudioChunk,
    AudioCut,
    FlushPlayback,
    LatencyMeasured,
    ResponseFinished,
    ResponseStarted,
    ServerErrorEvent,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    TranscriptUpdated,
)

__all__ = [
    "INTERRUPTION_INSTRUCTIONS",
    "LATENCY_INSTRUCTIONS",
    "TRUNCATION_TOLERANCE_MS",
    "follows_intent",
    "run_interruption",
    "run_latency",
    "speech_bounds",
]

INTERRUPTION_INSTRUCTIONS = (
    "Answer the user in full detail: give a long, thorough answer of several sentences. "
    "If the user interrupts you, stop and answer what they say instead."
)
LATENCY_INSTRUCTIONS = "Answer the user briefly."
TRUNCATION_TOLERANCE_MS = 40
"""``truncated_at_played`` passes when the truncate is within this of the audio really played."""

_BLOCK_SAMPLES = 480  # 20 ms: a typical sound card period
_SAMPLES_PER_MS = WIRE_SAMPLE_RATE_HZ // 1000
# Speech in a WAV, by energy: 5 ms frames louder than the quietest tenth of the file by 20 dB, and
# never quieter than -55 dBFS (the built-in fixtures are digital silence around espeak's speech).
_FRAME_SAMPLES = 120
_SPEECH_FLOOR_DBFS = -55.0
_ABOVE_NOISE_DB = 20.0

_E = TypeVar("_E")


def speech_bounds(pcm: bytes) -> tuple[int, int] | None:
    """Where the speech in ``pcm`` (PCM16 mono) starts and ends, as sample indexes (end exclusive),
    found by energy in 5 ms frames; ``None`` when nothing in it is loud enough to be speech."""
    samples = pcm16_to_int16(pcm).astype(np.float64)
    frames = len(samples) // _FRAME_SAMPLES
    if frames == 0:
        return None
    rms = np.sqrt(np.mean(samples[: frames * _FRAME_SAMPLES].reshape(frames, _FRAME_SAMPLES) ** 2, axis=1))
    level_dbfs = 20 * np.log10(np.maximum(rms, 1e-3) / 32768)
    threshold_dbfs = max(_SPEECH_FLOOR_DBFS, float(np.percentile(level_dbfs, 10)) + _ABOVE_NOISE_DB)
    loud = np.flatnonzero(level_dbfs > threshold_dbfs)
    if loud.size == 0:
        return None
    return int(loud[0]) * _FRAME_SAMPLES, (int(loud[-1]) + 1) * _FRAME_SAMPLES


# --- the virtual sound card ------------------------------------------------------------------------


class _Mic:
    """The microphone: silence, and a clip from the next block on when told to play one."""

    exhausted = False  # a live input: never runs dry

    def __init__(self) -> None:
        self._clip = b""
        self._pos = 0
        self.samples_read = 0

    def play(self, pcm: bytes) -> int:
        """Play ``pcm`` from the next block on; returns the sample where it starts."""
        self._clip, self._pos = pcm, 0
        return self.samples_read

    def read(self, frames: int) -> bytes:
        want = frames * BYTES_PER_SAMPLE
        chunk = self._clip[self._pos : self._pos + want]
        self._pos += len(chunk)
        self.samples_read += frames
        return chunk + bytes(want - len(chunk))


class _Card(VirtualDuplex):
    """A ``VirtualDuplex`` that notes where on its clock each reply item's samples went out."""

    def __init__(self, mic: _Mic, playback: PlaybackBuffer, on_step: Callable[[], None]) -> None:
        super().__init__(mic, None, playback, block_samples=_BLOCK_SAMPLES)
        self.segments: dict[str, list[tuple[int, int]]] = {}  # item -> (first sample, samples) per block
        self._on_step = on_step
        self._started_s: float | None = None
        self.max_lag_ms = 0.0
        """How far the card fell behind the event loop's clock at worst (a stalled loop delays
        blocks; the driver catches up or, past 100 ms, re-anchors): the figures' uncertainty."""

    @property
    def now(self) -> int:
        """Samples stepped so far, each way: the card's clock."""
        return self.blocks_stepped * self.block_samples

    def step(self) -> DuplexBlock:
        at = self.now
        now_s = asyncio.get_running_loop().time()
        if self._started_s is None:
            self._started_s = now_s
        self.max_lag_ms = max(self.max_lag_ms, (now_s - self._started_s) * 1000 - at / _SAMPLES_PER_MS)
        block = super().step()
        # The buffer hands out an item's samples from the start of the block, items in play order.
        for item_id, samples in block.played.played:
            self.segments.setdefault(item_id, []).append((at, samples))
            at += samples
        self._on_step()
        return block

    def played(self, item_id: str, before: int | None = None) -> int:
        """Samples of ``item_id`` handed to the speaker (only those before sample ``before``)."""
        segments = self.segments.get(item_id, ())
        if before is None:
            return sum(n for _, n in segments)
        return sum(min(n, max(0, before - at)) for at, n in segments)

    def first_sample(self, item_id: str) -> int | None:
        segments = self.segments.get(item_id)
        return segments[0][0] if segments else None

    def end_sample(self, item_id: str) -> int | None:
        """The sample after the last one of ``item_id`` handed to the speaker."""
        segments = self.segments.get(item_id)
        return segments[-1][0] + segments[-1][1] if segments else None


@dataclasses.dataclass(frozen=True)
class _At:
    sample: int  # the card's clock when the event arrived
    seq: int  # arrival order among all events
    event: SessionEvent


class _Rig:
    """A session, a voice loop and a card driven at real time; records events on the card's clock."""

    def __init__(self, ctx: CaseContext, profile: AgentProfile) -> None:
        self.ctx = ctx
        self.session = RealtimeSession(
            ctx.endpoint, ctx.credential, profile=profile, prices=ctx.prices, reconnect=False
        )
        self.mic = _Mic()
        self.playback = PlaybackBuffer()
        self.card = _Card(self.mic, self.playback, self._stepped)
        self.on_step: Callable[[], None] | None = None
        self.events: list[_At] = []
        self.truncates: list[dict[str, Any]] = []
        self._audio_items: set[str] = set()
        self.errors: list[str] = []
        self.changed = asyncio.Event()
        self._rate_limited: str | None = None
        self._closed_error: str | None = None
        self.server_model: str | None = None  # the model version the server says it runs
        self._loop: VoiceLoop | None = None
        self._driver: PacedDriver | None = None
        self._deadline = 0.0
        self.session.on_event(self._on_event)
        self.session.on_frame(self._on_frame)

    async def __aenter__(self) -> _Rig:
        try:
            await self.session.start()
        except HandshakeRejected as exc:
            if exc.status == 429:
                raise RateLimited(str(exc)) from exc
            raise
        self._deadline = asyncio.get_running_loop().time() + self.ctx.timeout_s
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._driver is not None:
                await self._driver.stop()
            if self._loop is not None:
                self._loop.stop()
        finally:
            await self.session.close("eval case done")

    def start(self, clip: bytes) -> None:
        """Start the card with ``clip`` on the microphone from its first sample."""
        self.mic.play(clip)
        self._loop = VoiceLoop(self.session, self.card, self.playback)
        self._driver = PacedDriver(self.card, speed=1.0)
        self._loop.start()
        self._driver.start()

    # -- recording ----------------------------------------------------------------------------------

    def _stepped(self) -> None:
        if self.on_step is not None:
            self.on_step()
        self.changed.set()

    def _on_event(self, event: SessionEvent) -> None:
        # Kept: every event but the transcript's (read from the conversation) and an item's audio
        # after its first chunk (the audio is the playback buffer's to keep).
        if isinstance(event, AudioChunk):
            if event.item_id not in self._audio_items:
                self._audio_items.add(event.item_id)
                self.events.append(_At(self.card.now, len(self.events), event))
        elif not isinstance(event, TranscriptUpdated):
            self.events.append(_At(self.card.now, len(self.events), event))
        if isinstance(event, ServerErrorEvent) and not event.harmless:
            if event.error.code == "rate_limit_exceeded":
                self._rate_limited = str(event.error)
            self.errors.append(f"server error: {event.error}")
        elif isinstance(event, ConnectionStatus) and event.state == "closed" and event.error is not None:
            self._closed_error = str(event.error)
        elif isinstance(event, SessionReady):
            self.server_model = event.model
        self.changed.set()

    def _on_frame(self, direction: str, text: str) -> None:
        # Only the truncate is wanted: the audio_end_ms the server was told.
        if direction == "out" and '"conversation.item.truncate"' in text:
            with contextlib.suppress(ValueError):
                self.truncates.append(json.loads(text))

    def of(self, kind: type[_E]) -> list[tuple[_At, _E]]:
        return [(at, at.event) for at in self.events if isinstance(at.event, kind)]

    def first(self, kind: type[_E], after_seq: int = -1) -> tuple[_At, _E] | None:
        return next(((at, e) for at, e in self.of(kind) if at.seq > after_seq), None)

    def finished(self, response_id: str) -> ResponseFinished | None:
        return next((e for _, e in self.of(ResponseFinished) if e.response_id == response_id), None)

    def final_text(self, role: str, item_ids: set[str] | None = None) -> str | None:
        """The final transcript lines of ``role`` (of ``item_ids`` only), joined; None if none yet."""
        lines = [
            line.text
            for line in self.session.protocol.conversation.transcript_lines()
            if line.role == role and line.final and (item_ids is None or line.item_id in item_ids)
        ]
        return " ".join(lines) if lines else None

    def items_of(self, response_id: str) -> set[str]:
        return {e.item_id for _, e in self.of(AudioChunk) if e.response_id == response_id}

    # -- waiting ------------------------------------------------------------------------------------

    def fail(self, message: str) -> CaseFailed:
        return CaseFailed(message, cost_usd=self.session.total_cost_usd)

    async def until(self, done: Callable[[], bool], waiting_for: Callable[[], str]) -> None:
        """Wait until ``done()``; RateLimited on a rate limit, CaseFailed on a closed connection or
        at the case's deadline (naming ``waiting_for()``)."""
        loop = asyncio.get_running_loop()
        while True:
            if self._rate_limited is not None:
                raise RateLimited(self._rate_limited)
            if done():
                return
            if self._closed_error is not None:
                raise self.fail(
                    f"the connection closed while waiting for {waiting_for()}: {self._closed_error}"
                )
            remaining = self._deadline - loop.time()
            if remaining <= 0:
                errors = f" ({'; '.join(self.errors)})" if self.errors else ""
                raise self.fail(
                    f"timed out after {self.ctx.timeout_s:g} s waiting for {waiting_for()}{errors}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


# --- helpers ---------------------------------------------------------------------------------------


def _ms(samples: float) -> float:
    return round(samples / _SAMPLES_PER_MS, 1)


def _load(path: Path) -> bytes:
    try:
        pcm, rate_hz, channels = read_wav(path)
    except (OSError, EOFError, ValueError) as exc:
        raise CaseFailed(f"{path}: cannot read the WAV file ({exc})") from exc
    if rate_hz != WIRE_SAMPLE_RATE_HZ or channels != 1:
        raise CaseFailed(f"{path}: {rate_hz} Hz, {channels} channel(s); eval cases need 24 kHz mono")
    return pcm


def _bounds(path: Path) -> tuple[bytes, tuple[int, int]]:
    pcm = _load(path)
    bounds = speech_bounds(pcm)
    if bounds is None:
        raise CaseFailed(f"{path}: no speech found in the WAV file (it is silent or too quiet)")
    return pcm, bounds


def _profile(ctx: CaseContext, case: Case, instructions: str) -> AgentProfile:
    """``ctx.profile`` with input transcription, ``instructions`` (and the case's) after its own,
    and 24 kHz PCM audio both ways (the card's clock counts 24 kHz samples)."""
    if ctx.profile.turn_detection is None:
        raise CaseFailed(
            f"the {case.suite} suite needs server turn detection, but the profile turns it off "
            "(push-to-talk): use a profile with server_vad or semantic_vad"
        )
    if case.instructions:
        instructions = f"{instructions}\n\n{case.instructions}"
    profile = with_transcription(ctx.profile, instructions, ctx.transcription_model)
    return dataclasses.replace(
        profile, input_format="pcm24k", output_format="pcm24k", output_modality="audio"
    )


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


def _stem(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("es", ""), ("ed", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    return word


def follows_intent(expected: str, answer: str) -> bool:
    """Whether ``answer`` speaks to the new request: every term of ``expected`` (space-separated;
    a term may list alternatives, ``table|book|reservation``) occurs in it as a word, compared
    case-insensitively after a light stemming (a plural, -ing or -ed: "cat" matches "cats",
    "book" matches "booking")."""
    said = {_stem(word) for word in _words(answer)}
    terms = [[_stem(option) for option in term.split("|") if option] for term in expected.split()]
    return all(any(option in said for option in options) for options in terms)


# --- interruption ------------------------------------------------------------------------------


async def run_interruption(case: Case, ctx: CaseContext) -> CaseOutcome:
    """Speak the question, talk over the reply once ``case.interrupt_after_ms`` of it has played,
    and time the barge-in; see the module docstring.

    Metrics: onset_to_speech_started_ms, onset_to_silent_ms, truncation_error_ms,
    played_before_barge_in_ms; checks: truncated_at_played, follows_new_intent. Raises
    ``CaseFailed`` when the reply is too short to be interrupted there, or something does not come
    within ``ctx.timeout_s``; ``RateLimited`` on a rate limit.
    """
    if case.followup_audio is None or case.interrupt_after_ms is None:
        raise CaseFailed(
            f"case {case.id} has no follow-up: an interruption case needs followup_text and "
            "interrupt_after_ms"
        )
    question, (_, question_end) = _bounds(case.audio)
    followup, (followup_lead, _) = _bounds(case.followup_audio)
    profile = _profile(ctx, case, INTERRUPTION_INSTRUCTIONS)
    target_samples = case.interrupt_after_ms * _SAMPLES_PER_MS

    async with _Rig(ctx, profile) as rig:
        card = rig.card
        reply: list[AudioChunk] = []  # the first reply's first chunk, once it came
        followup_start: list[int] = []

        def barge_in_when_due() -> None:
            # On the card's clock: right after the block that took the reply to interrupt_after_ms.
            if reply and not followup_start and card.played(reply[0].item_id) >= target_samples:
                followup_start.append(rig.mic.play(followup))

        rig.on_step = barge_in_when_due
        rig.start(question)

        def reply_came() -> bool:
            first = rig.first(AudioChunk)
            if first is not None and not reply:
                reply.append(first[1])
            return bool(reply)

        await rig.until(reply_came, lambda: "the reply to the question")
        item_id, response_id = reply[0].item_id, reply[0].response_id

        def interrupted_or_too_short() -> bool:
            if followup_start:
                return True
            done = rig.finished(response_id)
            received = rig.playback.received_samples(item_id)
            if done is not None and card.played(item_id) >= received:
                raise rig.fail(
                    f"the reply was only {_ms(received):g} ms long: it ended before "
                    f"interrupt_after_ms ({case.interrupt_after_ms} ms) of it had played; the case "
                    "needs a question with a longer answer, or a smaller interrupt_after_ms"
                )
            return False

        await rig.until(
            interrupted_or_too_short, lambda: f"{case.interrupt_after_ms} ms of the reply to play"
        )
        onset = followup_start[0] + followup_lead

        def barge_in_heard() -> tuple[_At, SpeechStarted] | None:
            return next(((at, e) for at, e in rig.of(SpeechStarted) if at.sample >= followup_start[0]), None)

        await rig.until(
            lambda: barge_in_heard() is not None, lambda: "the server's speech_started for the barge-in"
        )
        started = barge_in_heard()
        assert started is not None
        started_at, speech_started = started
        if not any(e.item_id == item_id for _, e in rig.of(FlushPlayback)):
            raise rig.fail(
                f"the reply ({_ms(card.played(item_id)):g} ms) had finished playing before the server "
                "heard the barge-in: it is too short to be interrupted; the case needs a question with "
                "a longer answer, or a smaller interrupt_after_ms"
            )

        def answer() -> tuple[str | None, str | None, str | None]:
            """(the barge-in's transcript, the answer's response id, the answer's transcript)"""
            transcript = rig.final_text("user", {speech_started.item_id})
            created = rig.first(ResponseStarted, after_seq=started_at.seq)
            if created is None:
                return transcript, None, None
            answer_id = created[1].response_id
            if rig.finished(answer_id) is None:
                return transcript, answer_id, None
            return transcript, answer_id, rig.final_text("assistant", rig.items_of(answer_id)) or ""

        def answered() -> bool:
            transcript, _, text = answer()
            return transcript is not None and text is not None

        def still_missing() -> str:
            transcript, answer_id, text = answer()
            missing = [] if transcript is not None else ["the barge-in's input transcript"]
            if answer_id is None:
                missing.append("the answer after the barge-in")
            elif text is None:
                missing.append("the end of the answer after the barge-in")
            return " and ".join(missing)

        await rig.until(answered, still_missing)
        transcript, answer_id, answer_text = answer()
        assert answer_id is not None and answer_text is not None

        played = card.played(item_id)
        reply_first_played = card.first_sample(item_id)
        silent_at = card.end_sample(item_id)
        truncate = next((t for t in rig.truncates if t.get("item_id") == item_id), None)
        cut = next((e for _, e in rig.of(AudioCut) if e.item_id == item_id), None)
        audio_end_ms: int | None = None
        if truncate is not None and isinstance(truncate.get("audio_end_ms"), int):
            audio_end_ms = truncate["audio_end_ms"]
        elif cut is not None:
            audio_end_ms = cut.heard_ms
        error_ms = None if audio_end_ms is None else round(abs(audio_end_ms - played / _SAMPLES_PER_MS), 1)
        item = rig.session.protocol.conversation.item(item_id)
        first_finished = rig.finished(response_id)
        answer_audio = [card.first_sample(i) for i in rig.items_of(answer_id)]
        answer_first_played = min((s for s in answer_audio if s is not None), default=None)
        cost = rig.session.total_cost_usd

    return CaseOutcome(
        transcript=transcript,
        reply=answer_text,
        cost_usd=cost,
        # Voice to voice of the question's reply (the one interrupted), as the latency suite's.
        latency_ms=None if reply_first_played is None else _ms(reply_first_played - question_end),
        metrics={
            "onset_to_speech_started_ms": _ms(started_at.sample - onset),
            "onset_to_silent_ms": None if silent_at is None else _ms(silent_at - onset),
            "truncation_error_ms": error_ms,
            "played_before_barge_in_ms": _ms(card.played(item_id, before=onset)),
        },
        checks={
            "truncated_at_played": None if error_ms is None else error_ms <= TRUNCATION_TOLERANCE_MS,
            "follows_new_intent": follows_intent(case.expected, answer_text),
        },
        details={
            "server_model": rig.server_model,
            "interrupt_after_ms": case.interrupt_after_ms,
            "interrupted_reply": item.text if item is not None else None,
            "interrupted_reply_heard": item.heard_text if item is not None else None,
            "interrupted_reply_status": None if first_finished is None else first_finished.status,
            "interrupted_reply_played_ms": _ms(played),
            "interrupted_reply_received_ms": _ms(rig.playback.received_samples(item_id)),
            "truncate_audio_end_ms": None if truncate is None else truncate.get("audio_end_ms"),
            "audio_cut_heard_ms": None if cut is None else cut.heard_ms,
            # Times on the card's clock, in ms since its first block.
            "followup_start_at_ms": _ms(followup_start[0]),
            "onset_at_ms": _ms(onset),
            "speech_started_at_ms": _ms(started_at.sample),
            "silent_at_ms": None if silent_at is None else _ms(silent_at),
            "answer_first_played_at_ms": None if answer_first_played is None else _ms(answer_first_played),
            "card_max_lag_ms": round(card.max_lag_ms, 1),
            "errors": rig.errors,
        },
        error="; ".join(rig.errors) or None,
    )


# --- latency -----------------------------------------------------------------------------------


async def run_latency(case: Case, ctx: CaseContext) -> CaseOutcome:
    """Speak the question, then silence, and time the reply; see the module docstring.

    Metrics: voice_to_voice_ms (also ``latency_ms``), vad_end_ms, first_delta_ms; check: replied.
    Raises ``CaseFailed`` when the reply or a transcript does not come within ``ctx.timeout_s``,
    ``RateLimited`` on a rate limit.
    """
    question, (_, speech_end) = _bounds(case.audio)
    profile = _profile(ctx, case, LATENCY_INSTRUCTIONS)

    async with _Rig(ctx, profile) as rig:
        card = rig.card
        rig.start(question)
        await rig.until(lambda: rig.first(AudioChunk) is not None, lambda: "the reply's first audio")
        first = rig.first(AudioChunk)
        assert first is not None
        chunk_at, chunk = first
        item_id, response_id = chunk.item_id, chunk.response_id

        def complete() -> bool:
            return (
                card.first_sample(item_id) is not None
                and rig.final_text("user") is not None
                and rig.finished(response_id) is not None
                and rig.final_text("assistant", {item_id}) is not None
            )

        def still_missing() -> str:
            missing = [] if rig.final_text("user") is not None else ["the input transcript"]
            if rig.finished(response_id) is None or rig.final_text("assistant", {item_id}) is None:
                missing.append("the end of the reply")
            if card.first_sample(item_id) is None:
                missing.append("the reply's first sample at the speaker")
            return " and ".join(missing)

        await rig.until(complete, still_missing)
        first_played = card.first_sample(item_id)
        assert first_played is not None
        stopped = [(at, e) for at, e in rig.of(SpeechStopped) if at.seq < chunk_at.seq]
        stopped_at, speech_stopped = stopped[-1] if stopped else (None, None)
        measured = rig.of(LatencyMeasured)
        transcript = rig.final_text("user")
        reply = rig.final_text("assistant", {item_id}) or ""
        finished = rig.finished(response_id)
        cost = rig.session.total_cost_usd

    voice_to_voice_ms = _ms(first_played - speech_end)
    return CaseOutcome(
        transcript=transcript,
        reply=reply,
        cost_usd=cost,
        latency_ms=voice_to_voice_ms,
        metrics={
            "voice_to_voice_ms": voice_to_voice_ms,
            "vad_end_ms": None if stopped_at is None else _ms(stopped_at.sample - speech_end),
            "first_delta_ms": None if stopped_at is None else _ms(chunk_at.sample - stopped_at.sample),
        },
        checks={"replied": bool(reply.strip()) and card.played(item_id) > 0},
        details={
            "server_model": rig.server_model,
            # Times on the card's clock, in ms since its first block.
            "speech_end_at_ms": _ms(speech_end),
            "server_speech_end_ms": None if speech_stopped is None else speech_stopped.audio_end_ms,
            "speech_stopped_at_ms": None if stopped_at is None else _ms(stopped_at.sample),
            "first_audio_at_ms": _ms(chunk_at.sample),
            "first_played_at_ms": _ms(first_played),
            # The client core's own figure (from the server's speech end, on the wall clock).
            "client_voice_to_voice_ms": (
                None if not measured else round(measured[0][1].voice_to_voice_ms, 1)
            ),
            "reply_status": None if finished is None else finished.status,
            "card_max_lag_ms": round(card.max_lag_ms, 1),
            "errors": rig.errors,
        },
        error="; ".join(rig.errors) or None,
    )
