"""Evaluation of a Realtime deployment (issue 18): spoken test cases, their scoring, and the runner
behind ``realtalk eval``.

``scoring`` is pure: no I/O, no clock, no environment, and it imports nothing from realtalk.
``cases`` holds the built-in suites (WAV fixtures spoken by espeak-ng, with what a good answer is)
and reads users' YAML case files. ``suite`` is the contract every suite runner keeps
(``alphanumeric``, ``timing`` for interruption and latency, ``behaviour`` for instructions and
tools); ``runner`` runs cases and writes results.json; ``report`` draws report.html; ``compare``
and ``stats`` put two runs side by side. Nothing here reads settings: values come in as arguments.
"""

from __future__ import annotations

from .cases import SUITES, Case, builtin_cases, builtin_phrases, case_phrases, load_cases
from .scoring import Score, char_error_rate, edit_distance, normalise_alphanumeric, score

__all__ = [
    "SUITES",
    "Case",
    "Score",
    "builtin_cases",
    "builtin_phrases",
    "case_phrases",
    "char_error_rate",
    "edit_distance",
    "load_cases",
    "normalise_alphanumeric",
    "score",
]
