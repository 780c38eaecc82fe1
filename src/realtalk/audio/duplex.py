"""A full-duplex "sound card" seen from the client: one microphone block in, one speaker block out.

Theory of operation. A sound card works in blocks: every few milliseconds it delivers one block
of captured audio and asks for one block to play. ``DuplexBlock`` is what the client receives for
each such period: the microphone's samples and the ``BlockRead`` the playback buffer handed to the
speaker (its PCM and which reply items it contained, which is how samples *played* are counted).

Two implementations share the ``DuplexDevice`` protocol:

- ``VirtualDuplex`` (here, pure): no clock of its own. Whoever drives it calls ``step()``: the
  client's pacing task at real-time pace (``realtalk talk --input-wav``), or a test as fast as it
  likes. ``start``/``stop`` only store the callback for that pacing task to call.
- ``SoundDeviceDuplex`` (``devices.py``): PortAudio calls a per-block function from its own
  thread, which hands each ``DuplexBlock`` to the callback given to ``start``.

All audio in a ``DuplexBlock`` is PCM16 mono at 24 kHz, whatever the device's own rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.audio.playback import BlockRead, PlaybackBuffer
from realtalk.audio.sources import AudioSink, AudioSource

__all__ = ["DuplexBlock", "DuplexDevice", "OnBlock", "VirtualDuplex"]


@dataclass(frozen=True, slots=True)
class DuplexBlock:
    """One device period: what the microphone captured and what was handed to the speaker.

    With one full-duplex stream both sides cover the same period and have the same length. A device
    running separate input and output streams delivers each side on its own (the other side empty);
    consumers pair the two by sample count, as ``StereoRecorder`` does.
    """

    mic: bytes
    played: BlockRead


OnBlock = Callable[[DuplexBlock], None]


class DuplexDevice(Protocol):
    """What the client needs from a sound card, real or virtual."""

    @property
    def sample_rate_hz(self) -> int:
        """Rate of the audio in each ``DuplexBlock`` (always 24 kHz, the wire rate)."""
        ...

    @property
    def block_samples(self) -> int:
        """Samples per side in a full block (480 = 20 ms at 24 kHz by default)."""
        ...

    def start(self, on_block: OnBlock) -> None:
        """Begin delivering blocks to ``on_block`` (from a device thread, for real devices)."""
        ...

    def stop(self) -> None:
        """Stop delivering blocks; safe to call twice."""
        ...


class VirtualDuplex:
    """A clockless sound card: ``step()`` moves exactly one block each way.

    Each step takes ``block_samples`` from ``source`` (the "microphone") and one block from the
    playback buffer, and writes the latter to ``sink`` (the "speaker", if any) unchanged, so the
    sink receives exactly what the buffer handed out and counted as played. The caller owns
    ``source`` and ``sink`` (``stop`` does not close the sink).
    """

    def __init__(
        self,
        source: AudioSource,
        sink: AudioSink | None,
        playback: PlaybackBuffer,
        block_samples: int = 480,
    ) -> None:
        if block_samples <= 0:
            raise ValueError(f"block_samples must be > 0, got {block_samples}")
        if playback.sample_rate_hz != WIRE_SAMPLE_RATE_HZ:
            raise ValueError(f"the playback buffer must run at {WIRE_SAMPLE_RATE_HZ} Hz")
        self.source = source
        self.sink = sink
        self.playback = playback
        self._block_samples = block_samples
        self.on_block: OnBlock | None = None
        self.blocks_stepped = 0

    @property
    def sample_rate_hz(self) -> int:
        return WIRE_SAMPLE_RATE_HZ

    @property
    def block_samples(self) -> int:
        return self._block_samples

    @property
    def running(self) -> bool:
        return self.on_block is not None

    def start(self, on_block: OnBlock) -> None:
        self.on_block = on_block

    def stop(self) -> None:
        self.on_block = None

    def step(self) -> DuplexBlock:
        """One device period. Does not call ``on_block``: the pacing task does, with the result."""
        mic = self.source.read(self._block_samples)
        played = self.playback.read(self._block_samples)
        if self.sink is not None:
            self.sink.write(played.pcm)
        self.blocks_stepped += 1
        return DuplexBlock(mic, played)
