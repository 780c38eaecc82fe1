"""Where microphone audio comes from and where speaker audio goes, when it is not a sound card.

Every source hands out PCM16 mono at the wire rate (24 kHz) in blocks of exactly the requested
length, and never runs dry: after its content it gives silence, as a microphone in a quiet room
does. That keeps the timeline the server sees (``audio_end_ms``) a pure count of blocks sent.

Every sink takes what it is given and keeps exactly that, silence included, so a file written by
``--output-wav`` is sample-accurate against what the playback buffer handed to the "speaker".

Files are opened and read or written here, but only at open and close (and in ``WavSink.write``,
which appends): there is no clock and no thread in this module.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ, pcm16_to_int16, read_wav
from realtalk.audio.resample import resample

__all__ = [
    "AudioSink",
    "AudioSource",
    "MemorySink",
    "MemorySource",
    "SilenceSource",
    "StereoRecorder",
    "WavSink",
    "WavSource",
]


class AudioSource(Protocol):
    """A stand-in for a microphone: PCM16 mono at 24 kHz, one block at a time."""

    @property
    def exhausted(self) -> bool:
        """True once the source has nothing left but silence (a file played to its end)."""
        ...

    def read(self, frames: int) -> bytes:
        """Exactly ``frames`` samples (``2 * frames`` bytes), silence-padded past the content."""
        ...


class AudioSink(Protocol):
    """A stand-in for a speaker: keeps every PCM16 byte it is given, in order."""

    def write(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


class MemorySource:
    """Plays ``pcm`` (PCM16 mono, 24 kHz), then silence forever."""

    def __init__(self, pcm: bytes) -> None:
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError(f"PCM16 audio has an even number of bytes; got {len(pcm)}")
        self._pcm = bytes(pcm)
        self._pos = 0  # bytes handed out so far, at most len(self._pcm)
        self.samples_read = 0

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._pcm)

    @property
    def total_samples(self) -> int:
        """Samples of content (without the silence that follows it)."""
        return len(self._pcm) // BYTES_PER_SAMPLE

    def read(self, frames: int) -> bytes:
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        want = frames * BYTES_PER_SAMPLE
        chunk = self._pcm[self._pos : self._pos + want]
        self._pos += len(chunk)
        self.samples_read += frames
        if len(chunk) < want:
            chunk += bytes(want - len(chunk))
        return chunk


class WavSource(MemorySource):
    """A WAV file as a microphone: its audio (resampled to 24 kHz, mixed down to mono), then silence.

    The file is read whole when the source is made (input files are short recordings); a file that
    is not 16-bit PCM WAV raises ``ValueError`` naming the file and how to convert it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            pcm, sample_rate_hz, channels = read_wav(self.path)
        except (wave.Error, EOFError) as exc:
            raise ValueError(
                f"{self.path}: not a readable WAV file ({exc}); convert it with "
                f"`sox {self.path.name} -r 24000 -c 1 -b 16 -e signed-integer out.wav`"
            ) from None
        if channels < 1:
            raise ValueError(f"{self.path}: WAV file declares {channels} channels")
        self.source_sample_rate_hz = sample_rate_hz
        self.source_channels = channels
        super().__init__(resample(_mix_down(pcm, channels), sample_rate_hz, WIRE_SAMPLE_RATE_HZ))


class SilenceSource:
    """A microphone in a quiet room: silence forever. Never exhausted (it stands for a live input)."""

    exhausted = False

    def read(self, frames: int) -> bytes:
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        return bytes(frames * BYTES_PER_SAMPLE)


