"""Benchmark of admission: what the per-user session limit shared through the ledger costs at connect.

Run: ``.venv/bin/python bench/admission.py`` (three to four minutes on 2 cores); ``--quick`` for a
smoke run (under a minute). Prints two tables and writes ``bench/results/admission.json``.
Everything runs on this machine, on 127.0.0.1, through realtalk's own code paths. With a ledger,
every WebSocket connect takes a session lease (``SessionLeases.acquire``: one transaction, on
PostgreSQL under ``pg_advisory_xact_lock`` on the user) before anything is opened upstream, and
gives it back (``release``) when the session ends; with the ledger ``off`` only the gateway's
in-process counters are asked. That ``off`` path is the baseline, measured in the same run, and
the figures are its ratios and differences, not absolute thresholds. PostgreSQL is
``bench/ledger.py``'s throwaway cluster (``Postgres``: Debian's ``postgresql``, ``initdb`` +
``pg_ctl``, trust authentication, 127.0.0.1, ``fsync=off``), each database migrated with
``realtalk.ledger.upgrade``; without the package the PostgreSQL figures are skipped, and said so.

With two or more cores, the code under test (the gateway processes; the lease process) is pinned
to the last core, and the load (this process's clients, the emulator, PostgreSQL) to the others.

**1. Connect latency through the gateway.** Children, as in ``bench/ledger.py`` (whose
``run_emulator`` and ``run_gateway`` they run): the emulator (uvloop, fast engines: energy VAD, no
recogniser, tone replies; automatic GC off, collected between units) and three ``realtalk serve``
apps (``create_app`` + ``Gateway``, open mode, uvloop, ``freeze_gc``; at most 1,000 sessions, and
1,000 per user) in front of it that differ only in ``REALTALK_LEDGER_URL``: ``off``, a SQLite file,
a PostgreSQL database. In open mode the user is the client's address (``open:<host>``), so a
client that binds its socket to ``127.0.0.<n>`` is a user of its own: "distinct users" are
``127.0.0.2`` to ``127.0.0.51``, "one user" is ``127.0.0.1``. Per connect, at the client
(``perf_counter``): from calling ``websockets.connect`` to the ``session.created`` frame (the
handshake, which waits for the lease, then the gateway's upstream connect and the emulator's first
event); beside it, the handshake alone, and the close handshake the client starts at once (the
gateway releases the lease after the session ends). Three kinds, each in units:

* **one at a time**: ``--sequential`` (60) connects per round, one after another, the users in
  turn, in ``--bursts`` units;
* **distinct users at once**: a burst of ``--burst`` (50) connects started together, one per user;
* **one user at once**: the same from one user (under the high limit, so none is refused: on
  PostgreSQL they queue on that user's advisory lock, on SQLite on its single writer).

``--bursts`` (3) bursts of each kind per round; connects/s of a burst is its size over the time
from its start to its last ``session.created``. After each unit the bench waits until the gateway
reports no open session (``/metrics``) and, with a ledger, no lease is left in its database (read
by this process every 2 ms): "released" is the time from the unit's last close handshake to then,
so no unit starts with the previous one's releases in flight. Beside them: the gateway process's
CPU per connect (``/proc/<pid>/task/*/schedstat``; with a ledger it includes the writer committing
the session's rows). Before the rounds every path runs each kind once, not measured (first
connections, imports). In each of ``--rounds`` (5) rounds every unit runs on the three paths in
turn, the order of the paths rotated at each unit and of the kinds at each round, so a noisy
moment of the machine hits the paths alike. The figure per path is the median over the rounds of
each round's percentile; the spread (max - min over the rounds) is what a difference from ``off``
is held against: measurable when larger than the larger spread of the two.

**2. Raw lease throughput** (no gateway). A child process (uvloop, as ``realtalk serve``) opens
``create_ledger_engine(url)`` (the gateway's engine: a pool of 5 + 10 connections) on a fresh,
migrated SQLite file and PostgreSQL database, and runs each case for ``--duration`` (1 s): tasks
that loop until the deadline, an operation after another. Cases per database, with 1 and
``--tasks`` (50) concurrent tasks:

* **SELECT 1**, the baseline: ``async with engine.begin(): SELECT 1`` (one transaction);
* **lease**: ``acquire`` then ``release`` (two transactions), each task its own user (limit 3);
* **contended** (50 tasks only): all the same user, limit 3, split over two ``SessionLeases`` on two
  engines (two holders, as two replicas). A task that is granted counts itself in, holds the lease
  ``HOLD_S`` (50 ms, so the limit is reached), counts itself out and releases; a refused task
  yields once and asks again. Its figure is decisions/s (acquires answered, granted or refused;
  op: one acquire), with grants/s and refusals/s beside it. The in-process count (in after
  ``acquire`` returns, out before ``release`` starts: never above the rows in the database) is
  asserted to stay at or under 3 at every grant, and a third engine reads the database's own count
  (``open_sessions``) every millisecond, asserted likewise.

Each case runs once first, not measured; then ``--lease-rounds`` (6) rounds, the order of the cases
rotated each round. The figure is the median over the rounds of operations/s (pairs/s for a lease),
its ratio to the same database's SELECT 1 transactions/s at the same concurrency (a pair is two
transactions: 0.5 would be "as cheap as SELECT 1"), the latency per operation and the process's CPU
per operation (``time.process_time``: every thread, aiosqlite's included). Renewals are not running
(no ``start()``): they are one UPDATE per ``ttl_s / 3`` for all of a replica's leases, not per connect.
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
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import websockets
from rich.console import Console
from rich.table import Table

from harness import CPUS, Child, child, figures, frame_type, pin, run_once  # bench/harness.py
from ledger import MODEL, LedgerDatabases, count_rows_at, run_emulator, run_gateway  # bench/ledger.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "admission.json"

THIS_FILE = Path(__file__).resolve()
PATHS: Final = ("off", "sqlite", "postgresql")
LEDGERS: Final = ("sqlite", "postgresql")
KINDS: Final = ("sequential", "distinct", "one_user")
ONE_USER_ADDRESS: Final = "127.0.0.1"
LEASE_LIMIT: Final = 3
SETTLE_POLL_S: Final = 0.002
CHUNK_MS: Final = 100  # the emulator's audio chunk (no audio flows here)
HOLD_S: Final = 0.05  # how long a contender that was granted holds its lease


def _address(user: int) -> str:
    """The loopback address that is user ``user`` (0-based) in open mode: 127.0.0.2 and up."""
    return f"127.0.0.{2 + user}"


def _loop_factory() -> Any:
    from realtalk.cli.serve import event_loop_factory

    return event_loop_factory()  # uvloop where installed, as realtalk serve


# --- 2. raw lease throughput (child process) -----------------------------------------------------


async def _run_case(
    database: str, case: str, tasks: int, duration_s: float, engines: list[Any], leases: list[Any]
) -> dict[str, Any]:
    """One case for ``duration_s``: see the module docstring."""
    from sqlalchemy import text

    from realtalk.ledger.leases import LeaseUnavailable

    clock = time.perf_counter
    op_ms: list[float] = []
    acquire_ms: list[float] = []
    release_ms: list[float] = []
    counts = {"ops": 0, "granted": 0, "refused": 0, "unavailable": 0}
    holding = [0, 0]  # now, most
    db_most = [0, 0]  # most read, reads
    select_1 = text("SELECT 1")
    contended_user = f"contended-{time.monotonic_ns()}"
    started = clock()
    cpu_before = time.process_time()  # every thread of this process (aiosqlite's included)
    deadline = started + duration_s

    async def select1() -> None:
        while (at := clock()) < deadline:
            async with engines[0].begin() as connection:
                await connection.execute(select_1)
            op_ms.append((clock() - at) * 1000)
            counts["ops"] += 1

    async def lease(index: int) -> None:
        user = f"user-{index}"
        for n in itertools.count():
            if (at := clock()) >= deadline:
                return
            got = await leases[0].acquire(session_id=f"s{index}-{n}-{at}", user=user, limit=LEASE_LIMIT)
            middle = clock()
            if got is None:  # each user holds at most one lease: a refusal is a bug
                raise RuntimeError(f"{database}: user {user} was refused a lease while holding none")
            await leases[0].release(got)
            end = clock()
            acquire_ms.append((middle - at) * 1000)
            release_ms.append((end - middle) * 1000)
            op_ms.append((end - at) * 1000)
            counts["ops"] += 1

    async def contend(index: int) -> None:
        mine = leases[index % 2]
        for n in itertools.count():
            if (at := clock()) >= deadline:
                return
            try:
                got = await mine.acquire(
                    session_id=f"c{index}-{n}-{at}", user=contended_user, limit=LEASE_LIMIT
                )
            except LeaseUnavailable:
                counts["unavailable"] += 1
                await asyncio.sleep(0)
                continue
            decided = clock()
            acquire_ms.append((decided - at) * 1000)
            op_ms.append((decided - at) * 1000)
            counts["ops"] += 1  # a decision: granted or refused
            if got is None:
                counts["refused"] += 1
                await asyncio.sleep(0)
                continue
            holding[0] += 1
            holding[1] = max(holding[1], holding[0])
            if holding[0] > LEASE_LIMIT:
                raise RuntimeError(f"{database}: {holding[0]} leases granted at once to one user, limit 3")
            counts["granted"] += 1
            await asyncio.sleep(HOLD_S)  # a (very) short session
            holding[0] -= 1
            middle = clock()
            await mine.release(got)
            release_ms.append((clock() - middle) * 1000)

    async def watch() -> None:
        # The database's own count, on an engine of its own, while the contenders run.
        while clock() < deadline:
            held = await leases[2].open_sessions(contended_user)
            db_most[0] = max(db_most[0], held)
            db_most[1] += 1
            if held > LEASE_LIMIT:
                raise RuntimeError(f"{database}: the database counts {held} live leases of one user, limit 3")
            await asyncio.sleep(0.001)

    if case == "select1":
        await asyncio.gather(*(select1() for _ in range(tasks)))
    elif case == "lease":
        await asyncio.gather(*(lease(i) for i in range(tasks)))
    else:
        await asyncio.gather(watch(), *(contend(i) for i in range(tasks)))
    elapsed = clock() - started
    cpu_s = time.process_time() - cpu_before
    left = await leases[2].open_sessions(contended_user) if case == "contended" else 0
    result: dict[str, Any] = {
        "database": database,
        "case": case,
        "tasks": tasks,
        "elapsed_s": round(elapsed, 4),
        "ops": counts["ops"],
        "ops_per_s": round(counts["ops"] / elapsed, 1),
        "process_cpu_percent": round(cpu_s / elapsed * 100, 1),
        "process_cpu_ms_per_op": round(cpu_s * 1000 / max(1, counts["ops"]), 4),
        "op_ms": figures(op_ms) if op_ms else None,
        "acquire_ms": figures(acquire_ms) if acquire_ms else None,
        "release_ms": figures(release_ms) if release_ms else None,
    }
    if case == "contended":
        result |= {
            "granted": counts["granted"],
            "granted_per_s": round(counts["granted"] / elapsed, 1),
            "refused": counts["refused"],
            "refused_per_s": round(counts["refused"] / elapsed, 1),
            "unavailable": counts["unavailable"],
            "most_granted_at_once_in_process": holding[1],
            "most_live_leases_read_in_database": db_most[0],
            "database_reads": db_most[1],
            "leases_left_after": left,
        }
    return result


async def lease_throughput(
    urls: dict[str, str], tasks: int, duration_s: float, rounds: int
) -> dict[str, Any]:
    from realtalk.ledger.database import create_ledger_engine
    from realtalk.ledger.leases import SessionLeases

    engines = {db: [create_ledger_engine(url) for _ in range(3)] for db, url in urls.items()}
    leases = {db: [SessionLeases(engine, ttl_s=60.0) for engine in pool] for db, pool in engines.items()}
    cases = [
        (db, case, n)
        for db in urls
        for case, n in (
            ("select1", 1),
            ("lease", 1),
            ("select1", tasks),
            ("lease", tasks),
            ("contended", tasks),
        )
    ]
    try:
        # First connections and first statements, not measured.
        for db, case, n in cases:
            await _run_case(db, case, n, min(0.3, duration_s), engines[db], leases[db])
        gc.collect()
        gc.freeze()
        runs: list[dict[str, Any]] = []
        for round_index in range(rounds):
            shift = (round_index * 3) % len(cases)  # rotate, so no case always runs first
            for db, case, n in cases[shift:] + cases[:shift]:
                result = await _run_case(db, case, n, duration_s, engines[db], leases[db])
                result["round"] = round_index
                runs.append(result)
                print(
                    f"  round {round_index + 1} {db:10s} {case:9s} x{n:<3d}: {result['ops_per_s']:8.0f}/s"
                    + (
                        f" (granted {result['granted_per_s']:.0f}/s, "
                        f"refused {result['refused_per_s']:.0f}/s, "
                        f"most at once {result['most_granted_at_once_in_process']}/"
                        f"{result['most_live_leases_read_in_database']})"
                        if case == "contended"
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
                gc.collect()
    finally:
        for pool in engines.values():
            for engine in pool:
                await engine.dispose()
    return {"runs": runs}


def lease_child(urls: dict[str, str], tasks: int, duration_s: float, rounds: int) -> dict[str, Any]:
    return run_once(
        THIS_FILE, "leases", json.dumps(urls), str(tasks), str(duration_s), str(rounds), timeout_s=600
    )


# --- 1. connects through the gateway (this process is the clients) --------------------------------


@dataclass
class ConnectRun:
    """One path's connects of one kind in one round."""

    path: str
    kind: str
    round_index: int
    created_ms: list[float] = field(default_factory=list)
    handshake_ms: list[float] = field(default_factory=list)
    close_ms: list[float] = field(default_factory=list)
    connects_per_s: list[float] = field(default_factory=list)  # per burst
    released_ms: list[float] = field(default_factory=list)  # per burst (or sequential run)
    gateway_cpu_s: float = 0.0


