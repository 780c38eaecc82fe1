"""Eval cases: the built-in alphanumeric suite, users' YAML files, and what the emulator hears."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from realtalk.audio.pcm import read_wav, rms_dbfs, silence, write_wav
from realtalk.emulator import Emulator, EmulatorConfig, load_engines
from realtalk.errors import ConfigError
from realtalk.eval.cases import SUITES, Case, builtin_cases, builtin_phrases, case_phrases, load_cases
from realtalk.eval.scoring import normalise_alphanumeric, score
from realtalk.eval.timing import follows_intent

from ..conftest import require_binary

ALPHANUMERIC = builtin_cases("alphanumeric")
TICKET = "- {id: t1, style: digits, text: X R four eight nine two, expected: XR-4892, audio: t1.wav}\n"


def write_case_audio(folder: Path, name: str = "t1.wav", rate_hz: int = 24_000) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, silence(500, rate_hz), rate_hz)
    return path


def cases_file(folder: Path, text: str, name: str = "mine.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, **load: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load_cases(path, **load)
    return str(raised.value)


# --- the built-in suite ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", ALPHANUMERIC, ids=lambda case: case.id)
def test_each_builtin_case_speaks_exactly_its_expected_answer(case: Case) -> None:
    assert normalise_alphanumeric(case.text) == normalise_alphanumeric(case.expected)
    assert normalise_alphanumeric(case.expected)  # a code, not an empty answer


def test_the_alphanumeric_suite_covers_every_kind_of_code_in_every_style() -> None:
    assert SUITES == ("alphanumeric", "interruption", "latency", "instructions", "tools")
    assert 10 <= len(ALPHANUMERIC) <= 16
    assert len({case.id for case in ALPHANUMERIC}) == len(ALPHANUMERIC)
    assert {case.suite for case in ALPHANUMERIC} == {"alphanumeric"}
    kinds = {case.id.split("-")[0] for case in ALPHANUMERIC}
    assert kinds == {"plate", "ticket", "serial", "wifi", "name"}
    assert {case.style for case in ALPHANUMERIC} == {"digits", "nato", "grouped", "spelled"}
    # The issue's own example, read three ways, so styles can be compared on one code.
    assert {case.style for case in ALPHANUMERIC if case.expected == "XR-4892"} == {
        "digits",
        "nato",
        "grouped",
    }


def test_builtin_audio_is_short_24_khz_mono_pcm16_speech_with_silence_around_it() -> None:
    total_bytes = 0
    for case in ALPHANUMERIC:
        pcm, rate_hz, channels = read_wav(case.audio)
        assert (rate_hz, channels) == (24_000, 1), case.id
        seconds = len(pcm) / 48_000
        assert 2.0 <= seconds <= 5.0, (case.id, seconds)
        assert rms_dbfs(pcm[:12_000]) < -90, f"{case.id}: speech in the first 250 ms"
        assert rms_dbfs(pcm[-28_800:]) < -90, f"{case.id}: speech in the last 600 ms"
        assert rms_dbfs(pcm) > -35, f"{case.id}: too quiet to be speech"
        total_bytes += case.audio.stat().st_size
    assert total_bytes < 2.2e6


def test_builtin_phrases_are_the_sentences_the_cases_speak_barge_ins_included() -> None:
    everything = [case for suite in SUITES for case in builtin_cases(suite)]
    spoken = [text for case in everything for text in (case.text, case.followup_text) if text]
    assert builtin_phrases() == tuple(dict.fromkeys(spoken))
    assert builtin_phrases()[: len(ALPHANUMERIC)] == tuple(case.text for case in ALPHANUMERIC)
    assert "stop please what is the weather in paris" in builtin_phrases()
    assert case_phrases([*ALPHANUMERIC, *ALPHANUMERIC]) == case_phrases(ALPHANUMERIC)  # distinct, in order


def test_an_unknown_suite_is_a_config_error_naming_the_suites() -> None:
    with pytest.raises(ConfigError, match=r"unknown eval suite 'speed'.*alphanumeric"):
        builtin_cases("speed")


def test_every_builtin_suite_has_cases_with_what_its_runner_needs() -> None:
    interruption = builtin_cases("interruption")
    assert len(interruption) >= 3 and {c.style for c in interruption} == {"early", "mid", "late"}
    for case in interruption:
        assert case.followup_text and case.followup_audio is not None and case.followup_audio.exists()
        assert case.interrupt_after_ms is not None and case.interrupt_after_ms > 0
        assert follows_intent(case.expected, case.followup_text), case.id  # the request has its words
    assert len(builtin_cases("latency")) >= 8  # enough turns for a p95
    rules = {name for case in builtin_cases("instructions") for name in case.rules}
    assert {"language", "max_words", "refuse", "must_include"} <= rules
    tools = builtin_cases("tools")
    assert {c.expected for c in tools} >= {"get_weather", "none"}
    for case in tools:
        names = [tool["name"] for tool in case.tools]
        assert case.expected in [*names, "none"], case.id
        assert (case.arguments is None) is (case.expected == "none"), case.id


# --- users' YAML files ----------------------------------------------------------------------------


def test_a_users_file_gives_cases_with_audio_relative_to_it_alphanumeric_by_default(tmp_path: Path) -> None:
    audio = write_case_audio(tmp_path / "recordings", "ticket.wav")
    path = cases_file(
        tmp_path,
        "- id: ticket-1\n"
        "  style: grouped\n"
        "  text: X R forty-eight ninety-two\n"
        "  expected: XR-4892\n"
        "  audio: recordings/ticket.wav\n"
        "  instructions: Read back the code you heard, nothing else.\n"
        "- {id: plate.2, style: nato, text: Kilo Lima seven, expected: KL7, audio: recordings/ticket.wav}\n",
        name="support-desk.yaml",
    )
    first, second = load_cases(path)
    assert first == Case(
        id="ticket-1",
        suite="alphanumeric",
        style="grouped",
        text="X R forty-eight ninety-two",
        expected="XR-4892",
        audio=audio,
        instructions="Read back the code you heard, nothing else.",
    )
    assert (second.id, second.expected, second.instructions) == ("plate.2", "KL7", None)


def test_an_unknown_key_is_an_error_naming_the_case_and_the_key(tmp_path: Path) -> None:
    write_case_audio(tmp_path)
    path = cases_file(tmp_path, TICKET + "- {id: t2, style: nato, text: Alpha, expected: A, expect: B}\n")
    message = config_error(path)
    assert "case 't2'" in message and "unknown key 'expect'" in message and str(path) in message


@pytest.mark.parametrize("key", ["id", "style", "text", "expected"])
def test_a_missing_field_is_an_error_naming_the_case_and_the_field(tmp_path: Path, key: str) -> None:
    fields = {"id": "t9", "style": "digits", "text": "four two", "expected": "42"}
    del fields[key]
    path = cases_file(tmp_path, "- {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n")
    message = config_error(path)
    assert f"has no '{key}'" in message
    assert ("case 't9'" if key != "id" else "case #1") in message


def test_a_code_yaml_reads_as_a_number_must_be_quoted(tmp_path: Path) -> None:
    path = cases_file(tmp_path, "- {id: pin, style: digits, text: zero zero four two, expected: 0042}\n")
    message = config_error(path)
    assert "'expected' must be text" in message and "quote it" in message and "case 'pin'" in message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "must be a YAML list of cases"),
        ("id: t1\n", "must be a YAML list of cases"),
        ("- [t1]\n", "case #1 must be a mapping"),
        ("- {id: t1, style: [\n", "is not valid YAML"),
        (TICKET + TICKET, "case id 't1' is used twice"),
        ("- {id: 't 1', style: s, text: a, expected: a}\n", "'id' may hold only"),
        ("- {id: t1, style: s, text: '  ', expected: a}\n", "'text' is empty"),
        ("- {id: t1, style: s, text: a, expected: a, audio: nowhere.wav}\n", "nowhere.wav does not exist"),
    ],
)
def test_a_malformed_file_is_a_config_error_saying_what_is_wrong(
    tmp_path: Path, text: str, complaint: str
) -> None:
    write_case_audio(tmp_path)
    assert complaint in config_error(cases_file(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read the eval cases file" in config_error(tmp_path / "absent.yaml")


def test_audio_that_is_not_24_khz_mono_pcm16_is_refused_with_how_to_convert_it(tmp_path: Path) -> None:
    write_case_audio(tmp_path, "t1.wav", rate_hz=16_000)
    message = config_error(cases_file(tmp_path, TICKET))
    assert "16000 Hz" in message and "24 kHz mono 16-bit" in message and "sox t1.wav -r 24000" in message


@pytest.mark.system_package("espeak-ng")
def test_a_case_without_audio_is_spoken_from_its_text_once_and_reused(tmp_path: Path) -> None:
    require_binary("espeak-ng")
    cache = tmp_path / "speech"
    path = cases_file(
        tmp_path, "- {id: spoken, style: digits, text: X R four eight nine two, expected: XR4892}\n"
    )
    (case,) = load_cases(path, speech_cache_dir=cache)
    assert case.audio.parent == cache
    pcm, rate_hz, channels = read_wav(case.audio)
    assert (rate_hz, channels) == (24_000, 1) and rms_dbfs(pcm) > -35
    # The same voice as the built-in fixture with the same words.
    (builtin,) = (c for c in ALPHANUMERIC if c.text == case.text)
    assert pcm == read_wav(builtin.audio)[0]
    written_ns = case.audio.stat().st_mtime_ns
    (again,) = load_cases(path, speech_cache_dir=cache)
    assert again.audio == case.audio and again.audio.stat().st_mtime_ns == written_ns
    assert [p.name for p in cache.iterdir()] == [case.audio.name]  # no partial files left


def test_without_espeak_ng_a_case_without_audio_is_an_error_naming_espeak_ng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = cases_file(tmp_path, "- {id: spoken, style: digits, text: four two, expected: '42'}\n")
    message = config_error(path, speech_cache_dir=tmp_path / "speech")
    assert "case 'spoken' has no audio" in message
    assert "espeak-ng, which is not installed: apt-get install espeak-ng" in message


# --- what the emulator hears ----------------------------------------------------------------------


async def transcribe_through_emulator(emu: Emulator, case: Case) -> str | None:
    """Send a case's WAV to the emulator as a user turn; the input transcription, or None."""
    client = AsyncOpenAI(websocket_base_url=emu.websocket_base_url, api_key="test-key")
    options = {"close_timeout": 1.0}
    try:
        async with client.realtime.connect(
            model="gpt-realtime-1.5", websocket_connection_options=options
        ) as conn:
            await conn.session.update(
                session={
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
                }
            )
            pcm = read_wav(case.audio)[0]
            for offset in range(0, len(pcm), 4_800):
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[offset : offset + 4_800]).decode()
                )
            async with asyncio.timeout(30):
                async for event in conn:
                    if event.type == "conversation.item.input_audio_transcription.completed":
                        return event.transcript
                    if event.type == "conversation.item.input_audio_transcription.failed":
                        return None
    finally:
        await client.close()
    return None


