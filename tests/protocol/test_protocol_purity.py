"""The pure cores stay pure: no I/O, clock, environment, event loop or higher layer is imported.

An AST scan of every module in ``realtalk/protocol`` and ``realtalk/audio`` (except
``audio/devices.py``, the one module allowed to touch the sound card).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import realtalk

SRC = Path(realtalk.__file__).parent
FORBIDDEN_MODULES = frozenset(
    {"asyncio", "socket", "threading", "time", "os", "websockets", "httpx", "sounddevice", "subprocess"}
)
FORBIDDEN_PACKAGES = ("realtalk.client", "realtalk.emulator", "realtalk.cli", "realtalk.gateway")
EXEMPT = {SRC / "audio" / "devices.py"}
# The playback buffer is shared with the sound card's callback thread: one short lock is the agreed
# exception (a lock is neither I/O nor a clock), nothing else from the list.
ALLOWED = {SRC / "audio" / "playback.py": {"threading"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(source: str, path: Path) -> set[str]:
    """Absolute names of everything a module imports, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def violations(source: str, path: Path) -> list[str]:
    found = []
    for name in sorted(imported_modules(source, path)):
        if name.split(".")[0] in FORBIDDEN_MODULES:
            found.append(name)
        elif any(name == package or name.startswith(package + ".") for package in FORBIDDEN_PACKAGES):
            found.append(name)
    return found


PURE_MODULES = sorted(
    path for package in ("protocol", "audio") for path in (SRC / package).rglob("*.py") if path not in EXEMPT
)


def test_the_scan_covers_the_protocol_core() -> None:
    names = {path.name for path in PURE_MODULES}
    assert {"client.py", "conversation.py", "truncation.py", "cost.py", "retry.py", "events.py"} <= names


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda path: str(path.relative_to(SRC)))
def test_pure_core_module_imports_no_io_clock_environment_or_higher_layer(path: Path) -> None:
    allowed = ALLOWED.get(path, set())
    assert [name for name in violations(path.read_text(encoding="utf-8"), path) if name not in allowed] == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time", ["time"]),
        ("from time import monotonic", ["time", "time.monotonic"]),
        ("import os.path", ["os.path"]),
        ("import asyncio as aio", ["asyncio"]),
        ("from ..client import session", ["realtalk.client", "realtalk.client.session"]),
        (
            "from realtalk.gateway.app import create_app",
            ["realtalk.gateway.app", "realtalk.gateway.app.create_app"],
        ),
        ("__import__('socket')", ["socket"]),
        ("from . import truncation", []),
        ("import timeit", []),
    ],
)
def test_the_scan_catches_forbidden_imports(source: str, expected: list[str]) -> None:
    assert violations(source, SRC / "protocol" / "client.py") == expected
