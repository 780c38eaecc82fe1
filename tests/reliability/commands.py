"""realtalk's commands run as child processes, for the tests that need a real process (signals,
its own logging set-up): ``async with command(tmp_path, env, SIGTERM, "serve", ...) as child``."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

APP = "from realtalk.cli.app import main; main()"
START_TIMEOUT_S = 60.0


class Child:
    """A command run as a child process; every line it writes is kept, per stream."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            asyncio.create_task(self._read(name, stream))
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
        ]

    async def _read(self, name: str, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while line := await stream.readline():
            self.lines[name].append(line.decode("utf-8", "replace"))

    async def wait_for(self, stream: str, pattern: str) -> re.Match[str]:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                for line in self.lines[stream]:
                    if found := re.search(pattern, line):
                        return found
                if self.process.returncode is not None:
                    raise AssertionError(f"the command ended ({self.process.returncode}): {self.lines}")
                await asyncio.sleep(0.05)

    async def stop(self, how: signal.Signals) -> None:
        if self.process.returncode is None:
            self.process.send_signal(how)
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            await asyncio.gather(*self._readers)

    def text(self, stream: str) -> str:
        return "".join(self.lines[stream])

    async def emulator_endpoint(self) -> str:
        """The ``AZURE_OPENAI_ENDPOINT`` a ``realtalk emulate`` child prints."""
        return (await self.wait_for("stdout", r"AZURE_OPENAI_ENDPOINT=(http://\S+)")).group(1)

    async def gateway_base(self) -> str:
        """The ``http://127.0.0.1:PORT`` a ``realtalk serve`` child listens on."""
        return (await self.wait_for("stderr", r"realtalk gateway: (http://127\.0\.0\.1:\d+)/")).group(1)

    async def realtime_url(self, model: str) -> str:
        """The ``ws://.../openai/v1/realtime?model=`` URL of a ``realtalk serve`` child."""
        return (await self.gateway_base()).replace("http://", "ws://") + f"/openai/v1/realtime?model={model}"


@asynccontextmanager
async def command(
    tmp_path: Path, env: dict[str, str], stop: signal.Signals, *args: str
) -> AsyncIterator[Child]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APP, *args,
        env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    child = Child(process)
    try:
        yield child
    finally:
        await child.stop(stop)


async def raw_status(port: int, request: bytes) -> int:
    """The HTTP status a raw ``request`` gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    return int(head.split()[1])
