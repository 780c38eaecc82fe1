"""Offline speech recognition for the emulator's ``input_audio_transcription``.

PocketSphinx 5 ships a US English acoustic model, a general language model and CMUdict. Its
general model is poor on synthetic speech, so when the emulator knows what users are expected to
say (``phrases``, plus per-call ``hints``) we build a small trigram model from those sentences
in-process (``pocketsphinx.lm.ArpaBoLM`` with sentence markers) and a dictionary restricted to
their words. Recognition is then limited to that vocabulary, which is what scripted tests want.
With no phrases and no hints the general model is used.

Threads: ``transcribe`` blocks and may run in several worker threads at once. A phrase model gets
a new decoder per call (about 15 ms to build; it makes results independent of earlier calls,
since a PocketSphinx decoder carries acoustic normalisation from one utterance to the next). The
general model takes about half a second to load, so its decoders are pooled (each used by one
thread at a time); their results can vary slightly with what they decoded before.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import importlib.util
import io
import multiprocessing
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ
from realtalk.audio.resample import resample

__all__ = [
    "Recognizer",
    "SphinxRecognizer",
    "Transcription",
    "TranscriptionUnavailable",
    "UnavailableRecognizer",
    "apply_mishear",
    "digits_to_spoken",
    "make_recognizer",
    "normalize_transcript",
    "spoken_digits_to_digits",
]

_SPHINX_RATE_HZ = 16_000
_GENERAL_POOL_IDLE = 2  # general-model decoders kept loaded for reuse
_INSTALL_HINT = "speech recognition needs PocketSphinx: pip install 'realtalk[asr]'"

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORD_TO_DIGIT = {word: str(digit) for digit, word in enumerate(_DIGIT_WORDS)}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


@dataclass(frozen=True)
class Transcription:
    text: str  # lower case words, as recognised
    audio_seconds: float  # duration of the audio transcribed


class TranscriptionUnavailable(Exception):
    """No transcript: ``code`` is "asr_unavailable" (no engine) or "audio_unintelligible" (nothing heard)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[TranscriptionUnavailable], tuple[str, str]]:
        # Raised in a worker process and re-raised here: pickle with both arguments.
        return (type(self), (self.code, self.message))


class Recognizer(Protocol):
    name: str

    def transcribe(
        self, pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, hints: Sequence[str] = ()
    ) -> Transcription:
        """Recognise PCM16 mono audio (blocking; safe to call from several threads at once)."""
        ...


# --- text normalisation -------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def digits_to_spoken(text: str) -> str:
    """Lower case words with every digit spelled out: "XR4892" -> "xr four eight nine two"."""
    words: list[str] = []
    for token in _tokens(text):
        for part in re.findall(r"[0-9]|[^0-9]+", token):
            words.append(_DIGIT_WORDS[int(part)] if part.isdigit() else part)
    return " ".join(words)


def spoken_digits_to_digits(text: str) -> str:
    """Lower case words with spoken digits as digits: "four eight nine two" -> "4 8 9 2"."""
    return " ".join(_WORD_TO_DIGIT.get(token, token) for token in _tokens(text))


def normalize_transcript(text: str) -> str:
    """The form to compare transcripts in: lower case, no punctuation, spoken digits as digits, and
    runs of two or more single letters or digits joined ("X R four eight" -> "xr48")."""
    out: list[str] = []
    run: list[str] = []
    for token in spoken_digits_to_digits(text).split():
        if len(token) == 1:
            run.append(token)
            continue
        out.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        out.append(token)
    out.extend(["".join(run)] if len(run) > 1 else run)
    return " ".join(out)


# --- scripted mishearing ----------------------------------------------------------------------


def _key_pattern(key: str) -> str:
    words = key.split()
    if not words:
        raise ValueError("a mishear key must not be blank")
    parts: list[str] = []
    for word in words:
        if word.isascii() and word.isdigit():
            # The recogniser writes digits as words: "4" also matches "four", "42" also "four two".
            spoken = r"\s+".join(_DIGIT_WORDS[int(d)] for d in word)
            parts.append(f"(?:{re.escape(word)}|{spoken})")
        else:
            parts.append(re.escape(word))
    return r"(?<![\w'])" + r"\s+".join(parts) + r"(?![\w'])"


@functools.lru_cache(maxsize=256)
def _mishear_regex(key: str) -> re.Pattern[str]:
    return re.compile(_key_pattern(key), re.IGNORECASE)


