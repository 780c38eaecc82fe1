"""Settings: environment and .env, empty means unset, secrets never shown."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from realtalk.client.credentials import ApiKeyCredential, EntraCredential
from realtalk.errors import ConfigError
from realtalk.settings import Settings, credential_for, load_settings, resolve_connection

SECRET = "k3y-that-must-never-be-printed-0123456789"
SETTING_VARIABLES = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT_NAME",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_KEY",
    "REALTALK_PRICING_MODEL",
    "REALTALK_PRICES",
    "REALTALK_ENTRA_SCOPE",
    "REALTALK_LOG_LEVEL",
    "REALTALK_CONNECT_TIMEOUT_S",
)


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure settings or .env from the developer's checkout."""


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_when_nothing_is_configured() -> None:
    settings = load_settings()
    assert settings.azure_openai_endpoint is None
    assert settings.azure_openai_deployment_name is None
    assert settings.azure_openai_api_key is None
    assert settings.openai_api_key is None
    assert settings.pricing_model == "gpt-realtime-1.5"
    assert settings.prices == {}
    assert settings.entra_scope == "https://cognitiveservices.azure.com/.default"
    assert settings.log_level == "WARNING"
    assert settings.connect_timeout_s == 10.0


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "rt")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    monkeypatch.setenv("REALTALK_PRICING_MODEL", "gpt-realtime-mini")
    monkeypatch.setenv("REALTALK_PRICES", '{"audio_out": "60", "text_in": 0.4}')
    monkeypatch.setenv("REALTALK_ENTRA_SCOPE", "https://ai.azure.com/.default")
    monkeypatch.setenv("REALTALK_LOG_LEVEL", "debug")
    monkeypatch.setenv("REALTALK_CONNECT_TIMEOUT_S", "2.5")
    settings = load_settings()
    assert settings.azure_openai_endpoint == "https://res.openai.azure.com"
    assert settings.azure_openai_deployment_name == "rt"
    assert settings.azure_openai_api_key is not None
    assert settings.azure_openai_api_key.get_secret_value() == SECRET
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-other"
    assert settings.pricing_model == "gpt-realtime-mini"
    assert settings.prices == {"audio_out": Decimal("60"), "text_in": Decimal("0.4")}
    assert settings.entra_scope == "https://ai.azure.com/.default"
    assert settings.log_level == "DEBUG"
    assert settings.connect_timeout_s == 2.5


def test_a_dot_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    write_env(
        tmp_path,
        'AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com/openai/v1"\n'
        "AZURE_OPENAI_DEPLOYMENT_NAME=rt\n"
        "SOMETHING_ELSE=ignored\n",
    )
    settings = load_settings()
    assert settings.azure_openai_endpoint == "https://res.openai.azure.com/openai/v1"
    assert settings.azure_openai_deployment_name == "rt"


def test_an_explicit_env_file_is_read(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.env"
    other.write_text("REALTALK_CONNECT_TIMEOUT_S=3\n", encoding="utf-8")
    assert load_settings(env_file=other).connect_timeout_s == 3.0


def test_the_environment_wins_over_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(tmp_path, "AZURE_OPENAI_DEPLOYMENT_NAME=from-file\n")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "from-env")
    assert load_settings().azure_openai_deployment_name == "from-env"


def test_no_env_file_means_only_the_environment(tmp_path: Path) -> None:
    write_env(tmp_path, "AZURE_OPENAI_DEPLOYMENT_NAME=from-file\n")
    assert load_settings(env_file=None).azure_openai_deployment_name is None


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_VARIABLES:
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.azure_openai_endpoint is None
    assert settings.azure_openai_api_key is None
    assert settings.openai_api_key is None
    assert settings.pricing_model == "gpt-realtime-1.5"
    assert settings.prices == {}
    assert settings.connect_timeout_s == 10.0


def test_blank_values_count_as_unset_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "   ")
    monkeypatch.setenv("REALTALK_PRICES", "  ")
    monkeypatch.setenv("REALTALK_PRICING_MODEL", " ")
    settings = load_settings()
    assert settings.azure_openai_api_key is None
    assert settings.prices == {}
    assert settings.pricing_model == "gpt-realtime-1.5"


def test_empty_values_in_dot_env_count_as_unset(tmp_path: Path) -> None:
    write_env(tmp_path, "AZURE_OPENAI_API_KEY=\nREALTALK_CONNECT_TIMEOUT_S=\nAZURE_OPENAI_ENDPOINT=''\n")
    settings = load_settings()
    assert settings.azure_openai_api_key is None
    assert settings.azure_openai_endpoint is None
    assert settings.connect_timeout_s == 10.0


def test_values_are_stripped_of_surrounding_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", f"  {SECRET}\n")
    settings = load_settings()
    assert settings.azure_openai_api_key is not None
    assert settings.azure_openai_api_key.get_secret_value() == SECRET


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "-openai")
    settings = load_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.pricing_model = "other"  # type: ignore[misc]


