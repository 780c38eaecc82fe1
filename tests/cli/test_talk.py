"""``realtalk talk`` end to end against the embedded emulator, through WAV files: no sound card.

The command function is mounted on a local Typer app (the real ``realtalk`` app is wired elsewhere),
driven with ``CliRunner`` or, where exit codes, signals and stderr matter, in a subprocess. Runs use
the hidden ``--speed`` so a conversation of several seconds takes one or two.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import typer
from typer.testing import CliRunner, Result

from realtalk.cli.talk import talk
from realtalk.cli.talk_options import Eagerness, VadMode, build_profile
from realtalk.emulator import Emulator, EmulatorConfig, Faults
from realtalk.protocol.session_config import SemanticVad, ServerVad
from realtalk.testing import configuration_variables

FIXTURES = Path(__file__).parents[1] / "fixtures"
QUESTION = FIXTURES / "question.wav"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
SPEED = "6"
# The command on its own Typer app, for subprocesses.
APP = "import typer; from realtalk.cli.talk import talk; app = typer.Typer(); app.command()(talk); app()"
LOUD = 500  # |sample| above this is sound, not silence or dither


def talk_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(talk)
    return app


def run_talk(*args: str, stdin: str = "") -> Result:
    result = CliRunner().invoke(talk_app(), list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def isolate(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    for name in configuration_variables():
        monkeypatch.delenv(name)
    monkeypatch.chdir(workdir)  # no .env from the developer's checkout


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


@contextmanager
def emulator_in_thread(config: EmulatorConfig) -> Iterator[str]:
    """An emulator on its own event loop in a thread (the command runs ``asyncio.run`` itself)."""
    started: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event] | BaseException] = queue.Queue()

    async def serve() -> None:
        try:
            async with Emulator(config) as emulator:
                stop = asyncio.Event()
                started.put((emulator.http_base_url, asyncio.get_running_loop(), stop))
                await stop.wait()
        except BaseException as exc:
            started.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    up = started.get(timeout=30)
    if isinstance(up, BaseException):
        raise up
    url, loop, stop = up
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def read_mono(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 24000, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def loud_span_s(samples: npt.NDArray[np.int16]) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > LOUD)
    assert loud.size, "the audio is silent"
    return loud[0] / 24000, loud[-1] / 24000


def flat(output: str) -> str:
    """Typer's error box, unwrapped: one line, single spaces."""
    return " ".join(output.replace("│", " ").split())


def sound_s(samples: npt.NDArray[np.int16], block: int = 480) -> float:
    """How long the audio is not silent, in 20 ms blocks (gaps from a late network do not count)."""
    blocks = samples[: len(samples) // block * block].astype(np.float64).reshape(-1, block)
    return float((np.sqrt((blocks**2).mean(axis=1)) > LOUD / 2).sum() * block / 24000)


def transcript(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("you ", "agent "))]


def events_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- one scripted voice conversation, looked at from several sides ---------------------------------


@dataclass(frozen=True)
class Conversation:
    result: Result
    output_wav: Path
    record: Path
    events: Path


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversation]:
    workdir = tmp_path_factory.mktemp("talk")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, workdir)
        output_wav, record, events = (
            workdir / "out.wav",
            workdir / "conversation.wav",
            workdir / "events.jsonl",
        )
        result = run_talk(
            "--input-wav", str(QUESTION),
            "--output-wav", str(output_wav),
            "--record", str(record),
            "--events", str(events),
            "--exit-after-turns", "1",
            "--speed", "4",
        )  # fmt: skip
        yield Conversation(result, output_wav, record, events)


def test_a_scripted_conversation_says_it_talks_to_the_local_emulator(conversation: Conversation) -> None:
    assert conversation.result.exit_code == 0, conversation.result.output
    output = conversation.result.output
    assert "No AZURE_OPENAI_ENDPOINT configured: talking to the local emulator (" in output
    assert "voice, echo replies)" in output  # espeak's voice, or beeps without espeak-ng


def test_a_scripted_conversation_shows_both_sides_user_first(conversation: Conversation) -> None:
    lines = transcript(conversation.result.output)
    assert len(lines) == 2, conversation.result.output
    user, agent = lines
    assert user.startswith("you ") and len(user.split()) >= 4  # the question, as the emulator heard it
    assert agent.startswith("agent You said: ")
    assert "Session summary" in conversation.result.output
    assert "over 1 spoken turn" in conversation.result.output  # a voice-to-voice latency was measured


def test_the_reply_audio_lands_in_the_output_wav_after_the_question(conversation: Conversation) -> None:
    out = read_mono(conversation.output_wav)
    start_s, end_s = loud_span_s(out)
    speech_end_s = MANIFEST["question"]["speech_end_ms"] / 1000
    assert start_s > speech_end_s  # the agent answered after the user stopped
    assert 1.0 < sound_s(out) < 6.0  # "You said: ..." in espeak's voice: a few seconds
    assert end_s < len(out) / 24000  # --exit-after-turns waited until the reply had been played


