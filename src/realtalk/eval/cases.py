"""Evaluation cases: a spoken input (a WAV), the words it speaks, and the answer expected.

Built-in suites ship as package data: ``fixtures/<suite>.yaml`` lists the cases and names their
WAVs, which ``make_fixtures.py`` generated once with espeak-ng and which are committed, so a run
needs no speech synthesiser. Users add their own cases as a YAML file of the same form::

    - id: ticket-1                  # letters, digits, ".", "_", "-"; unique in the file
      style: grouped                # how the code is read: digits, nato, grouped, spelled, ...
      text: X R forty-eight ninety-two   # the words spoken
      expected: XR-4892             # the answer, scored after normalise_alphanumeric
      audio: recordings/ticket-1.wav     # optional: 24 kHz mono 16-bit WAV, relative to the YAML file
      instructions: Read back the code you heard, nothing else.   # optional, added to the session's

A case without ``audio`` is spoken from its ``text`` with espeak-ng when the file is loaded, the way
the built-in fixtures were made, into a cache folder (one WAV per distinct text, reused). A case's
suite is its ``suite`` key, else the YAML file's name without its extension when that names a suite
(``interruption.yaml``), else ``alphanumeric``. Each suite has keys of its own:

- *interruption*: ``followup_text`` (what the user says over the reply; ``followup_audio`` optional,
  spoken from the text like ``audio``) and ``interrupt_after_ms`` (how much of the reply has played
  when the user starts talking over it; the WAV's own lead silence comes on top). ``expected``:
  the words the answer after the barge-in must contain (it follows the new intent).
- *latency*: ``expected`` is the question's words (the transcript is scored against them).
- *instructions*: ``instructions`` (the system prompt under test) and ``rules``, a mapping of
  ``language`` (``en``, ``fr``, ``de``, ``es``, ``it``), ``max_words``, ``max_sentences``,
  ``refuse`` (true), ``must_include`` and ``must_not_include`` (lists of phrases). ``expected``
  describes what a good reply does, for a grader model.
- *tools*: ``tools`` (function definitions: ``name``, ``description``, ``parameters`` as JSON
  schema) and ``arguments`` (a mapping the call's arguments must contain); ``expected`` is the
  tool's name, or ``none`` when no tool must be called.

For the alphanumeric suite, ``text`` must be the code alone, since normalisation keeps every word
("the code is XR" reads as "THECODEISXR"): normalise(text) == normalise(expected).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from realtalk.audio.pcm import WIRE_SAMPLE_RATE_HZ, pcm16_to_int16, read_wav, silence, wav_bytes
from realtalk.audio.resample import resample
from realtalk.errors import ConfigError

__all__ = [
    "DEFAULT_SUITES",
    "SUITES",
    "Case",
    "builtin_cases",
    "builtin_phrases",
    "case_phrases",
    "load_cases",
    "synthesise_speech",
]

SUITES: tuple[str, ...] = ("alphanumeric", "interruption", "latency", "instructions", "tools")
DEFAULT_SUITES: tuple[str, ...] = ("alphanumeric", "interruption", "latency")

FIXTURES_DIR = Path(__file__).with_name("fixtures")

# A dictating pace, with short gaps between words. Chosen by trial against the emulator's
# recogniser (PocketSphinx with the cases' phrases): the en-us+f2 voice at 170 words per minute is
# heard right on all built-in cases, the default male en-us voice at 130 on a third of them (it
# hears "eight" as "i" and a first "X" or "K" as "u"). The silence around the speech lets a server
# VAD see the onset (its prefix padding is 300 ms) and the end (it waits 500 ms of silence).
ESPEAK_ARGS: tuple[str, ...] = ("-v", "en-us+f2", "-s", "170", "-g", "4")
LEAD_MS, TAIL_MS = 300, 700
# Trimming espeak's own silence: samples below 0.1 % of full scale (about -60 dBFS) are silence.
_TRIM_LEVEL = 33
_ESPEAK_TIMEOUT_S = 60.0

_KEYS_REQUIRED = ("id", "style", "text", "expected")
_KEYS_OPTIONAL = ("audio", "instructions", "suite")
_SUITE_KEYS: dict[str, tuple[str, ...]] = {
    "interruption": ("followup_text", "followup_audio", "interrupt_after_ms"),
    "instructions": ("rules",),
    "tools": ("tools", "arguments"),
}
_SUITE_REQUIRED: dict[str, tuple[str, ...]] = {
    "interruption": ("followup_text", "interrupt_after_ms"),
    "instructions": ("instructions", "rules"),
    "tools": ("tools",),
}
_RULES = ("language", "max_words", "max_sentences", "refuse", "must_include", "must_not_include")
LANGUAGES = ("en", "fr", "de", "es", "it")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXAMPLE = "- {id: ticket-1, style: grouped, text: X R forty-eight ninety-two, expected: XR-4892}"


@dataclass(frozen=True)
class Case:
    """One spoken input and the answer expected from it."""

    id: str  # "ticket-grouped-1"
    suite: str  # "alphanumeric"
    style: str  # "digits" | "nato" | "grouped" | "spelled" | ...
    text: str  # what is spoken (the WAV's words)
    expected: str  # the code to recognise, e.g. "XR-4892"
    audio: Path  # 24 kHz mono PCM16 WAV
    instructions: str | None = None  # extra session instructions for this case
    # interruption: what the user says over the reply, and how much of the reply plays first
    followup_text: str | None = None
    followup_audio: Path | None = None
    interrupt_after_ms: int | None = None
    # instructions: the rules the reply is scored by (see the module docstring)
    rules: Mapping[str, Any] = field(default_factory=dict)
    # tools: the function tools offered, and the arguments the call must contain
    tools: tuple[Mapping[str, Any], ...] = ()
    arguments: Mapping[str, Any] | None = None


def builtin_cases(suite: str) -> tuple[Case, ...]:
    """The cases of a built-in suite (one of ``SUITES``), with their committed WAVs."""
    if suite not in SUITES:
        raise ConfigError(
            f"unknown eval suite {suite!r}: the built-in suites are {', '.join(SUITES)}",
            variable="--suite",
            example="realtalk eval --suite alphanumeric",
        )
    return _builtin(suite)


@functools.cache
def _builtin(suite: str) -> tuple[Case, ...]:
    return load_cases(FIXTURES_DIR / f"{suite}.yaml")


def builtin_phrases() -> tuple[str, ...]:
    """The sentences spoken in every built-in case: the phrase list an emulator's recogniser needs
    to hear them (``load_engines(..., phrases=builtin_phrases())``)."""
    return case_phrases(case for suite in SUITES for case in builtin_cases(suite))


def case_phrases(cases: Iterable[Case]) -> tuple[str, ...]:
    """The distinct sentences spoken in ``cases`` (barge-ins too), in order: a recogniser's phrase list."""
    spoken = (text for case in cases for text in (case.text, case.followup_text) if text)
    return tuple(dict.fromkeys(spoken))


