"""Benchmark of ``realtalk talk``'s client side: added latency, flush latency, CPU.

Run ``.venv/bin/python bench/talk.py`` (about two minutes); it prints a table and writes
``bench/results/talk.json``.

Set-up. The emulator runs in a *separate process* (so its CPU is not counted) with a scripted reply
of about six seconds, streamed three times faster than real time (the service, too, sends audio
faster than it plays). The client is the same wiring ``realtalk talk --input-wav`` uses
(``RealtimeSession`` + ``VoiceLoop`` + a ``VirtualDuplex`` paced at real time in 20 ms blocks, the
echo gate on as for laptop speakers), with a scripted user as the microphone: it asks a question,
waits for the reply, and talks over five replies out of six, 0.8 s into them.

Measured, on ``time.perf_counter``:

* **client-added latency**: the first ``response.output_audio.delta`` of a reply received (the
  frame, before parsing) → the first sample of it handed to the device (the block the device took
  from the playback buffer). The device takes a block every 20 ms, so this is at least the wait for
  the next block: about 10 ms on average, up to 20 ms.
* **flush latency**: ``input_audio_buffer.speech_started`` received while the agent was speaking →
  the playback buffer is empty, and → the next block the device takes is silent. Baseline, from the
  same events: the audio that was queued at that moment, which a player without barge-in handling
  (the seed script's blocking writes) would still have played.
* **CPU**: process CPU time (user + system) of the client over the conversation, as a share of one
  core; then the same for the ``talk`` command's own code path (``converse``: screen at 10 Hz into an
  off-screen terminal, WAV device, event handlers) during a voice turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from realtalk.audio.duplex import VirtualDuplex
from realtalk.audio.echo import EchoGate
from realtalk.audio.pcm import BYTES_PER_SAMPLE, WIRE_SAMPLE_RATE_HZ
from realtalk.audio.playback import BlockRead, PlaybackBuffer
from realtalk.audio.sources import MemorySink
from realtalk.cli.talk import TalkOptions, converse
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.session import RealtimeSession, SessionEvent
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.emulator import Emulator, EmulatorConfig, parse_scenario
from realtalk.emulator.tts import make_synthesizer
from realtalk.percentiles import percentile
from realtalk.protocol import AgentProfile, FlushPlayback, ResponseFinished
from realtalk.protocol.endpoint import resolve_endpoint
from realtalk.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "talk.json"
QUESTION_WAV = ROOT / "tests" / "fixtures" / "question.wav"
KEY = "bench-key"
MODEL = "gpt-realtime-1.5"
REPLY = (
    "Sure. In Oslo it is seven degrees and cloudy today, with a light breeze from the west, "
    "and some rain is expected later in the evening."
)
UTTERANCE = "what is the weather like in Oslo today"
EMULATOR_PACE = 3.0
BLOCK_SAMPLES = 480  # 20 ms at 24 kHz, as the sound card path
BLOCK_MS = BLOCK_SAMPLES * 1000 / WIRE_SAMPLE_RATE_HZ
INTERRUPT_AFTER_MS = 800
FULL_REPLY_EVERY = 6  # one reply in six is heard to its end; the others are talked over
REPLY_DONE_QUIET_MS = 700
TURN_TIMEOUT_MS = 12_000
TARGETS = {"added_latency_p95_ms": 30.0, "flush_ms": 20.0, "cpu_percent": 5.0}


# -- the emulator, in its own process -----------------------------------------------------------------


def emulator_child(pace: float) -> None:
    async def serve() -> None:
        scenario = parse_scenario({"turns": [{"say": REPLY}], "after": "repeat"})
        config = EmulatorConfig(keys=(KEY,), pace=pace, scenario=scenario, asr="none")
        async with Emulator(config) as emulator:
            print(f"PORT {emulator.port}", flush=True)
            await asyncio.get_running_loop().run_in_executor(
                None, sys.stdin.read
            )  # until the parent closes it

    asyncio.run(serve())


@contextlib.contextmanager
def emulator_process(pace: float) -> Iterator[tuple[str, int]]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--emulator-child", str(pace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}", process.pid
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# -- the instrumented client --------------------------------------------------------------------------


class TimedPlayback(PlaybackBuffer):
    """A playback buffer that notes when the device took each block (the device side's clock)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self.first_handed_s: dict[str, float] = {}
        self.watch: Callable[[float, BlockRead], None] | None = None

    def read(self, frames: int) -> BlockRead:
        block = super().read(frames)
        now = self._clock()
        for item_id, _ in block.played:
            self.first_handed_s.setdefault(item_id, now)
        if self.watch is not None:
            self.watch(now, block)
        return block


class ScriptedUser:
    """The microphone: says the utterance, waits for the reply, talks over most replies.

    An ``AudioSource`` read by the device once per block, on the event loop (``PacedDriver``), so it
    can look at the playback buffer to know whether the agent is speaking.
    """

    exhausted = False

    def __init__(self, utterance: bytes, playback: PlaybackBuffer, turns: int) -> None:
        self.utterance = utterance
        self.playback = playback
        self.turns = turns
        self.spoken = 0
        self.timeouts = 0
        self.done = asyncio.Event()
        self._pos: int | None = 0  # bytes of the utterance said so far; None while listening
        self._lead_blocks = 25  # half a second of silence first
        self._playing_blocks = 0
        self._quiet_blocks = 0
        self._waited_blocks = 0

    def read(self, frames: int) -> bytes:
        want = frames * BYTES_PER_SAMPLE
        if self._lead_blocks:
            self._lead_blocks -= 1
            return bytes(want)
        if self._pos is not None:
            chunk = self.utterance[self._pos : self._pos + want]
            self._pos += len(chunk)
            if self._pos >= len(self.utterance):
                self._pos = None
                self.spoken += 1
                self._playing_blocks = self._quiet_blocks = self._waited_blocks = 0
            return chunk + bytes(want - len(chunk))
        self._listen()
        return bytes(want)

    def _listen(self) -> None:
        if self.done.is_set():
            return
        self._waited_blocks += 1
        if self.playback.is_playing:
            self._playing_blocks += 1
            self._quiet_blocks = 0
        elif self._playing_blocks:
            self._quiet_blocks += 1
        talk_over = self.spoken % FULL_REPLY_EVERY != 0
        reply_done = self._playing_blocks and self._quiet_blocks * BLOCK_MS >= REPLY_DONE_QUIET_MS
        timed_out = self._waited_blocks * BLOCK_MS >= TURN_TIMEOUT_MS
        if self.spoken >= self.turns:
            if reply_done or timed_out:
                self.done.set()
            return
        if timed_out:
            self.timeouts += 1
        if timed_out or reply_done or (talk_over and self._playing_blocks * BLOCK_MS >= INTERRUPT_AFTER_MS):
            self._pos = 0


@dataclass
class FlushProbe:
    received_s: float
    queued_samples: int
    empty_s: float | None = None
    empty: bool = False
    next_block_s: float | None = None
    next_block_silent: bool = False


@dataclass
class Measurements:
    first_delta_s: dict[str, float] = field(default_factory=dict)
    flushes: list[FlushProbe] = field(default_factory=list)
    pending: FlushProbe | None = None
    responses: int = 0


async def conversation(base_url: str, turns: int) -> dict[str, Any]:
    clock = time.perf_counter
    playback = TimedPlayback(clock)
    measured = Measurements()
    synthesizer = make_synthesizer("espeak")
    user = ScriptedUser(synthesizer.synthesize(UTTERANCE, voice="cedar"), playback, turns)
    session = RealtimeSession(
        resolve_endpoint(base_url, MODEL), ApiKeyCredential(KEY, style="bearer"), profile=AgentProfile()
    )

    def on_frame(direction: str, text: str) -> None:
        if direction != "in":
            return
        now = clock()
        if "response.output_audio.delta" in text:
            event = json.loads(text)
            if event.get("type") == "response.output_audio.delta":
                measured.first_delta_s.setdefault(event["item_id"], now)
        elif "input_audio_buffer.speech_started" in text and playback.queued_samples:
            measured.pending = FlushProbe(now, playback.queued_samples)

    def on_event(event: SessionEvent) -> None:  # registered after the VoiceLoop's: runs after its flush
        probe = measured.pending
        if isinstance(event, FlushPlayback) and probe is not None and probe.empty_s is None:
            probe.empty_s = clock()
            probe.empty = playback.queued_samples == 0
        elif isinstance(event, ResponseFinished):
            measured.responses += 1

    def watch(now: float, block: BlockRead) -> None:
        probe = measured.pending
        if probe is not None and probe.empty_s is not None:
            probe.next_block_s = now
            probe.next_block_silent = block.audio_samples == 0
            measured.flushes.append(probe)
            measured.pending = None

    playback.watch = watch
    session.on_frame(on_frame)
    device = VirtualDuplex(user, MemorySink(), playback, BLOCK_SAMPLES)
    async with session:
        voice = VoiceLoop(session, device, playback, echo_gate=EchoGate())
        session.on_event(on_event)
        driver = PacedDriver(device, speed=1.0)
        cpu_start, wall_start = time.process_time(), clock()
        voice.start()
        driver.start()
        try:
            await asyncio.wait_for(user.done.wait(), turns * TURN_TIMEOUT_MS / 1000)
        finally:
            cpu_s, wall_s = time.process_time() - cpu_start, clock() - wall_start
            await driver.stop()
            voice.stop()

    added_ms = [
        (playback.first_handed_s[item] - received) * 1000
        for item, received in measured.first_delta_s.items()
        if item in playback.first_handed_s
    ]
    flushes = measured.flushes
    return {
        "turns": user.spoken,
        "responses": measured.responses,
        "turn_timeouts": user.timeouts,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_percent": 100 * cpu_s / wall_s,
        "added_latency_ms": added_ms,
        "flush_to_empty_ms": [(p.empty_s - p.received_s) * 1000 for p in flushes if p.empty_s is not None],
        "flush_to_silent_block_ms": [
            (p.next_block_s - p.received_s) * 1000 for p in flushes if p.next_block_s is not None
        ],
        "flush_all_empty": all(p.empty for p in flushes),
        "flush_all_next_block_silent": all(p.next_block_silent for p in flushes),
        "baseline_unflushed_ms": [p.queued_samples * 1000 / WIRE_SAMPLE_RATE_HZ for p in flushes],
        "mic_samples_gated": voice.stats.mic_samples_gated,
        "dropped_blocks": voice.stats.dropped_blocks,
    }


async def talk_command_run(base_url: str, duration_s: float) -> tuple[float, float]:
    """One ``converse`` (the ``talk`` command's code path: screen, WAV device, handlers); (CPU s, wall s)."""
    settings = Settings(
        _env_file=None,
        azure_openai_endpoint=base_url,
        azure_openai_deployment_name=MODEL,
        azure_openai_api_key=KEY,
    )
    # A terminal that is not on screen: the live display renders at 10 Hz as it would for a user.
    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=30)
    errors = Console(file=io.StringIO())
    with tempfile.TemporaryDirectory() as folder:
        options = TalkOptions(
            profile=AgentProfile(),
            input_wav=QUESTION_WAV,
            output_wav=Path(folder) / "out.wav",
            duration_s=duration_s,
        )
        saved_stdin, sys.stdin = sys.stdin, io.StringIO("")  # no keys, no typed lines
        try:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            code = await converse(options, settings, console, errors)
            cpu_s, wall_s = time.process_time() - cpu_start, time.perf_counter() - wall_start
        finally:
            sys.stdin = saved_stdin
    if code != 0:
        raise RuntimeError(f"the talk command ended with status {code}")
    return cpu_s, wall_s


