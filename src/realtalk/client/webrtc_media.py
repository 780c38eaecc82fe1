"""The media side of a WebRTC Realtime call: the microphone track, the remote track's audio, and
which reply each received sample belongs to.

Theory of operation. Over WebRTC (protocol reference §4.2) audio does not travel in JSON events:
the microphone goes out on an RTP audio track (Opus), and the agent's voice comes back on the
remote track, which plays continuously (silence between replies). realtalk speaks 24 kHz mono
PCM16 everywhere else, so:

* ``MicrophoneTrack`` takes 24 kHz PCM16 from ``push`` (the voice loop's blocks), resamples it to
  48 kHz (the Opus clock) and hands aiortc one 20 ms frame per 20 ms, on absolute deadlines so
  jitter never accumulates; with nothing queued it sends silence, as a microphone would. Every
  frame sent is reported (``on_frame_sent``): the server counts ``audio_end_ms`` over everything
  the track carried, silence included, and the latency timeline must count the same audio.
  The queue is bounded (``max_queued_s``): audio pushed faster than real time beyond it is dropped,
  oldest first, and counted.
* ``RemoteAudio`` turns the remote track's frames (48 kHz, stereo or mono, any sample format) into
  24 kHz mono PCM16.
* ``ReplyAttribution`` decides, frame by frame, which response the audio belongs to. The events
  say when the server's playout of a response starts and stops (``output_audio_buffer.started`` /
  ``stopped`` / ``cleared``), but they travel on the data channel while the audio passes through
  the receiver's jitter buffer, so the two are not aligned to the frame. The window of a response
  therefore opens at ``response.created`` (or ``started``), skips the silence before its first
  audible frame, and after ``stopped`` closes at the first silent frame (the jitter buffer's tail
  is still that reply); ``cleared`` or the user's speech closes it at once, so nothing more of the
  interrupted reply reaches the speaker. Pure: no clock, no I/O.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from realtalk.audio.pcm import pcm16_to_int16
from realtalk.audio.resample import StreamingResampler

__all__ = [
    "FRAME_MS",
    "PCM24_FRAME_BYTES",
    "SILENCE_PEAK",
    "TRACK_FRAME_SAMPLES",
    "TRACK_RATE_HZ",
    "MicrophoneTrack",
    "RemoteAudio",
    "ReplyAttribution",
    "is_silent",
]

FRAME_MS = 20
TRACK_RATE_HZ = 48_000  # Opus's clock (RFC 7587): every WebRTC audio track runs at 48 kHz
TRACK_FRAME_SAMPLES = TRACK_RATE_HZ * FRAME_MS // 1000  # 960
WIRE_RATE_HZ = 24_000
PCM24_FRAME_BYTES = WIRE_RATE_HZ * FRAME_MS // 1000 * 2  # 960 bytes: 20 ms of 24 kHz PCM16
# Peak amplitude (of 32767) at or below which a decoded frame counts as silence: Opus decodes
# digital silence to zeros or to a few LSBs of noise; speech peaks are in the thousands.
SILENCE_PEAK = 64
# Behind by more than this many frames (a stalled loop): re-anchor instead of sending a burst.
_MAX_LAG_FRAMES = 5


def is_silent(pcm: bytes, peak: int = SILENCE_PEAK) -> bool:
    """True when no sample of the PCM16 ``pcm`` exceeds ``peak`` in magnitude."""
    if not pcm:
        return True
    samples = pcm16_to_int16(pcm)
    return int(np.max(np.abs(samples.astype(np.int32)))) <= peak


class MicrophoneTrack(MediaStreamTrack):
    """An outgoing audio track fed with 24 kHz PCM16 by ``push``; see the module docstring.

    Args:
        max_queued_s: audio queued beyond this (pushed faster than real time) is dropped, oldest
            first, and counted in ``dropped_samples``.
        on_frame_sent: called with the bytes of 24 kHz PCM16 each frame carried (960 for 20 ms),
            silence included, when aiortc takes it.
        clock: monotonic seconds (the pacing clock).
    """

    kind = "audio"

    def __init__(
        self,
        *,
        max_queued_s: float = 2.0,
        on_frame_sent: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._resampler = StreamingResampler(WIRE_RATE_HZ, TRACK_RATE_HZ)
        self._queued = bytearray()  # 48 kHz PCM16 mono
        self._max_queued_bytes = int(max_queued_s * TRACK_RATE_HZ) * 2
        self._on_frame_sent = on_frame_sent
        self._clock = clock
        self._start_s: float | None = None
        self._timestamp = 0  # samples sent, at 48 kHz: the frames' pts
        self.dropped_samples = 0
        """Samples (at 48 kHz) dropped because more than ``max_queued_s`` was queued."""
        self.frames_sent = 0

    def push(self, pcm24: bytes) -> None:
        """Queue 24 kHz mono PCM16 to be sent (never blocks)."""
        self._queued += self._resampler.process(pcm24)
        excess = len(self._queued) - self._max_queued_bytes
        if excess > 0:
            excess += excess % 2
            del self._queued[:excess]
            self.dropped_samples += excess // 2

    def clear(self) -> None:
        """Drop the audio still queued."""
        self._queued.clear()

    @property
    def queued_ms(self) -> float:
        """Audio waiting to be sent, in milliseconds."""
        return len(self._queued) / 2 * 1000 / TRACK_RATE_HZ

    def next_frame_pcm(self) -> bytes:
        """The next 20 ms of 48 kHz PCM16 to send (queued audio, padded with silence); no pacing."""
        size = TRACK_FRAME_SAMPLES * 2
        chunk = bytes(self._queued[:size])
        del self._queued[:size]
        return chunk.ljust(size, b"\0")

    async def recv(self) -> AudioFrame:
        """The next frame, at real-time pace (aiortc's sender calls this in a loop)."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start_s is None:
            self._start_s = now
        else:
            wait_s = self._start_s + self._timestamp / TRACK_RATE_HZ - now
            if wait_s < -_MAX_LAG_FRAMES * FRAME_MS / 1000:
                self._start_s -= wait_s  # re-anchor: a burst would arrive as one long glitch
                wait_s = 0.0
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        frame = AudioFrame(format="s16", layout="mono", samples=TRACK_FRAME_SAMPLES)
        frame.planes[0].update(self.next_frame_pcm())
        frame.sample_rate = TRACK_RATE_HZ
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, TRACK_RATE_HZ)
        self._timestamp += TRACK_FRAME_SAMPLES
        self.frames_sent += 1
        if self._on_frame_sent is not None:
            self._on_frame_sent(PCM24_FRAME_BYTES)
        return frame


