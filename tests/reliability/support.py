"""What the reliability tests share: the mode, the model name, results for the benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from realtalk.gateway import Gateway

MODEL = "gpt-realtime-1.5"
LONG = os.environ.get("REALTALK_RELIABILITY_LONG") == "1"
FUZZ_EVENTS = 10_000 if LONG else 400


def record(name: str, data: dict[str, Any]) -> None:
    """Write a test's figures for ``bench/reliability.py`` (when it asked for them)."""
    out = os.environ.get("REALTALK_RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))


class AsgiGateway(Gateway):
    """The gateway as under another ASGI server (client frames through ASGI messages)."""

    direct_websockets = False
