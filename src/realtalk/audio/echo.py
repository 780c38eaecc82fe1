"""The echo gate: keep the agent's own voice, picked up by the microphone, away from the model.

Theory of operation. On laptop speakers the microphone hears the reply being played. Sent to the
server, that echo triggers server VAD's ``speech_started`` and the agent interrupts itself. The
gate compares levels, block by block:

- The *reference* is what the speaker played. Its level is the loudest block of the last
  ``history_ms`` (200 ms by default), which covers the acoustic delay between playing a sample and
  hearing it back (buffers plus room: typically 20-150 ms) and the room's reverberation.
- While the reference is above ``floor_dbfs`` the agent counts as speaking. A microphone block
  then passes only if it is louder than the echo estimate (reference + ``echo_path_db``) by
  ``margin_db``: a user talking over the agent. Once a user is detected the gate stays open for
  ``hold_ms`` (500 ms), so the quieter sounds and the pauses between their words pass too.
- A gated block is replaced by *silence of the same length*, never dropped: the server's timeline
  (``input_audio_buffer.speech_started.audio_start_ms`` / ``audio_end_ms``) counts the samples we
  sent, and the client maps those back to wall-clock time by the same count.

Levels are RMS over a whole block (``rms_dbfs``). The defaults keep the agent's reply looped back
at -6 dB (with up to ~150 ms of delay) out, and let a user voice 6 dB above the reply through
within a few blocks of its onset; ``--headphones`` turns the gate off. A real echo canceller
(``aec.py``, optional) removes the echo instead of muting it, so the user can be heard at any level.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from realtalk.audio.pcm import BYTES_PER_SAMPLE, SILENCE_DBFS, WIRE_SAMPLE_RATE_HZ, rms_dbfs

__all__ = ["EchoGate", "GateDecision", "GateState"]


class GateState(enum.Enum):
    IDLE = "idle"  # the agent is silent: the microphone passes unchanged
    USER = "user"  # louder than the echo estimate by the margin: passes
    HOLD = "hold"  # a user was detected less than hold_ms ago: passes
    ECHO = "echo"  # the agent is speaking and the microphone is not louder: replaced by silence


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the gate did with the last microphone block, and why (for meters, logs and tests)."""

    state: GateState
    mic_dbfs: float
    reference_dbfs: float
    # The level the microphone had to exceed; None while the agent is silent (no test was made).
    threshold_dbfs: float | None

    @property
    def passed(self) -> bool:
        return self.state is not GateState.ECHO


class EchoProcessor(Protocol):
    """Cleans the microphone of the agent's echo, block by block (e.g. ``aec.EchoCanceller``)."""

    def process(self, mic_pcm: bytes, played_pcm: bytes) -> bytes:
        """Return exactly ``len(mic_pcm)`` bytes; ``played_pcm`` is the same period's speaker output."""
        ...


class EchoGate:
    """Replace microphone blocks by silence while they are probably the agent's own echo."""

    def __init__(
        self,
        *,
        margin_db: float = 4.0,
        echo_path_db: float = -6.0,
        hold_ms: int = 500,
        floor_dbfs: float = -55.0,
        history_ms: int = 200,
        sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ,
    ) -> None:
        if hold_ms < 0 or history_ms <= 0:
            raise ValueError("hold_ms must be >= 0 and history_ms > 0")
        self.margin_db = margin_db
        self.echo_path_db = echo_path_db
        self.floor_dbfs = floor_dbfs
        self._hold_samples = hold_ms * sample_rate_hz // 1000
        self._history_samples = history_ms * sample_rate_hz // 1000
        # (samples, level) of recent reference blocks, newest last; covers at least history_ms.
        self._history: deque[tuple[int, float]] = deque()
        self._history_total = 0
        self._hold_left = 0
        self.muted_samples = 0
        self.last_decision = GateDecision(GateState.IDLE, SILENCE_DBFS, SILENCE_DBFS, None)

    @property
    def is_open(self) -> bool:
        """Whether the last microphone block reached the model."""
        return self.last_decision.passed

    @property
    def reference_dbfs(self) -> float:
        """The loudest played block of the last ``history_ms``."""
        return max((level for _, level in self._history), default=SILENCE_DBFS)

    def process(self, mic_pcm: bytes, played_pcm: bytes) -> bytes:
        """Return ``mic_pcm`` or silence of the same length; ``played_pcm`` is the same period's output.

        Either side may be empty (devices with separate input and output streams deliver them
        apart): the reference history advances with what was played, the decision is made on
        whatever microphone audio came.
        """
        if played_pcm:
            self._remember(len(played_pcm) // BYTES_PER_SAMPLE, rms_dbfs(played_pcm))
        if not mic_pcm:
            return mic_pcm
        mic_samples = len(mic_pcm) // BYTES_PER_SAMPLE
        mic_dbfs = rms_dbfs(mic_pcm)
        reference = self.reference_dbfs
        if reference <= self.floor_dbfs:
            self._hold_left = 0
            self.last_decision = GateDecision(GateState.IDLE, mic_dbfs, reference, None)
            return mic_pcm
        threshold = reference + self.echo_path_db + self.margin_db
        if mic_dbfs > threshold:
            state = GateState.USER
            self._hold_left = self._hold_samples
        elif self._hold_left > 0:
            state = GateState.HOLD
            self._hold_left = max(0, self._hold_left - mic_samples)
        else:
            state = GateState.ECHO
        self.last_decision = GateDecision(state, mic_dbfs, reference, threshold)
        if state is GateState.ECHO:
            self.muted_samples += mic_samples
            return bytes(len(mic_pcm))
        return mic_pcm

    def reset(self) -> None:
        """Forget the reference history and any hold (e.g. after the playback buffer was flushed)."""
        self._history.clear()
        self._history_total = 0
        self._hold_left = 0

    def _remember(self, samples: int, level: float) -> None:
        self._history.append((samples, level))
        self._history_total += samples
        # Drop the oldest block only while what remains still covers the whole history window.
        while self._history and self._history_total - self._history[0][0] >= self._history_samples:
            self._history_total -= self._history.popleft()[0]