async def test_the_emulator_hears_the_builtin_cases_with_their_phrases() -> None:
    pytest.importorskip("pocketsphinx")
    engines = load_engines("energy", "auto", "tone", phrases=builtin_phrases())
    async with Emulator(EmulatorConfig(pace=None), engines=engines) as emu:
        heard = await asyncio.gather(*(transcribe_through_emulator(emu, case) for case in ALPHANUMERIC))
    scores = {
        case.id: score(case.expected, text or "") for case, text in zip(ALPHANUMERIC, heard, strict=True)
    }
    misheard = {case_id: (s.expected_normalised, s.heard) for case_id, s in scores.items() if not s.exact}
    # All twelve are heard exactly today (see cases.ESPEAK_ARGS); allow a little drift across
    # PocketSphinx builds, but not a voice or pace it cannot follow.
    assert len(misheard) <= len(ALPHANUMERIC) // 6, misheard
    assert all(s.cer <= 0.5 for s in scores.values()), misheard


def test_the_committed_yaml_lists_the_cases_of_the_fixtures_script_in_order() -> None:
    from realtalk.eval.make_fixtures import SUITES as SOURCE

    for suite, source in SOURCE.items():
        cases = builtin_cases(suite)
        assert [(c.id, c.style, c.text, c.expected, c.audio.name) for c in cases] == [
            (case["id"], case["style"], case["text"], case["expected"], f"{case['id']}.wav")
            for case in source
        ], suite
        for case, written in zip(cases, source, strict=True):
            assert case.followup_text == written.get("followup_text")
            assert case.interrupt_after_ms == written.get("interrupt_after_ms")
            assert dict(case.rules) == written.get("rules", {})
            assert [dict(t) for t in case.tools] == written.get("tools", [])
            assert case.arguments == written.get("arguments")