async def connect_once(url: str, address: str, run: ConnectRun) -> float:
    """Open, wait for ``session.created``, close; returns when ``session.created`` arrived."""
    clock = time.perf_counter
    at = clock()
    ws = await websockets.connect(
        url,
        local_addr=(address, 0),
        max_size=None,
        compression=None,
        ping_interval=None,
        open_timeout=30,
        close_timeout=10,
    )
    opened = clock()
    try:
        async with asyncio.timeout(30):
            while True:
                message = await ws.recv()
                kind = frame_type(message) if isinstance(message, str) else None
                if kind == "session.created":
                    break
                if kind == "error":
                    raise RuntimeError(f"error event: {str(message)[:300]}")
        created = clock()
    finally:
        closing = clock()
        await ws.close()
    run.handshake_ms.append((opened - at) * 1000)
    run.created_ms.append((created - at) * 1000)
    run.close_ms.append((clock() - closing) * 1000)
    return created


class Settled:
    """Waits until a gateway has no open session and, with a ledger, no lease left in its database."""

    def __init__(self, gateway: Child, ledger_url: str | None) -> None:
        from realtalk.ledger.database import create_ledger_engine

        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.ports[0]}", timeout=10)
        self.engine = None if ledger_url is None else create_ledger_engine(ledger_url)

    async def _sessions_active(self) -> float:
        text = (await self.http.get("/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("realtalk_gateway_sessions_active "))
        return float(line.split()[1])

    async def _leases_left(self) -> int:
        from sqlalchemy import func, select

        from realtalk.ledger.schema import session_leases

        if self.engine is None:
            return 0
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(session_leases)) or 0)

    async def wait(self, since: float) -> float:
        """Milliseconds from ``since`` (the last close) to settled."""
        async with asyncio.timeout(30):
            while await self._sessions_active() or await self._leases_left():  # noqa: ASYNC110 - polls another process
                await asyncio.sleep(SETTLE_POLL_S)
        return (time.perf_counter() - since) * 1000

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.engine is not None:
            await self.engine.dispose()


