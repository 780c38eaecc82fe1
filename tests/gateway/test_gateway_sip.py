"""Phone calls through the gateway (issue 17, item 2): the webhook, the policy, the call.

Three tiers. The policy (``sip_policy``) and the webhook checks (``webhooks``) are pure or nearly:
plain tests, signatures made here from §5.4 (a third implementation beside the gateway's package
and the emulator's signer). The route and whole calls run against the emulator on 127.0.0.1: it
rings the gateway with a signed ``realtime.call.incoming`` webhook, takes its accept, reject or
refer, plays the caller's WAV as G.711 and records what the agent said; what the emulator
recorded is what is asserted ("nothing accepted" is read from its calls).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from realtalk.errors import ConfigError
from realtalk.gateway.config import GatewayConfig
from realtalk.gateway.sip_policy import (
    Accept,
    CallerId,
    Reject,
    SipPolicy,
    caller_from_headers,
    mask_number,
    parse_sip_policy,
)
from realtalk.gateway.webhooks import (
    TOLERANCE_S,
    SeenWebhookIds,
    WebhookRefused,
    WebhookVerifier,
    webhook_key,
)

from .conftest import gateway_settings

SECRET = "whsec_" + base64.b64encode(b"gateway-sip-test-signing-key-032").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-gateways-signing-key-032").decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """§5.4 step 3-4, written from the document."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def incoming(call_id: str = "rtc_" + "a" * 32, from_number: str = "+142555512112") -> bytes:
    event = {
        "object": "event",
        "id": "evt_" + "b" * 32,
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id,
            "sip_headers": [
                {"name": "From", "value": f"sip:{from_number}@sip.example.com"},
                {"name": "To", "value": "sip:+18005551212@sip.example.com"},
            ],
        },
    }
    return json.dumps(event).encode()


def headers(
    body: bytes, *, secret: str = SECRET, webhook_id: str = "wh_1", timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Webhook-Id": webhook_id,
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": sign(secret, webhook_id, stamp, body),
        "Content-Type": "application/json",
    }


# -- the caller ---------------------------------------------------------------------------------------


def test_a_number_is_masked_to_its_country_code_three_digits_and_the_last_two() -> None:
    assert mask_number("+142555512112") == "+1425…12"
    assert mask_number("+4791234567890") == "+47912…90"
    assert mask_number("+4712345678") == "+4712…78"  # eight national digits: four stay hidden
    assert mask_number("+442071234567") == "+44207…67"


def test_a_short_number_keeps_at_least_four_digits_hidden() -> None:
    assert mask_number("+1234567") == "+1…67"
    assert mask_number("12345") == "…45"


def test_the_caller_is_read_from_the_from_header_with_display_name_and_parameters() -> None:
    caller = caller_from_headers([{"name": "from", "value": '"Ann" <sip:+1-425-555-0123@x.example>;tag=9'}])
    assert caller == CallerId("+14255550123")
    assert caller.masked == "+1425…23"


def test_the_network_asserted_identity_wins_over_from() -> None:
    caller = caller_from_headers(
        [
            {"name": "From", "value": "sip:+19995550000@spoofed.example"},
            {"name": "P-Asserted-Identity", "value": "<tel:+14255550123>"},
        ]
    )
    assert caller.number == "+14255550123"


def test_a_withheld_number_is_anonymous() -> None:
    caller = caller_from_headers([{"name": "From", "value": "sip:anonymous@anonymous.invalid"}])
    assert caller == CallerId(None)
    assert caller.masked == "anonymous"
    assert caller_from_headers([]).number is None


# -- the policy ---------------------------------------------------------------------------------------

NOON_UTC = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday


def test_without_rules_every_call_is_accepted() -> None:
    assert SipPolicy().decide(CallerId("+14255550123"), NOON_UTC) == Accept()
    assert SipPolicy().decide(CallerId(None), NOON_UTC) == Accept()


def test_a_blocklisted_number_prefix_or_anonymous_caller_is_declined_with_603() -> None:
    policy = parse_sip_policy({"blocklist": ["+1 425 555 0100", "+1900*", "anonymous"]}, "agent.toml")
    assert policy.decide(CallerId("+14255550100"), NOON_UTC) == Reject("blocked", 603)
    assert policy.decide(CallerId("+19005551234"), NOON_UTC) == Reject("blocked", 603)
    assert policy.decide(CallerId(None), NOON_UTC) == Reject("blocked", 603)
    assert policy.decide(CallerId("+14255550101"), NOON_UTC) == Accept()
    # an exact entry is not a prefix
    assert policy.decide(CallerId("+142555501001"), NOON_UTC) == Accept()


