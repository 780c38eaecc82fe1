"""Running evaluation cases against a Realtime endpoint, and writing the results.

Each case runs in its own session(s), by its suite's runner (``SUITE_RUNNERS``: ``alphanumeric.py``,
``timing.py`` for interruption and latency, ``behaviour.py`` for instructions and tools; the
contract is in ``suite.py``). Cases run concurrently up to a limit; a rate-limited case is retried
with backoff; the run's cost is the sum of each session's ``CostTracker``, and with ``max_usd`` no
case is started whose estimate would take the run past it (it and every later case are recorded
skipped). ``write_results`` writes results.json (format 2, with per-suite summaries).

This module reads no settings: the endpoint, credential, profile and prices come in as arguments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from realtalk import __version__
from realtalk.audio.pcm import read_wav
from realtalk.client.credentials import Credential
from realtalk.errors import RealtalkError
from realtalk.eval.cases import Case
from realtalk.eval.scoring import Score
from realtalk.eval.suite import CaseContext, CaseFailed, CaseOutcome, Grader, RateLimited, SuiteRun, summarise
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.endpoint import ResolvedEndpoint

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "EMULATOR_ECHO_PREFIX",
    "RESULTS_FORMAT",
    "SUITE_RUNNERS",
    "CaseResult",
    "RunResult",
    "estimate_cost",
    "estimate_cost_range",
    "results_dict",
    "run_cases",
    "suite_runner",
    "write_results",
]

DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
EMULATOR_ECHO_PREFIX = "You said:"
"""What the emulator's echo responder says before the words it heard (pass as ``reply_prefix``)."""
RESULTS_FORMAT = 2

SUITE_RUNNERS: dict[str, str] = {
    "alphanumeric": "realtalk.eval.alphanumeric:run_alphanumeric",
    "interruption": "realtalk.eval.timing:run_interruption",
    "latency": "realtalk.eval.timing:run_latency",
    "instructions": "realtalk.eval.behaviour:run_instructions",
    "tools": "realtalk.eval.behaviour:run_tools",
}
"""Each suite's runner, as ``module:function`` (imported when the suite runs)."""

# Audio tokens out per case, (budgeted, three times that): a code read back is about 3 s of speech
# (20 audio tokens a second); an interrupted case pays for its long first reply (generated faster
# than it plays, so mostly generated when the user cuts in) and the short answer after it.
REPLY_TOKENS: dict[str, tuple[int, int]] = {
    "alphanumeric": (60, 180),
    "interruption": (460, 1380),
    "latency": (100, 300),
    "instructions": (100, 300),
    "tools": (40, 120),
}
_DEFAULT_REPLY_TOKENS = (100, 300)
# Audio in is billed at about 10 tokens a second of input audio; the session's instructions add text.
_AUDIO_IN_TOKENS_PER_S = 10
_INSTRUCTION_TOKENS = 80
_TOOL_TOKENS = 60  # per function definition