async def talk_command(base_url: str, duration_s: float) -> dict[str, Any]:
    """CPU of the talk command during a conversation: a long run minus a short one.

    The difference removes what every run pays once (connecting, session.update, closing), so
    what is left is the steady cost of a conversation going on: a voice turn, then listening.
    """
    short_cpu_s, short_wall_s = await talk_command_run(base_url, 1.0)
    long_cpu_s, long_wall_s = await talk_command_run(base_url, duration_s)
    return {
        "runs_s": [1.0, duration_s],
        "fixed_cpu_s": short_cpu_s,
        "cpu_s": long_cpu_s - short_cpu_s,
        "wall_s": long_wall_s - short_wall_s,
        "cpu_percent": 100 * (long_cpu_s - short_cpu_s) / (long_wall_s - short_wall_s),
    }


async def ticker_floor(seconds: float = 5.0) -> float:
    """Baseline: CPU % of an asyncio loop that only wakes every 20 ms (the floor of any block loop)."""
    loop = asyncio.get_running_loop()
    start, cpu_start = loop.time(), time.process_time()
    ticks = int(seconds * 1000 / BLOCK_MS)
    for n in range(1, ticks + 1):
        loop.call_soon_threadsafe(lambda: None)  # as a device thread hands over a block
        await asyncio.sleep(max(0.0, start + n * BLOCK_MS / 1000 - loop.time()))
    return 100 * (time.process_time() - cpu_start) / (loop.time() - start)