def test_opening_hours_are_read_on_the_local_clock_of_their_time_zone() -> None:
    policy = parse_sip_policy(
        {"hours": {"time_zone": "Europe/Oslo", "wed": "08:00-12:30"}, "reject_status": {"closed": 487}},
        "agent.toml",
    )
    # 12:00 UTC is 13:00 in Oslo in December: closed; 11:00 UTC is 12:00 there: open.
    assert policy.decide(CallerId("+4712345678"), NOON_UTC) == Reject("closed", 487)
    assert policy.decide(CallerId("+4712345678"), NOON_UTC.replace(hour=11)) == Accept()
    # Thursday is not named: closed all day
    assert policy.decide(CallerId("+4712345678"), datetime(2026, 12, 3, 9, tzinfo=UTC)) == Reject(
        "closed", 487
    )


def test_a_window_past_midnight_holds_into_the_next_morning_and_closed_dates_close() -> None:
    policy = parse_sip_policy(
        {"hours": {"time_zone": "UTC", "daily": "22:00-06:00", "closed_on": ["2026-12-24"]}}, "agent.toml"
    )
    caller = CallerId("+14255550123")
    assert policy.decide(caller, datetime(2026, 12, 2, 23, 30, tzinfo=UTC)) == Accept()
    assert policy.decide(caller, datetime(2026, 12, 3, 5, 59, tzinfo=UTC)) == Accept()
    assert policy.decide(caller, datetime(2026, 12, 3, 6, 0, tzinfo=UTC)) == Reject("closed", 480)
    assert policy.decide(caller, datetime(2026, 12, 24, 23, 0, tzinfo=UTC)) == Reject("closed", 480)
    # the night of the 24th ran into the 25th: closed too
    assert policy.decide(caller, datetime(2026, 12, 25, 1, 0, tzinfo=UTC)) == Reject("closed", 480)


def test_the_default_statuses_are_the_documented_sip_codes() -> None:
    statuses = SipPolicy().reject_status
    assert statuses == {"blocked": 603, "closed": 480, "busy": 486, "over_budget": 480, "unavailable": 503}


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"transfer_to": "+14155550123"}, "not a tel: or sip: URI"),
        ({"blocklist": ["call me"]}, "is not a phone number"),
        ({"hours": {"mon": "08:00-17:00"}}, "needs a time_zone"),
        ({"hours": {"time_zone": "Mars/Olympus", "mon": "08:00-17:00"}}, "not an IANA time zone"),
        ({"hours": {"time_zone": "UTC", "mon": "8-17"}}, "not a time range"),
        ({"hours": {"time_zone": "UTC"}}, "names no open day"),
        ({"reject_status": {"blocked": 200}}, "from 400 to 699"),
        ({"reject_status": {"nope": 486}}, "unknown keys nope"),
        ({"greting": "hi"}, "unknown keys greting"),
        ({"dtmf_timeout_s": 0}, "dtmf_timeout_s"),
    ],
)
def test_a_wrong_sip_table_names_the_key_and_a_correct_example(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        parse_sip_policy(table, "agent.toml")
    assert "agent.toml" in str(caught.value)
    assert "Example:" in str(caught.value)


# -- the webhook checks -------------------------------------------------------------------------------


def test_a_signed_fresh_delivery_is_verified() -> None:
    body = incoming()
    webhook = WebhookVerifier(SECRET).verify(body, headers(body))
    assert webhook.webhook_id == "wh_1"
    assert webhook.event_type == "realtime.call.incoming"


def test_a_plain_secret_is_its_utf8_bytes_as_in_openai_python() -> None:
    secret = "a-plain-signing-secret-of-32-chars"
    body = incoming()
    assert WebhookVerifier(secret).verify(body, headers(body, secret=secret)).webhook_id == "wh_1"


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"secret": OTHER_SECRET}, 401, "bad_signature"),
        ({"timestamp_offset": -(TOLERANCE_S + 60)}, 401, "stale_timestamp"),
        ({"timestamp_offset": TOLERANCE_S + 60}, 401, "future_timestamp"),
        ({"drop": "Webhook-Signature"}, 400, "malformed"),
        ({"drop": "Webhook-Id"}, 400, "malformed"),
        ({"tamper": True}, 401, "bad_signature"),
    ],
)
def test_a_delivery_that_fails_a_check_is_refused_with_its_reason(
    change: dict[str, Any], status: int, reason: str
) -> None:
    body = incoming()
    sent = headers(
        body,
        secret=change.get("secret", SECRET),
        timestamp=int(time.time()) + change.get("timestamp_offset", 0),
    )
    sent.pop(change.get("drop", ""), None)
    if change.get("tamper"):
        body = body.replace(b"+142555512112", b"+142555512113")
    verifier = WebhookVerifier(SECRET)
    with pytest.raises(WebhookRefused) as caught:
        verifier.verify(body, sent)
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert SECRET not in str(caught.value) and SECRET[6:] not in str(caught.value)
    assert len(verifier.seen) == 0  # a refused delivery leaves no id behind


