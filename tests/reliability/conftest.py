"""The reliability suite's machinery: the emulator and the gateway on 127.0.0.1, and a leak check.

``REALTALK_RELIABILITY_LONG=1`` turns on the long mode (10,000 fuzzed events per target, longer
hostile runs); ``bench/reliability.py`` runs it. The default is sized for CI.
``REALTALK_RELIABILITY_OUT=<dir>``: each test that counts something writes it there as JSON.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines
from realtalk.gateway import Gateway, create_app
from realtalk.settings import Settings

from .support import MODEL, AsgiGateway


@pytest.fixture(scope="session")
def cheap_engines() -> Engines:
    """Energy VAD, no recogniser, tone replies: the real audio path at next to no CPU."""
    return load_engines("energy", "none", "tone")


@pytest.fixture
def stack(cheap_engines: Engines, tmp_path: Path) -> Callable[..., Any]:
    """``async with stack(emulator={...}, gateway={...}, asgi=False) as (emu, gw)``."""

    @asynccontextmanager
    async def start(
        *, emulator: dict[str, Any] | None = None, gateway: dict[str, Any] | None = None, asgi: bool = False
    ) -> AsyncIterator[tuple[Emulator, Gateway]]:
        config = {"pace": 40.0, **(emulator or {})}
        static = tmp_path / "static"
        static.mkdir(exist_ok=True)
        (static / "index.html").write_text("<!doctype html><title>realtalk</title>")
        async with Emulator(EmulatorConfig(**config), engines=cheap_engines) as emu:
            values: dict[str, Any] = {
                "azure_openai_endpoint": emu.http_base_url,
                "azure_openai_deployment_name": MODEL,
                "gateway_port": 0,
                "connect_timeout_s": 5.0,
                **(gateway or {}),
            }
            app = create_app(
                Settings(_env_file=None, **values), static_dir=static, emulator_engines=cheap_engines
            )
            async with (AsgiGateway if asgi else Gateway)(app) as gw:
                yield emu, gw

    return start


def _open_fds() -> set[str]:
    fds = set()
    for entry in Path("/proc/self/fd").iterdir():
        try:
            fds.add(f"{entry.name}->{os.readlink(entry)}")
        except OSError:
            continue  # the directory's own descriptor, closed as it was listed
    return fds


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """After the test: no task it started is still running, no socket or file it opened is open."""
    tasks_before = set(asyncio.all_tasks())
    fds_before = _open_fds()
    yield
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        tasks = {t for t in asyncio.all_tasks() - tasks_before if t is not current and not t.done()}
        fds = {fd for fd in _open_fds() - fds_before if "socket:" in fd or "/" in fd.split("->")[1]}
        if (not tasks and not fds) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not tasks, f"tasks left running: {[t.get_coro() for t in tasks]}"
    assert not fds, f"descriptors left open: {sorted(fds)}"