# -- report ----------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def child_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=24, help="user turns in the scripted conversation")
    parser.add_argument("--talk-seconds", type=float, default=15.0, help="length of the talk-command run")
    parser.add_argument("--emulator-child", type=float, metavar="PACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulator_child is not None:
        emulator_child(args.emulator_child)
        return

    started = time.perf_counter()
    with emulator_process(EMULATOR_PACE) as (base_url, pid):
        loop_run = asyncio.run(conversation(base_url, args.turns))
        emulator_cpu_s = child_cpu_s(pid)
        command_run = asyncio.run(talk_command(base_url, args.talk_seconds))
    floor = asyncio.run(ticker_floor())

    added = stats(loop_run["added_latency_ms"])
    to_empty = stats(loop_run["flush_to_empty_ms"])
    to_silent = stats(loop_run["flush_to_silent_block_ms"])
    baseline = stats(loop_run["baseline_unflushed_ms"])
    result = {
        "benchmark": "talk",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "setup": {
            "block_ms": BLOCK_MS,
            "emulator_pace": EMULATOR_PACE,
            "interrupt_after_ms": INTERRUPT_AFTER_MS,
            "full_reply_every": FULL_REPLY_EVERY,
            "echo_gate": True,
            "emulator": "separate process (its CPU not counted)",
        },
        "conversation": {k: v for k, v in loop_run.items() if not isinstance(v, list)},
        "emulator_process_cpu_s": emulator_cpu_s,
        "added_latency_ms": added,
        "flush_to_buffer_empty_ms": to_empty,
        "flush_to_next_silent_block_ms": to_silent,
        "baseline_unflushed_audio_ms": baseline,
        "flush_speedup_p50": (baseline["p50"] or 0) / to_silent["p50"] if to_silent["p50"] else None,
        "talk_command": command_run,
        "baseline_cpu_percent_50hz_wakeups": floor,
        "targets": TARGETS,
        "bench_wall_s": time.perf_counter() - started,
        "raw": {k: v for k, v in loop_run.items() if isinstance(v, list)},
    }
    result["met"] = {
        "added_latency_p95": (added["p95"] or 1e9) <= TARGETS["added_latency_p95_ms"],
        # Within one block: the buffer was empty before the device took its next block, every time.
        # (How long that block took to come is the block period plus the virtual device's timer jitter.)
        "flush_within_one_block": bool(
            to_silent["n"]
            and loop_run["flush_all_empty"]
            and loop_run["flush_all_next_block_silent"]
            and (to_empty["max"] or 1e9) <= TARGETS["flush_ms"]
        ),
        "cpu_loop": loop_run["cpu_percent"] <= TARGETS["cpu_percent"],
        "cpu_talk_command": command_run["cpu_percent"] <= TARGETS["cpu_percent"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def print_table(result: dict[str, Any]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} ms"

    run = result["conversation"]
    table = Table(title=f"realtalk talk, client side ({run['turns']} user turns, {run['wall_s']:.0f} s)")
    for column in ("measure", "n", "p50", "p95", "max", "target", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right", no_wrap=True)
    met = result["met"]

    def row(name: str, figures: dict[str, Any], target: str, ok: bool | None) -> None:
        table.add_row(
            name,
            str(figures["n"]),
            ms(figures["p50"]),
            ms(figures["p95"]),
            ms(figures["max"]),
            target,
            "" if ok is None else ("yes" if ok else "NO"),
        )

    row(
        "added latency: 1st delta received → 1st sample to device",
        result["added_latency_ms"],
        "p95 ≤ 30 ms",
        met["added_latency_p95"],
    )
    row(
        "flush: speech_started received → buffer empty",
        result["flush_to_buffer_empty_ms"],
        "≤ 20 ms",
        met["flush_within_one_block"],
    )
    row(
        "flush: speech_started received → next block (silent)",
        result["flush_to_next_silent_block_ms"],
        "next block",
        met["flush_within_one_block"],
    )
    row(
        "baseline: audio a non-flushing player would still play",
        result["baseline_unflushed_audio_ms"],
        "",
        None,
    )
    table.add_row("CPU, session + voice loop", "", "", "", "", "≤ 5 %", f"{run['cpu_percent']:.2f} %")
    talk = result["talk_command"]
    table.add_row(
        "CPU, talk command (screen at 10 Hz)", "", "", "", "", "≤ 5 %", f"{talk['cpu_percent']:.2f} %"
    )
    table.add_row(
        "baseline CPU: a loop that only wakes every 20 ms",
        "",
        "",
        "",
        "",
        "",
        f"{result['baseline_cpu_percent_50hz_wakeups']:.2f} %",
    )
    console = Console(width=max(Console().width, 140))
    console.print(table)
    speedup = result["flush_speedup_p50"]
    if speedup:
        console.print(f"flush vs non-flushing baseline (p50): {speedup:.0f}x sooner")
    console.print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