def test_a_replayed_webhook_id_is_refused_even_with_a_fresh_signature() -> None:
    verifier = WebhookVerifier(SECRET)
    body = incoming()
    verifier.verify(body, headers(body, webhook_id="wh_same"))
    with pytest.raises(WebhookRefused) as caught:
        verifier.verify(body, headers(body, webhook_id="wh_same", timestamp=int(time.time()) + 1))
    assert (caught.value.status, caught.value.reason) == (409, "replayed")
    verifier.verify(body, headers(body, webhook_id="wh_other"))


def test_seen_ids_expire_after_their_ttl_and_the_store_is_bounded() -> None:
    now = [0.0]
    seen = SeenWebhookIds(ttl_s=600, max_ids=3, clock=lambda: now[0])
    assert seen.add("a") and not seen.add("a")
    now[0] = 599.0
    assert "a" in seen
    now[0] = 600.0
    assert "a" not in seen and seen.add("a")
    for webhook_id in ("b", "c", "d"):
        assert seen.add(webhook_id)
    assert len(seen) == 3 and "a" not in seen and seen.evicted == 1


def test_an_unusable_secret_is_refused_without_being_quoted() -> None:
    with pytest.raises(ValueError, match="not base64") as caught:
        webhook_key("whsec_not*base64!")
    assert "not*base64" not in str(caught.value)
    with pytest.raises(ValueError, match="too short"):
        webhook_key("short")


# -- configuration ------------------------------------------------------------------------------------


def test_a_sip_table_without_the_webhook_secret_stops_the_gateway(tmp_path: Path) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text('instructions = "Front desk."\n[sip]\ntransfer_to = "tel:+14155550123"\n')
    with pytest.raises(ConfigError, match="REALTALK_GATEWAY_SIP_WEBHOOK_SECRET"):
        GatewayConfig.from_settings(gateway_settings(None, gateway_profile=profile))


def test_the_webhook_secret_is_checked_and_kept_out_of_repr(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not base64") as caught:
        GatewayConfig.from_settings(gateway_settings(None, gateway_sip_webhook_secret="whsec_???"))
    assert "???" not in str(caught.value)
    config = GatewayConfig.from_settings(gateway_settings(None, gateway_sip_webhook_secret=SECRET))
    assert config.sip == SipPolicy()
    assert SECRET not in repr(config) and SECRET[6:] not in repr(config)


def test_the_profiles_sip_table_reaches_the_gateway(tmp_path: Path) -> None:
    profile = tmp_path / "agent.toml"
    profile.write_text(
        'instructions = "Front desk."\n[sip]\ntransfer_to = "sip:desk@example.com"\ngreeting = "Say hello."\n'
        '[sip.hours]\ntime_zone = "UTC"\ndaily = "00:00-24:00"\n'
    )
    config = GatewayConfig.from_settings(
        gateway_settings(None, gateway_profile=profile, gateway_sip_webhook_secret=SECRET)
    )
    assert config.sip is not None
    assert config.sip.transfer_to == "sip:desk@example.com"
    assert config.sip.greeting == "Say hello."
    assert config.sip.decide(CallerId("+14255550123"), NOON_UTC) == Accept()