def _literal(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: value


def apply_mishear(text: str, substitutions: Sequence[tuple[str, str]]) -> str:
    """``text`` as if misheard: each ``(heard, written)`` substitution in turn, on the previous one's result.

    Matching is by whole words, case-insensitive: "b" matches the word "B" but not "bob"; a key of
    several words matches them in sequence with any spacing ("four two"); a number in a key also
    matches its digits spoken one by one, as the emulator's recogniser writes them ("4" matches
    "four", "42" matches "four two"). The replacement is inserted as written (no regex escapes); an
    empty one drops the words. Substitutions apply in order, each to the text the previous one left,
    so ``[("four", "for"), ("for", "fore")]`` turns "four" into "fore". Whitespace is normalised.
    """
    for heard, written in substitutions:
        text = _mishear_regex(heard).sub(_literal(written), text)
    return " ".join(text.split()) if substitutions else text


# --- recognisers --------------------------------------------------------------------------------


class UnavailableRecognizer:
    """Stands in when no engine is installed or wanted: every call fails with "asr_unavailable"."""

    name = "none"

    def __init__(self, reason: str = _INSTALL_HINT) -> None:
        self._reason = reason

    def transcribe(
        self, pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, hints: Sequence[str] = ()
    ) -> Transcription:
        raise TranscriptionUnavailable("asr_unavailable", self._reason)


@dataclass(frozen=True)
class _PhraseModel:
    arpa: str  # ARPA trigram model text
    dictionary: str  # pronunciations of its words, CMUdict format


@functools.cache
def _cmudict() -> dict[str, tuple[str, ...]]:
    """CMUdict as word -> pronunciations (loaded once, about 0.3 s; thread-safe enough: at worst
    two threads load it twice)."""
    from pocketsphinx import get_model_path

    entries: dict[str, list[str]] = {}
    path = Path(get_model_path("en-us/cmudict-en-us.dict"))
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            word, _, phones = line.strip().partition(" ")
            if phones:
                entries.setdefault(re.sub(r"\(\d+\)$", "", word), []).append(phones.strip())
    return {word: tuple(prons) for word, prons in entries.items()}


@functools.lru_cache(maxsize=32)
def _phrase_model(sentences: tuple[str, ...]) -> _PhraseModel | None:
    """Build (and cache, per sentence set) the language model and dictionary for ``sentences``.

    Words missing from CMUdict are left out (PocketSphinx has no letter-to-sound rules); None when
    no word is left.
    """
    from pocketsphinx.lm import ArpaBoLM

    pronunciations = _cmudict()
    kept = [" ".join(w for w in s.split() if w in pronunciations) for s in sentences]
    kept = [s for s in kept if s]
    if not kept:
        return None
    # Sentence markers (add_start) let the decoder begin and end an utterance on these sentences.
    model = ArpaBoLM(text="\n".join(kept) + "\n", add_start=True)
    model.compute()
    arpa = io.StringIO()
    model.write(arpa)
    words = sorted({w for s in kept for w in s.split()})
    dictionary = "".join(
        f"{word if i == 0 else f'{word}({i + 1})'} {phones}\n"
        for word in words
        for i, phones in enumerate(pronunciations[word])
    )
    return _PhraseModel(arpa=arpa.getvalue(), dictionary=dictionary)


class SphinxRecognizer:
    """PocketSphinx 5 recogniser; ``phrases`` are the sentences it expects (may be empty)."""

    name = "pocketsphinx"

    def __init__(self, phrases: Sequence[str] = ()) -> None:
        import pocketsphinx  # fail here, not on the first call, when it is missing

        self._sphinx: Any = pocketsphinx
        self._phrases = tuple(sorted({digits_to_spoken(p) for p in phrases if p.strip()}))
        self._pool_lock = threading.Lock()
        self._general_idle: list[Any] = []
        if self._phrases:
            _phrase_model(self._phrases)  # load CMUdict and build the model now, at startup

    def transcribe(
        self, pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, hints: Sequence[str] = ()
    ) -> Transcription:
        audio_seconds = (len(pcm) // BYTES_PER_SAMPLE) / sample_rate_hz
        pcm16k = resample(pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE], sample_rate_hz, _SPHINX_RATE_HZ)
        if not pcm16k:
            raise TranscriptionUnavailable("audio_unintelligible", "there is no audio to transcribe")
        sentences = tuple(sorted({*self._phrases, *(digits_to_spoken(h) for h in hints if h.strip())}))
        model = _phrase_model(sentences) if sentences else None
        if model is None:
            text = self._decode_general(pcm16k)
        else:
            text = self._decode(self._phrase_decoder(model), pcm16k)
        if not text:
            raise TranscriptionUnavailable("audio_unintelligible", "no speech was recognised in the audio")
        return Transcription(text=text, audio_seconds=audio_seconds)

    def _phrase_decoder(self, model: _PhraseModel) -> Any:
        # The decoder reads its files while it is built; they need not outlive it.
        with tempfile.TemporaryDirectory(prefix="realtalk-asr-") as folder:
            lm_path, dict_path = Path(folder, "phrases.arpa"), Path(folder, "phrases.dict")
            lm_path.write_text(model.arpa, encoding="utf-8")
            dict_path.write_text(model.dictionary, encoding="utf-8")
            return self._new_decoder(lm=str(lm_path), dict=str(dict_path))

    def _new_decoder(self, **paths: str) -> Any:
        try:
            return self._sphinx.Decoder(samprate=_SPHINX_RATE_HZ, loglevel="ERROR", **paths)
        except (RuntimeError, ValueError) as exc:
            raise TranscriptionUnavailable("asr_unavailable", f"PocketSphinx could not start: {exc}") from exc

    def _decode_general(self, pcm16k: bytes) -> str:
        with self._pool_lock:
            decoder = self._general_idle.pop() if self._general_idle else None
        if decoder is None:
            decoder = self._new_decoder()
        text = self._decode(decoder, pcm16k)  # a decoder that failed is not reused
        with self._pool_lock:
            if len(self._general_idle) < _GENERAL_POOL_IDLE:
                self._general_idle.append(decoder)
        return text

    @staticmethod
    def _decode(decoder: Any, pcm16k: bytes) -> str:
        try:
            decoder.start_utt()
            # full_utt: the whole utterance is here, so normalisation can use all of it. (One large
            # process_raw call without full_utt has crashed PocketSphinx 5.1 in our trials.)
            decoder.process_raw(pcm16k, full_utt=True)
            decoder.end_utt()
        except RuntimeError as exc:
            raise TranscriptionUnavailable("audio_unintelligible", f"PocketSphinx failed: {exc}") from exc
        hypothesis = decoder.hyp()
        if hypothesis is None:
            return ""
        words = [w for w in str(hypothesis.hypstr).lower().split() if not w.startswith(("<", "[", "+"))]
        return " ".join(words)


class ProcessRecognizer:
    """Runs PocketSphinx in a worker process.

    PocketSphinx holds the GIL for the whole decode (about 1.3 s for a 6 s question with the general
    model): in the caller's process that would freeze every event loop sharing it, which is the
    case for ``realtalk talk`` and ``realtalk serve`` with the embedded emulator (the client's
    microphone and speaker, or every gateway session, would stall on each user turn). The workers
    are shared by all emulators of the process and started on first use with ``forkserver`` (never
    ``fork``: the caller has threads). Each worker builds and caches its own recogniser per phrase set.
    """

    name = "pocketsphinx"

    def __init__(self, phrases: Sequence[str] = ()) -> None:
        import pocketsphinx  # noqa: F401 - fail here, at startup, when it is missing

        self._phrases = tuple(phrases)
        # Start the worker and load the model now, in the background: the first user turn should
        # not pay for a process start and a model load (about 2 s).
        _worker_pool().submit(_warm_up_worker, self._phrases)

    def transcribe(
        self, pcm: bytes, sample_rate_hz: int = WIRE_SAMPLE_RATE_HZ, hints: Sequence[str] = ()
    ) -> Transcription:
        # Blocking wait on the worker (callers run this in a thread); the GIL is free meanwhile.
        future = _worker_pool().submit(
            _transcribe_in_worker, self._phrases, pcm, sample_rate_hz, tuple(hints)
        )
        return future.result()


_POOL_LOCK = threading.Lock()
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_WORKER_RECOGNIZERS: dict[tuple[str, ...], SphinxRecognizer] = {}


def _worker_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, min(2, (os.cpu_count() or 1) - 1))
            _POOL = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_ignore_ctrl_c
            )
            # Shut the workers down before interpreter teardown, not from a garbage-collector callback.
            atexit.register(_POOL.shutdown, wait=True, cancel_futures=True)
        return _POOL


