from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio.pcm import read_wav
from realtalk.audio.resample import resample
from realtalk.emulator.asr import (
    Recognizer,
    TranscriptionUnavailable,
    digits_to_spoken,
    make_recognizer,
    normalize_transcript,
    spoken_digits_to_digits,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
PHRASES = tuple(entry["text"] for entry in MANIFEST.values() if entry["text"])


def fixture_pcm(name: str) -> bytes:
    return read_wav(FIXTURES / f"{name}.wav")[0]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    pytest.importorskip("pocketsphinx")
    return make_recognizer("pocketsphinx", phrases=PHRASES)


def words_of(text: str) -> set[str]:
    return set(spoken_digits_to_digits(text).split())


# --- normalisation helpers ------------------------------------------------------------------------


def test_spoken_digits_become_digits_and_everything_else_is_lower_cased() -> None:
    assert spoken_digits_to_digits("Four EIGHT nine two, Oslo!") == "4 8 9 2 oslo"


def test_digits_are_spelled_out_one_by_one() -> None:
    assert digits_to_spoken("Ticket XR4892.") == "ticket xr four eight nine two"


@given(st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_spelling_digits_out_and_back_gives_the_digits(digits: str) -> None:
    assert spoken_digits_to_digits(digits_to_spoken(digits)) == " ".join(digits)


def test_normalized_transcripts_join_runs_of_single_letters_and_digits() -> None:
    spoken = "The ticket number is X R four eight nine two."
    assert normalize_transcript(spoken) == "the ticket number is xr4892"
    assert normalize_transcript("tell me a story") == "tell me a story"  # a lone "a" stays a word


# --- recognition ----------------------------------------------------------------------------------


def test_the_question_fixture_is_recognised_with_the_phrase_list(recognizer: Recognizer) -> None:
    result = recognizer.transcribe(fixture_pcm("question"))
    assert {"weather", "oslo", "today"} <= words_of(result.text)
    assert result.text == result.text.lower()


def test_the_ticket_fixture_is_recognised_with_the_phrase_list(recognizer: Recognizer) -> None:
    words = words_of(recognizer.transcribe(fixture_pcm("ticket")).text)
    assert {"ticket", "4", "9", "2"} <= words


def test_audio_seconds_is_the_length_of_the_audio(recognizer: Recognizer) -> None:
    result = recognizer.transcribe(fixture_pcm("question"))
    assert result.audio_seconds == pytest.approx(MANIFEST["question"]["duration_ms"] / 1000, abs=0.001)


def test_audio_at_another_sample_rate_is_resampled_first(recognizer: Recognizer) -> None:
    pcm16k = resample(fixture_pcm("question"), 24_000, 16_000)
    result = recognizer.transcribe(pcm16k, sample_rate_hz=16_000)
    assert {"weather", "oslo"} <= words_of(result.text)
    assert result.audio_seconds == pytest.approx(MANIFEST["question"]["duration_ms"] / 1000, abs=0.001)


def test_hints_teach_a_recogniser_without_phrases_the_words_of_one_call() -> None:
    pytest.importorskip("pocketsphinx")
    plain = make_recognizer("auto")
    result = plain.transcribe(fixture_pcm("question"), hints=[MANIFEST["question"]["text"]])
    assert {"weather", "oslo"} <= words_of(result.text)


def test_phrase_words_missing_from_the_dictionary_are_skipped_not_fatal() -> None:
    pytest.importorskip("pocketsphinx")
    recognizer = make_recognizer("pocketsphinx", phrases=["what is the weather like in oslo today qwzxv"])
    assert {"weather", "oslo"} <= words_of(recognizer.transcribe(fixture_pcm("question")).text)


def test_concurrent_transcriptions_give_the_same_text_as_one_at_a_time(recognizer: Recognizer) -> None:
    clips = [fixture_pcm(name) for name in ("question", "ticket", "stop")]
    sequential = [recognizer.transcribe(pcm).text for pcm in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda pcm: recognizer.transcribe(pcm).text, clips * 2))
    assert concurrent == sequential * 2


@pytest.mark.parametrize("name", ["silence", "noise"])
def test_audio_without_speech_is_reported_as_unintelligible(recognizer: Recognizer, name: str) -> None:
    with pytest.raises(TranscriptionUnavailable) as caught:
        recognizer.transcribe(fixture_pcm(name))
    assert caught.value.code == "audio_unintelligible"


def test_empty_audio_is_reported_as_unintelligible(recognizer: Recognizer) -> None:
    with pytest.raises(TranscriptionUnavailable) as caught:
        recognizer.transcribe(b"")
    assert caught.value.code == "audio_unintelligible"


def test_the_none_engine_refuses_with_asr_unavailable_and_says_how_to_install() -> None:
    recognizer = make_recognizer("none")
    assert recognizer.name == "none"
    with pytest.raises(TranscriptionUnavailable, match=r"realtalk\[asr\]") as caught:
        recognizer.transcribe(fixture_pcm("question"))
    assert caught.value.code == "asr_unavailable"
    assert str(caught.value).startswith("asr_unavailable: ")


def test_the_install_hint_names_the_extra() -> None:
    from realtalk.emulator.asr import UnavailableRecognizer

    with pytest.raises(TranscriptionUnavailable, match=r"realtalk\[asr\]") as caught:
        UnavailableRecognizer().transcribe(b"\x00\x00")
    assert caught.value.code == "asr_unavailable"


def test_auto_uses_pocketsphinx_when_it_is_installed() -> None:
    pytest.importorskip("pocketsphinx")
    assert make_recognizer("auto").name == "pocketsphinx"
