"""The speech engines one emulator instance uses: VAD, speech recognition, speech synthesis.

The engines themselves live in ``vad.py``, ``asr.py`` and ``tts.py``; this module picks them by
name (from ``EmulatorConfig``) and bundles them, so that tests and benchmarks can also pass their
own. The VAD is stateful, so each session gets a fresh one from ``make_vad``. The recogniser and
synthesiser are shared by the sessions of an instance: their calls block (the session runs them
with ``asyncio.to_thread``) and are thread-safe (each call uses its own decoder or process).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from realtalk.emulator.asr import Recognizer, Transcription, TranscriptionUnavailable, make_recognizer
from realtalk.emulator.config import AsrEngineName, TtsEngineName, VadEngineName
from realtalk.emulator.tts import Synthesizer, make_synthesizer
from realtalk.emulator.vad import SEMANTIC_SILENCE_MS, SpeechStart, SpeechStop, Vad, VadSettings, make_vad

__all__ = [
    "Engines",
    "Recognizer",
    "SpeechStart",
    "SpeechStop",
    "Synthesizer",
    "Transcription",
    "TranscriptionUnavailable",
    "Vad",
    "VadSettings",
    "load_engines",
]


@dataclass(frozen=True)
class Engines:
    """What an emulator instance listens, recognises and speaks with."""

    make_vad: Callable[[VadSettings], Vad]
    recognizer: Recognizer
    synthesizer: Synthesizer
    semantic_silence_ms: Mapping[str, int]
    phrases: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        try:
            vad_name = self.make_vad(VadSettings()).engine
        except Exception:
            vad_name = "?"
        return f"vad={vad_name} asr={self.recognizer.name} tts={self.synthesizer.name}"


def load_engines(
    vad: VadEngineName = "auto",
    asr: AsrEngineName = "auto",
    tts: TtsEngineName = "auto",
    phrases: Sequence[str] = (),
) -> Engines:
    """Build the engines named in the configuration (blocking: models load here)."""
    make_vad(VadSettings(), vad)  # fail early, at startup, if the engine cannot be built

    def new_vad(settings: VadSettings) -> Vad:
        return make_vad(settings, vad)

    return Engines(
        make_vad=new_vad,
        # In a worker process: PocketSphinx holds the GIL while it decodes (see ProcessRecognizer).
        recognizer=make_recognizer(asr, phrases=tuple(phrases), in_worker_process=True),
        synthesizer=make_synthesizer(tts),
        semantic_silence_ms=dict(SEMANTIC_SILENCE_MS),
        phrases=tuple(phrases),
    )