def load_cases(path: Path, *, speech_cache_dir: Path | None = None) -> tuple[Case, ...]:
    """Read the cases of a YAML file (the form is in this module's docstring).

    Audio paths are relative to the file. Cases without audio are spoken from their text with
    espeak-ng into ``speech_cache_dir`` (default: ``realtalk-eval-speech`` in the system's
    temporary folder), one WAV per distinct text, reused by later loads. Every problem, from a
    missing file to an unknown key, raises ``ConfigError`` naming the file, the case and the key.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the eval cases file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(document, list) or not document:
        raise ConfigError(
            f"{path} must be a YAML list of cases, each a mapping with id, style, text and expected",
            example=_EXAMPLE,
        )
    cases: list[Case] = []
    seen: set[str] = set()
    for index, entry in enumerate(document, start=1):
        case = _parse_case(path, index, entry, speech_cache_dir)
        if case.id in seen:
            raise ConfigError(f"{path}: case id {case.id!r} is used twice; give each case its own id")
        seen.add(case.id)
        cases.append(case)
    return tuple(cases)


def _parse_case(path: Path, index: int, entry: Any, speech_cache_dir: Path | None) -> Case:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: case #{index} must be a mapping of keys to values", example=_EXAMPLE)
    raw_id = entry.get("id")
    where = f"{path}: case {raw_id!r}" if isinstance(raw_id, str) and raw_id else f"{path}: case #{index}"
    suite = entry.get("suite", path.stem if path.stem in SUITES else "alphanumeric")
    if suite not in SUITES:
        raise ConfigError(f"{where}: unknown suite {suite!r}; the suites are {', '.join(SUITES)}")
    allowed = _KEYS_REQUIRED + _KEYS_OPTIONAL + _SUITE_KEYS.get(suite, ())
    unknown = [str(key) for key in entry if key not in allowed]
    if unknown:
        raise ConfigError(
            f"{where} has unknown key {unknown[0]!r}; the keys of a {suite} case are {', '.join(allowed)}"
        )
    required = _KEYS_REQUIRED + _SUITE_REQUIRED.get(suite, ())
    for key in required:
        if key not in entry or entry[key] is None:
            raise ConfigError(f"{where} has no {key!r}; every {suite} case needs {', '.join(required)}")
    structured = ("interrupt_after_ms", "rules", "tools", "arguments")
    values = {key: _text(where, key, entry[key]) for key in entry if key not in structured}
    if not _ID.fullmatch(values["id"]):
        raise ConfigError(
            f"{where}: 'id' may hold only letters, digits, '.', '_' and '-', starting with a letter or digit",
            example="id: plate-nato-1",
        )
    audio = _audio(path, where, values.get("audio"), values["text"], speech_cache_dir)
    followup_audio = None
    if "followup_text" in values:
        followup_audio = _audio(
            path, where, values.get("followup_audio"), values["followup_text"], speech_cache_dir
        )
    interrupt_after_ms = entry.get("interrupt_after_ms")
    if interrupt_after_ms is not None and (
        not isinstance(interrupt_after_ms, int)
        or isinstance(interrupt_after_ms, bool)
        or interrupt_after_ms < 0
    ):
        raise ConfigError(
            f"{where}: 'interrupt_after_ms' must be a whole number of milliseconds >= 0",
            example="interrupt_after_ms: 1500",
        )
    return Case(
        id=values["id"],
        suite=suite,
        style=values["style"],
        text=values["text"],
        expected=values["expected"],
        audio=audio,
        instructions=values.get("instructions"),
        followup_text=values.get("followup_text"),
        followup_audio=followup_audio,
        interrupt_after_ms=interrupt_after_ms,
        rules=_rules(where, entry.get("rules")),
        tools=_tools(where, entry.get("tools")),
        arguments=_arguments(where, entry.get("arguments")),
    )


def _audio(path: Path, where: str, given: str | None, text: str, speech_cache_dir: Path | None) -> Path:
    if given is None:
        return _spoken(where, text, speech_cache_dir)
    audio = path.parent / given
    _check_wav(where, audio)
    return audio


def _rules(where: str, rules: Any) -> dict[str, Any]:
    if rules is None:
        return {}
    example = "rules: {language: fr, max_words: 12}"
    if not isinstance(rules, dict) or not rules:
        raise ConfigError(f"{where}: 'rules' must be a mapping of rule names to values", example=example)
    for name, value in rules.items():
        if name not in _RULES:
            raise ConfigError(
                f"{where}: unknown rule {name!r}; the rules are {', '.join(_RULES)}", example=example
            )
        ok = {
            "language": isinstance(value, str) and value in LANGUAGES,
            "max_words": isinstance(value, int) and not isinstance(value, bool) and value > 0,
            "max_sentences": isinstance(value, int) and not isinstance(value, bool) and value > 0,
            "refuse": isinstance(value, bool),
            "must_include": _phrases(value),
            "must_not_include": _phrases(value),
        }[name]
        if not ok:
            wants = {
                "language": f"one of {', '.join(LANGUAGES)}",
                "max_words": "a whole number above 0",
                "max_sentences": "a whole number above 0",
                "refuse": "true or false",
                "must_include": "a list of phrases",
                "must_not_include": "a list of phrases",
            }[name]
            raise ConfigError(f"{where}: rule {name!r} must be {wants}, not {value!r}", example=example)
    return dict(rules)


def _phrases(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def _tools(where: str, tools: Any) -> tuple[Mapping[str, Any], ...]:
    if tools is None:
        return ()
    example = "tools: [{name: get_weather, description: The weather in a city, parameters: {type: object}}]"
    if not isinstance(tools, list) or not tools:
        raise ConfigError(f"{where}: 'tools' must be a list of function definitions", example=example)
    out: list[Mapping[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise ConfigError(f"{where}: every tool needs a 'name'", example=example)
        unknown = [key for key in tool if key not in ("name", "description", "parameters")]
        if unknown:
            raise ConfigError(
                f"{where}: tool {tool['name']!r} has unknown key {unknown[0]!r}; "
                "its keys are name, description and parameters",
                example=example,
            )
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise ConfigError(f"{where}: tool {tool['name']!r}: 'parameters' must be a JSON schema object")
        out.append(
            {"name": tool["name"], "description": str(tool.get("description", "")), "parameters": parameters}
        )
    return tuple(out)


def _arguments(where: str, arguments: Any) -> dict[str, Any] | None:
    if arguments is None:
        return None
    if not isinstance(arguments, dict):
        raise ConfigError(f"{where}: 'arguments' must be a mapping", example="arguments: {city: Oslo}")
    return dict(arguments)


def _text(where: str, key: str, value: Any) -> str:
    # YAML reads 4892 as a number and 0042 as an octal one: codes must be quoted to stay as written.
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: {key!r} must be text, not {type(value).__name__} {value!r}; quote it",
            example=f'{key}: "{value}"',
        )
    if not value.strip():
        raise ConfigError(f"{where}: {key!r} is empty")
    return value.strip()


def _check_wav(where: str, audio: Path) -> None:
    convert = f"sox {audio.name} -r 24000 -c 1 -b 16 -e signed-integer {audio.stem}-24k.wav"
    try:
        with wave.open(str(audio), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getcomptype())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{where}: audio file {audio} does not exist (paths are relative to the YAML file)"
        ) from exc
    except (OSError, EOFError, wave.Error) as exc:
        raise ConfigError(f"{where}: audio file {audio} is not a readable WAV file ({exc})") from exc
    if shape != (WIRE_SAMPLE_RATE_HZ, 1, 2, "NONE"):
        rate_hz, channels, width, _ = shape
        raise ConfigError(
            f"{where}: audio file {audio} is {rate_hz} Hz, {channels} channel(s), {8 * width}-bit; "
            f"cases need 24 kHz mono 16-bit PCM. Convert it: {convert}"
        )


# --- speech synthesis ----------------------------------------------------------------------------


def synthesise_speech(text: str, *, espeak: str | None = None) -> bytes:
    """Speak ``text`` with espeak-ng as a case's audio: PCM16 24 kHz mono, espeak's own silence
    trimmed, then ``LEAD_MS`` of silence before and ``TAIL_MS`` after.

    Raises ``ConfigError`` when espeak-ng is not installed or fails.
    """
    executable = espeak or shutil.which("espeak-ng")
    if executable is None:
        raise ConfigError(
            "speaking a case's text needs espeak-ng, which is not installed: apt-get install espeak-ng "
            "(or give the case an audio file)",
            example="audio: recordings/ticket-1.wav",
        )
    # Text through stdin, so a leading "-" is never read as an option.
    command = [executable, *ESPEAK_ARGS, "--stdout", "--stdin"]
    try:
        done = subprocess.run(
            command, input=text.encode("utf-8"), capture_output=True, timeout=_ESPEAK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"espeak-ng could not run: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
        raise ConfigError(f"espeak-ng failed to speak {text!r}: {detail}")
    pcm, rate_hz, _channels = read_wav(done.stdout)
    loud = np.flatnonzero(np.abs(pcm16_to_int16(pcm).astype(np.int32)) > _TRIM_LEVEL)
    if loud.size == 0:
        raise ConfigError(f"espeak-ng spoke nothing audible for {text!r}")
    speech = pcm[2 * int(loud[0]) : 2 * (int(loud[-1]) + 1)]
    return silence(LEAD_MS) + resample(speech, rate_hz, WIRE_SAMPLE_RATE_HZ) + silence(TAIL_MS)


def _spoken(where: str, text: str, speech_cache_dir: Path | None) -> Path:
    folder = speech_cache_dir or Path(tempfile.gettempdir()) / "realtalk-eval-speech"
    key = hashlib.sha256("\0".join([*ESPEAK_ARGS, str(LEAD_MS), str(TAIL_MS), text]).encode()).hexdigest()
    audio = folder / f"{key[:24]}.wav"
    if audio.exists():
        return audio
    try:
        pcm = synthesise_speech(text)
    except ConfigError as exc:
        raise ConfigError(f"{where} has no audio: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a concurrent load never reads half a file.
    partial = folder / f".{key[:24]}.{os.getpid()}.tmp"
    partial.write_bytes(wav_bytes(pcm))
    os.replace(partial, audio)
    return audio
