"""``--events events.jsonl``: every Realtime event sent and received, one JSON object per line.

Fed by ``RealtimeSession.on_frame`` with the frames exactly as they crossed the socket, so the log
shows what was on the wire (our own parsing cannot hide a mistake from it). Audio payloads are
replaced by a short note with their size: a minute of conversation would otherwise be megabytes
of base64. Each line::

    {"t_s": 1.234567, "time": "2026-05-01T10:00:00.123456+00:00", "direction": "out",
     "type": "input_audio_buffer.append", "event": {"type": "...", "audio": "<audio elided: 960 bytes>"}}

``t_s`` is seconds since the log was opened, on the monotonic clock (use it for latencies);
``time`` is the wall clock (use it to find the moment in other logs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

__all__ = ["EventLog", "elide_audio"]

# Fields that carry base64 audio: "audio" anywhere (appends, retrieved items' content parts), and
# "delta" in the audio delta events.
_AUDIO_DELTA_TYPES = frozenset({"response.output_audio.delta", "response.audio.delta"})


def _elided(b64: str) -> str:
    size = len(b64) * 3 // 4 - b64[-2:].count("=")
    return f"<audio elided: {size} bytes>"


def elide_audio(event: Any) -> Any:
    """A copy of a decoded event with every base64 audio string replaced by its size."""
    if isinstance(event, list):
        return [elide_audio(value) for value in event]
    if not isinstance(event, dict):
        return event
    audio_delta = event.get("type") in _AUDIO_DELTA_TYPES
    out: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, str) and (key == "audio" or (audio_delta and key == "delta")):
            out[key] = _elided(value)
        else:
            out[key] = elide_audio(value)
    return out


class EventLog:
    """Appends frames to a JSONL file; use as the hook of ``RealtimeSession.on_frame``."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._start_s = clock()
        self._file: TextIO | None = self.path.open("w", encoding="utf-8")  # closed in close()
        self.lines_written = 0

    def __call__(self, direction: Literal["in", "out"], frame: str) -> None:
        if self._file is None:
            return
        record: dict[str, Any] = {
            "t_s": round(self._clock() - self._start_s, 6),
            "time": datetime.now(UTC).isoformat(),
            "direction": direction,
        }
        try:
            event = json.loads(frame)
        except ValueError:
            record["type"] = None
            record["unparsable"] = frame[:2000]
        else:
            record["type"] = event.get("type") if isinstance(event, dict) else None
            record["event"] = elide_audio(event)
        # The file is buffered: a write is a memory copy, the disk is touched every few KB.
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.lines_written += 1

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
