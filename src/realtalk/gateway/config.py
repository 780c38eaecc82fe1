"""The gateway's configuration: one frozen value built from ``Settings`` (and the profile file).

``GatewayConfig.from_settings`` validates everything up front, so a wrong setting stops
``realtalk serve`` with a ``ConfigError`` naming the variable, before it listens: including the
exposure rule (issue 5, item 4): without client authentication the gateway only listens on a
loopback address.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from realtalk.errors import ConfigError
from realtalk.gateway.budgets import DailyBudgets
from realtalk.gateway.limits import Limits
from realtalk.gateway.profile import GatewayProfile, load_profile
from realtalk.gateway.sip_policy import SipPolicy, parse_sip_policy
from realtalk.gateway.webhooks import webhook_key
from realtalk.protocol import Prices, prices_for
from realtalk.protocol.endpoint import is_loopback_host
from realtalk.settings import Settings, environment_secret, ledger_target

__all__ = ["GatewayConfig", "check_exposure"]


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway needs to know (secrets are kept out of ``repr``)."""

    host: str
    port: int
    profile: GatewayProfile
    limits: Limits = field(default_factory=Limits)
    origins: tuple[str, ...] = ()
    static_tokens: tuple[str, ...] = field(default=(), repr=False)
    secret: bytes | None = field(default=None, repr=False)
    previous_secret: bytes | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    trust_principal_header: bool = False
    token_ttl_s: int = 900
    drain_s: float = 20.0
    ready_cache_s: float = 5.0
    connect_timeout_s: float = 10.0
    prices: Prices = field(default_factory=lambda: prices_for("gpt-realtime-1.5"))
    pricing_model: str = "gpt-realtime-1.5"
    # The usage ledger every session is written to (None: off); a URL the user configured must
    # open, the default one may fail with a warning (ledger_required).
    ledger_url: str | None = field(default=None, repr=False)
    ledger_required: bool = False
    ledger_upgrade_on_start: bool = False
    daily_budgets: DailyBudgets = field(default_factory=DailyBudgets)
    # Phone calls: the webhook's signing secret, and the profile's [sip] policy (both set, or
    # neither: None turns POST /webhooks/realtime off).
    sip_webhook_secret: str | None = field(default=None, repr=False)
    sip: SipPolicy | None = None

    @property
    def auth_configured(self) -> bool:
        return bool(self.static_tokens) or self.secret is not None or self.trust_principal_header

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """Build and check the configuration (raises ``ConfigError``)."""
        tokens = tuple(
            token.strip()
            for token in (
                settings.gateway_tokens.get_secret_value() if settings.gateway_tokens else ""
            ).split(",")
            if token.strip()
        )
        for token in tokens:
            if len(token) < 16 or any(ch.isspace() for ch in token):
                raise ConfigError(
                    "REALTALK_GATEWAY_TOKENS: each token must be at least 16 characters without spaces "
                    "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                    variable="REALTALK_GATEWAY_TOKENS",
                )
        secret = settings.gateway_secret.get_secret_value().strip() if settings.gateway_secret else ""
        if secret and len(secret) < 32:
            raise ConfigError(
                "REALTALK_GATEWAY_SECRET must be at least 32 characters (it signs client tokens)",
                variable="REALTALK_GATEWAY_SECRET",
                example="REALTALK_GATEWAY_SECRET=<48 random characters: secrets.token_urlsafe(48)>",
            )
        previous = (
            settings.gateway_previous_secret.get_secret_value().strip()
            if settings.gateway_previous_secret
            else ""
        )
        if previous and not secret:
            raise ConfigError(
                "REALTALK_GATEWAY_PREVIOUS_SECRET is only read beside REALTALK_GATEWAY_SECRET, during a "
                "rotation: set the new secret too (or unset the previous one)",
                variable="REALTALK_GATEWAY_PREVIOUS_SECRET",
            )
        scraper = settings.gateway_metrics_token
        metrics_token = scraper.get_secret_value().strip() if scraper else ""
        if metrics_token and (len(metrics_token) < 16 or any(ch.isspace() for ch in metrics_token)):
            raise ConfigError(
                "REALTALK_GATEWAY_METRICS_TOKEN must be at least 16 characters without spaces",
                variable="REALTALK_GATEWAY_METRICS_TOKEN",
                example="REALTALK_GATEWAY_METRICS_TOKEN=<secrets.token_urlsafe(32)>",
            )
        config = cls(
            host=settings.gateway_host,
            port=settings.gateway_port,
            profile=load_profile(settings.gateway_profile, secret=environment_secret),
            limits=Limits(
                max_sessions=settings.gateway_max_sessions,
                max_sessions_per_user=settings.gateway_max_sessions_per_user,
                session_lease_s=settings.gateway_session_lease_s,
                max_session_s=settings.gateway_max_session_s,
                idle_timeout_s=settings.gateway_idle_timeout_s,
                max_message_bytes=settings.gateway_max_message_bytes,
                max_events_per_s=settings.gateway_max_events_per_s,
                event_burst=settings.gateway_event_burst,
                budget_usd=settings.gateway_budget_usd,
                client_buffer_bytes=settings.gateway_client_buffer_bytes,
                client_stall_s=settings.gateway_client_stall_s,
                upstream_stall_s=settings.gateway_upstream_stall_s,
                head_timeout_s=settings.gateway_head_timeout_s,
            ),
            origins=settings.gateway_origins,
            static_tokens=tokens,
            secret=secret.encode() if secret else None,
            previous_secret=previous.encode() if previous else None,
            metrics_token=metrics_token or None,
            trust_principal_header=settings.gateway_trust_principal_header,
            token_ttl_s=settings.gateway_token_ttl_s,
            drain_s=settings.gateway_drain_s,
            ready_cache_s=settings.gateway_ready_cache_s,
            connect_timeout_s=settings.connect_timeout_s,
            prices=prices_for(settings.pricing_model, settings.prices),
            pricing_model=settings.pricing_model,
            ledger_url=ledger_target(settings),
            ledger_required=bool(settings.ledger_url) and ledger_target(settings) is not None,
            ledger_upgrade_on_start=settings.ledger_upgrade_on_start,
            daily_budgets=DailyBudgets(
                user_usd=settings.gateway_user_daily_budget_usd,
                deployment_usd=settings.gateway_deployment_daily_budget_usd,
                total_usd=settings.gateway_daily_budget_usd,
            ),
        )
        if config.daily_budgets.configured and config.ledger_url is None:
            raise ConfigError(
                "daily budgets are sums over the usage ledger, which is turned off "
                "(REALTALK_LEDGER_URL=off): turn it on, or unset the "
                "REALTALK_GATEWAY_*_DAILY_BUDGET_USD caps",
                variable="REALTALK_LEDGER_URL",
            )
        config = dataclasses.replace(config, **_sip_settings(settings, config.profile))
        check_exposure(config.host, config.auth_configured)
        return config


