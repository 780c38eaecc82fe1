"""Benchmark of the usage ledger: how many rows it commits, and whether writing it delays audio.

Run: ``.venv/bin/python bench/ledger.py`` (about five minutes on 2 cores); ``--quick`` for a smoke
run. Prints two tables and writes ``bench/results/ledger.json``. Everything runs on this machine,
on 127.0.0.1, through realtalk's own code paths. PostgreSQL is a throwaway cluster of Debian's
``postgresql`` (``initdb`` + ``pg_ctl``, as ``tests/ledger/conftest.py`` makes it: trust
authentication, 127.0.0.1 only, a random port, ``fsync=off``), migrated with
``realtalk.ledger.upgrade`` before use; without the package the PostgreSQL figures are skipped,
and said so.

With two or more cores, the code under test (the writer process, the gateway processes) is pinned
to the last core, and the load (this process's clients, the emulator, PostgreSQL) to the others.

**1. Writer throughput.** A child process (uvloop, as ``realtalk serve`` runs) opens
``Ledger.open(url)`` with ``serve``'s settings (a 10,000-row queue, commits every 0.25 s, at most
1,000 rows a commit) and runs ``--sessions`` (200) tasks, each a session: ``session_started``,
then its share of ``--rows`` (20,000) response rows, then ``session_ended``. Each row is
realistic: ``CostTracker.add_turn`` on varied usage (audio and text in, a cached prefix once the
conversation passes 1,024 tokens, audio out; about one in twelve cancelled, with the audio heard), then
``ResponseRecord.from_turn``, as ``SessionMeter`` makes it at ``response.done``. A fresh database
per run (a SQLite file in a temporary folder; a new PostgreSQL database). Two runs per database:

* **steady**: rows made and queued at ``--rate`` rows/s in total (4,000: twice the target), each
  session on its own fixed schedule (absolute deadlines, the sessions' phases spread evenly);
* **drain**: the records are made first, then queued as fast as the queue takes them (each task
  waits while 8,000 rows are pending, so none is dropped): what the writer commits at most.

"Committed" is read from the ledger's own count (``Ledger.pending_rows``, polled every
millisecond; the writer commits in queue order, so the k-th row queued is committed once k rows
are no longer pending): the time from each ``response_done`` call to that poll is its commit
delay (resolution about 1 ms). Throughput, end to end: the response rows committed over the time
from the first row queued to the last row committed (so the steady run reads a little under its
rate: the last commit's wait is in it). The rows are then read back from the database and
counted (responses, sessions, ended sessions). Beside it: the cost of the ``response_done`` call
(``perf_counter_ns`` around it, in µs), of ``from_turn`` (the rest of what the ledger adds at
``response.done``) and of ``add_turn`` (the core's pricing, there with or without a ledger).
Target: at least 2,000 rows/s on each database, no row dropped or refused, every row read back,
and in the steady run every row committed within a second.

**2. Audio-delta delay through the gateway.** Children: the emulator (``realtalk.emulator``,
uvloop, fast engines: energy VAD, no recogniser, tone replies; real-time pace, ``--chunk-ms``
audio chunks, scripted to answer every turn with the same sentence, 3 s of audio) and
three ``realtalk serve`` apps (``create_app`` + ``Gateway``, open mode on 127.0.0.1, uvloop,
``freeze_gc`` as ``serve``) in front of it that differ only in ``REALTALK_LEDGER_URL``: ``off``, a
SQLite file, and a PostgreSQL database. A fourth path, ``direct``, has the clients talk to the
emulator itself: the reference for what the gateway adds. The emulator is the load, not under
test: its automatic garbage collection is off and it collects between runs, because its full
collections (150-300 ms with 200 sessions' state) stalled every stream at once and set the p99
of whichever path was running (the gateways collect as ``serve`` does).

Each run opens ``--sessions`` (200) WebSocket clients in this process, starts their first turns
spread over ``WARMUP_S`` (2 s), and each client then talks in text turns
(``conversation.item.create`` + ``response.create``), the next turn as soon as ``response.done``
arrives; after ``--duration`` seconds (7) of measurement each finishes its turn in progress and
closes. Per response started in the measured window, at the client: the gaps between consecutive
``response.output_audio.delta`` arrivals (by construction one chunk period apart: the emulator
sends chunk k at k periods after the first), and the time from sending ``response.create`` to the
first delta (the gateway's hops both ways, plus the emulator's synthesis, the same on every path).
This process also probes its own stalls (a 5 ms sleep's lateness, its GC pauses), so a gap the
clients caused can be told from one the gateway caused. Before the rounds, every path runs once
(one turn per session, not measured: first-use costs). ``--rounds`` (4) rounds interleave the
four paths, the order rotated each round, so a noisy moment of the machine hits them all; the
gateways stay up between rounds, each writing its own database. The figure per path is the
median over the rounds of each round's gap p99; the run-to-run spread of that p99 (max - min over
the rounds) is what "measurable" is held against: a ledger's difference from ``off`` is
measurable when it exceeds the larger spread of the two paths. Beside them: the gateway process's
CPU over each measured window (``/proc/<pid>/task/*/schedstat``), and at the end (gateways still
up, more than a second after the last session closed) the response rows each ledger holds against
the ``response.done`` events its clients saw (warm-up included), and its session rows (all ended)
against the sessions opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import websockets
from rich.console import Console
from rich.table import Table

from harness import (  # bench/harness.py, beside this script
    CPUS,
    Child,
    child,
    figures,
    frame_type,
    pin,
    run_once,
    serve_gateway,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ledger.json"

THIS_FILE = Path(__file__).resolve()
KEY = "bench-key"
MODEL = "gpt-realtime-1.5"
TARGET_ROWS_PER_S = 2000.0
MAX_QUEUE = 10_000  # Ledger.open's default, as realtalk serve opens it
DRAIN_HIGH_WATER = 8000  # the drain run's producers wait while this many rows are pending
POLL_S = 0.001
PROBE_S = 0.005  # the clients' loop-lag probe
REPLY = "Your order shipped today and arrives on Thursday."  # 3.0 s of tone audio (30 chunks of 100 ms)
WARMUP_S = 2.0  # the first turns start spread over it (responses out of phase); measured after it
PATHS: Final = ("direct", "off", "sqlite", "postgresql")
LEDGERS: Final = ("sqlite", "postgresql")
DELTA: Final = "response.output_audio.delta"


def _loop_factory() -> Any:
    from realtalk.cli.serve import event_loop_factory

    return event_loop_factory()  # uvloop where installed, as realtalk serve


# --- a throwaway PostgreSQL cluster (as tests/ledger/conftest.py, without pytest) ----------------


class Postgres:
    """``initdb`` + ``pg_ctl`` on 127.0.0.1 and a free port; run by ``postgres`` when we are root."""

    def __init__(self) -> None:
        initdbs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        found = str(initdbs[-1]) if initdbs else shutil.which("initdb")
        if found is None:
            raise FileNotFoundError("needs system package 'postgresql': apt-get install postgresql")
        self.bin_dir = Path(found).resolve().parent
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.root = Path(tempfile.mkdtemp(prefix="realtalk-bench-pg-"))
        self.data_dir = self.root / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            runuser = shutil.which("runuser")
            if runuser is None:
                raise FileNotFoundError("initdb refuses root and runuser is missing (util-linux)")
            shutil.chown(self.root, user="postgres")
            self._as_user = [runuser, "-u", "postgres", "--"]
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )

    def _run(self, tool: str, *args: str, under_test: bool | None = None) -> None:
        # pg_ctl start forks the postmaster, which forks every backend: pinning pg_ctl pins them all.
        pin_child = None if under_test is None else (lambda: pin(0, under_test))
        subprocess.run(
            [*self._as_user, str(self.bin_dir / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
            preexec_fn=pin_child,  # sched_setaffinity only, before exec
        )

    def start(self) -> None:
        # Loopback only, its socket in its own folder; fsync off as the tests' cluster: a throwaway.
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "start",
            under_test=False,
        )

    def create_database(self, name: str) -> str:
        self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-qc",
            f"CREATE DATABASE {name}",
        )
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class LedgerDatabases:
    """The databases a benchmark writes ledgers to: SQLite files in ``folder`` always, PostgreSQL
    when Debian's package is there (``missing`` says why not). ``new_url`` makes a fresh one,
    migrated as ``realtalk ledger upgrade`` does. Use as a context manager: the cluster goes after."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.postgres: Postgres | None = None
        self.missing: str | None = None
        try:
            self.postgres = Postgres()
            self.postgres.start()
        except (FileNotFoundError, LookupError, subprocess.CalledProcessError) as exc:
            self.missing = f"PostgreSQL skipped: {exc}"
            print(self.missing, file=sys.stderr, flush=True)
            if self.postgres is not None:
                self.postgres.remove()
            self.postgres = None

    @property
    def names(self) -> list[str]:
        return ["sqlite"] + (["postgresql"] if self.postgres is not None else [])

    def new_url(self, database: str, name: str) -> str:
        from realtalk.ledger import upgrade

        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{self.folder / (name + '.db')}"
        else:
            assert self.postgres is not None
            url = self.postgres.create_database(name)
        asyncio.run(upgrade(url))  # what `realtalk ledger upgrade --url ...` runs
        return url

    def __enter__(self) -> LedgerDatabases:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.postgres is not None:
            self.postgres.remove()


