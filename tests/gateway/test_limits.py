"""Admissions and the event-rate bucket (pure)."""

from __future__ import annotations

from realtalk.gateway.limits import Admissions, EventRateLimiter


def test_admissions_count_globally_and_per_user_and_give_slots_back() -> None:
    admissions = Admissions(max_sessions=3, max_sessions_per_user=2)
    assert admissions.admit("a") is None and admissions.admit("a") is None
    assert "per-user" in (admissions.admit("a") or "")
    assert admissions.admit("b") is None
    assert "3 concurrent sessions" in (admissions.admit("c") or "")
    admissions.release("a")
    assert admissions.admit("c") is None
    assert admissions.active == 3


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = EventRateLimiter(rate_per_s=10, burst=3, now_s=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.05) is False  # half a token refilled
    assert bucket.allow(0.1) is True
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]  # never above the burst