def test_settings_can_be_built_in_code_by_field_name() -> None:
    settings = Settings(
        _env_file=None, azure_openai_endpoint="https://res.openai.azure.com", connect_timeout_s=1
    )
    assert settings.azure_openai_endpoint == "https://res.openai.azure.com"
    assert settings.connect_timeout_s == 1.0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "REALTALK_CONNECT_TIMEOUT_S",
            "0",
            "REALTALK_CONNECT_TIMEOUT_S: Input should be greater than 0. Example: 10",
        ),
        (
            "REALTALK_CONNECT_TIMEOUT_S",
            "soon",
            "REALTALK_CONNECT_TIMEOUT_S: Input should be a valid number, unable to parse string as a number. "
            "Example: 10",
        ),
        (
            "REALTALK_LOG_LEVEL",
            "loud",
            "REALTALK_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'. "
            "Example: INFO",
        ),
        (
            "REALTALK_PRICES",
            "{audio_out: 60}",
            "REALTALK_PRICES: not valid JSON (Expecting property name enclosed in double quotes); write a "
            'JSON object of prices per 1M tokens. Example: {"audio_out": "60", "audio_in": "30"}',
        ),
        (
            "REALTALK_PRICES",
            '{"audio_out": "-1"}',
            "REALTALK_PRICES: the price of 'audio_out' must be a non-negative number. "
            'Example: {"audio_out": "60", "audio_in": "30"}',
        ),
    ],
)
def test_invalid_values_become_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == message
    assert caught.value.variable == variable


def test_an_azure_endpoint_with_a_key_uses_the_api_key_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "rt")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    endpoint, credential = resolve_connection(load_settings())
    assert endpoint.url == "wss://res.openai.azure.com/openai/v1/realtime?model=rt"
    assert isinstance(credential, ApiKeyCredential)
    assert credential.describe() == (
        f"API key from AZURE_OPENAI_API_KEY ({len(SECRET)} characters), sent in the api-key header"
    )


@pytest.mark.asyncio
async def test_an_azure_endpoint_without_a_key_uses_entra_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "rt")
    monkeypatch.setenv("REALTALK_ENTRA_SCOPE", "https://ai.azure.com/.default")
    _, credential = resolve_connection(load_settings())
    try:
        assert isinstance(credential, EntraCredential)
        assert credential.describe().startswith(
            "Microsoft Entra ID token from DefaultAzureCredential (scope https://ai.azure.com/.default)"
        )
    finally:
        await credential.close()  # building it does no I/O; closing releases its sessions


@pytest.mark.asyncio
async def test_the_openai_platform_uses_openai_api_key_as_a_bearer_token() -> None:
    settings = Settings(
        _env_file=None,
        azure_openai_endpoint="https://api.openai.com/v1",
        azure_openai_deployment_name="gpt-realtime-1.5",
        openai_api_key=SECRET,
        azure_openai_api_key="azure-key-not-for-openai",
    )
    _, credential = resolve_connection(settings)
    assert await credential.headers() == {"Authorization": f"Bearer {SECRET}"}


def test_the_openai_platform_without_openai_api_key_is_a_config_error() -> None:
    settings = Settings(
        _env_file=None,
        azure_openai_endpoint="https://api.openai.com/v1",
        azure_openai_deployment_name="gpt-realtime-1.5",
        azure_openai_api_key="azure-key-not-for-openai",
    )
    with pytest.raises(ConfigError) as caught:
        resolve_connection(settings)
    assert caught.value.variable == "OPENAI_API_KEY"
    assert str(caught.value) == (
        "OPENAI_API_KEY is not set; the OpenAI platform (api.openai.com) needs an API key. "
        "Example: OPENAI_API_KEY=sk-..."
    )


@pytest.mark.asyncio
async def test_a_loopback_server_gets_the_configured_key_as_a_bearer_token() -> None:
    settings = Settings(
        _env_file=None,
        azure_openai_endpoint="http://127.0.0.1:8765",
        azure_openai_deployment_name="rt",
        azure_openai_api_key=SECRET,
    )
    endpoint, credential = resolve_connection(settings)
    assert endpoint.provider == "local"
    assert await credential.headers() == {"Authorization": f"Bearer {SECRET}"}


@pytest.mark.asyncio
async def test_a_loopback_server_without_any_key_gets_a_placeholder() -> None:
    settings = Settings(
        _env_file=None, azure_openai_endpoint="http://127.0.0.1:8765", azure_openai_deployment_name="rt"
    )
    endpoint, credential = resolve_connection(settings)
    assert await credential.headers() == {"Authorization": "Bearer realtalk-local"}
    assert credential.describe().startswith("no API key set: a placeholder key for the local server")
    assert credential_for(endpoint, settings).describe() == credential.describe()


def test_a_missing_endpoint_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_connection(Settings(_env_file=None))
    assert caught.value.variable == "AZURE_OPENAI_ENDPOINT"