async def run_unit(run: ConnectRun, gateway: Child, settled: Settled, sequential: int, burst: int) -> None:
    """One unit of ``run``'s kind: ``sequential`` connects one after another, or one burst."""
    url = f"ws://127.0.0.1:{gateway.ports[0]}/openai/v1/realtime?model={MODEL}"
    cpu_before = gateway.cpu_s()
    if run.kind == "sequential":
        for n in range(sequential):
            await connect_once(url, _address(n % burst), run)
        run.released_ms.append(await settled.wait(time.perf_counter()))
    else:
        addresses = (
            [_address(i) for i in range(burst)] if run.kind == "distinct" else [ONE_USER_ADDRESS] * burst
        )
        started = time.perf_counter()
        created = await asyncio.gather(*(connect_once(url, a, run) for a in addresses))
        closed = time.perf_counter()
        run.connects_per_s.append(burst / (max(created) - started))
        run.released_ms.append(await settled.wait(closed))
    run.gateway_cpu_s += gateway.cpu_s() - cpu_before


async def connect_rounds(
    args: argparse.Namespace, emulator: Child, gateways: dict[str, Child], urls: dict[str, str]
) -> tuple[list[ConnectRun], dict[str, int]]:
    settled = {path: Settled(g, None if path == "off" else urls[path]) for path, g in gateways.items()}
    paths: list[str] = [p for p in PATHS if p in gateways]
    connects = dict.fromkeys(paths, 0)  # per path, the warm-up's included
    chunk = max(1, args.sequential // args.bursts)  # sequential connects per unit
    try:
        for path in paths:  # warm-up: first connections, imports; not measured
            emulator.ask("collect")
            for kind in KINDS:
                warm = ConnectRun(path, kind, -1)
                await run_unit(warm, gateways[path], settled[path], min(10, chunk), args.burst)
                connects[path] += len(warm.created_ms)
        gc.collect()
        gc.freeze()
        runs: list[ConnectRun] = []
        for round_index in range(args.rounds):
            this_round = {(p, k): ConnectRun(p, k, round_index) for p in paths for k in KINDS}
            # Each unit (a sequential chunk, a burst) runs on every path in turn, the order rotated
            # each time, so a noisy moment of the machine hits the paths alike.
            kinds = KINDS[round_index % 3 :] + KINDS[: round_index % 3]
            for kind in kinds:
                for rep in range(args.bursts):
                    shift = (round_index + rep) % len(paths)
                    for path in paths[shift:] + paths[:shift]:
                        emulator.ask("collect")  # between units, where it stalls nothing measured
                        run = this_round[path, kind]
                        await run_unit(run, gateways[path], settled[path], chunk, args.burst)
            for run in this_round.values():
                connects[run.path] += len(run.created_ms)
                runs.append(run)
                _progress(run)
    finally:
        for waiter in settled.values():
            await waiter.aclose()
    return runs, connects


def _progress(run: ConnectRun) -> None:
    created = figures(run.created_ms)
    rate = f", {statistics.median(run.connects_per_s):.0f} connects/s" if run.connects_per_s else ""
    print(
        f"  round {run.round_index + 1} {run.path:10s} {run.kind:10s}: {created['n']} connects, "
        f"session.created p50 {created['p50']:.2f} p99 {created['p99']:.2f} ms{rate}, "
        f"released within {max(run.released_ms):.1f} ms",
        file=sys.stderr,
        flush=True,
    )


# --- the run -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    pin(os.getpid(), under_test=False)
    with LedgerDatabases(folder) as dbs:
        databases, new_url = dbs.names, dbs.new_url
        lease_urls = {database: new_url(database, "leases") for database in databases}
        print("2. raw lease throughput", file=sys.stderr, flush=True)
        leases = lease_child(lease_urls, args.tasks, args.duration, args.lease_rounds)

        print("1. connects through the gateway", file=sys.stderr, flush=True)
        urls = {"off": "off"} | {database: new_url(database, "gateway") for database in databases}
        with contextlib.ExitStack() as stack:
            emulator = stack.enter_context(child(THIS_FILE, "emulator", str(CHUNK_MS), under_test=False))
            gateways = {
                path: stack.enter_context(
                    child(THIS_FILE, "gateway", str(emulator.ports[0]), url, under_test=True)
                )
                for path, url in urls.items()
            }
            runs, connects = asyncio.run(connect_rounds(args, emulator, gateways, urls))
            time.sleep(1.0)  # the ledger commits session rows within flush_interval_s (0.25 s)
            held = {database: asyncio.run(count_rows_at(urls[database])) for database in databases}
    return report(runs, connects, held, leases, args, dbs.missing)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def _connect_rows(runs: list[ConnectRun], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in PATHS:
        for kind in KINDS:
            mine = [r for r in runs if r.path == path and r.kind == kind]
            if not mine:
                continue
            p50s = [figures(r.created_ms)["p50"] for r in mine]
            p99s = [figures(r.created_ms)["p99"] for r in mine]
            row: dict[str, Any] = {
                "path": path,
                "kind": kind,
                "rounds": len(mine),
                "connects": sum(len(r.created_ms) for r in mine),
                "session_created_ms": figures([x for r in mine for x in r.created_ms]),
                "session_created_p50_ms_per_round": p50s,
                "session_created_p99_ms_per_round": p99s,
                "session_created_p50_ms_median_of_rounds": _median(p50s),
                "session_created_p99_ms_median_of_rounds": _median(p99s),
                "session_created_p50_ms_spread": round(max(p50s) - min(p50s), 4),
                "session_created_p99_ms_spread": round(max(p99s) - min(p99s), 4),
                "handshake_ms": figures([x for r in mine for x in r.handshake_ms]),
                "handshake_p50_ms_median_of_rounds": _median([figures(r.handshake_ms)["p50"] for r in mine]),
                "close_ms": figures([x for r in mine for x in r.close_ms]),
                "released_after_last_close_ms": figures([x for r in mine for x in r.released_ms]),
                "gateway_cpu_ms_per_connect_median_of_rounds": _median(
                    [r.gateway_cpu_s * 1000 / len(r.created_ms) for r in mine]
                ),
            }
            if kind != "sequential":
                rates = [statistics.median(r.connects_per_s) for r in mine]
                row |= {
                    "burst_size": args.burst,
                    "bursts": sum(len(r.connects_per_s) for r in mine),
                    "connects_per_s_per_burst": [round(x, 1) for r in mine for x in r.connects_per_s],
                    "connects_per_s_per_round": [round(x, 1) for x in rates],
                    "connects_per_s_median_of_rounds": round(statistics.median(rates), 1),
                    "connects_per_s_spread": round(max(rates) - min(rates), 1),
                }
            rows.append(row)
    for row in rows:
        if row["path"] == "off":
            continue
        off = next((r for r in rows if r["path"] == "off" and r["kind"] == row["kind"]), None)
        if off is None:
            continue
        versus: dict[str, Any] = {}
        for q in ("p50", "p99"):
            key = f"session_created_{q}_ms_median_of_rounds"
            spread = max(row[f"session_created_{q}_ms_spread"], off[f"session_created_{q}_ms_spread"])
            difference = row[key] - off[key]
            versus |= {
                f"{q}_difference_ms": round(difference, 4),
                f"{q}_ratio": round(row[key] / off[key], 4),
                f"{q}_run_to_run_spread_ms": round(spread, 4),
                # One round has no spread to hold a difference against: not judged.
                f"{q}_measurable": abs(difference) > spread if args.rounds >= 2 else None,
            }
        # Round by round (the paths of a round ran side by side): the spread of the ratio itself.
        versus["p50_ratio_per_round"] = [
            round(mine / theirs, 4)
            for mine, theirs in zip(
                row["session_created_p50_ms_per_round"], off["session_created_p50_ms_per_round"], strict=True
            )
        ]
        versus["handshake_p50_difference_ms"] = round(
            row["handshake_p50_ms_median_of_rounds"] - off["handshake_p50_ms_median_of_rounds"], 4
        )
        versus["gateway_cpu_ms_per_connect_difference"] = round(
            row["gateway_cpu_ms_per_connect_median_of_rounds"]
            - off["gateway_cpu_ms_per_connect_median_of_rounds"],
            4,
        )
        if "connects_per_s_median_of_rounds" in row:
            versus["connects_per_s_ratio"] = round(
                row["connects_per_s_median_of_rounds"] / off["connects_per_s_median_of_rounds"], 4
            )
        row["vs_off"] = versus
    return rows


def _lease_rows(leases: dict[str, Any]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = leases["runs"]
    rows: list[dict[str, Any]] = []
    for database, case, tasks in dict.fromkeys((r["database"], r["case"], r["tasks"]) for r in runs):
        mine = [r for r in runs if (r["database"], r["case"], r["tasks"]) == (database, case, tasks)]
        rates = [r["ops_per_s"] for r in mine]
        row: dict[str, Any] = {
            "database": database,
            "case": case,
            "tasks": tasks,
            "rounds": len(mine),
            "ops": sum(r["ops"] for r in mine),
            "ops_per_s_per_round": rates,
            "ops_per_s_median_of_rounds": round(statistics.median(rates), 1),
            "ops_per_s_spread": round(max(rates) - min(rates), 1),
            "op_ms_p50_median_of_rounds": _median([r["op_ms"]["p50"] for r in mine if r["op_ms"]]),
            "op_ms_p99_median_of_rounds": _median([r["op_ms"]["p99"] for r in mine if r["op_ms"]]),
            "process_cpu_percent_median_of_rounds": _median([r["process_cpu_percent"] for r in mine]),
            "process_cpu_ms_per_op_median_of_rounds": _median([r["process_cpu_ms_per_op"] for r in mine]),
        }
        if case != "select1":
            row["acquire_ms_p50_median_of_rounds"] = _median([r["acquire_ms"]["p50"] for r in mine])
            row["acquire_ms_p99_median_of_rounds"] = _median([r["acquire_ms"]["p99"] for r in mine])
            row["release_ms_p50_median_of_rounds"] = _median([r["release_ms"]["p50"] for r in mine])
        if case == "contended":
            row |= {
                "limit": LEASE_LIMIT,
                "granted_per_s_median_of_rounds": round(
                    statistics.median(r["granted_per_s"] for r in mine), 1
                ),
                "refused_per_s_median_of_rounds": round(
                    statistics.median(r["refused_per_s"] for r in mine), 1
                ),
                "granted": sum(r["granted"] for r in mine),
                "refused": sum(r["refused"] for r in mine),
                "unavailable": sum(r["unavailable"] for r in mine),
                "most_granted_at_once_in_process": max(r["most_granted_at_once_in_process"] for r in mine),
                "most_live_leases_read_in_database": max(
                    r["most_live_leases_read_in_database"] for r in mine
                ),
                "leases_left_after": max(r["leases_left_after"] for r in mine),
                "database_reads": sum(r["database_reads"] for r in mine),
            }
        rows.append(row)
    for row in rows:
        if row["case"] == "lease":
            base = next(
                r
                for r in rows
                if (r["database"], r["case"], r["tasks"]) == (row["database"], "select1", row["tasks"])
            )
            row["select1_per_s_median_of_rounds"] = base["ops_per_s_median_of_rounds"]
            row["pairs_per_select1_ratio"] = round(
                row["ops_per_s_median_of_rounds"] / base["ops_per_s_median_of_rounds"], 4
            )
            row["pairs_per_select1_ratio_per_round"] = [
                round(mine / theirs, 4)
                for mine, theirs in zip(row["ops_per_s_per_round"], base["ops_per_s_per_round"], strict=True)
            ]
    return rows


def report(
    runs: list[ConnectRun],
    connects: dict[str, int],
    held: dict[str, dict[str, int]],
    leases: dict[str, Any],
    args: argparse.Namespace,
    postgres_missing: str | None,
) -> dict[str, Any]:
    connect_rows = _connect_rows(runs, args)
    lease_rows = _lease_rows(leases)
    console = Console(width=max(Console().width, 190))

    table = Table(
        title=f"Connect → session.created through the gateway ({args.rounds} interleaved rounds: "
        f"{args.sequential} sequential connects, {args.bursts}+{args.bursts} bursts of {args.burst}; ms)"
    )
    for column in (
        "connects",
        "ledger",
        "n",
        "p50",
        "+p50",
        "÷ off",
        "p99",
        "+p99",
        "÷ off ",
        "handshake p50",
        "connects/s",
        "÷ off  ",
        "CPU/connect",
        "released",
        "p50 by round",
    ):
        table.add_column(
            column,
            justify="left" if column in ("connects", "ledger", "p50 by round") else "right",
            no_wrap=True,
        )
    labels = {
        "sequential": "one at a time",
        "distinct": f"{args.burst} users at once",
        "one_user": f"1 user, {args.burst} at once",
    }
    for kind in KINDS:
        table.add_section()
        for row in (r for r in connect_rows if r["kind"] == kind):
            versus = row.get("vs_off")

            def signed(key: str, versus: dict[str, Any] | None = versus) -> str:
                if versus is None:
                    return ""
                mark = "" if versus.get(key.replace("difference_ms", "measurable")) else " ~"
                return f"{versus[key]:+.2f}{mark}"

            table.add_row(
                labels[kind] if row["path"] == "off" else "",
                row["path"],
                str(row["connects"]),
                f"{row['session_created_p50_ms_median_of_rounds']:.2f}",
                signed("p50_difference_ms"),
                "" if versus is None else f"{versus['p50_ratio']:.2f}",
                f"{row['session_created_p99_ms_median_of_rounds']:.2f}",
                signed("p99_difference_ms"),
                "" if versus is None else f"{versus['p99_ratio']:.2f}",
                f"{row['handshake_p50_ms_median_of_rounds']:.2f}",
                f"{row['connects_per_s_median_of_rounds']:.0f}"
                if "connects_per_s_median_of_rounds" in row
                else "",
                f"{versus['connects_per_s_ratio']:.2f}"
                if versus and "connects_per_s_ratio" in versus
                else "",
                f"{row['gateway_cpu_ms_per_connect_median_of_rounds']:.2f}",
                f"{row['released_after_last_close_ms']['max']:.1f}",
                " ".join(
                    f"{x:.0f}" if x >= 100 else f"{x:.1f}" for x in row["session_created_p50_ms_per_round"]
                ),
            )
    console.print(table)
    console.print(
        "p50/p99: connect → session.created at the client, the median over the rounds of each round's "
        "percentile; +vs off: minus the same with the ledger off (~: within the run-to-run spread, not "
        "measurable); handshake: connect → the 101 (the lease is taken before it); connects/s: burst size / "
        "(burst start → its last session.created); released: last close → no session open and no lease left "
        "in the database (polled every 2 ms), the largest; CPU: the gateway process's, per connect (ms; with "
        "a ledger its writer's commits of the session rows included)"
    )

    leases_table = Table(
        title=f"Session leases alone (in-process, no gateway; {args.lease_rounds} rounds of "
        f"{args.duration:g} s per case)"
    )
    for column in (
        "database",
        "case",
        "tasks",
        "ops/s",
        "rounds min-max",
        "SELECT 1/s",
        "÷ SELECT 1",
        "op p50 ms",
        "op p99 ms",
        "CPU ms/op",
        "acquire p50",
        "release p50",
        "max held",
    ):
        leases_table.add_column(
            column, justify="left" if column in ("database", "case") else "right", no_wrap=True
        )
    case_labels = {
        "select1": "SELECT 1 (baseline)",
        "lease": "acquire + release",
        "contended": f"contended: 1 user, limit {LEASE_LIMIT}",
    }
    for row in lease_rows:
        contended = row["case"] == "contended"
        leases_table.add_row(
            row["database"],
            case_labels[row["case"]],
            str(row["tasks"]),
            f"{row['ops_per_s_median_of_rounds']:,.0f}"
            + (f" ({row['granted_per_s_median_of_rounds']:,.0f} granted)" if contended else ""),
            f"{min(row['ops_per_s_per_round']):,.0f}-{max(row['ops_per_s_per_round']):,.0f}",
            f"{row['select1_per_s_median_of_rounds']:,.0f}"
            if "select1_per_s_median_of_rounds" in row
            else "",
            f"{row['pairs_per_select1_ratio']:.3f}" if "pairs_per_select1_ratio" in row else "",
            f"{row['op_ms_p50_median_of_rounds']:.3f}",
            f"{row['op_ms_p99_median_of_rounds']:.3f}",
            f"{row['process_cpu_ms_per_op_median_of_rounds']:.3f}",
            f"{row['acquire_ms_p50_median_of_rounds']:.3f}"
            if "acquire_ms_p50_median_of_rounds" in row
            else "",
            f"{row['release_ms_p50_median_of_rounds']:.3f}"
            if "release_ms_p50_median_of_rounds" in row
            else "",
            f"{row['most_granted_at_once_in_process']}/{row['most_live_leases_read_in_database']}"
            if contended
            else "",
        )
    console.print(leases_table)
    console.print(
        "ops/s: transactions/s for SELECT 1, acquire+release pairs/s for a lease, acquires answered/s "
        f"(granted or refused; a grant is held {HOLD_S * 1000:g} ms, then released) when contended; the "
        "median over the rounds; ÷ SELECT 1: pairs/s over the same database's SELECT 1 transactions/s at "
        "the same concurrency (a pair is two transactions); op: one SELECT 1 transaction, acquire through "
        "release, or one contended acquire; CPU: the lease process's (all threads) per op; max held: "
        f"the most leases granted at once (≤ {LEASE_LIMIT} asserted), counted in the process / read from "
        "the database"
    )
    if postgres_missing:
        console.print(postgres_missing)

    checks: dict[str, Any] = {
        "contended_never_over_limit": all(
            r["most_granted_at_once_in_process"] <= LEASE_LIMIT
            and r["most_live_leases_read_in_database"] <= LEASE_LIMIT
            for r in lease_rows
            if r["case"] == "contended"
        ),
        "contended_reached_limit": {
            r["database"]: r["most_granted_at_once_in_process"] == LEASE_LIMIT
            for r in lease_rows
            if r["case"] == "contended"
        },
        "contended_no_lease_left_after": all(
            r["leases_left_after"] == 0 for r in lease_rows if r["case"] == "contended"
        ),
        "contended_unavailable": {
            r["database"]: r["unavailable"] for r in lease_rows if r["case"] == "contended"
        },
        # Every connect is a session row in that gateway's ledger, ended.
        "gateway_ledger_sessions_equal_connects_all_ended": {
            database: held[database]["sessions"] == held[database]["sessions_ended"] == connects[database]
            for database in held
        },
        "connects_per_path_warmup_included": connects,
    }
    for name, value in checks.items():
        console.print(f"check {name}: {value}")
    return {
        "benchmark": "admission",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": args.load_before,
        },
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "sequential_connects_per_round": args.sequential,
            "burst_size": args.burst,
            "bursts_per_kind_per_round": args.bursts,
            "distinct_users": "open mode, the client's address is the user: "
            f"127.0.0.2-127.0.0.{1 + args.burst}",
            "one_user": f"{ONE_USER_ADDRESS} (REALTALK_GATEWAY_MAX_SESSIONS_PER_USER=1000)",
            "gateway": "bench/ledger.py run_gateway: create_app + Gateway, open mode, uvloop, freeze_gc, "
            "max sessions 1000 (and per user), lease ttl 60 s (the default)",
            "emulator": "bench/ledger.py run_emulator: pace 1.0, vad energy, asr none, tts tone, uvloop, "
            "automatic GC off, collected between runs",
            "settle_poll_s": SETTLE_POLL_S,
            "lease_tasks": args.tasks,
            "lease_case_duration_s": args.duration,
            "lease_rounds": args.lease_rounds,
            "lease_limit": LEASE_LIMIT,
            "lease_engine": "create_ledger_engine (pool 5 + 10 overflow); SQLite WAL, synchronous=NORMAL, "
            "busy_timeout 5000",
            "contended": f"{args.tasks} tasks on two SessionLeases over two engines (two holders); a third "
            "engine reads the database's count every 1 ms",
            "postgresql": "initdb + pg_ctl, 127.0.0.1, trust, fsync=off, full_page_writes=off",
            "pinning": ({"under_test": [CPUS[-1]], "load": list(CPUS[:-1])} if len(CPUS) >= 2 else None),
            "gateway_event_loop": "uvloop where installed (as realtalk serve)",
            "lease_event_loop": "uvloop where installed (as realtalk serve)",
            "clients_event_loop": "asyncio",
        },
        "connect": connect_rows,
        "leases": lease_rows,
        "lease_runs": leases["runs"],
        "ledger_rows_at_end": held,
        "postgresql_skipped": postgres_missing,
        "checks": checks,
        "bench_wall_s": round(time.perf_counter() - args.started, 1),
        "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="rounds that interleave the gateway paths")
    parser.add_argument("--sequential", type=int, default=60, help="sequential connects per path and round")
    parser.add_argument("--burst", type=int, default=50, help="connects started at once (at most 250)")
    parser.add_argument("--bursts", type=int, default=3, help="bursts of each kind per path and round")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks in the lease throughput")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per lease throughput case")
    parser.add_argument("--lease-rounds", type=int, default=6, help="rounds of the lease throughput cases")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round of 20 sequential connects and 1+1 bursts; lease cases of 0.5 s, 1 round",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            if role == "leases":
                urls, tasks, duration, rounds = rest
                result = runner.run(
                    lease_throughput(json.loads(urls), int(tasks), float(duration), int(rounds))
                )
                print("RESULT " + json.dumps(result), flush=True)
            elif role == "emulator":
                runner.run(run_emulator(int(rest[0])))
            elif role == "gateway":
                runner.run(run_gateway(int(rest[0]), rest[1]))
        return
    if args.quick:
        args.rounds, args.sequential, args.bursts, args.duration, args.lease_rounds = 1, 20, 1, 0.5, 1
    if not 1 <= args.burst <= 250:
        parser.error("--burst: 1 to 250 (one loopback address per user, 127.0.0.2 and up)")
    args.started = time.perf_counter()
    args.load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as folder:
        results = measure(args, Path(folder))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output} in {results['bench_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
