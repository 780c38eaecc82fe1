"""``VoiceLoop``: a sound card (real or virtual) wired to a ``RealtimeSession``.

Theory of operation. The device delivers one ``DuplexBlock`` per period (20 ms by default): the
microphone's samples and the block the playback buffer just handed to the speaker. Device threads
only append the block to a bounded deque and, if none is pending, schedule one drain on the event
loop; everything else happens on the loop, in order:

1. What was played is reported to the session as increments computed from the playback buffer's
   own per-item totals (so a report that arrives after a flush can never count twice).
2. The microphone block passes the echo gate (unless headphones are declared), is recorded, and is
   sent, unless push-to-talk holds it back.

Reply audio goes the other way without any queue of ours: the session's receive task hands each
``AudioChunk`` straight to the playback buffer, and a ``FlushPlayback`` (barge-in) flushes it at
once and reports the exact number of samples played, from which the core computes the truncate.

``PacedDriver`` runs a ``VirtualDuplex`` (WAV files, memory) on the event loop's clock, at real-time
pace or faster, so the same loop serves ``--input-wav`` and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from dataclasses import dataclass

from realtalk.audio.duplex import DuplexBlock, DuplexDevice, VirtualDuplex
from realtalk.audio.echo import EchoGate, EchoProcessor
from realtalk.audio.pcm import SILENCE_DBFS, rms_dbfs
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import StereoRecorder
from realtalk.client.session import RealtimeSession, SessionEvent
from realtalk.protocol.app_events import AudioChunk, FlushPlayback

__all__ = ["PacedDriver", "VoiceLoop", "VoiceStats"]

logger = logging.getLogger(__name__)

# Blocks waiting for the event loop; 100 blocks of 20 ms is 2 s of a stalled loop.
MAX_PENDING_BLOCKS = 100


@dataclass
class VoiceStats:
    """Counters for the status line and the end-of-session summary."""

    blocks: int = 0
    mic_level_dbfs: float = SILENCE_DBFS
    mic_samples_sent: int = 0
    mic_samples_gated: int = 0
    dropped_blocks: int = 0
    flushes: int = 0
    flushed_samples: int = 0


class VoiceLoop:
    """Move audio between ``device`` and ``session`` until ``stop()``; see the module docstring.

    Args:
        session: a started ``RealtimeSession``.
        device: a ``DuplexDevice`` (``SoundDeviceDuplex`` or a driven ``VirtualDuplex``).
        playback: the buffer the device reads from; this loop writes reply audio into it.
        echo_gate: mutes the microphone while it probably hears the agent (``None``: headphones).
        echo_canceller: removes the agent's echo from the microphone first (``--aec``).
        recorder: receives every block (user left, agent right).
        push_to_talk: send microphone audio only between ``ptt_press()`` and ``ptt_release()``.
    """

    def __init__(
        self,
        session: RealtimeSession,
        device: DuplexDevice,
        playback: PlaybackBuffer,
        *,
        echo_gate: EchoGate | None = None,
        echo_canceller: EchoProcessor | None = None,
        recorder: StereoRecorder | None = None,
        push_to_talk: bool = False,
    ) -> None:
        self.session = session
        self.device = device
        self.playback = playback
        self.echo_gate = echo_gate
        self.echo_canceller = echo_canceller
        self.recorder = recorder
        self.push_to_talk = push_to_talk
        self.stats = VoiceStats()
        self._talking = not push_to_talk
        self._reported: dict[str, int] = {}
        self._pending: deque[DuplexBlock] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        session.on_event(self._on_session_event)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the device; blocks flow until ``stop()``."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.device.start(self._on_block)

    def stop(self) -> None:
        self.device.stop()
        if self._pending:
            self._drain()
        if self.recorder is not None:
            self.recorder.close()

    # -- push-to-talk --------------------------------------------------------------------------------

    @property
    def talking(self) -> bool:
        """Whether microphone audio is being sent (always, unless push-to-talk is released)."""
        return self._talking

    def ptt_press(self) -> None:
        """Start a push-to-talk turn: stop the agent if it is speaking, start a fresh input buffer."""
        if not self.push_to_talk or self._talking:
            return
        if self.playback.is_playing:
            self.session.interrupt()
        self.session.clear_audio()
        self._talking = True

    def ptt_release(self) -> None:
        """End a push-to-talk turn: commit what was said and ask for the reply."""
        if not self.push_to_talk or not self._talking:
            return
        self._talking = False
        self.session.commit_audio()
        self.session.create_response()

    # -- device side (any thread) --------------------------------------------------------------------

    def _on_block(self, block: DuplexBlock) -> None:
        if threading.get_ident() == self._loop_thread:
            # A driver on the loop itself (PacedDriver): no hop needed.
            self._process(block)
            return
        if len(self._pending) >= MAX_PENDING_BLOCKS:
            self._pending.popleft()
            self.stats.dropped_blocks += 1
        self._pending.append(block)
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon_threadsafe(self._drain)

    # -- loop side ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._drain_scheduled = False
        while self._pending:
            self._process(self._pending.popleft())
        if self.stats.dropped_blocks:
            logger.warning("the event loop fell behind: %d audio blocks dropped", self.stats.dropped_blocks)

    def _process(self, block: DuplexBlock) -> None:
        self.stats.blocks += 1
        for item_id, _ in block.played.played:
            total = self.playback.played_samples(item_id)
            delta = total - self._reported.get(item_id, 0)
            if delta > 0:
                self._reported[item_id] = total
                self.session.audio_played(item_id, delta)
        mic = block.mic
        if not mic:
            return
        self.stats.mic_level_dbfs = rms_dbfs(mic)
        if self.echo_canceller is not None:
            mic = self.echo_canceller.process(mic, block.played.pcm)
        if self.echo_gate is not None:
            mic = self.echo_gate.process(mic, block.played.pcm)
            if not self.echo_gate.is_open:
                self.stats.mic_samples_gated += len(mic) // 2
        if self.recorder is not None:
            self.recorder.write(block.mic, block.played.pcm)
        if self._talking:
            self.session.append_audio(mic)
            self.stats.mic_samples_sent += len(mic) // 2

    def _on_session_event(self, event: SessionEvent) -> None:
        # Runs in the session's receive task: write or flush at once, never wait.
        if isinstance(event, AudioChunk):
            self.playback.write(event.item_id, event.pcm)
        elif isinstance(event, FlushPlayback):
            result = self.playback.flush()
            self.stats.flushes += 1
            self.stats.flushed_samples += result.dropped_samples
            played = result.played_samples.get(event.item_id, self.playback.played_samples(event.item_id))
            self._reported[event.item_id] = played
            if self.echo_gate is not None:
                self.echo_gate.reset()
            self.session.playback_flushed(event.item_id, played)


class PacedDriver:
    """Drive a ``VirtualDuplex`` from the event loop's clock, ``speed`` times real time.

    Deadlines are absolute (block ``n`` is due at ``start + n * block / speed``), so scheduling
    jitter never accumulates into drift.
    """

    def __init__(self, device: VirtualDuplex, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.device = device
        self.speed = speed
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="realtalk-paced-device")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = self.device.block_samples / self.device.sample_rate_hz / self.speed
        start = loop.time()
        n = 0
        while True:
            n += 1
            callback = self.device.on_block
            block = self.device.step()
            if callback is not None:
                callback(block)
            delay = start + n * period_s - loop.time()
            if delay < -5 * period_s:
                # The loop stalled: re-anchor instead of catching up in a burst, which would drain
                # the playback buffer faster than audio arrives (gaps, like a real card's underrun).
                start -= delay
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
