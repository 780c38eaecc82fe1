"""Configuration: the only module that reads environment variables and ``.env``.

Names follow the seed project so its users feel at home: ``AZURE_OPENAI_ENDPOINT`` (the portal's
"Target URI", any form), ``AZURE_OPENAI_DEPLOYMENT_NAME``, ``AZURE_OPENAI_API_KEY`` (absent: Microsoft
Entra ID), ``OPENAI_API_KEY`` (the OpenAI platform); everything else is ``REALTALK_*``. Environment
variables win over ``.env``; an empty value counts as unset.

Only ``cli/`` and ``gateway/`` import this module; library classes take plain values.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from realtalk.client.credentials import (
    DEFAULT_ENTRA_SCOPE,
    ApiKeyCredential,
    Credential,
    EntraCredential,
    default_credential,
)
from realtalk.errors import ConfigError
from realtalk.protocol.endpoint import ResolvedEndpoint, resolve_endpoint

__all__ = [
    "LogLevel",
    "Settings",
    "credential_for",
    "default_ledger_url",
    "environment_secret",
    "ledger_target",
    "load_settings",
    "resolve_connection",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Sent to a loopback server when no key is configured: the emulator needs no real secret.
LOCAL_PLACEHOLDER_KEY = "realtalk-local"

_EXAMPLES = {
    "REALTALK_PRICES": '{"audio_out": "60", "audio_in": "30"}',
    "REALTALK_GATEWAY_ORIGINS": "https://voice.example.com,http://localhost:5173",
    "REALTALK_GATEWAY_BUDGET_USD": "1.00",
    "REALTALK_GATEWAY_PORT": "8000",
    "REALTALK_CONNECT_TIMEOUT_S": "10",
    "REALTALK_LOG_LEVEL": "INFO",
}


class Settings(BaseSettings):
    """Everything realtalk reads from the environment, validated once.

    Construct with ``load_settings()`` (which turns validation errors into ``ConfigError``) or
    directly with field names for tests: ``Settings(azure_openai_endpoint="https://...")``.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    azure_openai_endpoint: str | None = Field(default=None, validation_alias="AZURE_OPENAI_ENDPOINT")
    azure_openai_deployment_name: str | None = Field(
        default=None, validation_alias="AZURE_OPENAI_DEPLOYMENT_NAME"
    )
    azure_openai_api_key: SecretStr | None = Field(default=None, validation_alias="AZURE_OPENAI_API_KEY")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    pricing_model: str = Field(default="gpt-realtime-1.5", validation_alias="REALTALK_PRICING_MODEL")
    prices: Annotated[dict[str, Decimal], NoDecode] = Field(
        default_factory=dict, validation_alias="REALTALK_PRICES"
    )
    entra_scope: str = Field(default=DEFAULT_ENTRA_SCOPE, validation_alias="REALTALK_ENTRA_SCOPE")
    log_level: LogLevel = Field(default="WARNING", validation_alias="REALTALK_LOG_LEVEL")
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=600, validation_alias="REALTALK_CONNECT_TIMEOUT_S"
    )

    # `realtalk serve` (the gateway); docs/gateway.md explains each one.
    gateway_host: str = Field(default="127.0.0.1", validation_alias="REALTALK_GATEWAY_HOST")
    gateway_port: int = Field(default=8000, ge=0, le=65535, validation_alias="REALTALK_GATEWAY_PORT")
    gateway_profile: Path | None = Field(default=None, validation_alias="REALTALK_GATEWAY_PROFILE")
    gateway_tokens: SecretStr | None = Field(default=None, validation_alias="REALTALK_GATEWAY_TOKENS")
    gateway_secret: SecretStr | None = Field(default=None, validation_alias="REALTALK_GATEWAY_SECRET")
    # The secret before a rotation: tokens and cookies it signed stay valid until they expire.
    gateway_previous_secret: SecretStr | None = Field(
        default=None, validation_alias="REALTALK_GATEWAY_PREVIOUS_SECRET"
    )
    # When set, /metrics answers only `Authorization: Bearer <this>` (a scraper's token).
    gateway_metrics_token: SecretStr | None = Field(
        default=None, validation_alias="REALTALK_GATEWAY_METRICS_TOKEN"
    )
    gateway_token_ttl_s: int = Field(
        default=900, ge=30, le=86_400, validation_alias="REALTALK_GATEWAY_TOKEN_TTL_S"
    )
    gateway_trust_principal_header: bool = Field(
        default=False, validation_alias="REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER"
    )
    gateway_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="REALTALK_GATEWAY_ORIGINS"
    )
    gateway_max_sessions: int = Field(default=50, ge=1, validation_alias="REALTALK_GATEWAY_MAX_SESSIONS")
    gateway_max_sessions_per_user: int = Field(
        default=3, ge=1, validation_alias="REALTALK_GATEWAY_MAX_SESSIONS_PER_USER"
    )
    # With a ledger, the per-user count is shared by every replica: an open session's lease lives
    # this long unless renewed (a dead replica's sessions stop counting after it).
    gateway_session_lease_s: float = Field(
        default=60.0, ge=5, le=3600, validation_alias="REALTALK_GATEWAY_SESSION_LEASE_S"
    )
    gateway_max_session_s: float = Field(
        default=1800.0, gt=0, validation_alias="REALTALK_GATEWAY_MAX_SESSION_S"
    )
    gateway_idle_timeout_s: float = Field(
        default=120.0, gt=0, validation_alias="REALTALK_GATEWAY_IDLE_TIMEOUT_S"
    )
    gateway_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        validation_alias="REALTALK_GATEWAY_MAX_MESSAGE_BYTES",
    )
    gateway_max_events_per_s: float = Field(
        default=100.0, gt=0, validation_alias="REALTALK_GATEWAY_MAX_EVENTS_PER_S"
    )
    gateway_event_burst: int = Field(default=200, ge=1, validation_alias="REALTALK_GATEWAY_EVENT_BURST")
    gateway_budget_usd: Decimal = Field(
        default=Decimal("1.00"), ge=0, validation_alias="REALTALK_GATEWAY_BUDGET_USD"
    )
    # Daily caps (UTC days) over every session in the ledger; unset: no cap.
    gateway_user_daily_budget_usd: Decimal | None = Field(
        default=None, ge=0, validation_alias="REALTALK_GATEWAY_USER_DAILY_BUDGET_USD"
    )
    gateway_deployment_daily_budget_usd: Decimal | None = Field(
        default=None, ge=0, validation_alias="REALTALK_GATEWAY_DEPLOYMENT_DAILY_BUDGET_USD"
    )
    gateway_daily_budget_usd: Decimal | None = Field(
        default=None, ge=0, validation_alias="REALTALK_GATEWAY_DAILY_BUDGET_USD"
    )
    gateway_client_buffer_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        validation_alias="REALTALK_GATEWAY_CLIENT_BUFFER_BYTES",
    )
    gateway_client_stall_s: float = Field(
        default=15.0, gt=0, validation_alias="REALTALK_GATEWAY_CLIENT_STALL_S"
    )
    gateway_upstream_stall_s: float = Field(
        default=15.0, gt=0, validation_alias="REALTALK_GATEWAY_UPSTREAM_STALL_S"
    )
    gateway_head_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="REALTALK_GATEWAY_HEAD_TIMEOUT_S"
    )
    gateway_drain_s: float = Field(default=20.0, ge=0, validation_alias="REALTALK_GATEWAY_DRAIN_S")
    gateway_ready_cache_s: float = Field(default=5.0, ge=0, validation_alias="REALTALK_GATEWAY_READY_CACHE_S")
    # Phone calls (issue 17): the signing secret of the upstream's webhook endpoint (whsec_...);
    # set, POST /webhooks/realtime takes incoming calls (docs/sip.md).
    gateway_sip_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="REALTALK_GATEWAY_SIP_WEBHOOK_SECRET"
    )

    # The usage ledger (realtalk.ledger); unset means default_ledger_url(). repr=False: a
    # PostgreSQL URL may carry a password.
    ledger_url: str | None = Field(default=None, validation_alias="REALTALK_LEDGER_URL", repr=False)
    # `realtalk serve` migrates a PostgreSQL ledger itself before it serves (one replica at a time,
    # under an advisory lock): for platforms where no one runs `realtalk ledger upgrade` first.
    ledger_upgrade_on_start: bool = Field(default=False, validation_alias="REALTALK_LEDGER_UPGRADE_ON_START")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # env_ignore_empty covers "", but not "  " nor values passed in code; both mean "unset".
        if isinstance(value, str) and not value.strip():
            field = cls.model_fields[info.field_name or ""]
            return field.get_default(call_default_factory=True)
        if isinstance(value, str):
            return value.strip()
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _prices_from_json(cls, value: Any) -> Any:
        # Validators on one field run in reverse order, so blank is handled here too.
        if isinstance(value, str) and not value.strip():
            return {}
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"not valid JSON ({exc.msg}); write a JSON object of prices per 1M tokens"
                ) from None
        return value

    @field_validator("prices")
    @classmethod
    def _prices_not_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, price in value.items():
            if price < 0 or not price.is_finite():
                raise ValueError(f"the price of '{name}' must be a non-negative number")
        return value

    @field_validator("gateway_origins", mode="before")
    @classmethod
    def _origins_from_list(cls, value: Any) -> Any:
        # Comma-separated in the environment: "https://app.example.com, http://localhost:5173".
        if isinstance(value, str):
            return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
        return value

    @field_validator("gateway_origins")
    @classmethod
    def _origins_are_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin; write scheme://host[:port]")
            if origin == "*":
                raise ValueError("'*' would let any web site use the gateway; list the allowed origins")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read the environment (and ``env_file``, if it exists) into ``Settings``.

    Raises ``ConfigError`` naming the first variable that is wrong. Secret values are never quoted.
    """
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise _config_error(exc) from None


def default_ledger_url() -> str:
    """The ledger used when ``REALTALK_LEDGER_URL`` is unset: a SQLite file in the user's data
    folder, ``$XDG_DATA_HOME/realtalk/ledger.db`` (``~/.local/share/realtalk/ledger.db`` when
    ``XDG_DATA_HOME`` is unset or not an absolute path, as the XDG spec says)."""
    xdg_data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    data_dir = Path(xdg_data_home) if os.path.isabs(xdg_data_home) else Path.home() / ".local" / "share"
    return f"sqlite+aiosqlite:///{data_dir / 'realtalk' / 'ledger.db'}"


LEDGER_OFF: Final = frozenset({"off", "none", "false", "0", "no"})


def ledger_target(settings: Settings) -> str | None:
    """The ledger URL ``talk`` and ``serve`` write to: ``REALTALK_LEDGER_URL``, else the default
    SQLite file; ``None`` when the variable says ``off`` (no ledger)."""
    configured = (settings.ledger_url or "").strip()
    if configured.lower() in LEDGER_OFF:
        return None
    return configured or default_ledger_url()


def environment_secret(name: str, env_file: str | Path | None = ".env") -> str | None:
    """The value of the environment variable ``name`` (or its line in ``env_file``), for secrets a
    profile names by variable (an HTTP tool's ``secret_env``); ``None`` when unset or empty."""
    value = os.environ.get(name)
    if value is None and env_file is not None and Path(env_file).is_file():
        value = dotenv_values(env_file).get(name)
    return (value.strip() or None) if value is not None else None


def resolve_connection(settings: Settings) -> tuple[ResolvedEndpoint, Credential]:
    """The GA Realtime endpoint and the credential to open it with, from settings.

    Raises ``ConfigError`` when the endpoint, the deployment or the key is missing or wrong.
    The caller owns the credential and must ``await credential.close()``.
    """
    endpoint = resolve_endpoint(settings.azure_openai_endpoint, settings.azure_openai_deployment_name)
    return endpoint, credential_for(endpoint, settings)


def credential_for(endpoint: ResolvedEndpoint, settings: Settings) -> Credential:
    """Pick the credential for ``endpoint``.

    Azure: ``AZURE_OPENAI_API_KEY`` in the ``api-key`` header, or Microsoft Entra ID when it is
    absent. OpenAI platform: ``OPENAI_API_KEY`` as a Bearer token. Loopback server: whichever key is
    set, as a Bearer token, or a placeholder.
    """
    azure_key = _secret(settings.azure_openai_api_key)
    openai_key = _secret(settings.openai_api_key)
    if endpoint.provider == "azure":
        if azure_key:
            return ApiKeyCredential(azure_key, style="api-key", source="AZURE_OPENAI_API_KEY")
        return EntraCredential(
            default_credential(), scope=settings.entra_scope, name="DefaultAzureCredential"
        )
    if endpoint.provider == "openai":
        if openai_key:
            return ApiKeyCredential(openai_key, style="bearer", source="OPENAI_API_KEY")
        raise ConfigError(
            "OPENAI_API_KEY is not set; the OpenAI platform (api.openai.com) needs an API key.",
            variable="OPENAI_API_KEY",
            example="OPENAI_API_KEY=sk-...",
        )
    if azure_key:
        return ApiKeyCredential(azure_key, style="bearer", source="AZURE_OPENAI_API_KEY")
    if openai_key:
        return ApiKeyCredential(openai_key, style="bearer", source="OPENAI_API_KEY")
    return ApiKeyCredential(LOCAL_PLACEHOLDER_KEY, style="bearer", source=None)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors(include_input=False, include_url=False)[0]
    loc = error["loc"][0] if error["loc"] else ""
    variable = _variable_of(str(loc))
    # pydantic prefixes messages raised by our validators with "Value error, ".
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{variable}: {message}.", variable=variable, example=_EXAMPLES.get(variable))


def _variable_of(loc: str) -> str:
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if loc in (name, alias) and isinstance(alias, str):
            return alias
    return loc