def _ignore_ctrl_c() -> None:
    """In each worker: a Ctrl-C in the terminal reaches the whole process group, workers included;
    the parent decides what it means (it shuts the pool down), a worker must not print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _warm_up_worker(phrases: tuple[str, ...]) -> None:
    recognizer = _WORKER_RECOGNIZERS.get(phrases)
    if recognizer is None:
        recognizer = _WORKER_RECOGNIZERS[phrases] = SphinxRecognizer(phrases)
    with contextlib.suppress(TranscriptionUnavailable):
        recognizer.transcribe(bytes(4800))  # 100 ms of silence loads the general model too


def _transcribe_in_worker(
    phrases: tuple[str, ...], pcm: bytes, sample_rate_hz: int, hints: tuple[str, ...]
) -> Transcription:
    recognizer = _WORKER_RECOGNIZERS.get(phrases)
    if recognizer is None:
        recognizer = _WORKER_RECOGNIZERS[phrases] = SphinxRecognizer(phrases)
    return recognizer.transcribe(pcm, sample_rate_hz, hints)


def make_recognizer(
    engine: Literal["auto", "pocketsphinx", "none"] = "auto",
    phrases: Sequence[str] = (),
    *,
    in_worker_process: bool = False,
) -> Recognizer:
    """The recogniser for ``engine``: "auto" and "pocketsphinx" give PocketSphinx when it is
    installed; "none", or PocketSphinx missing, give one whose ``transcribe`` raises
    ``TranscriptionUnavailable("asr_unavailable", ...)``."""
    if engine not in ("auto", "pocketsphinx", "none"):
        raise ValueError(f"unknown ASR engine {engine!r}: use 'auto', 'pocketsphinx' or 'none'")
    if engine == "none":
        return UnavailableRecognizer(f"speech recognition is turned off (asr engine 'none'); {_INSTALL_HINT}")
    if importlib.util.find_spec("pocketsphinx") is None:
        return UnavailableRecognizer()
    return ProcessRecognizer(phrases) if in_worker_process else SphinxRecognizer(phrases)
