"""The input audio buffer: decoding, the session's audio clock, and VAD over the real audio.

Audio arrives base64-encoded in the session's input format (``audio/pcm`` 24 kHz, or G.711
``audio/pcmu``/``audio/pcma`` at 8 kHz). The buffer keeps it as received (what
``conversation.item.retrieve`` returns) and, for G.711 only, also as PCM16 at 24 kHz (what the VAD
and the recogniser hear: decoded and resampled); ``audio/pcm`` is already that, and is kept once.

Milliseconds are counted on the stream of everything appended this session, which is what
``audio_start_ms``/``audio_end_ms`` mean on the wire (§2.4): the clock survives commits, clears
and changes of format or VAD settings.

With turn detection on, audio before the speech (less the prefix padding) is of no use, so the
buffer keeps only a short tail while nobody speaks; in every mode it is capped at
``max_buffer_ms`` (oldest audio dropped), so nothing grows without limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtalk.audio.g711 import G711_SAMPLE_RATE_HZ, alaw_decode, ulaw_decode
from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ
from realtalk.audio.resample import StreamingResampler
from realtalk.emulator.engines import SpeechStart, SpeechStop, Vad
from realtalk.emulator.session_config import FormatType

__all__ = ["BYTES_PER_MS", "AudioSegment", "InputAudio", "VadEvent"]

BYTES_PER_MS: dict[FormatType, int] = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}
_PCM24_BYTES_PER_MS = 48
_SAMPLE_BYTES: dict[FormatType, int] = {"audio/pcm": 2, "audio/pcmu": 1, "audio/pcma": 1}
_IDLE_TAIL_MS = 1000  # kept beyond the prefix padding while nobody speaks


@dataclass(frozen=True)
class AudioSegment:
    """A committed stretch of input audio."""

    raw: bytes  # in the input format
    pcm24: bytes  # PCM16, 24 kHz
    fmt: FormatType
    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return max(0, self.end_ms - self.start_ms)


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" | "stop"
    stream_ms: int


class InputAudio:
    """One session's input audio buffer (not shared between connections)."""

    def __init__(self, fmt: FormatType = "audio/pcm", *, max_buffer_ms: int = 10 * 60 * 1000) -> None:
        self._fmt: FormatType = fmt
        self._decoder = self._make_decoder(fmt)
        self._decoder_primed = False
        self._raw = bytearray()
        self._decoded = bytearray()  # G.711 only: the PCM16 24 kHz of _raw (audio/pcm: _raw itself)
        self._max_buffer_ms = max_buffer_ms
        self._stream_ms_before_format = 0.0  # stream ms accumulated under earlier formats
        self._format_bytes = 0  # bytes appended under the current format
        self._buffer_start_ms = 0.0
        self._vad: Vad | None = None
        self._vad_origin_ms = 0  # stream ms at which the current VAD started listening
        self._idle_keep_ms = _IDLE_TAIL_MS

    # --- configuration -------------------------------------------------------------------------

    @property
    def fmt(self) -> FormatType:
        return self._fmt

    def set_format(self, fmt: FormatType) -> None:
        if fmt == self._fmt:
            return
        self._stream_ms_before_format = self.stream_ms_exact
        self._format_bytes = 0
        self._fmt = fmt
        self._decoder = self._make_decoder(fmt)
        self._decoder_primed = False
        self.clear()

    def set_vad(self, vad: Vad | None, prefix_padding_ms: int = 300) -> None:
        """Listen with a new VAD (or none, for manual turns) from now on."""
        self._vad = vad
        self._vad_origin_ms = self.stream_ms
        self._idle_keep_ms = prefix_padding_ms + _IDLE_TAIL_MS

    @property
    def in_speech(self) -> bool:
        return self._vad is not None and self._vad.in_speech

    # --- clock ---------------------------------------------------------------------------------

    @property
    def stream_ms_exact(self) -> float:
        return self._stream_ms_before_format + self._format_bytes / BYTES_PER_MS[self._fmt]

    @property
    def stream_ms(self) -> int:
        return int(self.stream_ms_exact)

    @property
    def buffered_ms(self) -> float:
        return len(self._raw) / BYTES_PER_MS[self._fmt]

    # --- audio in ------------------------------------------------------------------------------

    def append(self, raw: bytes) -> list[VadEvent]:
        """Add audio in the input format; return what the VAD heard in it (stream ms)."""
        pcm24 = self._decode(raw)
        self._raw += raw
        if self._fmt != "audio/pcm":
            self._decoded += pcm24
        self._format_bytes += len(raw)
        events: list[VadEvent] = []
        if self._vad is not None and pcm24:
            for found in self._vad.feed(pcm24):
                if isinstance(found, SpeechStart):
                    events.append(VadEvent("start", self._vad_origin_ms + found.audio_start_ms))
                elif isinstance(found, SpeechStop):
                    events.append(VadEvent("stop", self._vad_origin_ms + found.audio_end_ms))
        # While speech is under way, or just ended (the caller takes it next), keep everything.
        self._bound(speech_pending=self.in_speech or bool(events))
        return events

    def take(self, start_ms: float | None = None, end_ms: float | None = None) -> AudioSegment:
        """Remove and return the buffered audio from ``start_ms`` (default: the buffer's start) to
        ``end_ms`` (default: its end); audio after ``end_ms`` stays buffered."""
        buffer_end = self._buffer_start_ms + self.buffered_ms
        start = (
            self._buffer_start_ms
            if start_ms is None
            else min(max(start_ms, self._buffer_start_ms), buffer_end)
        )
        end = buffer_end if end_ms is None else min(max(end_ms, start), buffer_end)
        raw = bytes(self._raw[self._raw_offset(start) : self._raw_offset(end)])
        pcm24 = (
            raw
            if self._fmt == "audio/pcm"
            else bytes(self._decoded[self._pcm_offset(start) : self._pcm_offset(end)])
        )
        del self._decoded[: self._pcm_offset(end)]
        del self._raw[: self._raw_offset(end)]
        self._buffer_start_ms = end
        return AudioSegment(raw, pcm24, self._fmt, int(start), int(end))

    def clear(self) -> None:
        self._raw.clear()
        self._decoded.clear()
        self._buffer_start_ms = self.stream_ms_exact
        if self._vad is not None:
            self._vad.reset()

    def reset_vad(self) -> None:
        if self._vad is not None:
            self._vad.reset()

    # --- internals -----------------------------------------------------------------------------

    @staticmethod
    def _make_decoder(fmt: FormatType) -> StreamingResampler | None:
        return None if fmt == "audio/pcm" else StreamingResampler(G711_SAMPLE_RATE_HZ, WIRE_SAMPLE_RATE_HZ)

    def _decode(self, raw: bytes) -> bytes:
        if self._fmt == "audio/pcm":
            return raw
        pcm8 = ulaw_decode(raw) if self._fmt == "audio/pcmu" else alaw_decode(raw)
        assert self._decoder is not None
        pcm24 = self._decoder.process(pcm8)
        if not self._decoder_primed:
            # The resampler holds back its filter delay on the first chunk: pad the start once so
            # that the decoded stream stays aligned with the received one (VAD times stay right).
            self._decoder_primed = True
            missing = len(pcm8) * (WIRE_SAMPLE_RATE_HZ // G711_SAMPLE_RATE_HZ) - len(pcm24)
            if missing > 0:
                pcm24 = bytes(missing - missing % 2) + pcm24
        return pcm24

    def _raw_offset(self, stream_ms: float) -> int:
        sample = _SAMPLE_BYTES[self._fmt]
        offset = int((stream_ms - self._buffer_start_ms) * BYTES_PER_MS[self._fmt])
        return max(0, min(len(self._raw), offset - offset % sample))

    def _pcm_offset(self, stream_ms: float) -> int:
        offset = int((stream_ms - self._buffer_start_ms) * _PCM24_BYTES_PER_MS)
        return max(0, min(len(self._decoded), offset - offset % 2))

    def _bound(self, *, speech_pending: bool) -> None:
        keep_ms = self._max_buffer_ms if (self._vad is None or speech_pending) else self._idle_keep_ms
        excess_ms = self.buffered_ms - keep_ms
        if excess_ms > 0:
            self.take(self._buffer_start_ms, self._buffer_start_ms + excess_ms)
