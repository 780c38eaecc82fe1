"""Faults the emulator can inject, per instance (``EmulatorConfig.faults``) or per scenario.

Each fault reproduces something a production client meets on Azure and must survive:

=========================  ====================================================================
``session_limit_s``        (in ``EmulatorConfig``) the maximum session duration: an ``error``
                           ``session_expired`` "Your session hit the maximum duration of N
                           minutes.", then close 1001 with that reason (§1.6)
``drop_after_s``           the transport is aborted this long after the upgrade: no close frame
                           (the client sees 1006)
``drop_after_audio_ms``    the same, once this much reply audio has been sent in the session
                           (a drop in the middle of a response)
``rate_limit_from_response``  the Nth ``response.create`` (1-based) and later ones are refused:
                           ``rate_limits.updated`` showing nothing remaining, then an ``error``
                           ``rate_limit_exceeded``; no response is created
``first_audio_delay_ms``   wall-clock delay before the first audio (or text) delta of every reply
``reject_from_connection`` the Nth WebSocket handshake (1-based) and later ones get HTTP 401, as
                           when a token has expired
=========================  ====================================================================

Delays here are wall-clock seconds and are not scaled by the pacing factor: they exist to be
measured by the client under test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["Faults"]


@dataclass(frozen=True, kw_only=True)
class Faults:
    """Faults to inject; the defaults inject nothing."""

    drop_after_s: float | None = None
    drop_after_audio_ms: int | None = None
    rate_limit_from_response: int | None = None
    rate_limit_tokens_per_min: int = 40_000
    rate_limit_reset_s: float = 2.5
    first_audio_delay_ms: int = 0
    reject_from_connection: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop_after_s", "drop_after_audio_ms", "rate_limit_reset_s", "first_audio_delay_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"fault {name} must be >= 0, got {value}")
        for name in ("rate_limit_from_response", "reject_from_connection"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"fault {name} counts from 1, got {value}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, base: Faults | None = None) -> Faults:
        """Faults from a scenario's ``faults:`` mapping, over ``base``; unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown fault(s) {', '.join(unknown)}; known faults: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(base or cls(), **data)

    def rate_limited(self, response_number: int) -> bool:
        """Whether the ``response_number``-th response of a session (1-based) is refused."""
        return self.rate_limit_from_response is not None and response_number >= self.rate_limit_from_response

    def rejects(self, connection_number: int) -> bool:
        """Whether the ``connection_number``-th handshake of the instance (1-based) gets a 401."""
        return self.reject_from_connection is not None and connection_number >= self.reject_from_connection