def test_a_case_names_its_suite_and_the_suites_keys_are_checked(tmp_path: Path) -> None:
    write_case_audio(tmp_path)
    base = "{id: c1, style: s, text: hello there, expected: hello, audio: t1.wav"
    path = cases_file(tmp_path, f"- {base}, suite: latency}}\n", name="mine.yaml")
    assert load_cases(path)[0].suite == "latency"
    path = cases_file(tmp_path, f"- {base}, suite: interruption}}\n", name="mine.yaml")
    assert "every interruption case needs" in config_error(path) and "followup_text" in config_error(path)
    path = cases_file(tmp_path, f"- {base}, suite: latency, rules: {{max_words: 3}}}}\n", name="mine.yaml")
    assert "unknown key 'rules'" in config_error(path)
    path = cases_file(
        tmp_path, f"- {base}, suite: instructions, instructions: Be brief., rules: {{max_words: many}}}}\n"
    )
    assert "rule 'max_words' must be a whole number" in config_error(path)
    path = cases_file(tmp_path, f"- {base}, suite: tools, tools: [{{description: x}}]}}\n")
    assert "every tool needs a 'name'" in config_error(path)
    path = cases_file(tmp_path, f"- {base}, suite: speed}}\n")
    assert "unknown suite 'speed'" in config_error(path)
