"""The emulator's voice: text to PCM16 24 kHz mono.

``EspeakSynthesizer`` runs Debian's ``espeak-ng`` (one process per call, so calls are independent
and thread-safe) and resamples its 22,050 Hz WAV to 24 kHz. ``ToneSynthesizer`` is the fallback
that needs nothing: one beep per word, clearly synthetic and never silent, so a listener or a VAD
still hears that the assistant "spoke" for about as long as the words would take.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import zlib
from typing import Literal, Protocol

import numpy as np

from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ, float_to_pcm16, read_wav
from realtalk.audio.resample import resample

__all__ = [
    "ESPEAK_VOICES",
    "EspeakSynthesizer",
    "SynthesisError",
    "Synthesizer",
    "ToneSynthesizer",
    "make_synthesizer",
]

# Realtime API voices -> espeak-ng voice+variant, each distinct; the variant's gender follows the
# OpenAI voice ("en" is British English; "en-gb+variant" ignores the variant in espeak-ng 1.51).
# Unknown names (custom voices) speak with marin's variant.
ESPEAK_VOICES: dict[str, str] = {
    "alloy": "en-us+m1",
    "ash": "en-us+m3",
    "ballad": "en+m2",
    "coral": "en-us+f2",
    "echo": "en-us+m4",
    "sage": "en+f5",
    "shimmer": "en-us+f4",
    "verse": "en-us+m6",
    "marin": "en-us+f3",
    "cedar": "en-us+m7",
}
_DEFAULT_VOICE = "marin"
_WORDS_PER_MINUTE = 175  # espeak-ng's own default rate, at speed 1.0
_MIN_WPM, _MAX_WPM = 80, 450  # the range espeak-ng accepts
_ESPEAK_TIMEOUT_S = 60.0


class SynthesisError(RuntimeError):
    """Speech synthesis failed, or its engine is not available."""


class Synthesizer(Protocol):
    name: str

    def synthesize(self, text: str, *, voice: str = "marin", speed: float = 1.0) -> bytes:
        """Speak ``text``: PCM16 24 kHz mono (blocking; thread-safe). Empty text gives empty bytes."""
        ...


class EspeakSynthesizer:
    """espeak-ng through ``subprocess``; ``speed`` scales its words per minute."""

    name = "espeak"

    def __init__(self, executable: str | None = None) -> None:
        found = executable or shutil.which("espeak-ng")
        if found is None:
            raise SynthesisError(
                "speech synthesis needs the system package 'espeak-ng': apt-get install espeak-ng"
            )
        self._executable = found

    def synthesize(self, text: str, *, voice: str = _DEFAULT_VOICE, speed: float = 1.0) -> bytes:
        if not text.strip():
            return b""
        variant = ESPEAK_VOICES.get(voice, ESPEAK_VOICES[_DEFAULT_VOICE])
        wpm = min(_MAX_WPM, max(_MIN_WPM, round(_WORDS_PER_MINUTE * speed)))
        # Text goes through stdin, so a leading "-" is never read as an option.
        command = [self._executable, "--stdout", "--stdin", "-v", variant, "-s", str(wpm)]
        try:
            done = subprocess.run(
                command,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=_ESPEAK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SynthesisError(f"espeak-ng could not run: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
            raise SynthesisError(f"espeak-ng failed (voice {variant}, {wpm} wpm): {detail}")
        try:
            pcm, rate_hz, channels = read_wav(done.stdout)
        except (ValueError, EOFError) as exc:
            raise SynthesisError(f"espeak-ng wrote no usable WAV: {exc}") from exc
        if channels != 1:
            raise SynthesisError(f"espeak-ng wrote {channels} channels; expected mono")
        return resample(pcm, rate_hz, WIRE_SAMPLE_RATE_HZ)


class ToneSynthesizer:
    """One beep per word, length growing with the word, with gaps; pitch set by the voice."""

    name = "tone"

    _MS_PER_LETTER = 55.0
    _MIN_BEEP_MS, _MAX_BEEP_MS = 90.0, 450.0
    _GAP_MS = 90.0
    _FADE_MS = 8.0
    _LEVEL = 0.25  # about -15 dBFS RMS: clearly audible, far from clipping

    def synthesize(self, text: str, *, voice: str = _DEFAULT_VOICE, speed: float = 1.0) -> bytes:
        words = text.split()
        if not words:
            return b""
        rate = WIRE_SAMPLE_RATE_HZ
        # A stable pitch per voice (220-660 Hz), so voices stay tellable apart.
        pitch_hz = 220.0 + (zlib.crc32(voice.encode("utf-8")) % 441)
        tempo = max(0.25, speed)
        gap = np.zeros(round(self._GAP_MS / tempo * rate / 1000))
        fade = round(self._FADE_MS * rate / 1000)
        pieces: list[np.ndarray] = []
        for index, word in enumerate(words):
            beep_ms = min(self._MAX_BEEP_MS, max(self._MIN_BEEP_MS, len(word) * self._MS_PER_LETTER)) / tempo
            t = np.arange(round(beep_ms * rate / 1000)) / rate
            # Alternate two pitches a fifth apart: unmistakably not speech, and not a steady tone.
            frequency = pitch_hz * (1.5 if index % 2 else 1.0)
            beep = self._LEVEL * math.sqrt(2) * np.sin(2 * np.pi * frequency * t)
            ramp = min(fade, len(beep) // 2)
            if ramp:
                envelope = np.linspace(0.0, 1.0, ramp)
                beep[:ramp] *= envelope
                beep[-ramp:] *= envelope[::-1]
            pieces.extend([beep, gap])
        return float_to_pcm16(np.concatenate(pieces))


def make_synthesizer(engine: Literal["auto", "espeak", "tone"] = "auto") -> Synthesizer:
    """The synthesiser for ``engine``: "auto" is espeak-ng when it is on PATH, else the tone voice.

    Raises ``SynthesisError`` when "espeak" is asked for and espeak-ng is not installed.
    """
    if engine == "tone":
        return ToneSynthesizer()
    if engine == "espeak":
        return EspeakSynthesizer()
    if engine == "auto":
        return EspeakSynthesizer() if shutil.which("espeak-ng") else ToneSynthesizer()
    raise ValueError(f"unknown TTS engine {engine!r}: use 'auto', 'espeak' or 'tone'")
