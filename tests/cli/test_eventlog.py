"""``--events``: frames as JSON lines, audio payloads replaced by their size."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from realtalk.cli.eventlog import EventLog, elide_audio

AUDIO = base64.b64encode(bytes(960)).decode()


def test_appends_and_audio_deltas_lose_their_audio_but_keep_its_size() -> None:
    append = {"type": "input_audio_buffer.append", "audio": AUDIO}
    delta = {"type": "response.output_audio.delta", "item_id": "i", "delta": AUDIO}
    assert elide_audio(append) == {"type": "input_audio_buffer.append", "audio": "<audio elided: 960 bytes>"}
    assert elide_audio(delta)["delta"] == "<audio elided: 960 bytes>"
    assert elide_audio(delta)["item_id"] == "i"


def test_text_deltas_are_kept_and_nested_audio_is_elided() -> None:
    transcript = {"type": "response.output_audio_transcript.delta", "delta": "Hello"}
    retrieved = {
        "type": "conversation.item.retrieved",
        "item": {"content": [{"type": "output_audio", "audio": AUDIO, "transcript": "Hi"}]},
    }
    assert elide_audio(transcript) == transcript
    part = elide_audio(retrieved)["item"]["content"][0]
    assert part == {"type": "output_audio", "audio": "<audio elided: 960 bytes>", "transcript": "Hi"}


def test_the_log_writes_one_line_per_frame_with_direction_and_time(tmp_path: Path) -> None:
    ticks = iter([10.0, 10.25, 10.5])
    log = EventLog(tmp_path / "events.jsonl", clock=lambda: next(ticks))
    log("out", json.dumps({"type": "input_audio_buffer.append", "audio": AUDIO}))
    log("in", "not json")
    log.close()
    log("in", "{}")  # after close: ignored
    first, second = (json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines())
    assert (first["t_s"], first["direction"], first["type"]) == (0.25, "out", "input_audio_buffer.append")
    assert first["event"]["audio"] == "<audio elided: 960 bytes>"
    assert (second["t_s"], second["type"], second["unparsable"]) == (0.5, None, "not json")
