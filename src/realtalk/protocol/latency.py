"""Voice-to-voice latency: from the end of the user's speech to the first reply audio played.

The server reports where speech ended as an offset into the input audio
(``speech_stopped.audio_end_ms``, counted from the start of all audio appended this session,
§2.4). This module remembers when each chunk of input audio was sent, on the client clock, so that
offset becomes a client time; the first ``audio_played`` of the reply then gives the latency the
user actually experienced (network, model, and playback buffering included).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LatencySample", "TurnLatency"]


@dataclass(frozen=True)
class LatencySample:
    """One measured turn, in milliseconds on the client clock."""

    response_id: str
    voice_to_voice_ms: float
    first_audio_received_ms: float | None


# One per audio chunk sent: (start_ms, end_ms, sent_at_s). A tuple, because a relay makes one
# per frame and a tuple costs a fraction of a dataclass instance.
_Chunk = tuple[float, float, float]


class TurnLatency:
    """Tracks input audio timing and measures the latency of the latest user turn.

    Only the latest turn is measured: a response created after a newer turn end replaces the older
    measurement, which could no longer be attributed.
    """

    def __init__(self, *, max_chunks: int = 4096) -> None:
        # 4096 chunks of 100 ms cover almost 7 minutes; a speech end is reported within seconds.
        self._chunks: deque[_Chunk] = deque(maxlen=max_chunks)
        self._input_ms = 0.0
        self._turn_end_s: float | None = None
        self._response_id: str | None = None
        self._origin_s: float | None = None
        self._first_audio_s: float | None = None

    def audio_sent(self, samples: int, sample_rate_hz: int, now_s: float) -> None:
        """Input audio of ``samples`` samples was sent at ``now_s`` (its last sample captured then)."""
        duration_ms = samples * 1000 / sample_rate_hz
        start_ms = self._input_ms
        self._input_ms = end_ms = start_ms + duration_ms
        self._chunks.append((start_ms, end_ms, now_s))

    def speech_ended(self, audio_end_ms: int) -> None:
        """Server VAD says speech ended ``audio_end_ms`` into the session's input audio."""
        self._turn_end_s = self._client_time_of(audio_end_ms)

    def committed_manually(self) -> None:
        """A manual commit ends the turn: the user stopped when the last audio was sent."""
        if self._chunks:
            self._turn_end_s = self._chunks[-1][2]

    def response_started(self, response_id: str) -> None:
        """A response started; it is the reply to the latest turn end, if there is one."""
        if self._turn_end_s is not None:
            self._response_id, self._origin_s, self._first_audio_s = response_id, self._turn_end_s, None
            self._turn_end_s = None

    def audio_received(self, response_id: str, now_s: float) -> None:
        """Reply audio arrived at ``now_s``."""
        if response_id == self._response_id and self._first_audio_s is None:
            self._first_audio_s = now_s

    def audio_played(self, response_id: str, now_s: float) -> LatencySample | None:
        """Reply audio was played at ``now_s``; returns the measurement the first time."""
        if response_id != self._response_id or self._origin_s is None:
            return None
        origin_s, first_s = self._origin_s, self._first_audio_s
        self._response_id = self._origin_s = self._first_audio_s = None
        return LatencySample(
            response_id,
            (now_s - origin_s) * 1000.0,
            (first_s - origin_s) * 1000.0 if first_s is not None else None,
        )

    def _client_time_of(self, audio_ms: float) -> float | None:
        # A chunk sent at t ends with the sample captured at t, so an offset inside it was captured
        # (end - offset) earlier. Audio streamed faster than real time makes this an underestimate.
        for start_ms, end_ms, sent_at_s in reversed(self._chunks):
            if start_ms <= audio_ms <= end_ms:
                return sent_at_s - (end_ms - audio_ms) / 1000.0
        if self._chunks and audio_ms > self._chunks[-1][1]:
            return self._chunks[-1][2]
        return None
