"""What every eval suite shares: the context a case runs in, what running it gives back, the two
failures the runner treats specially, and the catalogue of the figures suites report.

A suite runner is ``async def run(case: Case, ctx: CaseContext) -> CaseOutcome``. It opens its own
session(s) with ``ctx``, plays the case, and returns what it measured:

- ``metrics``: numbers, by name (``METRICS`` says each one's unit and which way is better); a
  metric it could not measure is ``None``;
- ``checks``: pass/fail verdicts, by name (``CHECKS`` describes each); ``None`` when not decidable;
- ``details``: anything else worth keeping in results.json (JSON-ready values only).

It raises ``RateLimited`` when the service said 429 (the runner retries with backoff) and
``CaseFailed`` for anything else that stops the case (recorded as the case's error; the run goes on).
An error that does not stop the case (a server ``error`` event mid-reply) goes in ``CaseOutcome.error``.

The runner adds the bookkeeping (status, attempts, the case's identity) and writes results.json,
whose per-suite summaries (``summarise``) the report and ``--compare`` read without knowing suites.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from realtalk.client.credentials import Credential
from realtalk.eval.cases import Case
from realtalk.eval.scoring import Score
from realtalk.percentiles import percentile
from realtalk.protocol import AgentProfile, Prices
from realtalk.protocol.endpoint import ResolvedEndpoint

__all__ = [
    "CHECKS",
    "METRICS",
    "CaseContext",
    "CaseFailed",
    "CaseOutcome",
    "Grader",
    "MetricInfo",
    "RateLimited",
    "SuiteRun",
    "percentile",
    "summarise",
]


class RateLimited(Exception):
    """The service refused the case for its rate limit (HTTP 429 or ``rate_limit_exceeded``)."""


class CaseFailed(Exception):
    """The case could not be run to the end; the message says why, for the results.

    ``cost_usd``: what the case's session(s) had cost when it failed (still billed, still counted)."""

    def __init__(self, message: str, *, cost_usd: Decimal = Decimal(0)) -> None:
        super().__init__(message)
        self.cost_usd = cost_usd


@dataclass(frozen=True)
class Grader:
    """A grader model reached through the Responses API (``POST {base}/openai/v1/responses``)."""

    endpoint: ResolvedEndpoint
    credential: Credential
    model: str


@dataclass(frozen=True)
class CaseContext:
    """Where and how a case runs; the same for every case of a run."""

    endpoint: ResolvedEndpoint
    credential: Credential
    profile: AgentProfile  # the user's base profile (voice, VAD, transcription), never None here
    prices: Prices
    speed: float = (
        1.0  # how much faster than real time input audio may be sent (suites that time things ignore it)
    )
    timeout_s: float = 30.0  # per case
    reply_prefix: str | None = (
        None  # what the responder says before every answer (the emulator's "You said:")
    )
    transcription_model: str = "gpt-4o-transcribe"
    grader: Grader | None = None  # the instructions suite's optional grader model