class MemorySink:
    """Keeps everything written, for tests and short runs (``pcm``). Grows with what it is given."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.closed = False

    def write(self, pcm: bytes) -> None:
        if self.closed:
            raise ValueError("write to a closed MemorySink")
        self._buffer += pcm

    def close(self) -> None:
        self.closed = True

    @property
    def pcm(self) -> bytes:
        return bytes(self._buffer)

    @property
    def samples_written(self) -> int:
        return len(self._buffer) // BYTES_PER_SAMPLE


class WavSink:
    """Writes a 16-bit PCM WAV file, streaming: memory stays flat however long the run.

    Frames go to disk as they come; the header's lengths are filled in at ``close()`` (until then
    the file says it holds no frames, which is why ``close`` must be called: use ``with``).
    """

    def __init__(
        self, path: str | Path, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, channels: int = 1
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.frames_written = 0
        self._frame_bytes = BYTES_PER_SAMPLE * channels
        # Open the file first: if that fails, no half-built wave writer is left for __del__ to trip on.
        self._file = open(self.path, "wb")
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")
        self._wav.setnchannels(channels)
        self._wav.setsampwidth(BYTES_PER_SAMPLE)
        self._wav.setframerate(sample_rate_hz)

    def write(self, pcm: bytes) -> None:
        if self._wav is None:
            raise ValueError(f"write to a closed WavSink ({self.path})")
        if len(pcm) % self._frame_bytes:
            # A partial frame would shift every later sample (and swap channels): refuse it.
            raise ValueError(
                f"{len(pcm)} bytes is not a whole number of {self.channels}-channel PCM16 frames"
            )
        # writeframesraw does not rewrite the header on every call; close() patches it once.
        self._wav.writeframesraw(pcm)
        self.frames_written += len(pcm) // self._frame_bytes

    def close(self) -> None:
        if self._wav is not None:
            wav, self._wav = self._wav, None
            wav.close()  # patches the header; does not close a file object it was given
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._wav is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StereoRecorder:
    """``--record``: the user on the left channel, the agent on the right, on one clock.

    Feed it once per device block with the microphone block and the played block (both PCM16 mono
    at 24 kHz). Sample ``n`` of each channel is the ``n``-th sample that side produced since the
    start, so the two line up as the device heard and played them. Blocks of unequal length (a
    device with separate input and output streams delivers one side at a time) are paired by
    sample count; what one side is ahead is held back, at most ``max_skew_ms``, after which the
    other side is padded with silence so nothing grows without bound.
    """

    def __init__(self, sink: AudioSink, *, max_skew_ms: int = 1000) -> None:
        self.sink = sink
        self.frames_written = 0
        self._max_skew_samples = max_skew_ms * WIRE_SAMPLE_RATE_HZ // 1000
        self._left = bytearray()
        self._right = bytearray()
        self._closed = False

    @classmethod
    def to_wav(cls, path: str | Path, *, max_skew_ms: int = 1000) -> StereoRecorder:
        """A recorder writing a 2-channel 24 kHz WAV file at ``path``."""
        return cls(WavSink(path, WIRE_SAMPLE_RATE_HZ, channels=2), max_skew_ms=max_skew_ms)

    def write(self, mic_pcm: bytes, played_pcm: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed StereoRecorder")
        self._left += mic_pcm[: len(mic_pcm) - len(mic_pcm) % BYTES_PER_SAMPLE]
        self._right += played_pcm[: len(played_pcm) - len(played_pcm) % BYTES_PER_SAMPLE]
        skew_bytes = self._max_skew_samples * BYTES_PER_SAMPLE
        if len(self._left) - len(self._right) > skew_bytes:
            self._right += bytes(len(self._left) - len(self._right) - skew_bytes)
        elif len(self._right) - len(self._left) > skew_bytes:
            self._left += bytes(len(self._right) - len(self._left) - skew_bytes)
        self._emit(min(len(self._left), len(self._right)))

    def close(self) -> None:
        """Pad the shorter side with silence, write the rest, close the sink."""
        if self._closed:
            return
        longest = max(len(self._left), len(self._right))
        self._left += bytes(longest - len(self._left))
        self._right += bytes(longest - len(self._right))
        self._emit(longest)
        self._closed = True
        self.sink.close()

    def _emit(self, byte_count: int) -> None:
        if byte_count == 0:
            return
        frames = np.empty((byte_count // BYTES_PER_SAMPLE, 2), dtype="<i2")
        frames[:, 0] = pcm16_to_int16(bytes(self._left[:byte_count]))
        frames[:, 1] = pcm16_to_int16(bytes(self._right[:byte_count]))
        del self._left[:byte_count]
        del self._right[:byte_count]
        self.sink.write(frames.tobytes())
        self.frames_written += len(frames)


def _mix_down(pcm: bytes, channels: int) -> bytes:
    """Interleaved PCM16 with ``channels`` channels to mono (the mean, rounded)."""
    if channels == 1:
        return pcm
    ints = pcm16_to_int16(pcm)
    ints = ints[: len(ints) - len(ints) % channels].reshape(-1, channels)
    mono: npt.NDArray[np.float64] = np.round(ints.astype(np.float64).mean(axis=1))
    return mono.astype("<i2").tobytes()
