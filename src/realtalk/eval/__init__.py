"""Evaluation of a Realtime deployment (issue 18): scoring now; suites and ``realtalk eval`` later.

``scoring`` is pure: no I/O, no clock, no environment, and it imports nothing from realtalk.
"""

from __future__ import annotations

from .scoring import Score, char_error_rate, edit_distance, normalise_alphanumeric, score

__all__ = ["Score", "char_error_rate", "edit_distance", "normalise_alphanumeric", "score"]