Status = Literal["ok", "error", "skipped"]


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome: what was heard and replied, its figures, its cost and any error."""

    case_id: str
    suite: str
    style: str
    expected: str
    transcript: str | None = None
    reply: str | None = None
    transcript_score: Score | None = None
    reply_score: Score | None = None
    cost_usd: Decimal = Decimal(0)
    latency_ms: float | None = None
    """Voice to voice where the suite measures it (alphanumeric: last sample sent to first audio)."""
    error: str | None = None
    status: Status = "ok"
    attempts: int = 1
    metrics: dict[str, float | None] = field(default_factory=dict)
    checks: dict[str, bool | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


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
    grader_model: str | None = None
    model_version: str | None = None
    """The model the server said it runs (``session.created``), the one most cases saw."""

    @property
    def suites(self) -> list[str]:
        return list(dict.fromkeys(case.suite for case in self.cases))

    @property
    def errored(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == "error"]

    @property
    def skipped(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == "skipped"]

    def totals(self) -> dict[str, Any]:
        """Case counts, and per suite each metric's n/mean/p50/p95/min/max and each check's pass
        rate (``suite.summarise``)."""
        return {
            "cases": len(self.cases),
            "ok": sum(1 for c in self.cases if c.status == "ok"),
            "errors": len(self.errored),
            "skipped": len(self.skipped),
            "suites": summarise([_jsonable(case) for case in self.cases]),
        }


def suite_runner(suite: str) -> SuiteRun:
    """The runner of ``suite`` (a key of ``SUITE_RUNNERS``)."""
    module, _, name = SUITE_RUNNERS[suite].partition(":")
    runner: SuiteRun = getattr(importlib.import_module(module), name)
    return runner


def _audio_seconds(path: Path) -> float:
    pcm, rate, channels = read_wav(path)
    return len(pcm) / (2 * rate * channels)


def _case_cost(case: Case, prices: Prices, high: bool) -> Decimal:
    audio = [case.audio] + ([case.followup_audio] if case.followup_audio is not None else [])
    audio_in = math.ceil(sum(_audio_seconds(path) for path in audio) * _AUDIO_IN_TOKENS_PER_S)
    text_in = _INSTRUCTION_TOKENS + _TOOL_TOKENS * len(case.tools)
    reply_tokens = REPLY_TOKENS.get(case.suite, _DEFAULT_REPLY_TOKENS)[1 if high else 0]
    per_m = Decimal(1_000_000)
    return (audio_in * prices.audio_in + text_in * prices.text_in + reply_tokens * prices.audio_out) / per_m


def estimate_cost(cases: Sequence[Case], prices: Prices, *, high: bool = False) -> Decimal:
    """What running ``cases`` should cost at ``prices``: their audio in (10 tokens a second), the
    instructions and tool definitions, and each suite's budgeted reply (``REPLY_TOKENS``; with
    ``high``, three times as long)."""
    return sum((_case_cost(case, prices, high) for case in cases), Decimal(0))


def estimate_cost_range(cases: Sequence[Case], prices: Prices) -> tuple[Decimal, Decimal]:
    """(low, high): the budgeted replies, and replies three times as long."""
    return estimate_cost(cases, prices), estimate_cost(cases, prices, high=True)


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
    grader: Grader | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    suite_endpoints: Mapping[str, ResolvedEndpoint] | None = None,
) -> RunResult:
    """Run ``cases`` (each by its suite's runner) and collect the results; see the module docstring.

    ``speed`` sends the WAVs that many times faster than real time where a suite allows it (an
    emulator keeps up; a real service's VAD expects 1.0; the timing suites always run in real time).
    ``endpoint_kind`` ("azure", "emulator", ...) and ``model`` are recorded in the results. A case
    that fails is recorded with its error; the run goes on. ``reply_prefix``: a fixed preamble the
    responder says before every answer (the emulator's echo says "You said: ...";
    ``EMULATOR_ECHO_PREFIX``), removed before a reply is scored (the reply is recorded as said).
    ``grader``: a model the instructions suite asks, through the Responses API, whether a reply
    follows its instructions. ``on_result`` is called with each case's result as it ends (progress).
    ``suite_endpoints``: an endpoint per suite, instead of ``endpoint``, for the suites it names
    (the embedded emulator runs one per suite, each recogniser knowing only its suite's sentences).
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
    ctx = CaseContext(
        endpoint=endpoint,
        credential=credential,
        profile=base,
        prices=prices,
        speed=speed,
        timeout_s=timeout_s,
        reply_prefix=reply_prefix,
        transcription_model=transcription_model,
        grader=grader,
    )
    contexts = {
        suite: dataclasses.replace(ctx, endpoint=suite_endpoint)
        for suite, suite_endpoint in (suite_endpoints or {}).items()
    }

    async def one(index: int, case: Case) -> None:
        nonlocal spent, committed, stopped
        async with semaphore:
            estimate = estimate_cost([case], prices)
            async with lock:
                if stopped or (max_usd is not None and spent + committed + estimate > max_usd):
                    stopped = True
                    results[index] = skipped = _result(
                        case,
                        CaseOutcome(error=f"skipped: the run would pass --max-usd {max_usd}"),
                        "skipped",
                        0,
                    )
                    if on_result is not None:
                        on_result(skipped)
                    return
                committed += estimate
            result: CaseResult | None = None
            try:
                result = results[index] = await _attempts(case)
                if on_result is not None:
                    on_result(result)
            finally:
                async with lock:
                    committed -= estimate
                    spent += result.cost_usd if result is not None else Decimal(0)

    async def _attempts(case: Case) -> CaseResult:
        cost = Decimal(0)
        for attempt in range(1, retries + 2):
            try:
                outcome = await suite_runner(case.suite)(case, contexts.get(case.suite, ctx))
            except RateLimited as exc:
                if attempt > retries:
                    return _result(
                        case,
                        CaseOutcome(error=f"rate limited {attempt} times: {exc}", cost_usd=cost),
                        "error",
                        attempt,
                    )
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            except CaseFailed as exc:
                return _result(
                    case, CaseOutcome(error=str(exc), cost_usd=cost + exc.cost_usd), "error", attempt
                )
            except (RealtalkError, OSError, ValueError) as exc:
                return _result(
                    case, CaseOutcome(error=str(exc) or type(exc).__name__, cost_usd=cost), "error", attempt
                )
            outcome.cost_usd += cost
            return _result(case, outcome, "error" if outcome.error is not None else "ok", attempt)
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
        grader_model=grader.model if grader is not None else None,
        model_version=_most_common(r.details.get("server_model") for r in done),
    )


def _most_common(values: Iterable[Any]) -> str | None:
    counts = Counter(str(value) for value in values if value)
    return counts.most_common(1)[0][0] if counts else None


def _result(case: Case, outcome: CaseOutcome, status: Status, attempts: int) -> CaseResult:
    return CaseResult(
        case_id=case.id,
        suite=case.suite,
        style=case.style,
        expected=case.expected,
        transcript=outcome.transcript,
        reply=outcome.reply,
        transcript_score=outcome.transcript_score,
        reply_score=outcome.reply_score,
        cost_usd=outcome.cost_usd,
        latency_ms=outcome.latency_ms,
        error=outcome.error,
        status=status,
        attempts=attempts,
        metrics=dict(outcome.metrics),
        checks=dict(outcome.checks),
        details=dict(outcome.details),
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
    """The run as results.json's data (format 2; Decimals as strings), with its suites and totals."""
    data: dict[str, Any] = {"format": RESULTS_FORMAT, **_jsonable(run)}
    data["suites"] = run.suites
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
