"""The gateway's profile file and configuration checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtalk.errors import ConfigError
from realtalk.gateway import check_exposure, load_profile
from realtalk.protocol import ServerVad


def test_a_profile_file_sets_the_agent_and_what_clients_may_adjust(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'instructions = "Be brief."\nvoice = "cedar"\n'
        'turn_detection = {type = "server_vad", silence_duration_ms = 700}\n'
        'client_adjustable = ["voice"]\n'
    )
    profile = load_profile(path)
    assert profile.agent.instructions == "Be brief." and profile.agent.voice == "cedar"
    assert profile.agent.turn_detection == ServerVad(silence_duration_ms=700)
    assert profile.client_adjustable == frozenset({"voice"})


def test_without_a_file_the_default_agent_allows_voice_and_turn_detection() -> None:
    profile = load_profile(None)
    assert {"voice", "turn_detection"} <= profile.client_adjustable
    assert "instructions" not in profile.client_adjustable


def test_the_default_agent_transcribes_the_user_so_the_page_shows_both_sides() -> None:
    transcription = load_profile(None).agent.transcription
    assert transcription is not None and transcription.model == "gpt-4o-mini-transcribe"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('client_adjustable = ["tools"]', "'tools' cannot be client-adjustable"),
        ('client_adjustable = ["colour"]', "unknown client_adjustable setting 'colour'"),
        ('client_adjustable = "voice"', "must be a list"),
        ("temperature = 0.7", "beta-era field"),
        ("voice = ", "not valid TOML"),
    ],
)
def test_a_wrong_profile_is_a_config_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_only_loopback_addresses_may_run_without_client_authentication() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        check_exposure(host, auth_configured=False)
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(ConfigError, match="refusing to listen"):
            check_exposure(host, auth_configured=False)
        check_exposure(host, auth_configured=True)