@dataclass
class CaseOutcome:
    """What running one case gave; see the module docstring."""

    transcript: str | None = None  # the input transcription of the (first) user turn
    reply: str | None = None  # the transcript of the reply scored (for interruption: the answer after it)
    cost_usd: Decimal = Decimal(0)
    latency_ms: float | None = None  # voice to voice: user speech end to the first reply audio
    metrics: dict[str, float | None] = field(default_factory=dict)
    checks: dict[str, bool | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    transcript_score: Score | None = None  # alphanumeric only
    reply_score: Score | None = None  # alphanumeric only
    error: str | None = None


SuiteRun = Callable[[Case, CaseContext], Awaitable[CaseOutcome]]


@dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: Literal["ms", "ratio", "count"]
    better: Literal["lower", "higher"]
    description: str


METRICS: dict[str, MetricInfo] = {
    # alphanumeric
    "transcript_cer": MetricInfo(
        "CER of the input transcript", "ratio", "lower", "character error rate after normalisation"
    ),
    "reply_cer": MetricInfo(
        "CER of the read-back", "ratio", "lower", "character error rate after normalisation"
    ),
    # interruption
    "onset_to_speech_started_ms": MetricInfo(
        "onset → speech_started",
        "ms",
        "lower",
        "from the barge-in's speech onset at the microphone to the server's speech_started at the client",
    ),
    "onset_to_silent_ms": MetricInfo(
        "onset → playback silent",
        "ms",
        "lower",
        "from the barge-in's speech onset to the last sample of the interrupted reply leaving the speaker",
    ),
    "truncation_error_ms": MetricInfo(
        "truncation error",
        "ms",
        "lower",
        "|the audio_end_ms sent in conversation.item.truncate - the reply audio actually played|",
    ),
    "played_before_barge_in_ms": MetricInfo(
        "reply played before the barge-in", "ms", "lower", "reply audio played when the user started speaking"
    ),
    # latency
    "voice_to_voice_ms": MetricInfo(
        "voice to voice", "ms", "lower", "from the end of the user's speech to the first reply sample played"
    ),
    "vad_end_ms": MetricInfo(
        "VAD end",
        "ms",
        "lower",
        "from the end of the user's speech to the server's speech_stopped at the client",
    ),
    "first_delta_ms": MetricInfo(
        "first audio delta",
        "ms",
        "lower",
        "from the server's speech_stopped to the reply's first audio delta at the client",
    ),
    # instructions
    "reply_words": MetricInfo("words in the reply", "count", "lower", "words in the reply's transcript"),
}

CHECKS: dict[str, str] = {
    "transcript_exact": "the input transcript matches the expected code exactly (after normalisation)",
    "reply_exact": "the read-back matches the expected code exactly (after normalisation)",
    "truncated_at_played": "the truncate's audio_end_ms is within 40 ms of the audio played",
    "follows_new_intent": "the answer after the barge-in speaks to what the user said over the reply",
    "replied": "a reply was heard",
    "language": "the reply is in the language the instructions ask for",
    "max_words": "the reply has no more words than the instructions allow",
    "max_sentences": "the reply has no more sentences than the instructions allow",
    "refusal": "the reply declines the forbidden topic",
    "must_include": "the reply contains every required phrase",
    "must_not_include": "the reply contains none of the forbidden phrases",
    "grader": "a grader model judged the reply to follow the instructions",
    "tool_called": "the model called a tool when one was expected (or none when none was)",
    "right_tool": "the model called the expected tool",
    "right_arguments": "the tool's arguments match the expected ones",
}


def summarise(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-suite summaries of results.json's ``cases`` (dicts): for each suite, its case counts,
    each metric's n, mean, p50, p95, min and max, and each check's n, passed and rate.

    Takes the JSON form so the report and ``--compare`` can summarise any results file."""
    out: dict[str, Any] = {}
    for case in cases:
        suite = out.setdefault(
            case["suite"], {"cases": 0, "ok": 0, "errors": 0, "skipped": 0, "metrics": {}, "checks": {}}
        )
        suite["cases"] += 1
        status = case.get("status", "ok")
        suite[{"ok": "ok", "error": "errors", "skipped": "skipped"}.get(status, "errors")] += 1
        for name, value in (case.get("metrics") or {}).items():
            bucket = suite["metrics"].setdefault(name, [])
            if value is not None:
                bucket.append(float(value))
        for name, verdict in (case.get("checks") or {}).items():
            bucket = suite["checks"].setdefault(name, [])
            if verdict is not None:
                bucket.append(bool(verdict))
    for suite in out.values():
        suite["metrics"] = {
            name: {
                "n": len(values),
                "mean": sum(values) / len(values) if values else None,
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "min": min(values, default=None),
                "max": max(values, default=None),
            }
            for name, values in suite["metrics"].items()
        }
        suite["checks"] = {
            name: {
                "n": len(verdicts),
                "passed": sum(verdicts),
                "rate": sum(verdicts) / len(verdicts) if verdicts else None,
            }
            for name, verdicts in suite["checks"].items()
        }
    return out
