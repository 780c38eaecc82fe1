"""``realtalk talk --profile``: the profile's tools run in the terminal agent (embedded emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_talk import SPEED, events_of, run_talk, transcript

TOOLS_PY = '''
def get_weather(city: str) -> dict:
    """The weather in a city now."""
    return {"city": city, "temp_c": 7, "sky": "drizzle"}
'''
PROFILE = """
instructions = "You are a weather line."
voice = "marin"

[[tools]]
function = "./tools.py:get_weather"
"""


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    path = tmp_path / "agent.toml"
    path.write_text(PROFILE)
    return path


def test_a_profile_tool_runs_and_the_agent_reads_its_result(tmp_path: Path, profile: Path) -> None:
    log = tmp_path / "events.jsonl"
    result = run_talk(
        "--profile", str(profile), "--output-wav", str(tmp_path / "out.wav"), "--events", str(log),
        "--transcription-model", "none", "--exit-after-turns", "2", "--speed", SPEED, "--voice", "cedar",
        stdin="what is the weather in oslo\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tool get_weather: ok" in result.output
    lines = transcript(result.output)
    assert lines[0] == "you   what is the weather in oslo"
    assert "drizzle" in lines[-1] and lines[-1].startswith("agent")
    sent = [e["event"] for e in events_of(log) if e["direction"] == "out"]
    [update] = [e for e in sent if e.get("type") == "session.update"]
    session = update["session"]
    assert session["instructions"] == "You are a weather line."  # from the profile ...
    assert session["audio"]["output"]["voice"] == "cedar"  # ... with the command line's --voice on top
    assert [t["name"] for t in session["tools"]] == ["get_weather"]
    outputs = [
        e
        for e in sent
        if e.get("type") == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1 and "drizzle" in outputs[0]["item"]["output"]


def test_a_profile_naming_a_missing_function_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    bad = tmp_path / "agent.toml"
    bad.write_text('[[tools]]\nfunction = "./tools.py:get_wether"\n')
    result = run_talk("--profile", str(bad), "--output-wav", str(tmp_path / "out.wav"), "--duration", "1")
    assert result.exit_code == 2
    assert "get_wether" in result.output and str(bad) in result.output.replace("\n", "")
    assert "Traceback" not in result.output
