"""Running evaluation cases against a Realtime endpoint, and writing the results.

Each case gets a fresh ``RealtimeSession``: its instructions ask the model to read back exactly the
code it heard, input transcription is on, and the case's WAV is sent paced like a microphone (in
real time, or ``speed`` times faster for an emulator), then silence, until both the input
transcript and the reply's transcript are in (or ``timeout_s`` passes). Both are scored with
``eval.scoring.score``. Cases run concurrently up to a limit; a rate-limited case is retried with
backoff; the run's cost comes from each session's ``CostTracker``, and with ``max_usd`` no case is
started whose estimate would take the run past it (it and every later case are recorded skipped).

This module reads no settings: the endpoint, credential, profile and prices come in as arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from realtalk import __version__
from realtalk.audio.pcm import read_wav
from realtalk.client.credentials import Credential
from realtalk.client.session import ConnectionStatus, RealtimeSession, SessionEvent
from realtalk.errors import HandshakeRejected, RealtalkError
from realtalk.eval.cases import Case
from realtalk.eval.scoring import Score, score
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.app_events import (
    AudioChunk,
    ResponseFinished,
    ServerErrorEvent,
    TranscriptUpdated,
)
from realtalk.protocol.endpoint import ResolvedEndpoint
from realtalk.protocol.session_config import InputTranscription

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "EMULATOR_ECHO_PREFIX",
    "READBACK_INSTRUCTIONS",
    "REPLY_TOKENS",
    "CaseResult",
    "RunResult",
    "estimate_cost",
    "estimate_cost_range",
    "readback_profile",
    "run_cases",
    "write_results",
]

READBACK_INSTRUCTIONS = (
    "You are being tested on hearing codes. The user reads out one code: a licence plate, ticket ID, "
    "serial number, password or spelled name. Reply with exactly the code you heard, character by "
    "character as written (for example XR-4892), and nothing else: no greeting, no explanation."
)
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
EMULATOR_ECHO_PREFIX = "You said:"
"""What the emulator's echo responder says before the words it heard (pass as ``reply_prefix``)."""

# The budgeted reply: a code read back is a few words; 60 audio tokens is about 3 s of speech
# (20 audio tokens a second), the range's upper end allows three times that.
REPLY_TOKENS = 60
_REPLY_TOKENS_HIGH = 180
# Audio in is billed at about 10 tokens a second of input audio; the session's instructions add text.
_AUDIO_IN_TOKENS_PER_S = 10
_INSTRUCTION_TOKENS = 80
_CHUNK_MS = 100
_WIRE_RATE = 24_000
_BYTES_PER_MS = _WIRE_RATE * 2 // 1000

Status = Literal["ok", "error", "skipped"]


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome: what was heard and read back, the scores, its cost and any error."""

    case_id: str
    suite: str
    style: str
    expected: str
    transcript: str | None
    readback: str | None
    transcript_score: Score | None
    readback_score: Score | None
    cost_usd: Decimal
    latency_ms: float | None
    """Wall time from the last sample of the case's WAV sent to the reply's first audio."""
    error: str | None
    status: Status = "ok"
    attempts: int = 1


@dataclass(frozen=True)
class RunResult:
    """A run's metadata and every case (in the order given)."""

    started_at: str
    deployment: str
    model: str
    voice: str
    vad: dict[str, Any] | None
    realtalk_version: str
    endpoint_kind: str
    cases: list[CaseResult]
    cost_usd: Decimal
    duration_s: float = 0.0
    transcription_model: str | None = None
    max_usd: Decimal | None = None
    concurrency: int = 1

    @property
    def errored(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == "error"]

    @property
    def skipped(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == "skipped"]

    def totals(self) -> dict[str, Any]:
        """Exact-match rates and mean CERs over the scored cases, for transcript and read-back."""
        out: dict[str, Any] = {
            "cases": len(self.cases),
            "ok": sum(1 for c in self.cases if c.status == "ok"),
            "errors": len(self.errored),
            "skipped": len(self.skipped),
        }
        for name in ("transcript", "readback"):
            scores = [s for c in self.cases if (s := getattr(c, f"{name}_score")) is not None]
            out[f"{name}_scored"] = len(scores)
            out[f"{name}_exact_rate"] = sum(s.exact for s in scores) / len(scores) if scores else None
            out[f"{name}_mean_cer"] = sum(s.cer for s in scores) / len(scores) if scores else None
        return out