_SIP_SECRET_EXAMPLE = "REALTALK_GATEWAY_SIP_WEBHOOK_SECRET=whsec_<the signing secret of the webhook endpoint>"


def _sip_settings(settings: Settings, profile: GatewayProfile) -> dict[str, Any]:
    raw = settings.gateway_sip_webhook_secret
    secret = raw.get_secret_value().strip() if raw is not None else ""
    table = profile.file.extra.get("sip") if profile.file is not None else None
    if not secret:
        if table is not None:
            raise ConfigError(
                f"{profile.source} has a [sip] table, but REALTALK_GATEWAY_SIP_WEBHOOK_SECRET is not "
                "set, so no incoming call could be verified: set it to the webhook endpoint's signing "
                "secret (or remove the [sip] table)",
                variable="REALTALK_GATEWAY_SIP_WEBHOOK_SECRET",
                example=_SIP_SECRET_EXAMPLE,
            )
        return {}
    try:
        webhook_key(secret)
    except ValueError as exc:
        raise ConfigError(
            f"REALTALK_GATEWAY_SIP_WEBHOOK_SECRET: {exc}",
            variable="REALTALK_GATEWAY_SIP_WEBHOOK_SECRET",
            example=_SIP_SECRET_EXAMPLE,
        ) from None
    policy = parse_sip_policy(table, profile.source) if table is not None else SipPolicy()
    return {"sip_webhook_secret": secret, "sip": policy}


def check_exposure(host: str, auth_configured: bool) -> None:
    """Refuse to listen beyond this machine without client authentication.

    Raises:
        ConfigError: ``host`` is not a loopback address and no authentication is configured.
    """
    if auth_configured or is_loopback_host(host.strip("[]")):
        return
    raise ConfigError(
        f"refusing to listen on {host} without client authentication: anyone who can reach it "
        "could talk to the model on your account. Set REALTALK_GATEWAY_TOKENS (static tokens) or "
        "REALTALK_GATEWAY_SECRET (signed tokens), or REALTALK_GATEWAY_TRUST_PRINCIPAL_HEADER=true "
        "behind Azure Container Apps authentication; or listen on 127.0.0.1 only",
        variable="REALTALK_GATEWAY_TOKENS",
        example="REALTALK_GATEWAY_TOKENS=<a long random token>",
    )