class RemoteAudio:
    """Converts the remote track's frames (any rate, layout and sample format) to 24 kHz mono PCM16."""

    def __init__(self) -> None:
        self._resampler = AudioResampler(format="s16", layout="mono", rate=WIRE_RATE_HZ)

    def convert(self, frame: AudioFrame) -> bytes:
        """24 kHz mono PCM16 for ``frame`` (the resampler is streaming: output may lag by a few samples)."""
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._resampler.resample(frame))


class ReplyAttribution:
    """Which response the remote track's audio belongs to, frame by frame; see the module docstring."""

    def __init__(self, *, silence_peak: int = SILENCE_PEAK) -> None:
        self._peak = silence_peak
        self._response_id: str | None = None
        self._heard = False
        self._stopping = False
        self._next: str | None = None
        self.playing_on_server: set[str] = set()
        """Responses between ``output_audio_buffer.started`` and ``stopped``/``cleared``."""

    @property
    def response_id(self) -> str | None:
        """The response whose audio the next audible frames belong to (``None``: none)."""
        return self._response_id

    @property
    def audible(self) -> str | None:
        """The response whose audio is reaching the app now (its first audible frame arrived)."""
        return self._response_id if self._heard else None

    def response_created(self, response_id: str) -> None:
        """``response.created``: its audio follows, after whatever is still playing."""
        if self._response_id is None or not self._heard:
            self._open(response_id)
        else:
            self._next = response_id

    def started(self, response_id: str) -> None:
        """``output_audio_buffer.started``: the server began playing ``response_id``."""
        self.playing_on_server.add(response_id)
        if response_id != self._response_id:
            self._open(response_id)

    def stopped(self, response_id: str) -> None:
        """``output_audio_buffer.stopped``: all of it was played; its tail may still be in flight."""
        self.playing_on_server.discard(response_id)
        if response_id == self._response_id:
            self._stopping = True

    def cleared(self, response_id: str | None) -> None:
        """``output_audio_buffer.cleared``: the server dropped its queue; nothing more is this reply."""
        if response_id is None:
            self.playing_on_server.clear()
        else:
            self.playing_on_server.discard(response_id)
        self.interrupted()

    def interrupted(self) -> None:
        """The user spoke (or the app interrupted): drop the audio in flight until the next reply."""
        self._response_id = None
        self._next = None
        self._heard = False
        self._stopping = False

    def classify(self, pcm: bytes) -> str | None:
        """The response ``pcm`` (one received frame) belongs to, or ``None`` to drop it."""
        if self._response_id is None:
            return None
        silent = is_silent(pcm, self._peak)
        if not self._heard:
            if silent:
                return None  # the server's silence before the reply starts
            self._heard = True
            return self._response_id
        if self._stopping and silent:
            upcoming, self._next = self._next, None
            self.interrupted()
            if upcoming is not None:
                self._open(upcoming)
            return None
        return self._response_id

    def _open(self, response_id: str) -> None:
        self._response_id = response_id
        self._heard = False
        self._stopping = False
        self._next = None
