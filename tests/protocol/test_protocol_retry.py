"""Reconnect policy: which failures are worth another attempt, and the backoff between attempts."""

from __future__ import annotations

import itertools

import pytest

from realtalk.errors import (
    ConfigError,
    ConnectionClosed,
    HandshakeRejected,
    LocalProtocolError,
    RemoteProtocolError,
    ServerError,
)
from realtalk.protocol.retry import (
    backoff_delays_s,
    classify_close,
    classify_error,
    classify_http_status,
    classify_server_error,
)


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        (1000, False),
        (1001, True),
        (1002, False),
        (1003, False),
        (1005, True),
        (1006, True),
        (1007, False),
        (1008, False),
        (1009, False),
        (1011, True),
        (1012, True),
        (1013, True),
        (1014, True),
        (1015, False),
        (4000, False),
        (None, True),
    ],
)
def test_close_codes_are_classified(code: int | None, retry: bool) -> None:
    decision = classify_close(code)
    assert decision.retry is retry
    assert decision.reason


def test_session_expiry_close_is_retried_and_says_the_conversation_starts_empty() -> None:
    decision = classify_close(1001, "Your session hit the maximum duration of 60 minutes.")
    assert decision.retry
    assert "session expired" in decision.reason and "empty conversation" in decision.reason


def test_policy_close_names_the_likely_cause() -> None:
    assert "policy" in classify_close(1008).reason


@pytest.mark.parametrize(
    ("status", "retry", "words"),
    [
        (400, False, "refused"),
        (401, False, "API key"),
        (403, False, "not allowed"),
        (404, False, "deployment name"),
        (408, True, "timed out"),
        (429, True, "rate limit"),
        (500, True, "HTTP 500"),
        (502, True, "HTTP 502"),
        (503, True, "HTTP 503"),
        (418, False, "refused"),
    ],
)
def test_http_statuses_are_classified(status: int, retry: bool, words: str) -> None:
    decision = classify_http_status(status)
    assert (decision.retry, words in decision.reason) == (retry, True)


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (
            ServerError(
                "Your session hit the maximum duration of 60 minutes.",
                code="session_expired",
                type="invalid_request_error",
            ),
            True,
        ),
        (ServerError("The server had an error.", code=None, type="server_error"), True),
        (
            ServerError(
                "Unknown parameter: 'session.temperature'.",
                code="unknown_parameter",
                type="invalid_request_error",
            ),
            False,
        ),
        (
            ServerError(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                type="invalid_request_error",
            ),
            False,
        ),
    ],
)
def test_server_error_events_are_classified(error: ServerError, retry: bool) -> None:
    assert classify_server_error(error).retry is retry


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (HandshakeRejected(401, '{"error":{"code":"401","message":"Access denied"}}'), False),
        (HandshakeRejected(429), True),
        (HandshakeRejected(503), True),
        (ConnectionClosed(1006), True),
        (ConnectionClosed(1008, "policy violation"), False),
        (ServerError("boom", type="server_error"), True),
        (ConfigError("AZURE_OPENAI_ENDPOINT is not set", variable="AZURE_OPENAI_ENDPOINT"), False),
        (LocalProtocolError("bad"), False),
        (RemoteProtocolError("bad"), False),
        (TimeoutError(), True),
        (ConnectionResetError("reset by peer"), True),
        (OSError("Name or service not known"), True),
        (ValueError("bug"), False),
    ],
)
def test_exceptions_are_classified(exc: BaseException, retry: bool) -> None:
    decision = classify_error(exc)
    assert decision.retry is retry
    assert decision.reason


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    delays = list(backoff_delays_s(random=lambda: 0.0, initial_s=0.5, max_s=5.0, max_attempts=7))
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_jitter_takes_off_at_most_the_jitter_fraction() -> None:
    delays = list(backoff_delays_s(random=lambda: 1.0, initial_s=1.0, jitter=0.5, max_attempts=3))
    assert delays == [0.5, 1.0, 2.0]


def test_backoff_is_deterministic_for_a_given_random_source() -> None:
    values = itertools.cycle([0.1, 0.7, 0.3])
    first = list(backoff_delays_s(random=lambda: next(values), max_attempts=6))
    values = itertools.cycle([0.1, 0.7, 0.3])
    assert list(backoff_delays_s(random=lambda: next(values), max_attempts=6)) == first


def test_backoff_keeps_going_without_max_attempts_and_never_exceeds_the_cap() -> None:
    delays = list(itertools.islice(backoff_delays_s(random=lambda: 0.0, max_s=30.0), 2000))
    assert len(delays) == 2000 and max(delays) == 30.0


@pytest.mark.parametrize("kwargs", [{"factor": 0.5}, {"jitter": 1.5}, {"initial_s": -1.0}])
def test_backoff_refuses_nonsense_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        backoff_delays_s(random=lambda: 0.0, **kwargs)  # type: ignore[arg-type]