def readback_profile(
    base: AgentProfile | None, case: Case, *, transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL
) -> AgentProfile:
    """The session for one case: ``base`` (voice, VAD, ...) with the read-back instructions and
    input transcription on (``base``'s transcription model if it has one)."""
    base = base or AgentProfile()
    instructions = READBACK_INSTRUCTIONS
    if base.instructions:
        instructions = f"{base.instructions}\n\n{instructions}"
    if case.instructions:
        instructions = f"{instructions}\n\n{case.instructions}"
    transcription = base.transcription or InputTranscription(model=transcription_model)
    return dataclasses.replace(base, instructions=instructions, transcription=transcription)


def _audio_seconds(case: Case) -> float:
    pcm, rate, channels = read_wav(case.audio)
    return len(pcm) / (2 * rate * channels)


def _case_cost(case: Case, prices: Prices, reply_tokens: int) -> Decimal:
    audio_in = math.ceil(_audio_seconds(case) * _AUDIO_IN_TOKENS_PER_S)
    per_m = Decimal(1_000_000)
    return (
        audio_in * prices.audio_in + _INSTRUCTION_TOKENS * prices.text_in + reply_tokens * prices.audio_out
    ) / per_m


def estimate_cost(cases: Sequence[Case], prices: Prices, *, reply_tokens: int = REPLY_TOKENS) -> Decimal:
    """What running ``cases`` should cost: their audio in (10 tokens a second), the instructions,
    and a reply of ``reply_tokens`` audio tokens out, at ``prices``."""
    return sum((_case_cost(case, prices, reply_tokens) for case in cases), Decimal(0))


def estimate_cost_range(cases: Sequence[Case], prices: Prices) -> tuple[Decimal, Decimal]:
    """(low, high): the budgeted reply, and a reply three times as long."""
    return estimate_cost(cases, prices), estimate_cost(cases, prices, reply_tokens=_REPLY_TOKENS_HIGH)


class _RateLimited(Exception):
    pass


class _CaseFailed(Exception):
    pass


@dataclass
class _Turn:
    transcript: str | None = None
    readback: str | None = None
    reply_done: bool = False
    first_audio_s: float | None = None
    error: str | None = None
    rate_limited: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: SessionEvent) -> None:
        if isinstance(event, TranscriptUpdated):
            for line in event.lines:
                if line.role == "user" and line.final:
                    self.transcript = line.text
                elif line.role == "assistant" and line.final:
                    self.readback = line.text
        elif isinstance(event, AudioChunk):
            if self.first_audio_s is None:
                self.first_audio_s = time.monotonic()
        elif isinstance(event, ResponseFinished):
            self.reply_done = True
            if event.status not in (None, "completed"):
                self.error = f"the response ended {event.status}" + (
                    f" ({event.reason})" if event.reason else ""
                )
        elif isinstance(event, ServerErrorEvent) and not event.harmless:
            if event.error.code == "rate_limit_exceeded":
                self.rate_limited = True
            self.error = f"server error: {event.error}"
        elif isinstance(event, ConnectionStatus) and event.state == "closed" and event.error is not None:
            self.error = f"connection closed: {event.error}"
        self.changed.set()

    @property
    def complete(self) -> bool:
        return self.transcript is not None and self.reply_done and self.readback is not None


