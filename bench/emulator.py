"""Benchmark of the emulator: CPU per second of streamed audio, and real-time sessions per core.

Run ``.venv/bin/python bench/emulator.py`` (about a minute and a half); it prints a table and
writes ``bench/results/emulator.json``.

Set-up. The emulator runs in a *separate process* pinned to one CPU core (``sched_setaffinity``);
its CPU time (all threads: the recogniser runs in worker threads) is read before and after each
measurement. The load generators are plain ``websockets`` clients in this process, pinned to the
other core when there is one, so they do not compete with the server.

A session is a conversation: the user says the four speech fixtures in turn (question, ticket,
stop, long_turn: 35 s of audio) in 100 ms ``input_audio_buffer.append`` chunks; server VAD ends each
turn, the emulator commits it and answers with its spoken echo, and the user waits for
``response.done`` before the next turn.

1. **CPU per second of streamed audio.** One conversation as fast as possible (no pacing either
   way). Streamed audio = user audio in + reply audio out. ``cpu_per_audio_s`` = server CPU
   seconds / streamed audio seconds. In real time a conversation lasts about as long as its
   streamed audio, so one session keeps ``cpu_per_audio_s`` of a core busy, and one core sustains
   ``1 / cpu_per_audio_s`` sessions (the estimate). Measured for the energy VAD and Silero with the
   cheap engines (no recogniser, tone replies: the cost of the protocol, audio path and VAD), and
   for the full default stack (Silero, PocketSphinx, espeak-ng) for reference.
2. **Verification in real time.** N sessions at once (N = 80 % of the estimate, capped by what
   the load generator can drive), each appending its audio on a real-time schedule and replies
   streamed at real-time pace, for ``--seconds``. They keep pace when the server's CPU stays below
   one core, the turn ends are detected promptly (``speech_stopped`` arrives within 300 ms of the
   audio that ends the turn, p95) and replies stream at real-time speed (first to last audio delta
   within 10 % of the audio's duration). Paced streaming costs more CPU than the as-fast-as-
   possible run (timers for every chunk), so the run also reports the capacity its own CPU share
   implies (``implied_sessions_per_core``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import websockets
from rich.console import Console
from rich.table import Table

from realtalk.audio.pcm import read_wav

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = ROOT / "bench" / "results" / "emulator.json"
TURNS = ("question", "ticket", "stop", "long_turn")
CHUNK_MS = 100
CHUNK_BYTES = CHUNK_MS * 48
SILENCE_MS = 200  # the default server_vad silence_duration_ms
MAX_VERIFY_SESSIONS = 60  # what one load-generator core drives on time
SERVER_CORE = 0


# --- the emulator, in its own process ----------------------------------------------------------


def _server_main(config: dict[str, Any], pipe: Connection) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {SERVER_CORE})
    from realtalk.emulator import Emulator, EmulatorConfig

    async def serve() -> None:
        async with Emulator(EmulatorConfig(**config)) as emu:
            pipe.send(emu.port)
            loop = asyncio.get_running_loop()
            while True:
                command = await loop.run_in_executor(None, pipe.recv)
                if command == "cpu":
                    pipe.send(time.process_time())
                else:
                    return

    asyncio.run(serve())


class Server:
    def __init__(self, **config: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_server_main, args=(config, child), daemon=True)

    def __enter__(self) -> Server:
        self._process.start()
        self.port: int = self._pipe.recv()
        return self

    def cpu_s(self) -> float:
        self._pipe.send("cpu")
        value: float = self._pipe.recv()
        return value

    def __exit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/openai/v1/realtime?model=gpt-realtime-1.5"


# --- one simulated user ----------------------------------------------------------------------


@dataclass
class SessionResult:
    user_audio_ms: int = 0
    reply_audio_ms: int = 0
    turns: int = 0
    vad_latencies_s: list[float] = field(default_factory=list)
    reply_stretch: list[float] = field(default_factory=list)  # wall time of a reply / its audio time
    append_lateness_s: list[float] = field(default_factory=list)  # load generator behind its schedule
    failures: int = 0


def _fixture(name: str) -> bytes:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())


async def conversation(
    url: str, *, real_time: bool, turns: int = len(TURNS), result: SessionResult | None = None
) -> SessionResult:
    """Say the fixtures in turn, ``turns`` times in all, waiting for each reply; fills ``result``.

    A reader task timestamps every event as it arrives, while the user is still talking. A turn is
    over when the user's speech has been committed and answered: no speech in progress, no response
    in flight, and a ``response.done`` seen (the VAD may cut a clip into several turns at long
    pauses; a later part then interrupts the reply to an earlier one).
    """
    result = result if result is not None else SessionResult()
    clips = {name: _fixture(name) for name in TURNS}
    async with websockets.connect(
        # As the openai SDK connects: no size limit, no permessage-deflate.
        url,
        additional_headers={"api-key": "bench"},
        max_size=None,
        compression=None,
        close_timeout=1,
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        state = {"speaking": 0, "in_flight": 0, "answered": False}
        changed = asyncio.Event()
        stops: list[tuple[float, int]] = []  # (received at, audio_end_ms)
        deltas: dict[str, list[float]] = {}
        reply_ms: dict[str, int] = {}

        async def read() -> None:
            async for message in ws:
                now = time.monotonic()
                event = json.loads(message)
                kind = event["type"]
                if kind == "input_audio_buffer.speech_started":
                    state["speaking"] += 1
                elif kind == "input_audio_buffer.speech_stopped":
                    state["speaking"] -= 1
                    stops.append((now, event["audio_end_ms"]))
                elif kind == "response.created":
                    state["in_flight"] += 1
                elif kind == "response.output_audio.delta":
                    response_id = event["response_id"]
                    deltas.setdefault(response_id, []).append(now)
                    reply_ms[response_id] = reply_ms.get(response_id, 0) + len(event["delta"]) * 3 // 4 // 48
                elif kind == "error":
                    result.failures += 1
                elif kind == "response.done":
                    state["in_flight"] -= 1
                    state["answered"] = True
                    response_id = event["response"]["id"]
                    result.reply_audio_ms += reply_ms.get(response_id, 0)
                    times = deltas.get(response_id, [])
                    if (
                        real_time
                        and event["response"]["status"] == "completed"
                        and reply_ms.get(response_id, 0) > 1000
                    ):
                        audio_s = (reply_ms[response_id] - CHUNK_MS) / 1000
                        result.reply_stretch.append((times[-1] - times[0]) / audio_s)
                changed.set()

        reader = asyncio.create_task(read())
        try:
            for turn in range(turns):
                name = TURNS[turn % len(TURNS)]
                pcm = clips[name]
                stream_ms = result.user_audio_ms  # the session's audio clock at this clip's start
                state["answered"] = False
                stops.clear()
                appended_at: list[float] = []
                start = time.monotonic()
                for index, offset in enumerate(range(0, len(pcm), CHUNK_BYTES)):
                    if real_time:
                        due = start + index * CHUNK_MS / 1000
                        if due > time.monotonic():
                            await asyncio.sleep(due - time.monotonic())
                        result.append_lateness_s.append(time.monotonic() - due)
                    chunk = base64.b64encode(pcm[offset : offset + CHUNK_BYTES]).decode()
                    await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                    appended_at.append(time.monotonic())
                result.user_audio_ms += len(pcm) // 48
                while not (state["answered"] and not state["speaking"] and not state["in_flight"]):
                    changed.clear()
                    await asyncio.wait_for(changed.wait(), timeout=60)
                    if reader.done():
                        reader.result()
                speech_end_ms = stream_ms + MANIFEST[name]["speech_end_ms"]
                for received_at, audio_end_ms in stops:
                    if audio_end_ms >= speech_end_ms - 300:  # the stop at the end of the clip's speech
                        # The chunk holding the end of speech plus the silence wait ends the turn.
                        ends_at_ms = audio_end_ms + SILENCE_MS - stream_ms
                        index = min(len(appended_at) - 1, max(0, -(-ends_at_ms // CHUNK_MS) - 1))
                        result.vad_latencies_s.append(received_at - appended_at[index])
                result.turns += 1
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return result


# --- the two measurements ---------------------------------------------------------------------


def measure_cpu(label: str, turns: int = len(TURNS), **config: Any) -> dict[str, Any]:
    with Server(pace=None, **config) as server:
        asyncio.run(conversation(server.url, real_time=False, turns=1))  # warm-up: models load
        before = server.cpu_s()
        started = time.monotonic()
        result = asyncio.run(conversation(server.url, real_time=False, turns=turns))
        wall_s = time.monotonic() - started
        cpu_s = server.cpu_s() - before
    audio_s = (result.user_audio_ms + result.reply_audio_ms) / 1000
    cpu_per_audio_s = cpu_s / audio_s
    return {
        "label": label,
        "engines": config,
        "user_audio_s": result.user_audio_ms / 1000,
        "reply_audio_s": result.reply_audio_ms / 1000,
        "server_cpu_s": round(cpu_s, 3),
        "wall_s": round(wall_s, 3),
        "cpu_per_audio_s": round(cpu_per_audio_s, 5),
        "estimated_sessions_per_core": int(1 / cpu_per_audio_s),
        "failures": result.failures,
    }


def verify_real_time(label: str, sessions: int, seconds: float, **config: Any) -> dict[str, Any]:
    results = [SessionResult() for _ in range(sessions)]
    measured: dict[str, float] = {}
    with Server(pace=1.0, **config) as server:

        async def run_all() -> None:
            # Sessions start 50 ms apart, as users do not all start on the same tick.
            async def one(index: int) -> None:
                await asyncio.sleep(index * 0.05)
                await conversation(server.url, real_time=True, turns=1000, result=results[index])

            tasks = [asyncio.create_task(one(i)) for i in range(sessions)]
            done, pending = await asyncio.wait(tasks, timeout=seconds)
            # Measured at the deadline: stopping the clients afterwards is not part of the load.
            measured["end"], measured["client_end"] = time.monotonic(), time.process_time()
            measured["server_end"] = server.cpu_s()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()

        async def run_all_measured() -> None:
            measured["server"], measured["client"] = server.cpu_s(), time.process_time()
            measured["start"] = time.monotonic()
            await run_all()

        asyncio.run(run_all_measured())
        wall_s = measured["end"] - measured["start"]
        cpu_s = measured["server_end"] - measured["server"]
        client_cpu_s = measured["client_end"] - measured["client"]
    latencies = sorted(x for r in results for x in r.vad_latencies_s)
    stretches = [x for r in results for x in r.reply_stretch]
    lateness = sorted(x for r in results for x in r.append_lateness_s)
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    cpu_share = cpu_s / wall_s
    keeps_pace = cpu_share < 1.0 and p95 <= 0.3 and (max(stretches) if stretches else 1.0) <= 1.10
    return {
        "label": label,
        "sessions": sessions,
        "wall_s": round(wall_s, 2),
        "server_cpu_share_of_core": round(cpu_share, 3),
        # In real time a session also pays for pacing (timers per chunk): the capacity this implies.
        "cpu_per_session_s": round(cpu_share / sessions, 5),
        "implied_sessions_per_core": int(sessions / cpu_share) if cpu_share > 0 else None,
        "load_generator_cpu_share": round(client_cpu_s / wall_s, 3),
        "load_generator_lateness_ms_p95": round(1000 * lateness[int(0.95 * (len(lateness) - 1))], 1)
        if lateness
        else None,
        "turns_answered": sum(r.turns for r in results),
        "vad_latency_ms_p50": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "vad_latency_ms_p95": round(1000 * p95, 1),
        "reply_stretch_min": round(min(stretches), 3) if stretches else None,
        "reply_stretch_max": round(max(stretches), 3) if stretches else None,
        "failures": sum(r.failures for r in results),
        "keeps_pace": keeps_pace,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each real-time verification run"
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {SERVER_CORE})
    console = Console()

    cheap = [
        ("energy VAD", {"vad": "energy", "asr": "none", "tts": "tone"}),
        ("Silero VAD", {"vad": "silero", "asr": "none", "tts": "tone"}),
    ]
    full = ("Silero + PocketSphinx + espeak-ng", {"vad": "silero", "asr": "auto", "tts": "auto"})
    began = time.monotonic()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu_rows = [measure_cpu(label, **engines) for label, engines in cheap]
    # The recogniser dominates the full stack; two turns (14 s of speech) are enough to measure it.
    cpu_rows.append(measure_cpu(full[0], turns=2, **full[1]))
    verify_rows: list[dict[str, Any]] = []
    all_kept_pace = True
    for (label, engines), row in zip(cheap, cpu_rows, strict=False):
        sessions = max(1, min(MAX_VERIFY_SESSIONS, int(0.8 * row["estimated_sessions_per_core"])))
        verified = verify_real_time(label, sessions, args.seconds, **engines)
        if not verified["keeps_pace"]:  # other load on the machine, or a real limit: try fewer once
            verify_rows.append(verified)
            verified = verify_real_time(label, max(1, int(0.6 * sessions)), args.seconds, **engines)
        verify_rows.append(verified)
        all_kept_pace = all_kept_pace and verified["keeps_pace"]

    table = Table(title="Emulator CPU per second of streamed audio (server process, one core)")
    for column in ("engines", "audio in+out s", "server CPU s", "CPU per audio s", "sessions/core (est.)"):
        table.add_column(column, justify="right" if column != "engines" else "left")
    for row in cpu_rows:
        table.add_row(
            row["label"],
            f"{row['user_audio_s'] + row['reply_audio_s']:.1f}",
            f"{row['server_cpu_s']:.2f}",
            f"{row['cpu_per_audio_s']:.4f}",
            str(row["estimated_sessions_per_core"]),
        )
    console.print(table)
    check = Table(title=f"Real-time verification ({args.seconds:g} s, replies at real-time pace)")
    for column in (
        "engines",
        "sessions",
        "server CPU (core)",
        "sessions/core (implied)",
        "VAD latency p50/p95 ms",
        "reply stretch max",
        "keeps pace",
    ):
        check.add_column(column, justify="right" if column != "engines" else "left")
    for row in verify_rows:
        check.add_row(
            row["label"],
            str(row["sessions"]),
            f"{100 * row['server_cpu_share_of_core']:.0f} %",
            str(row["implied_sessions_per_core"]),
            f"{row['vad_latency_ms_p50']} / {row['vad_latency_ms_p95']}",
            str(row["reply_stretch_max"]),
            "yes" if row["keeps_pace"] else "NO",
        )
    console.print(check)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "emulator",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                },
                "setup": {
                    "turns": list(TURNS),
                    "chunk_ms": CHUNK_MS,
                    "server": f"separate process pinned to core {SERVER_CORE}",
                    "load_generator": "websockets clients in the bench process, on the other cores",
                },
                "duration_s": round(time.monotonic() - began, 1),
                "cpu_per_streamed_audio": cpu_rows,
                "real_time_verification": verify_rows,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"Wrote {RESULTS.relative_to(ROOT)} in {time.monotonic() - began:.0f} s")
    if not all_kept_pace:
        sys.exit(1)


if __name__ == "__main__":
    main()