def test_the_recording_has_the_user_left_and_exactly_what_was_played_right(
    conversation: Conversation,
) -> None:
    with wave.open(str(conversation.record), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 24000)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    question = read_mono(QUESTION)
    out = read_mono(conversation.output_wav)
    n = min(len(stereo), len(question))
    assert np.array_equal(stereo[:n, 0], question[:n])  # the microphone, sample for sample
    assert np.array_equal(stereo[: len(out), 1], out[: len(stereo)])  # the speaker, the same clock


def test_the_event_log_has_both_directions_with_audio_elided(conversation: Conversation) -> None:
    events = events_of(conversation.events)
    sent = [e["type"] for e in events if e["direction"] == "out"]
    received = [e["type"] for e in events if e["direction"] == "in"]
    assert received[0] == "session.created" and sent[0] == "session.update"
    assert "input_audio_buffer.append" in sent
    for expected in ("input_audio_buffer.speech_started", "response.output_audio.delta", "response.done"):
        assert expected in received
    appends = [e for e in events if e["type"] == "input_audio_buffer.append"]
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert all(e["event"]["audio"].startswith("<audio elided: ") for e in appends)
    assert all(e["event"]["delta"].startswith("<audio elided: ") for e in deltas)
    assert max(len(line) for line in conversation.events.read_text().splitlines()) < 8000
    times = [e["t_s"] for e in events]
    assert times == sorted(times)


# -- text turns, and the things that must end a run --------------------------------------------------


