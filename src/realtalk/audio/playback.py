"""The playback buffer: reply audio waiting for the speaker, and the count of what was played.

Theory of operation. The receive task ``write``s reply audio, tagged with its conversation item,
as it arrives (never blocking: the receive loop must keep reading, or it would not see the
``speech_started`` that says the user is talking). The device side ``read``s exactly one block at a
time; whatever the buffer holds is handed to the device, the rest of the block is silence. Every
sample handed to the device is counted against its item: that count, not wall-clock time, is what
``conversation.item.truncate`` reports as heard (protocol §2.5 E). ``flush`` drops everything not yet
handed to the device, at once, and returns the per-item totals so the truncate can be computed.

Device callbacks run on another thread, so every method holds one short lock; none of them
allocates more than one block or waits on anything.

Bounded: the capacity defaults to 240 s, more than the longest reply the model can produce
(4,096 output tokens at 20 audio tokens per second is about 205 s). Audio beyond the capacity is
dropped and counted in ``overflow_samples`` rather than growing without limit.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ

__all__ = ["BlockRead", "FlushResult", "PlaybackBuffer"]


@dataclass(frozen=True, slots=True)
class BlockRead:
    """One device block: ``pcm`` is always exactly the requested length (silence-padded)."""

    pcm: bytes
    # Samples of reply audio in this block, per item, in play order (the rest is padding).
    played: tuple[tuple[str, int], ...]

    @property
    def audio_samples(self) -> int:
        return sum(n for _, n in self.played)


@dataclass(frozen=True, slots=True)
class FlushResult:
    dropped_samples: int
    # Total samples handed to the device so far, for every item that had audio in the buffer.
    played_samples: dict[str, int]


class PlaybackBuffer:
    """Bounded FIFO of (item, PCM16) chunks between the receive task and the audio device."""

    def __init__(self, *, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, capacity_s: float = 240.0) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.capacity_samples = int(capacity_s * sample_rate_hz)
        self._lock = threading.Lock()
        self._chunks: deque[tuple[str, memoryview]] = deque()
        self._queued_samples = 0
        self._played: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self.overflow_samples = 0

    def write(self, item_id: str, pcm: bytes) -> int:
        """Queue reply audio; returns the samples accepted (fewer only when the buffer is full)."""
        samples = len(pcm) // BYTES_PER_SAMPLE
        with self._lock:
            room = self.capacity_samples - self._queued_samples
            accepted = min(samples, max(room, 0))
            if accepted < samples:
                self.overflow_samples += samples - accepted
            if accepted:
                self._chunks.append((item_id, memoryview(pcm)[: accepted * BYTES_PER_SAMPLE]))
                self._queued_samples += accepted
                self._received[item_id] = self._received.get(item_id, 0) + accepted
                self._played.setdefault(item_id, 0)
            return accepted

    def read(self, frames: int) -> BlockRead:
        """Take one block of ``frames`` samples for the device (called from the device thread)."""
        want = frames * BYTES_PER_SAMPLE
        out = bytearray(want)
        played: list[tuple[str, int]] = []
        pos = 0
        with self._lock:
            while pos < want and self._chunks:
                item_id, view = self._chunks[0]
                take = min(len(view), want - pos)
                out[pos : pos + take] = view[:take]
                pos += take
                if take == len(view):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = (item_id, view[take:])
                n = take // BYTES_PER_SAMPLE
                self._played[item_id] += n
                if played and played[-1][0] == item_id:
                    played[-1] = (item_id, played[-1][1] + n)
                else:
                    played.append((item_id, n))
            self._queued_samples -= pos // BYTES_PER_SAMPLE
        return BlockRead(bytes(out), tuple(played))

    def flush(self) -> FlushResult:
        """Drop everything not yet handed to the device (barge-in)."""
        with self._lock:
            touched = {item_id for item_id, _ in self._chunks}
            dropped = self._queued_samples
            self._chunks.clear()
            self._queued_samples = 0
            return FlushResult(dropped, {item_id: self._played[item_id] for item_id in touched})

    def played_samples(self, item_id: str) -> int:
        with self._lock:
            return self._played.get(item_id, 0)

    def received_samples(self, item_id: str) -> int:
        with self._lock:
            return self._received.get(item_id, 0)

    @property
    def queued_samples(self) -> int:
        with self._lock:
            return self._queued_samples

    @property
    def is_playing(self) -> bool:
        return self.queued_samples > 0