async def _run_one(
    case: Case,
    *,
    endpoint: ResolvedEndpoint,
    credential: Credential,
    profile: AgentProfile,
    prices: Prices,
    speed: float,
    timeout_s: float,
) -> tuple[_Turn, Decimal, float | None]:
    pcm, rate, channels = read_wav(case.audio)
    if rate != _WIRE_RATE or channels != 1:
        raise _CaseFailed(f"{case.audio}: {rate} Hz, {channels} channel(s); eval cases need 24 kHz mono")
    turn = _Turn()
    chunk = _CHUNK_MS * _BYTES_PER_MS
    interval_s = _CHUNK_MS / 1000 / speed
    session = RealtimeSession(endpoint, credential, profile=profile, prices=prices, reconnect=False)
    session.on_event(turn.on_event)
    try:
        await session.start()
    except HandshakeRejected as exc:
        if exc.status == 429:
            raise _RateLimited(str(exc)) from exc
        raise
    try:
        deadline = time.monotonic() + timeout_s
        next_at = time.monotonic()
        for start in range(0, len(pcm), chunk):
            session.append_audio(pcm[start : start + chunk])
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if turn.error is not None:
                break
        speech_end_s = time.monotonic()
        quiet = bytes(chunk)
        while not turn.complete and turn.error is None:
            if time.monotonic() >= deadline:
                missing = [
                    n
                    for n, v in (("input transcript", turn.transcript), ("reply", turn.readback))
                    if v is None
                ]
                raise _CaseFailed(
                    f"timed out after {timeout_s:g} s waiting for the {' and the '.join(missing)}"
                )
            session.append_audio(quiet)
            next_at += interval_s
            turn.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.changed.wait(), max(0.0, next_at - time.monotonic()))
        if turn.rate_limited:
            raise _RateLimited(turn.error or "rate limited")
        latency = (turn.first_audio_s - speech_end_s) * 1000 if turn.first_audio_s is not None else None
        return turn, session.total_cost_usd, latency
    finally:
        await session.close("eval case done")