def test_a_line_on_stdin_is_a_text_turn_whose_whole_reply_is_played_before_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, log = tmp_path / "out.wav", tmp_path / "events.jsonl"
    # A configured endpoint this time, whose reply arrives all at once (pace=None): at response.done
    # most of it is still in the playback buffer, and --exit-after-turns must wait for it.
    with emulator_in_thread(EmulatorConfig(keys=("k",), pace=None)) as url:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", url)
        monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "gpt-realtime-1.5")
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
        result = run_talk(
            "--output-wav", str(out), "--events", str(log), "--transcription-model", "none",
            "--exit-after-turns", "1", "--speed", SPEED,
            stdin="hello there\n",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "local emulator" not in result.output
    assert transcript(result.output) == ["you   hello there", "agent You said: hello there"]
    created = [e for e in events_of(log) if e["type"] == "conversation.item.create"]
    assert created[0]["event"]["item"]["content"][0]["text"] == "hello there"
    reply_bytes = sum(
        int(e["event"]["delta"].split()[2])
        for e in events_of(log)
        if e["type"] == "response.output_audio.delta"
    )
    played = read_mono(out)
    first_loud = np.flatnonzero(np.abs(played.astype(np.int32)) > LOUD)[0]
    assert len(played) - first_loud >= reply_bytes // 2 - 480  # the whole reply was played before the exit


def test_push_to_talk_without_a_terminal_warns_and_still_takes_text(tmp_path: Path) -> None:
    result = run_talk(
        "--ptt", "--output-wav", str(tmp_path / "out.wav"), "--exit-after-turns", "1", "--speed", SPEED,
        stdin="hello there\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "push-to-talk needs a terminal" in result.output
    assert transcript(result.output)[-1] == "agent You said: hello there"


def test_duration_ends_a_run_that_nobody_talks_in(tmp_path: Path) -> None:
    result = run_talk("--output-wav", str(tmp_path / "out.wav"), "--duration", "3", "--speed", SPEED)
    assert result.exit_code == 0, result.output
    assert "turns" in result.output and transcript(result.output) == []
    assert len(read_mono(tmp_path / "out.wav")) / 24000 == pytest.approx(3.0, abs=0.6)


async def test_an_unrecoverable_401_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(keys=("the-right-key",), pace=8)) as emulator:
        env = {
            **os.environ,
            "AZURE_OPENAI_ENDPOINT": emulator.http_base_url,
            "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-realtime-1.5",
            "AZURE_OPENAI_API_KEY": "a-wrong-key",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", APP, "--output-wav", str(tmp_path / "out.wav"),
            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    errors = stderr.decode()
    assert process.returncode == 1, (stdout, stderr)
    assert errors.count("\n") == 1, errors
    assert "HTTP 401" in errors and "AZURE_OPENAI_API_KEY" in errors
    assert "Traceback" not in errors + stdout.decode()


async def test_a_conversation_goes_on_through_five_drops_and_stops_at_its_duration(tmp_path: Path) -> None:
    # Fifteen questions back to back; the emulator aborts every connection 2.5 s after it opens. The
    # speaker still drains a dropped session's reply when the new session starts: its playback
    # reports once reached the new core and ended the run ("unknown item") at the second reconnect.
    many = tmp_path / "many.wav"
    with wave.open(str(QUESTION), "rb") as one, wave.open(str(many), "wb") as out:
        out.setparams(one.getparams())
        out.writeframes(one.readframes(one.getnframes()) * 15)
    faults = Faults(drop_after_s=2.5)
    async with Emulator(
        EmulatorConfig(pace=8, faults=faults, vad="energy", asr="none", tts="tone")
    ) as emulator:
        env = {key: value for key, value in os.environ.items() if key not in set(configuration_variables())}
        env |= {
            "AZURE_OPENAI_ENDPOINT": emulator.http_base_url,
            "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-realtime-1.5",
            "AZURE_OPENAI_API_KEY": "a-key",
        }
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", APP, "--input-wav", str(many), "--output-wav", str(tmp_path / "out.wav"),
            "--duration", "80", "--speed", "4",
            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        elapsed_s = time.monotonic() - started
        connections = emulator.stats.connections_accepted
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output and "unknown item" not in output
    assert connections >= 6, output  # five drops, five reconnects
    assert "Session summary" in output
    assert len([line for line in transcript(output) if line.startswith("agent")]) >= 3
    # --duration 80 at --speed 4 is 20 s of wall time (and the WAV would last 24 s).
    duration = re.search(r"duration\s+([\d.]+) s", output)
    assert duration is not None and float(duration.group(1)) <= 20.5, output
    assert elapsed_s < 40


def test_ctrl_c_closes_the_files_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    cleared = set(configuration_variables())
    env = {key: value for key, value in os.environ.items() if key not in cleared}
    process = subprocess.Popen(
        [sys.executable, "-c", APP, "--input-wav", str(QUESTION), "--output-wav", str(out)],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    watchdog = threading.Timer(30, process.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()  # printed once the emulator is up
        assert "local emulator" in first
        time.sleep(1.0)  # into the conversation: the question is being streamed
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        watchdog.cancel()
        process.kill()
    assert process.returncode == 0, stderr.decode()
    assert "Session summary" in stdout.decode()
    assert "Traceback" not in stderr.decode()
    with wave.open(str(out), "rb") as wav:  # the header was completed: the sink was closed
        assert wav.getnframes() > 24000 // 2


def test_an_unknown_voice_is_a_usage_error_naming_the_voices() -> None:
    result = run_talk("--voice", "bob", "--output-wav", "out.wav")
    assert result.exit_code == 2
    assert "'bob' is not a Realtime voice; choose one of alloy, ash," in flat(result.output)


def test_vad_options_that_do_not_go_together_are_usage_errors() -> None:
    assert run_talk("--vad", "semantic", "--silence-ms", "300").exit_code == 2
    assert run_talk("--eagerness", "high").exit_code == 2
    assert run_talk("--ptt", "--vad", "semantic").exit_code == 2
    both = run_talk("--input-wav", str(QUESTION), "--input-device", "1")
    assert both.exit_code == 2 and "Use one or the other" in flat(both.output)


def test_an_instructions_file_that_cannot_be_read_is_a_usage_error() -> None:
    result = run_talk("--instructions", "@missing.txt")
    assert result.exit_code == 2 and "cannot read the instructions file missing.txt" in flat(result.output)


def test_a_malformed_endpoint_is_a_configuration_error_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "my-resource.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "gpt-realtime-1.5")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    result = run_talk("--output-wav", "out.wav")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "AZURE_OPENAI_ENDPOINT has no scheme" in result.output


# -- the options → the session configuration ---------------------------------------------------------


def profile(**changes: Any) -> Any:
    options: dict[str, Any] = {
        "voice": "marin",
        "instructions": None,
        "transcription_model": "gpt-4o-mini-transcribe",
        "vad": VadMode.server,
        "eagerness": None,
        "vad_threshold": None,
        "silence_ms": None,
        "prefix_ms": None,
        "push_to_talk": False,
    }
    return build_profile(**{**options, **changes})


def test_server_vad_options_reach_the_turn_detection() -> None:
    built = profile(vad_threshold=0.7, silence_ms=800)
    assert built.turn_detection == ServerVad(threshold=0.7, prefix_padding_ms=300, silence_duration_ms=800)
    assert built.transcription is not None and built.transcription.model == "gpt-4o-mini-transcribe"


def test_semantic_vad_takes_its_eagerness() -> None:
    built = profile(vad=VadMode.semantic, eagerness=Eagerness.low)
    assert built.turn_detection == SemanticVad(eagerness="low")


def test_push_to_talk_means_manual_turns_and_none_disables_transcription() -> None:
    built = profile(push_to_talk=True, transcription_model="none", voice="cedar", instructions="Be brief.")
    assert built.turn_detection is None and built.transcription is None
    assert (built.voice, built.instructions) == ("cedar", "Be brief.")


def test_an_output_file_that_cannot_be_written_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    result = run_talk("--output-wav", str(tmp_path / "no" / "such" / "folder" / "out.wav"))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "cannot write" in result.output and "No such file or directory" in result.output