async def count_rows(engine: Any) -> dict[str, int]:
    """Response rows, session rows and ended sessions in a ledger database (its read side)."""
    from sqlalchemy import func, select

    from realtalk.ledger.schema import responses, sessions

    async with engine.connect() as connection:
        rows = (await connection.execute(select(func.count()).select_from(responses))).scalar_one()
        opened = (await connection.execute(select(func.count()).select_from(sessions))).scalar_one()
        ended = (
            await connection.execute(
                select(func.count()).select_from(sessions).where(sessions.c.ended_at.is_not(None))
            )
        ).scalar_one()
    return {"responses": int(rows), "sessions": int(opened), "sessions_ended": int(ended)}


async def count_rows_at(url: str) -> dict[str, int]:
    from realtalk.ledger.database import create_ledger_engine

    engine = create_ledger_engine(url)
    try:
        return await count_rows(engine)
    finally:
        await engine.dispose()


# --- 1. writer throughput (child process) --------------------------------------------------------


class RowMaker:
    """Realistic response rows for one session: varied usage priced by the core, a cached prefix
    that grows with the conversation, now and then a cancelled response with its audio heard."""

    def __init__(self, session_id: str, seed: int, add_turn_ns: list[int], from_turn_ns: list[int]) -> None:
        from realtalk.protocol.cost import CostTracker, prices_for

        self.add_turn_ns = add_turn_ns  # the core's pricing: done with or without a ledger
        self.from_turn_ns = from_turn_ns  # the ledger's row: SessionMeter does it at response.done
        self.session_id = session_id
        self.tracker = CostTracker(prices_for(MODEL))
        self.random = random.Random(seed)
        self.turn = 0
        self.context_tokens = 180  # instructions

    def record(self) -> Any:
        from realtalk.ledger import ResponseRecord
        from realtalk.protocol.cost import Usage

        rnd = self.random
        self.turn += 1
        audio_in = rnd.randint(40, 400)
        audio_out = rnd.randint(60, 360)
        cancelled = rnd.random() < 0.08
        cached = (self.context_tokens // 64) * 64 if self.context_tokens >= 1024 else 0
        usage = Usage(
            text_in=self.context_tokens,
            audio_in=audio_in,
            cached_text_in=min(cached, self.context_tokens),
            text_out=audio_out // 6,
            audio_out=audio_out,
        )
        self.context_tokens += audio_in // 4 + audio_out // 6
        clock = time.perf_counter_ns
        at = clock()
        turn = self.tracker.add_turn(
            f"resp_{self.session_id}_{self.turn}", "cancelled" if cancelled else "completed", usage
        )
        self.add_turn_ns.append(clock() - at)
        generated_ms = audio_out * 50
        at = clock()
        record = ResponseRecord.from_turn(
            turn,
            session_id=self.session_id,
            user=f"user-{self.session_id[-3:]}",
            deployment=MODEL,
            pricing_model=MODEL,
            created_at=datetime.now(UTC),
            audio_generated_ms=generated_ms,
            audio_heard_ms=rnd.randint(0, generated_ms) if cancelled else None,
            voice_to_voice_ms=round(rnd.uniform(380.0, 950.0), 1),
        )
        self.from_turn_ns.append(clock() - at)
        return record


async def writer_run(url: str, rows: int, sessions: int, rate: float | None) -> dict[str, Any]:
    """One writer run (``rate`` None: the drain run); see the module docstring."""
    from realtalk.ledger import Ledger, SessionRecord

    ledger = await Ledger.open(url)
    clock = time.perf_counter_ns
    queued_ns: list[int] = []  # per accepted item, in queue order
    is_response: list[bool] = []
    committed_ns: list[int] = []  # per accepted item, when the poll saw it committed
    call_ns: list[int] = []
    add_turn_ns: list[int] = []
    from_turn_ns: list[int] = []
    dropped = [0]
    per_session = [rows // sessions + (1 if i < rows % sessions else 0) for i in range(sessions)]

    def put(call: Any, item: Any, response: bool) -> None:
        before = ledger.dropped_rows
        at = clock()
        call(item)
        after = clock()
        if ledger.dropped_rows != before:
            dropped[0] += 1
            return
        queued_ns.append(at)
        is_response.append(response)
        if response:
            call_ns.append(after - at)

    makers = [RowMaker(f"sess_bench_{i:03d}", i, add_turn_ns, from_turn_ns) for i in range(sessions)]
    prebuilt = (
        [[m.record() for _ in range(n)] for m, n in zip(makers, per_session, strict=True)]
        if rate is None
        else None
    )
    producing = [sessions]

    async def session(index: int, start_s: float) -> None:
        session_id = makers[index].session_id
        record = SessionRecord(
            session_id, f"user-{session_id[-3:]}", MODEL, MODEL, "websocket", "realtime", datetime.now(UTC)
        )
        put(ledger.session_started, record, False)
        period_s = sessions / rate if rate else 0.0
        for k in range(per_session[index]):
            if rate:
                delay = start_s + index * period_s / sessions + k * period_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                put(ledger.response_done, makers[index].record(), True)
            else:
                while ledger.pending_rows >= DRAIN_HIGH_WATER:  # noqa: ASYNC110 - the ledger offers no event
                    await asyncio.sleep(0.002)
                assert prebuilt is not None
                put(ledger.response_done, prebuilt[index][k], True)
                await asyncio.sleep(0)
        before = ledger.dropped_rows
        ledger.session_ended(session_id, datetime.now(UTC), "client closed")
        if ledger.dropped_rows == before:
            queued_ns.append(clock())
            is_response.append(False)
        else:
            dropped[0] += 1
        producing[0] -= 1

    async def monitor() -> None:
        # The writer commits in queue order: items accepted - pending are committed.
        while producing[0] or len(committed_ns) < len(queued_ns):
            await asyncio.sleep(POLL_S)
            settled = len(queued_ns) - ledger.pending_rows
            if settled > len(committed_ns):
                now = clock()
                committed_ns.extend(itertools.repeat(now, settled - len(committed_ns)))

    start_s = time.perf_counter() + 0.1
    watcher = asyncio.create_task(monitor())
    await asyncio.gather(*(session(i, start_s) for i in range(sessions)))
    await watcher
    await ledger.flush()
    readback = await count_rows(ledger.engine)
    dropped_total, rejected = ledger.dropped_rows, ledger.rejected_rows
    await ledger.aclose()

    response_indices = [i for i, r in enumerate(is_response) if r]
    delays_ms = [(committed_ns[i] - queued_ns[i]) / 1e6 for i in response_indices]
    first_ns = queued_ns[response_indices[0]]
    last_commit_ns = max(committed_ns[i] for i in response_indices)
    last_queue_ns = queued_ns[response_indices[-1]]
    span_s = (last_commit_ns - first_ns) / 1e9
    return {
        "mode": "steady" if rate else "drain",
        "offered_rows_per_s": rate,
        "sessions": sessions,
        "response_rows_queued": len(response_indices),
        "queued_rows_per_s": round(len(response_indices) / max(1e-9, (last_queue_ns - first_ns) / 1e9), 1),
        "committed_rows_per_s": round(len(response_indices) / span_s, 1),
        "first_queued_to_last_committed_s": round(span_s, 3),
        "commit_delay_ms": figures(delays_ms),
        "response_done_call_us": figures([n / 1000 for n in call_ns]),
        "from_turn_us": figures([n / 1000 for n in from_turn_ns]),
        "add_turn_us": figures([n / 1000 for n in add_turn_ns]),
        "dropped_rows": dropped_total,
        "rejected_rows": rejected,
        "read_back": readback,
    }


# --- 2. the emulator and the gateways (child processes) -----------------------------------------


async def run_emulator(chunk_ms: int) -> None:
    from realtalk.emulator import Emulator, EmulatorConfig, parse_scenario

    config = EmulatorConfig(
        keys=(KEY,),
        pace=1.0,
        audio_chunk_ms=chunk_ms,
        scenario=parse_scenario({"turns": [{"say": REPLY}], "after": "repeat"}),
        vad="energy",
        asr="none",
        tts="tone",
    )
    async with Emulator(config) as emulator:
        # The emulator is the load, not under test: its full collections (200-300 ms with 200
        # sessions' state, found by this bench) stalled every stream at once and set the p99 of
        # whichever path was running. It collects between runs instead, when asked.
        gc.disable()
        print(f"PORTS {emulator.port}", flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):  # until stdin closes
            if line.strip() == "collect":
                print(f"collected {gc.collect()}", flush=True)


async def run_gateway(upstream_port: int, ledger_url: str) -> None:
    await serve_gateway(
        upstream_port,
        MODEL,
        KEY,
        {
            "REALTALK_GATEWAY_MAX_SESSIONS": "1000",
            "REALTALK_GATEWAY_MAX_SESSIONS_PER_USER": "1000",  # every bench client is one user
            "REALTALK_LEDGER_URL": ledger_url,
        },
        handle_signals=True,  # SIGTERM stops it gracefully: the ledger's rows are written
    )


# --- children, from the orchestrating process ---------------------------------------------------


def writer_child(url: str, rows: int, sessions: int, rate: float | None) -> dict[str, Any]:
    return run_once(THIS_FILE, "writer", url, str(rows), str(sessions), str(rate or "drain"), timeout_s=300)


# --- 2. the clients ------------------------------------------------------------------------------


@dataclass
class PathRun:
    """One run of ``sessions`` clients on one path."""

    path: str
    round_index: int
    gaps_ms: list[float] = field(default_factory=list)
    first_delta_ms: list[float] = field(default_factory=list)
    responses_measured: int = 0
    responses_done: int = 0  # every response.done the clients saw, warm-up and wind-down included
    not_completed: int = 0
    sessions: int = 0
    deltas_per_response: list[int] = field(default_factory=list)
    gateway_cpu_s: float | None = None
    measured_s: float = 0.0
    # This process's own stalls over the measured window (a late probe wakeup; its GC pauses): a
    # gap the clients cause is not the gateway's.
    client_lag_ms: list[float] = field(default_factory=list)
    client_gc_ms: list[float] = field(default_factory=list)


def _turn_frames(n: int) -> list[str]:
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": f"Where is order {n}?"}],
    }
    return [json.dumps({"type": "conversation.item.create", "item": item}), '{"type":"response.create"}']


async def converse(ws: Any, run: PathRun, start_s: float, measure_from_s: float, stop_s: float) -> None:
    """Text turns one after another until ``stop_s``; the turn in progress then finishes."""
    clock = time.perf_counter
    await asyncio.sleep(max(0.0, start_s - clock()))
    n = 0
    while clock() < stop_s:
        for frame in _turn_frames(n):
            await ws.send(frame)
        sent = clock()
        n += 1
        arrivals: list[float] = []
        async with asyncio.timeout(30):
            while True:
                message = await ws.recv()
                kind = frame_type(message) if isinstance(message, str) else None
                if kind == DELTA:
                    arrivals.append(clock())
                elif kind == "response.done":
                    break
                elif kind == "error":
                    raise RuntimeError(f"error event: {message[:300]}")
        run.responses_done += 1
        if '"status":"completed"' not in message.replace(" ", ""):
            run.not_completed += 1
        if measure_from_s <= sent and arrivals:
            run.responses_measured += 1
            run.deltas_per_response.append(len(arrivals))
            run.first_delta_ms.append((arrivals[0] - sent) * 1000)
            run.gaps_ms += [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]


async def run_path(
    path: str, round_index: int, port: int, gateway: Child | None, sessions: int, duration_s: float
) -> PathRun:
    run = PathRun(path, round_index, sessions=sessions)
    url = f"ws://127.0.0.1:{port}/openai/v1/realtime?model={MODEL}"
    if gateway is None:
        # Straight to the emulator: it wants its key; the gateway holds it for its clients.
        ready, headers = "session.created", {"Authorization": f"Bearer {KEY}"}
    else:
        ready, headers = "session.updated", {}
    connections: list[Any] = []
    for batch in range(0, sessions, 25):
        connections += await asyncio.gather(
            *(_open_with(url, ready, headers) for _ in range(min(25, sessions - batch)))
        )
    now = time.perf_counter()
    start_s = now + 0.1
    measure_from_s = start_s + WARMUP_S
    stop_s = measure_from_s + duration_s
    talks = [
        converse(ws, run, start_s + WARMUP_S * i / sessions, measure_from_s, stop_s)
        for i, ws in enumerate(connections)
    ]
    cpu = asyncio.create_task(_cpu_over(gateway, measure_from_s, stop_s))
    probe = asyncio.create_task(_client_stalls(run, measure_from_s, stop_s))
    try:
        await asyncio.gather(*talks)
    finally:
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    run.gateway_cpu_s = await cpu
    await probe
    run.measured_s = duration_s
    return run


async def _open_with(url: str, ready: str, headers: dict[str, str]) -> Any:
    ws = await websockets.connect(
        url, additional_headers=headers, max_size=None, compression=None, ping_interval=None, open_timeout=30
    )
    async with asyncio.timeout(30):
        while frame_type(str(await ws.recv())) != ready:
            pass
    return ws


async def _client_stalls(run: PathRun, from_s: float, until_s: float) -> None:
    clock = time.perf_counter
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [clock()]
        elif started:
            run.client_gc_ms.append((clock() - started[0]) * 1000)

    await asyncio.sleep(max(0.0, from_s - clock()))
    gc.callbacks.append(on_gc)
    try:
        while (before := clock()) < until_s:
            await asyncio.sleep(PROBE_S)
            run.client_lag_ms.append((clock() - before - PROBE_S) * 1000)
    finally:
        gc.callbacks.remove(on_gc)


async def _cpu_over(gateway: Child | None, from_s: float, until_s: float) -> float | None:
    if gateway is None:
        return None
    await asyncio.sleep(max(0.0, from_s - time.perf_counter()))
    before = gateway.cpu_s()
    await asyncio.sleep(max(0.0, until_s - time.perf_counter()))
    return gateway.cpu_s() - before


async def audio_rounds(
    args: argparse.Namespace, emulator: Child, gateways: dict[str, Child]
) -> tuple[list[PathRun], list[PathRun]]:
    """A warm-up (one turn per session on every path, not measured), then the rounds."""
    # What this process holds now (imports, SQLAlchemy, the children) leaves the collector's
    # generations, as `realtalk serve` does with its own, so its full collections stay short.
    gc.freeze()
    paths = [p for p in PATHS if p == "direct" or p in gateways]
    warmups: list[PathRun] = []
    for path in paths:
        gateway = gateways.get(path)
        port = emulator.ports[0] if gateway is None else gateway.ports[0]
        emulator.ask("collect")
        warmups.append(await run_path(path, -1, port, gateway, args.sessions, 0.0))
    runs: list[PathRun] = []
    for round_index in range(args.rounds):
        # The order turns each round, so no path always runs first (or right after another).
        shift = round_index % len(paths)
        for path in paths[shift:] + paths[:shift]:
            gateway = gateways.get(path)
            port = emulator.ports[0] if gateway is None else gateway.ports[0]
            emulator.ask("collect")  # between runs, where it stalls nothing measured
            run = await run_path(path, round_index, port, gateway, args.sessions, args.duration)
            runs.append(run)
            _progress_audio(run)
    return warmups, runs


def _progress_audio(run: PathRun) -> None:
    gaps = figures(run.gaps_ms)
    first = figures(run.first_delta_ms)
    cpu = "" if run.gateway_cpu_s is None else f", gateway CPU {run.gateway_cpu_s / run.measured_s:.0%}"
    lag = max(run.client_lag_ms, default=0.0)
    gc_ms = max(run.client_gc_ms, default=0.0)
    print(
        f"  round {run.round_index + 1} {run.path:10s}: {run.responses_measured} responses, gap p50 "
        f"{gaps['p50']:.2f} p99 {gaps['p99']:.2f} max {gaps['max']:.1f} ms, first delta p50 "
        f"{first['p50']:.1f} ms{cpu}; clients' lag max {lag:.1f} ms, GC max {gc_ms:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


# --- the run -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    pin(os.getpid(), under_test=False)
    with LedgerDatabases(folder) as dbs:
        databases, new_url = dbs.names, dbs.new_url
        writer: list[dict[str, Any]] = []
        for database in databases:
            for mode, rate in (("steady", args.rate), ("drain", None)):
                result = writer_child(new_url(database, f"writer_{mode}"), args.rows, args.sessions, rate)
                result["database"] = database
                writer.append(result)
                delay = result["commit_delay_ms"]
                print(
                    f"  writer {database} {mode}: {result['committed_rows_per_s']:.0f} rows/s, commit delay "
                    f"p50 {delay['p50']:.1f} p99 {delay['p99']:.1f} ms, "
                    f"dropped {result['dropped_rows']}, read back {result['read_back']}",
                    file=sys.stderr,
                    flush=True,
                )

        ledger_urls = {"off": "off"} | {database: new_url(database, "gateway") for database in databases}
        with contextlib.ExitStack() as stack:
            emulator = stack.enter_context(child(THIS_FILE, "emulator", str(args.chunk_ms), under_test=False))
            gateways = {
                path: stack.enter_context(
                    child(THIS_FILE, "gateway", str(emulator.ports[0]), url, under_test=True)
                )
                for path, url in ledger_urls.items()
            }
            warmups, runs = asyncio.run(audio_rounds(args, emulator, gateways))
            # Every session has ended; the ledger commits within flush_interval_s (0.25 s).
            time.sleep(1.5)
            held = {database: asyncio.run(count_rows_at(ledger_urls[database])) for database in databases}
    return report(writer, warmups, runs, held, args, dbs.missing)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def report(
    writer: list[dict[str, Any]],
    warmups: list[PathRun],
    runs: list[PathRun],
    held: dict[str, dict[str, int]],
    args: argparse.Namespace,
    postgres_missing: str | None,
) -> dict[str, Any]:
    period_ms = float(args.chunk_ms)
    by_path: dict[str, list[PathRun]] = {}
    for run in runs:
        by_path.setdefault(run.path, []).append(run)
    warm: dict[str, list[PathRun]] = {path: [] for path in by_path}
    for run in warmups:
        warm.setdefault(run.path, []).append(run)
    audio: dict[str, dict[str, Any]] = {}
    for path, path_runs in by_path.items():
        p99s = [figures(r.gaps_ms)["p99"] for r in path_runs]
        first_p50s = [figures(r.first_delta_ms)["p50"] for r in path_runs]
        first_p99s = [figures(r.first_delta_ms)["p99"] for r in path_runs]
        row: dict[str, Any] = {
            "path": path,
            "rounds": len(path_runs),
            "responses_measured": sum(r.responses_measured for r in path_runs),
            "gaps": len([g for r in path_runs for g in r.gaps_ms]),
            "gap_ms": figures([g for r in path_runs for g in r.gaps_ms]),
            "gap_p99_ms_per_round": p99s,
            "gap_p99_ms_median_of_rounds": _median(p99s),
            "gap_p99_ms_spread": round(max(p99s) - min(p99s), 4),
            "gap_max_ms_per_round": [figures(r.gaps_ms)["max"] for r in path_runs],
            "first_delta_ms": figures([d for r in path_runs for d in r.first_delta_ms]),
            "first_delta_p50_ms_median_of_rounds": _median(first_p50s),
            "first_delta_p99_ms_median_of_rounds": _median(first_p99s),
            "first_delta_p50_ms_per_round": first_p50s,
            "deltas_per_response": figures([float(n) for r in path_runs for n in r.deltas_per_response]),
            "client_lag_ms": figures([g for r in path_runs for g in r.client_lag_ms]),
            "client_gc_pause_ms": figures([g for r in path_runs for g in r.client_gc_ms]),
            # Every response.done the clients saw on this path, the warm-up's included.
            "response_done_seen": sum(r.responses_done for r in path_runs + warm[path]),
            "responses_not_completed": sum(r.not_completed for r in path_runs),
            "sessions_opened": sum(r.sessions for r in path_runs + warm[path]),
        }
        if path != "direct":
            cpu = [r.gateway_cpu_s / r.measured_s * 100 for r in path_runs if r.gateway_cpu_s is not None]
            row["gateway_cpu_percent_per_round"] = [round(c, 1) for c in cpu]
            row["gateway_cpu_percent_median_of_rounds"] = round(statistics.median(cpu), 1)
        if path in held:
            row["ledger"] = held[path] | {
                "response_rows_minus_response_done_seen": held[path]["responses"] - row["response_done_seen"]
            }
        audio[path] = row
    off = audio.get("off")
    direct = audio.get("direct")
    for path, row in audio.items():
        if off is not None and path in LEDGERS:
            mine, theirs = row["gap_p99_ms_median_of_rounds"], off["gap_p99_ms_median_of_rounds"]
            spread = max(row["gap_p99_ms_spread"], off["gap_p99_ms_spread"])
            row["vs_off"] = {
                "gap_p99_ratio": round(mine / theirs, 4),
                "gap_p99_difference_ms": round(mine - theirs, 4),
                "run_to_run_spread_ms": round(spread, 4),
                # One round has no spread to hold a difference against: not judged.
                "measurable": abs(mine - theirs) > spread if args.rounds >= 2 else None,
                "first_delta_p50_difference_ms": round(
                    row["first_delta_p50_ms_median_of_rounds"] - off["first_delta_p50_ms_median_of_rounds"], 4
                ),
                "gateway_cpu_points_over_off": round(
                    row["gateway_cpu_percent_median_of_rounds"] - off["gateway_cpu_percent_median_of_rounds"],
                    1,
                ),
            }
        if direct is not None and path != "direct":
            row["gateway_added_vs_direct_ms"] = {
                "first_delta_p50": round(
                    row["first_delta_p50_ms_median_of_rounds"]
                    - direct["first_delta_p50_ms_median_of_rounds"],
                    4,
                ),
                "first_delta_p99": round(
                    row["first_delta_p99_ms_median_of_rounds"]
                    - direct["first_delta_p99_ms_median_of_rounds"],
                    4,
                ),
                "gap_p99": round(
                    row["gap_p99_ms_median_of_rounds"] - direct["gap_p99_ms_median_of_rounds"], 4
                ),
            }

    console = Console(width=max(Console().width, 170))
    table = Table(
        title=f"Ledger writer: {args.rows} response rows from {args.sessions} sessions "
        f"(steady at {args.rate:g} rows/s; drain as fast as the queue takes them)"
    )
    for column in (
        "database",
        "run",
        "rows/s",
        "delay p50",
        "delay p99",
        "delay max",
        "call µs p50",
        "call µs p99",
        "from_turn µs",
        "dropped",
        "read back",
        "≥ 2,000/s",
    ):
        table.add_column(column, justify="left" if column in ("database", "run") else "right", no_wrap=True)
    for result in writer:
        delay, call, build, back = (
            result["commit_delay_ms"],
            result["response_done_call_us"],
            result["from_turn_us"],
            result["read_back"],
        )
        result["met"] = (
            result["committed_rows_per_s"] >= TARGET_ROWS_PER_S
            # Durable within a second (issue 15) at a steady rate; the drain run holds 8,000 rows
            # pending by design, so its delays are its own queue's.
            and (result["mode"] == "drain" or delay["max"] < 1000)
            and result["dropped_rows"] == 0
            and result["rejected_rows"] == 0
            and back["responses"] == result["response_rows_queued"]
            and back["sessions"] == back["sessions_ended"] == result["sessions"]
        )
        table.add_row(
            result["database"],
            result["mode"],
            f"{result['committed_rows_per_s']:,.0f}",
            f"{delay['p50']:.1f} ms",
            f"{delay['p99']:.1f} ms",
            f"{delay['max']:.1f} ms",
            f"{call['p50']:.2f}",
            f"{call['p99']:.2f}",
            f"{build['p50']:.1f}",
            str(result["dropped_rows"]),
            f"{back['responses']}/{back['sessions']}/{back['sessions_ended']}",
            "yes" if result["met"] else "NO",
        )
    console.print(table)
    console.print(
        "rows/s: response rows committed / (first queued → last committed); delay: response_done → the "
        "poll that saw the row committed (1 ms polls; in the drain run mostly its own queue); call: the "
        "response_done call; from_turn: making the row (ResponseRecord.from_turn; the core's "
        "CostTracker.add_turn, which runs with or without a ledger, is in the JSON); read back: response "
        "rows / session rows / ended sessions"
    )

    gaps = Table(
        title=f"Audio deltas at {args.sessions} concurrent sessions ({args.chunk_ms} ms chunks at real-time "
        f"pace: one every {period_ms:g} ms; {args.rounds} interleaved rounds of {args.duration:g} s; ms)"
    )
    for column in (
        "path",
        "responses",
        "gap p50",
        "gap p99",
        "p99 by round",
        "spread",
        "÷ off",
        "gap max",
        "1st p50",
        "1st p99",
        "CPU",
        "done seen",
        "rows held",
    ):
        gaps.add_column(
            column, justify="left" if column in ("path", "p99 per round") else "right", no_wrap=True
        )
    labels = {
        "direct": "direct (no gateway)",
        "off": "gateway, ledger off",
        "sqlite": "gateway, SQLite",
        "postgresql": "gateway, PostgreSQL",
    }
    for path in PATHS:
        if path not in audio:
            continue
        row = audio[path]
        versus = row.get("vs_off")
        gaps.add_row(
            labels[path],
            str(row["responses_measured"]),
            f"{row['gap_ms']['p50']:.2f}",
            f"{row['gap_p99_ms_median_of_rounds']:.2f}",
            " ".join(f"{p:.1f}" for p in row["gap_p99_ms_per_round"]),
            f"{row['gap_p99_ms_spread']:.2f}",
            "" if versus is None else f"{versus['gap_p99_ratio']:.3f}",
            f"{row['gap_ms']['max']:.1f}",
            f"{row['first_delta_p50_ms_median_of_rounds']:.2f}",
            f"{row['first_delta_p99_ms_median_of_rounds']:.2f}",
            f"{row['gateway_cpu_percent_median_of_rounds']:.0f}%"
            if "gateway_cpu_percent_median_of_rounds" in row
            else "",
            str(row["response_done_seen"]),
            str(row["ledger"]["responses"]) if "ledger" in row else "",
        )
    console.print(gaps)
    console.print(
        "gap: between consecutive audio deltas of a response at the client; gap p99 and 1st: the median over "
        "the rounds of each round's figure; spread: max - min of the rounds' gap p99; ÷ off: gap p99 / the "
        "same with the ledger off; 1st: response.create sent → first audio delta; CPU: the gateway process "
        "over the measured window (one core = 100%); done seen: response.done at the clients (warm-up "
        "included); rows held: response rows in that gateway's ledger at the end"
    )
    if postgres_missing:
        console.print(postgres_missing)

    targets: dict[str, Any] = {
        "writer_rows_per_s_at_least": TARGET_ROWS_PER_S,
        "writer_met": {
            database: all(r["met"] for r in writer if r["database"] == database)
            for database in dict.fromkeys(r["database"] for r in writer)
        },
        "audio_gap": "gap p99 with a ledger minus without (median of rounds) within the run-to-run spread",
        "audio_no_measurable_difference": {
            path: None if (m := audio[path]["vs_off"]["measurable"]) is None else not m
            for path in LEDGERS
            if "vs_off" in audio.get(path, {})
        },
        "ledger_sessions_all_there_and_ended": {
            path: audio[path]["ledger"]["sessions"]
            == audio[path]["ledger"]["sessions_ended"]
            == audio[path]["sessions_opened"]
            for path in LEDGERS
            if "ledger" in audio.get(path, {})
        },
        "ledger_rows_equal_response_done": {
            path: audio[path]["ledger"]["responses"] == audio[path]["response_done_seen"]
            for path in LEDGERS
            if "ledger" in audio.get(path, {})
        },
    }
    for name, value in targets.items():
        console.print(f"target {name}: {value}")
    return {
        "benchmark": "ledger",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": args.load_before,
        },
        "settings": {
            "rows": args.rows,
            "sessions": args.sessions,
            "steady_rate_rows_per_s": args.rate,
            "drain_high_water_rows": DRAIN_HIGH_WATER,
            "ledger": {"max_queue": MAX_QUEUE, "flush_interval_s": 0.25, "max_batch": 1000},
            "commit_poll_s": POLL_S,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": WARMUP_S,
            "warmup_run": "every path once before the rounds, one turn per session, not measured",
            "emulator_gc": "automatic collection off; gc.collect() between runs",
            "chunk_ms": args.chunk_ms,
            "emulator": "pace 1.0, vad energy, asr none, tts tone, uvloop",
            "reply": REPLY,
            "postgresql": "initdb + pg_ctl, 127.0.0.1, trust, fsync=off, full_page_writes=off",
            "pinning": ({"under_test": [CPUS[-1]], "load": list(CPUS[:-1])} if len(CPUS) >= 2 else None),
            "writer_event_loop": "uvloop where installed (as realtalk serve)",
            "gateway_event_loop": "uvloop where installed (as realtalk serve)",
            "clients_event_loop": "asyncio",
        },
        "writer": writer,
        "audio": [audio[p] for p in PATHS if p in audio],
        "postgresql_skipped": postgres_missing,
        "targets": targets,
        "bench_wall_s": round(time.perf_counter() - args.started, 1),
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=20_000, help="response rows per writer run")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent sessions (both parts)")
    parser.add_argument("--rate", type=float, default=4000.0, help="the steady writer run's rows/s in total")
    parser.add_argument("--rounds", type=int, default=4, help="rounds that interleave the gateway paths")
    parser.add_argument("--duration", type=float, default=7.0, help="measured seconds per path and round")
    parser.add_argument("--chunk-ms", type=int, default=100, help="the emulator's audio chunk")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 4,000 rows, 50 sessions, 1 round of 3 s"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            if role == "writer":
                url, rows, sessions, rate = rest
                result = runner.run(
                    writer_run(url, int(rows), int(sessions), None if rate == "drain" else float(rate))
                )
                print("RESULT " + json.dumps(result), flush=True)
            elif role == "emulator":
                runner.run(run_emulator(int(rest[0])))
            elif role == "gateway":
                runner.run(run_gateway(int(rest[0]), rest[1]))
        return
    if args.quick:
        args.rows, args.sessions, args.rounds, args.duration = 4000, 50, 1, 3.0
    args.started = time.perf_counter()
    args.load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as folder:
        results = measure(args, Path(folder))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output} in {results['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
