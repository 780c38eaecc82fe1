"""Soak: many sessions through ``realtalk serve`` to ``realtalk emulate`` for minutes; is memory flat?

Run: ``.venv/bin/python bench/soak.py`` (200 sessions for 10 minutes, about 11 minutes in all);
``--quick`` for a smoke run (20 sessions, 60 s). Prints a table and writes ``bench/results/soak.json``.

Set-up. Three processes on this machine, all on 127.0.0.1:

* ``realtalk emulate`` (energy VAD, no recogniser, tone replies: the cheap engines, so 200 real-time
  sessions fit on this machine beside the rest; the protocol and audio paths are the same);
* ``realtalk serve`` with that emulator as its upstream (``AZURE_OPENAI_ENDPOINT=http://127.0.0.1:P``),
  a static client token, the per-session budget off, room for every session;
* this process: ``--sessions`` clients on ``websockets``, each a conversation: the user says a
  speech fixture in real time (100 ms ``input_audio_buffer.append`` chunks), the emulator's server
  VAD ends the turn and it answers with audio streamed at real-time pace, the client reads all of it
  and speaks again. Calls last ``--call-turns`` turns (12, about a minute and a half, as calls to an
  agent do), then the client hangs up and calls again; a share of the clients (``--churn``, 10 %)
  hang up after every turn. So sessions open and close for the whole run, and per-session state
  (the conversation, which grows with each turn by design, bounded by the session's time limit) is
  at a steady state after the warm-up: growth after it is memory that closed sessions did not give
  back. A few clients misbehave on purpose each turn (an invalid event, an unknown event type, an
  oversize event: each must be answered with an ``error`` and the session must go on).

Sampled every ``--every`` seconds: the resident memory (``VmRSS``) of the gateway and the emulator,
and the sessions open. **Flatness**: the least-squares slope of RSS over time after the warm-up
(the first third of the run: every session opening, then a whole cycle of calls, while the
per-session state that is bounded by design fills), in KiB per minute with its standard error, and
the growth from the median of the first quarter of those samples to the median of the last quarter.
Flat means: the growth over the measured window is under 2 % of the RSS, and the slope would take
over a day to add 100 MiB or is not told apart from zero (under twice its standard error: RSS moves
by megabytes as hundreds of sessions open and close, so a few minutes' slope is mostly that noise).
Also reported: turns completed, events relayed, errors answered, abrupt closes (0 expected).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from rich.console import Console
from rich.table import Table

from realtalk.audio.pcm import read_wav

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = ROOT / "bench" / "results" / "soak.json"
DEPLOYMENT = "gpt-realtime-1.5"
CHUNK_MS = 100
SAMPLE_RATE_HZ = 24_000
TURN_FIXTURES = ("question", "stop")
FLAT_GROWTH_SHARE = 0.02  # growth over the window below 2 % of RSS
FLAT_SLOPE_KIB_PER_MIN = 100 * 1024 / (24 * 60)  # 100 MiB a day


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} at start-up")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing listened on port {port} within {timeout_s:g} s")


@dataclass
class Tally:
    turns: int = 0
    connects: int = 0
    events_in: int = 0
    events_out: int = 0
    errors_answered: int = 0
    misbehaviours: int = 0
    abrupt_closes: int = 0
    refused_connects: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)


def _chunks(name: str) -> list[str]:
    pcm, rate_hz, channels = read_wav(FIXTURES / f"{name}.wav")
    if (rate_hz, channels) != (SAMPLE_RATE_HZ, 1):
        raise ValueError(f"{name}.wav: expected 24 kHz mono, found {rate_hz} Hz x {channels}")
    step = SAMPLE_RATE_HZ * CHUNK_MS // 1000 * 2
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


# Each is answered by the gateway with an `error` event; the session goes on.
MISBEHAVIOURS = (
    "{}",
    '{"type": "no.such.event", "event_id": "evt_bad_1"}',
    '{"type": "input_audio_buffer.append", "audio": 12}',
    "not json",
)


class Conversation:
    """One simulated user: speaks, listens to the whole reply, speaks again."""

    def __init__(
        self, index: int, url: str, token: str, churn: bool, call_turns: int, stop_at: float, tally: Tally
    ) -> None:
        self.index = index
        self.call_turns = 1 if churn else (call_turns or 1_000_000)
        self.url = url
        self.token = token
        self.churn = churn
        self.stop_at = stop_at
        self.tally = tally

    async def run(self, turns_audio: list[list[str]]) -> None:
        turn = self.index
        # Calls end after ``call_turns`` turns (the first one earlier, by index, so hang-ups spread).
        call_length = self.index % self.call_turns + 1
        while time.monotonic() < self.stop_at:
            try:
                async with websockets.connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None,
                    open_timeout=30,
                    ping_interval=None,
                ) as ws:
                    self.tally.connects += 1
                    await self._expect(ws, "session.updated")
                    in_call = 0
                    while time.monotonic() < self.stop_at:
                        await self._turn(ws, turns_audio[turn % len(turns_audio)], turn)
                        turn += 1
                        in_call += 1
                        if in_call >= call_length:
                            call_length = self.call_turns
                            break
            except websockets.InvalidStatus:
                self.tally.refused_connects += 1
                await asyncio.sleep(1.0)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                self.tally.close_codes[str(code)] = self.tally.close_codes.get(str(code), 0) + 1
                if exc.rcvd is None:
                    self.tally.abrupt_closes += 1
            except TimeoutError:
                self.tally.close_codes["timeout"] = self.tally.close_codes.get("timeout", 0) + 1

    async def _expect(self, ws: Any, event_type: str, timeout_s: float = 60.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                event = json.loads(await ws.recv())
                self.tally.events_in += 1
                if event.get("type") == "error":
                    self.tally.errors_answered += 1
                if event.get("type") == event_type:
                    return dict(event)

    async def _turn(self, ws: Any, chunks: list[str], turn: int) -> None:
        if turn % 5 == 0:
            await ws.send(MISBEHAVIOURS[turn % len(MISBEHAVIOURS)])
            self.tally.misbehaviours += 1
            self.tally.events_out += 1
            await self._expect(ws, "error")
        reader = asyncio.create_task(self._expect(ws, "response.done", timeout_s=120.0))
        start = time.monotonic()
        for i, chunk in enumerate(chunks):
            if reader.done():
                break
            await ws.send(f'{{"type": "input_audio_buffer.append", "audio": "{chunk}"}}')
            self.tally.events_out += 1
            delay = start + (i + 1) * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await reader
        self.tally.turns += 1


async def sample_memory(
    gateway: subprocess.Popen[bytes],
    emulator: subprocess.Popen[bytes],
    every_s: float,
    stop_at: float,
    started: float,
    samples: list[dict[str, float]],
) -> None:
    while time.monotonic() < stop_at:
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 2),
                "gateway_rss_kib": _rss_kib(gateway.pid),
                "emulator_rss_kib": _rss_kib(emulator.pid),
            }
        )
        await asyncio.sleep(every_s)


def flatness(samples: list[dict[str, float]], key: str, warmup_s: float) -> dict[str, Any]:
    kept = [s for s in samples if s["t_s"] >= warmup_s]
    if len(kept) < 4:
        return {"samples": len(kept)}
    xs = [s["t_s"] / 60 for s in kept]
    ys = [s[key] for s in kept]
    slope = statistics.linear_regression(xs, ys).slope
    # The slope's standard error: how far the samples scatter around the fitted line.
    intercept = statistics.linear_regression(xs, ys).intercept
    residuals = [y - (slope * x + intercept) for x, y in zip(xs, ys, strict=True)]
    spread = sum((x - statistics.fmean(xs)) ** 2 for x in xs)
    stderr = (sum(r * r for r in residuals) / (len(xs) - 2) / spread) ** 0.5 if spread else 0.0
    quarter = max(1, len(kept) // 4)
    first = statistics.median(ys[:quarter])
    last = statistics.median(ys[-quarter:])
    growth = last - first
    return {
        "samples": len(kept),
        "rss_first_quarter_kib": first,
        "rss_last_quarter_kib": last,
        "growth_kib": growth,
        "slope_kib_per_min": round(slope, 2),
        "slope_stderr_kib_per_min": round(stderr, 2),
        "flat": growth < FLAT_GROWTH_SHARE * first and slope < max(FLAT_SLOPE_KIB_PER_MIN, 2 * stderr),
    }


@dataclass
class Processes:
    emulator: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    emulator_port: int
    gateway_port: int
    token: str

    def stop(self) -> None:
        for process in (self.gateway, self.emulator):
            process.terminate()
        for process in (self.gateway, self.emulator):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def start_processes(sessions: int) -> Processes:
    """The emulator, and the gateway in front of it, each a child process on 127.0.0.1."""
    emulator_port, gateway_port = _free_port(), _free_port()
    api_key = secrets.token_urlsafe(24)
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "REALTALK_"))}
    realtalk = str(Path(sys.executable).with_name("realtalk"))
    engines = ["--vad", "energy", "--asr", "none", "--tts", "tone"]
    emulator = subprocess.Popen(
        [realtalk, "emulate", "--port", str(emulator_port), "--key", api_key, *engines],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway_env = env | {
        "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{emulator_port}",
        "AZURE_OPENAI_DEPLOYMENT_NAME": DEPLOYMENT,
        "AZURE_OPENAI_API_KEY": api_key,
        "REALTALK_GATEWAY_TOKENS": token,
        "REALTALK_GATEWAY_MAX_SESSIONS": str(sessions + 10),
        "REALTALK_GATEWAY_MAX_SESSIONS_PER_USER": str(sessions + 10),
        "REALTALK_GATEWAY_BUDGET_USD": "0",
    }
    gateway = subprocess.Popen(
        [realtalk, "serve", "--port", str(gateway_port), "--log-level", "WARNING"],
        env=gateway_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Processes(emulator, gateway, emulator_port, gateway_port, token)


async def soak(args: argparse.Namespace, processes: Processes) -> dict[str, Any]:
    emulator, gateway = processes.emulator, processes.gateway
    emulator_port, gateway_port, token = processes.emulator_port, processes.gateway_port, processes.token
    await _wait_listening(emulator_port, emulator)
    await _wait_listening(gateway_port, gateway)
    turns_audio = [_chunks(name) for name in TURN_FIXTURES]
    url = f"ws://127.0.0.1:{gateway_port}/openai/v1/realtime?model={DEPLOYMENT}"
    started = time.monotonic()
    stop_at = started + args.seconds
    tally = Tally()
    samples: list[dict[str, float]] = []
    sampler = asyncio.create_task(sample_memory(gateway, emulator, args.every, stop_at, started, samples))
    conversations = []
    churners = round(args.sessions * args.churn)
    for i in range(args.sessions):
        conversation = Conversation(i, url, token, i < churners, args.call_turns, stop_at, tally)
        conversations.append(asyncio.create_task(conversation.run(turns_audio)))
        await asyncio.sleep(args.ramp / args.sessions)
    await asyncio.gather(*conversations)
    await sampler
    alive = {"gateway": gateway.poll() is None, "emulator": emulator.poll() is None}
    warmup_s = args.seconds / 3
    return {
        "benchmark": "soak",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "sessions": args.sessions,
            "seconds": args.seconds,
            "churn": args.churn,
            "call_turns": args.call_turns,
            "chunk_ms": CHUNK_MS,
            "sample_every_s": args.every,
            "warmup_s": warmup_s,
        },
        "processes_alive_at_end": alive,
        "tally": tally.__dict__,
        "gateway": flatness(samples, "gateway_rss_kib", warmup_s),
        "emulator": flatness(samples, "emulator_rss_kib", warmup_s),
        "samples": samples,
    }


def report(result: dict[str, Any]) -> None:
    console = Console()
    settings = result["settings"]
    title = f"soak: {settings['sessions']} sessions, {settings['seconds']:g} s (RSS after warm-up)"
    table = Table(title=title)
    columns = ("process", "first quarter KiB", "last quarter KiB", "growth KiB", "slope KiB/min ± se", "flat")
    for column in columns:
        table.add_column(column)
    for name in ("gateway", "emulator"):
        row = result[name]
        table.add_row(
            name,
            str(row.get("rss_first_quarter_kib")),
            str(row.get("rss_last_quarter_kib")),
            str(row.get("growth_kib")),
            f"{row.get('slope_kib_per_min')} ± {row.get('slope_stderr_kib_per_min')}",
            "yes" if row.get("flat") else "NO",
        )
    console.print(table)
    console.print(f"tally: {result['tally']}")
    console.print(f"processes alive at the end: {result['processes_alive_at_end']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="concurrent conversations (200)")
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the run (600)")
    parser.add_argument("--churn", type=float, default=0.1, help="share of clients that reconnect every turn")
    parser.add_argument(
        "--call-turns",
        type=int,
        default=12,
        help="turns per call before the client hangs up and calls again (12, about 1.5 minutes); 0: never",
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples (5)")
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which sessions open (20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 sessions for 60 s")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.seconds, args.every, args.ramp = 20, 60.0, 2.0, 5.0
    processes = start_processes(args.sessions)
    try:
        result = asyncio.run(soak(args, processes))
    finally:
        processes.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