async def run_cases(
    cases: Sequence[Case],
    *,
    endpoint: ResolvedEndpoint,
    credential: Credential,
    profile: AgentProfile | None,
    prices: Prices,
    concurrency: int = 4,
    max_usd: Decimal | None = None,
    retries: int = 2,
    speed: float = 1.0,
    timeout_s: float = 30.0,
    backoff_s: float = 2.0,
    endpoint_kind: str = "azure",
    model: str | None = None,
    transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL,
    reply_prefix: str | None = None,
) -> RunResult:
    """Run ``cases`` (each in its own session) and score them; see the module docstring.

    ``speed`` sends the WAVs that many times faster than real time (an emulator keeps up; a real
    service's VAD expects 1.0). ``endpoint_kind`` ("azure", "emulator", ...) and ``model`` are
    recorded in the results. A case that fails is recorded with its error; the run goes on.
    ``reply_prefix``: a fixed preamble the responder says before every read-back (the emulator's
    echo says "You said: ..."; ``EMULATOR_ECHO_PREFIX``), removed before the read-back is scored
    (case-insensitive; the reply is recorded as said).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    started = datetime.now(UTC)
    t0 = time.monotonic()
    semaphore = asyncio.Semaphore(concurrency)
    results: list[CaseResult | None] = [None] * len(cases)
    spent = Decimal(0)
    committed = Decimal(0)  # estimates of the cases running now
    stopped = False
    lock = asyncio.Lock()
    base = profile or AgentProfile()

    async def one(index: int, case: Case) -> None:
        nonlocal spent, committed, stopped
        async with semaphore:
            estimate = estimate_cost([case], prices)
            async with lock:
                if stopped or (max_usd is not None and spent + committed + estimate > max_usd):
                    stopped = True
                    results[index] = _skipped(case, max_usd)
                    return
                committed += estimate
            result: CaseResult | None = None
            try:
                result = results[index] = await _attempts(case)
            finally:
                async with lock:
                    committed -= estimate
                    spent += result.cost_usd if result is not None else Decimal(0)

    async def _attempts(case: Case) -> CaseResult:
        case_profile = readback_profile(base, case, transcription_model=transcription_model)
        cost = Decimal(0)
        for attempt in range(1, retries + 2):
            try:
                turn, case_cost, latency = await _run_one(
                    case,
                    endpoint=endpoint,
                    credential=credential,
                    profile=case_profile,
                    prices=prices,
                    speed=speed,
                    timeout_s=timeout_s,
                )
            except _RateLimited as exc:
                if attempt > retries:
                    return _failed(case, f"rate limited {attempt} times: {exc}", cost, attempt)
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            except (_CaseFailed, RealtalkError, OSError, ValueError) as exc:
                return _failed(case, str(exc) or type(exc).__name__, cost, attempt)
            cost += case_cost
            return CaseResult(
                case_id=case.id,
                suite=case.suite,
                style=case.style,
                expected=case.expected,
                transcript=turn.transcript,
                readback=turn.readback,
                transcript_score=score(case.expected, turn.transcript)
                if turn.transcript is not None
                else None,
                readback_score=(
                    score(case.expected, _without_prefix(turn.readback, reply_prefix))
                    if turn.readback is not None
                    else None
                ),
                cost_usd=cost,
                latency_ms=latency,
                error=turn.error,
                status="error" if turn.error is not None else "ok",
                attempts=attempt,
            )
        raise AssertionError("unreachable")

    # Cases start in order (a semaphore queues its waiters first come, first served), so with
    # max_usd the ones skipped are the last ones.
    async with asyncio.TaskGroup() as group:
        for index, case in enumerate(cases):
            group.create_task(one(index, case))
            await asyncio.sleep(0)
    done = [r for r in results if r is not None]
    vad = base.turn_detection
    return RunResult(
        started_at=started.isoformat(timespec="seconds"),
        deployment=endpoint.deployment,
        model=model or endpoint.deployment,
        voice=str(base.voice),
        vad=None if vad is None else {"type": type(vad).__name__, **dataclasses.asdict(vad)},
        realtalk_version=__version__,
        endpoint_kind=endpoint_kind,
        cases=done,
        cost_usd=sum((r.cost_usd for r in done), Decimal(0)),
        duration_s=round(time.monotonic() - t0, 3),
        transcription_model=(base.transcription.model if base.transcription else transcription_model),
        max_usd=max_usd,
        concurrency=concurrency,
    )


def _without_prefix(reply: str, prefix: str | None) -> str:
    stripped = reply.strip()
    if prefix and stripped.casefold().startswith(prefix.casefold()):
        return stripped[len(prefix) :].strip()
    return stripped


def _failed(case: Case, error: str, cost: Decimal, attempts: int) -> CaseResult:
    return CaseResult(
        case.id,
        case.suite,
        case.style,
        case.expected,
        None,
        None,
        None,
        None,
        cost,
        None,
        error,
        "error",
        attempts,
    )


def _skipped(case: Case, max_usd: Decimal | None) -> CaseResult:
    return CaseResult(
        case.id,
        case.suite,
        case.style,
        case.expected,
        None,
        None,
        None,
        None,
        Decimal(0),
        None,
        f"skipped: the run would pass --max-usd {max_usd}",
        "skipped",
        0,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def results_dict(run: RunResult) -> dict[str, Any]:
    """The run as JSON-ready data (Decimals as strings), with its totals."""
    data: dict[str, Any] = _jsonable(run)
    data["totals"] = run.totals()
    return data


def write_results(run: RunResult, folder: Path) -> Path:
    """Write ``folder/eval-<UTC date-time>/results.json`` and return its path."""
    stamp = datetime.fromisoformat(run.started_at).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = folder / f"eval-{stamp}"
    suffix = 1
    while out_dir.exists():
        suffix += 1
        out_dir = folder / f"eval-{stamp}-{suffix}"
    out_dir.mkdir(parents=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(results_dict(run), indent=2) + "\n", encoding="utf-8")
    return path
