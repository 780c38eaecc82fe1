"""AgentProfile → GA session.update, its validation, and the refusal of beta-era fields."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from openai.types.realtime import RealtimeSessionCreateRequest

from realtalk.errors import ConfigError, LocalProtocolError
from realtalk.protocol.session_config import (
    AgentProfile,
    InputTranscription,
    SemanticVad,
    ServerVad,
    audio_format_from_wire,
    check_ga_session,
)

_SESSION: pydantic.TypeAdapter[RealtimeSessionCreateRequest] = pydantic.TypeAdapter(
    RealtimeSessionCreateRequest
)
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_default_profile_builds_the_nested_ga_session() -> None:
    assert AgentProfile(instructions="You are terse.").to_session() == {
        "type": "realtime",
        "instructions": "You are terse.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "noise_reduction": None,
                "transcription": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
    }


def test_a_full_profile_validates_against_the_sdk_session_model_and_has_no_beta_fields() -> None:
    profile = AgentProfile(
        instructions="x",
        voice="cedar",
        turn_detection=SemanticVad(eagerness="high", interrupt_response=False),
        transcription=InputTranscription("gpt-4o-transcribe", language="en", prompt="names: Ada"),
        noise_reduction="far_field",
        speed=1.25,
        tools=(WEATHER_TOOL,),
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=4096,
        output_modality="text",
        input_format="pcmu",
        output_format="pcma",
    )
    session = profile.to_session()
    check_ga_session(session)
    parsed = _SESSION.validate_python(session)
    assert parsed.audio is not None and parsed.audio.input is not None and parsed.audio.output is not None
    assert parsed.audio.input.format is not None and parsed.audio.input.format.type == "audio/pcmu"
    assert parsed.audio.output.format is not None and parsed.audio.output.format.type == "audio/pcma"
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": False,
    }
    assert session["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "en",
        "prompt": "names: Ada",
    }
    assert session["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
    assert session["output_modalities"] == ["text"]
    assert profile.interrupt_response is False


def test_manual_turns_send_turn_detection_null() -> None:
    profile = AgentProfile(turn_detection=None)
    assert profile.to_session()["audio"]["input"]["turn_detection"] is None
    assert profile.interrupt_response is False


def test_idle_timeout_is_sent_only_when_set() -> None:
    assert "idle_timeout_ms" not in ServerVad().to_wire()
    assert ServerVad(idle_timeout_ms=8000).to_wire()["idle_timeout_ms"] == 8000


def test_profile_without_instructions_leaves_the_server_default() -> None:
    assert "instructions" not in AgentProfile().to_session()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AgentProfile(voice="bob"), "not a Realtime voice"),  # type: ignore[arg-type]
        (lambda: AgentProfile(speed=2.0), "between 0.25 and 1.5"),
        (lambda: AgentProfile(speed=0.2), "between 0.25 and 1.5"),
        (lambda: AgentProfile(max_output_tokens=0), "1-4096"),
        (lambda: AgentProfile(max_output_tokens=4097), "1-4096"),
        (lambda: AgentProfile(max_output_tokens=True), "1-4096"),
        (lambda: AgentProfile(noise_reduction="loud"), "noise_reduction"),  # type: ignore[arg-type]
        (lambda: AgentProfile(output_modality="both"), "audio or text"),  # type: ignore[arg-type]
        (lambda: AgentProfile(input_format="wav"), "pcm24k, pcmu or pcma"),  # type: ignore[arg-type]
        (lambda: AgentProfile(tools=({"type": "function"},)), "tool name"),
        (lambda: AgentProfile(tools=({"name": "x"},)), "function tool"),
        (lambda: AgentProfile(tools=(WEATHER_TOOL, WEATHER_TOOL)), "defined twice"),
        (lambda: AgentProfile(tool_choice="always"), "tool_choice"),
        (lambda: AgentProfile(tool_choice={"type": "function", "name": "nope"}), "not one of the tools"),
        (lambda: ServerVad(threshold=1.5), "between 0.0 and 1.0"),
        (lambda: ServerVad(silence_duration_ms=-1), "silence_duration_ms"),
        (lambda: ServerVad(idle_timeout_ms=1000), "5000-30000"),
        (lambda: SemanticVad(eagerness="eager"), "eagerness"),  # type: ignore[arg-type]
        (lambda: InputTranscription(""), "needs a model"),
        (lambda: InputTranscription("whisper-1", language="English"), "ISO-639-1"),
    ],
)
def test_invalid_settings_are_config_errors_with_an_example(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build()
    assert caught.value.example


def test_beta_format_name_in_a_profile_names_the_ga_object() -> None:
    with pytest.raises(
        ConfigError,
        match=r"\'pcm16\' is a beta-era audio format name; in the GA protocol it is "
        r'\{"type": "audio/pcm", "rate": 24000\}',
    ):
        AgentProfile(input_format="pcm16")  # type: ignore[arg-type]


def test_from_mapping_builds_a_profile_from_toml_shaped_data() -> None:
    profile = AgentProfile.from_mapping(
        {
            "instructions": "Be kind.",
            "voice": "sage",
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 700, "idle_timeout_ms": 10000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "de"},
            "noise_reduction": "near_field",
            "speed": 1,
            "tools": [WEATHER_TOOL],
            "max_output_tokens": 800,
            "output_format": "pcmu",
        }
    )
    assert profile == AgentProfile(
        instructions="Be kind.",
        voice="sage",
        turn_detection=ServerVad(silence_duration_ms=700, idle_timeout_ms=10000),
        transcription=InputTranscription("gpt-4o-mini-transcribe", language="de"),
        noise_reduction="near_field",
        speed=1.0,
        tools=(WEATHER_TOOL,),
        max_output_tokens=800,
        output_format="pcmu",
    )


@pytest.mark.parametrize("manual", ["manual", "none", False, None])
def test_from_mapping_reads_manual_turn_detection(manual: object) -> None:
    assert AgentProfile.from_mapping({"turn_detection": manual}).turn_detection is None


def test_from_mapping_reads_semantic_vad_and_off_noise_reduction() -> None:
    profile = AgentProfile.from_mapping(
        {
            "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
            "noise_reduction": "off",
            "transcription": "whisper-1",
        }
    )
    assert profile.turn_detection == SemanticVad(eagerness="low")
    assert profile.noise_reduction is None
    assert profile.transcription == InputTranscription("whisper-1")


@pytest.mark.parametrize(
    ("field", "ga_name"),
    [
        ("input_audio_format", 'audio.input.format ({"type": "audio/pcm", "rate": 24000})'),
        ("output_audio_format", 'audio.output.format ({"type": "audio/pcm", "rate": 24000})'),
        ("modalities", "output_modalities"),
        ("input_audio_transcription", "audio.input.transcription"),
        ("input_audio_noise_reduction", "audio.input.noise_reduction"),
        ("max_response_output_tokens", "max_output_tokens"),
        ("temperature", "no temperature"),
    ],
)
def test_from_mapping_refuses_beta_fields_naming_the_ga_replacement(field: str, ga_name: str) -> None:
    with pytest.raises(ConfigError, match="beta-era field") as caught:
        AgentProfile.from_mapping({field: "pcm16"})
    assert ga_name in str(caught.value)
    assert caught.value.variable == field


def test_from_mapping_refuses_unknown_keys_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile key 'voise'.*voice"):
        AgentProfile.from_mapping({"voise": "marin"})


def test_from_mapping_refuses_unknown_turn_detection_options() -> None:
    with pytest.raises(ConfigError, match="does not take eagerness"):
        AgentProfile.from_mapping({"turn_detection": {"type": "server_vad", "eagerness": "low"}})


@pytest.mark.parametrize(
    ("field", "ga_name"),
    [
        ("input_audio_format", "audio.input.format"),
        ("output_audio_format", "audio.output.format"),
        ("modalities", "output_modalities"),
        ("temperature", "no temperature"),
        ("turn_detection", "audio.input.turn_detection"),
        ("input_audio_transcription", "audio.input.transcription"),
        ("max_response_output_tokens", "max_output_tokens"),
        ("voice", "audio.output.voice"),
        ("speed", "audio.output.speed"),
    ],
)
def test_check_ga_session_refuses_beta_fields_naming_the_ga_replacement(field: str, ga_name: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"'{field}' is a beta-era field") as caught:
        check_ga_session({"type": "realtime", field: "x"})
    assert ga_name in str(caught.value)


def test_check_ga_session_gives_the_exact_message_for_input_audio_format() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        check_ga_session({"type": "realtime", "input_audio_format": "pcm16"})
    assert str(caught.value) == (
        "'input_audio_format' is a beta-era field; in the GA protocol it is "
        'audio.input.format ({"type": "audio/pcm", "rate": 24000})'
    )


@pytest.mark.parametrize(
    ("beta", "ga"), [("pcm16", "audio/pcm"), ("g711_ulaw", "audio/pcmu"), ("g711_alaw", "audio/pcma")]
)
def test_check_ga_session_refuses_beta_format_strings(beta: str, ga: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"'{beta}' is a beta-era audio format name.*{ga}"):
        check_ga_session({"type": "realtime", "audio": {"output": {"format": beta}}})


def test_check_ga_session_requires_the_session_type() -> None:
    with pytest.raises(LocalProtocolError, match=r'session.type is required.*"type": "realtime"'):
        check_ga_session({"instructions": "x"})


def test_check_ga_session_accepts_a_ga_session() -> None:
    check_ga_session(
        {
            "type": "realtime",
            "audio": {"output": {"voice": "marin", "format": {"type": "audio/pcm", "rate": 24000}}},
        }
    )


@pytest.mark.parametrize(
    ("wire_format", "rate_hz", "bytes_per_sample"),
    [
        ({"type": "audio/pcm", "rate": 24000}, 24000, 2),
        ({"type": "audio/pcmu"}, 8000, 1),
        ({"type": "audio/pcma"}, 8000, 1),
        (None, 24000, 2),
    ],
)
def test_wire_formats_map_to_sample_rates(wire_format: Any, rate_hz: int, bytes_per_sample: int) -> None:
    spec = audio_format_from_wire(wire_format)
    assert (spec.sample_rate_hz, spec.bytes_per_sample) == (rate_hz, bytes_per_sample)
