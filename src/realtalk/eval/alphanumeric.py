"""The alphanumeric suite: can the deployment hear a code and read it back?

Each case's WAV (a licence plate, ticket ID, serial number, Wi-Fi password or spelled name, read
out in one style) is spoken to a fresh session whose instructions ask for the code read back and
nothing else. The input transcript and the read-back are both scored against the expected code
(``scoring.score``: exact match and character error rate after ``normalise_alphanumeric``).
"""

from __future__ import annotations

import dataclasses

from realtalk.eval.cases import Case
from realtalk.eval.scoring import score
from realtalk.eval.suite import CaseContext, CaseOutcome
from realtalk.eval.turns import speak_turn, strip_prefix
from realtalk.protocol import AgentProfile
from realtalk.protocol.session_config import InputTranscription

__all__ = ["READBACK_INSTRUCTIONS", "readback_profile", "run_alphanumeric", "with_transcription"]

READBACK_INSTRUCTIONS = (
    "You are being tested on hearing codes. The user reads out one code: a licence plate, ticket ID, "
    "serial number, password or spelled name. Reply with exactly the code you heard, character by "
    "character as written (for example XR-4892), and nothing else: no greeting, no explanation."
)


def with_transcription(base: AgentProfile, instructions: str, transcription_model: str) -> AgentProfile:
    """``base`` (voice, VAD, ...) with ``instructions`` after its own and input transcription on
    (``base``'s transcription model if it has one, else ``transcription_model``)."""
    if base.instructions:
        instructions = f"{base.instructions}\n\n{instructions}"
    transcription = base.transcription or InputTranscription(model=transcription_model)
    return dataclasses.replace(base, instructions=instructions, transcription=transcription)


def readback_profile(base: AgentProfile, case: Case, *, transcription_model: str) -> AgentProfile:
    """The session for one case: the read-back instructions (and the case's own) on ``base``."""
    instructions = READBACK_INSTRUCTIONS
    if case.instructions:
        instructions = f"{instructions}\n\n{case.instructions}"
    return with_transcription(base, instructions, transcription_model)


async def run_alphanumeric(case: Case, ctx: CaseContext) -> CaseOutcome:
    """Speak the case, score the transcript and the read-back (the responder's fixed preamble,
    ``ctx.reply_prefix``, removed first)."""
    profile = readback_profile(ctx.profile, case, transcription_model=ctx.transcription_model)
    turn = await speak_turn(case.audio, ctx, profile)
    transcript_score = score(case.expected, turn.transcript) if turn.transcript is not None else None
    reply_score = (
        score(case.expected, strip_prefix(turn.reply, ctx.reply_prefix)) if turn.reply is not None else None
    )
    return CaseOutcome(
        transcript=turn.transcript,
        reply=turn.reply,
        cost_usd=turn.cost_usd,
        latency_ms=turn.latency_ms,
        metrics={
            "transcript_cer": None if transcript_score is None else transcript_score.cer,
            "reply_cer": None if reply_score is None else reply_score.cer,
        },
        checks={
            "transcript_exact": None if transcript_score is None else transcript_score.exact,
            "reply_exact": None if reply_score is None else reply_score.exact,
        },
        transcript_score=transcript_score,
        reply_score=reply_score,
        error=turn.error,
        details={"server_model": turn.server_model},
    )
