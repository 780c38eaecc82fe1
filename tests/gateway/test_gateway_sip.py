"""Phone calls through the gateway (issue 17, item 2): the webhook, the policy, the call.

Three tiers. The policy (``sip_policy``) and the webhook checks (``webhooks``) are pure or nearly:
plain tests, signatures made here from §5.4 (a third implementation beside the gateway's package
and the emulator's signer). The route and whole calls run against the emulator on 127.0.0.1: it
rings the gateway with a signed ``realtime.call.incoming`` webhook, takes its accept, reject or
refer, plays the caller's WAV as G.711 and records what the agent said; what the emulator
recorded is what is asserted ("nothing accepted" is read from its calls).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtalk.audio.pcm import read_wav, rms_dbfs
from realtalk.embedded_server import EmbeddedApp
from realtalk.emulator import Emulator, EmulatorConfig, Engines, parse_scenario
from realtalk.errors import ConfigError
from realtalk.gateway import Gateway, create_app
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
from realtalk.ledger import Ledger
from realtalk.ledger.schema import sessions

from .conftest import FIXTURES, gateway_settings

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


# -- whole calls, against the emulator ----------------------------------------------------------------
#
# The emulator is the phone network and the caller (realtalk.emulator.sip): it rings the gateway's
# /webhooks/realtime, takes its accept/reject/refer, plays the caller's WAV as G.711 in real time,
# presses keys, and returns what the caller heard. A ``Tap`` between the two records (and can
# alter) the deliveries, as an attacker on the path could.

UPSTREAM_KEY = "sip-upstream-key-0123456789abcdef"
TRANSFER_TARGET = "tel:+14155550123"
BLOCKED = "+14255550100"
CALLER = "+142555512112"
PROFILE = (
    'instructions = "You are the front desk of the Grand Hotel."\n'
    "[sip]\n"
    f'transfer_to = "{TRANSFER_TARGET}"\n'
    'greeting = "Say that they reached the front desk."\n'
    f'blocklist = ["{BLOCKED}", "+1900*"]\n'
    "dtmf_timeout_s = 0.5\n"
)
TRANSFER_SCENARIO = {
    "turns": [
        {"say": "Front desk, good evening."},
        {
            "say": "Let me put you through.",
            "call": {"name": "transfer_to_human", "arguments": {"reason": "a person"}},
        },
    ]
}


@dataclass
class Tap:
    """Between the emulator and the gateway: forwards each delivery (``alter`` may change its
    headers first), records what went and what the gateway answered."""

    gateway_url: str
    alter: Callable[[bytes, dict[str, str]], dict[str, str]] | None = None
    deliveries: list[tuple[bytes, dict[str, str], int]] = field(default_factory=list)
    answer_s: list[float] = field(default_factory=list)  # how long the gateway took to answer each

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        sent = {name: value for name, value in request.headers.items() if name.startswith("webhook-")}
        sent["content-type"] = "application/json"
        if self.alter is not None:
            sent = self.alter(body, sent)
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            await http.get(self.gateway_url.replace("/webhooks/realtime", "/healthz"))  # connected
            started = time.perf_counter()
            answer = await http.post(self.gateway_url, content=body, headers=sent)
            self.answer_s.append(time.perf_counter() - started)
        self.deliveries.append((body, sent, answer.status_code))
        return Response(answer.content, status_code=answer.status_code)


class TapServer(EmbeddedApp):
    name = "webhook tap"

    def __init__(self, tap: Tap) -> None:
        super().__init__("127.0.0.1", 0, handle_signals=False, stop_timeout_s=2)
        self.tap = tap

    async def start(self) -> None:
        await self._serve(Starlette(routes=[Route("/", self.tap.webhook, methods=["POST"])]), lifespan="off")


@dataclass
class Phone:
    emu: Emulator
    gw: Gateway
    ledger_url: str

    @property
    def webhook_url(self) -> str:
        return f"{self.gw.http_base_url}/webhooks/realtime"

    async def call(self, wav: str = "question", **body: Any) -> dict[str, Any]:
        """Place a call (``POST /_emulator/calls``) and return its result."""
        body.setdefault("webhook_url", self.webhook_url)
        body.setdefault("webhook_secret", SECRET)
        body.setdefault("from", CALLER)
        body["wav_base64"] = base64.b64encode((FIXTURES / f"{wav}.wav").read_bytes()).decode()
        async with httpx.AsyncClient(trust_env=False, timeout=90) as http:
            response = await http.post(
                f"{self.emu.http_base_url}/_emulator/calls", headers={"api-key": UPSTREAM_KEY}, json=body
            )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert SECRET not in response.text
        return result

    async def metrics(self) -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            return (await http.get(f"{self.gw.http_base_url}/metrics")).text

    async def metric_reaches(self, value: float, name: str, **labels: str) -> str:
        """``/metrics`` once the sample reaches ``value`` (the gateway may still be finishing the
        call when the caller's side is over)."""
        async with asyncio.timeout(5):
            while True:
                text = await self.metrics()
                if metric(text, name, **labels) >= value:
                    return text
                await asyncio.sleep(0.05)

    async def ledger_sessions(self) -> list[dict[str, Any]]:
        async with await Ledger.open(self.ledger_url) as ledger, ledger.engine.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(select(sessions))]


@asynccontextmanager
async def phone(
    tmp_path: Path,
    engines: Engines,
    *,
    scenario: dict[str, Any] | None = None,
    profile_extra: str = "",
    pace: float = 1.0,
    **settings: Any,
) -> AsyncIterator[Phone]:
    profile = tmp_path / "agent.toml"
    profile.write_text(PROFILE + profile_extra)
    ledger_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    config = EmulatorConfig(
        keys=(UPSTREAM_KEY,), pace=pace, scenario=parse_scenario(scenario) if scenario else None
    )
    async with Emulator(config, engines=engines) as emu:
        values = {
            "azure_openai_api_key": UPSTREAM_KEY,
            "gateway_profile": profile,
            "gateway_sip_webhook_secret": SECRET,
            "ledger_url": ledger_url,
            **settings,
        }
        app = create_app(gateway_settings(emu, **values), emulator_engines=engines)
        async with Gateway(app) as gw:
            yield Phone(emu, gw, ledger_url)


def heard(result: dict[str, Any]) -> bytes:
    pcm, rate_hz, channels = read_wav(base64.b64decode(result["agent_wav_base64"]))
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


def loudest_dbfs(pcm: bytes, frame_bytes: int = 960) -> float:
    frames = [pcm[i : i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]
    return max((rms_dbfs(frame) for frame in frames), default=-120.0)


def loud_ms(pcm: bytes, frame_bytes: int = 960) -> int:
    """How much of ``pcm`` (24 kHz) is agent speech: 20 ms frames above -45 dBFS."""
    frames = [pcm[i : i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]
    return 20 * sum(1 for frame in frames if rms_dbfs(frame) > -45)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
async def test_a_signed_call_is_accepted_greeted_and_the_agent_answers_the_caller(
    tmp_path: Path, fast_engines: Engines, caplog: pytest.LogCaptureFixture
) -> None:
    async with phone(tmp_path, fast_engines) as line:
        result = await line.call("question", hangup_after_s=3)
        text = await line.metric_reaches(1, "realtalk_gateway_session_ends_total", reason="upstream_closed")
        updates = line.emu.stats.events_received("session.update")
        creates = line.emu.stats.events_received("response.create")
    rows = await line.ledger_sessions()
    assert result["outcome"] == "accepted", result
    assert result["webhook_attempts"] == 1 and result["webhook_status"] == 200
    audio = heard(result)
    second = 24_000 * 2
    # The greeting is heard before the caller says anything (speech starts at 1.0 s) ...
    assert loudest_dbfs(audio[:second]) > -35, "no greeting"
    # ... and the agent answers after the caller's question ends (4.8 s).
    assert loudest_dbfs(audio[5 * second :]) > -35, "the agent did not answer the caller"
    # the profile's session, in the phone network's G.711 µ-law both ways
    audio_config = updates[0]["session"]["audio"]
    assert audio_config["input"]["format"]["type"] == audio_config["output"]["format"]["type"] == "audio/pcmu"
    assert updates[0]["session"]["instructions"] == "You are the front desk of the Grand Hotel."
    # the greeting: the first response, asked by the gateway with the profile's sentence
    assert "Say that they reached the front desk." in creates[0]["response"]["instructions"]
    assert metric(text, "realtalk_gateway_sip_decisions_total", decision="accepted", reason="") == 1
    assert metric(text, "realtalk_gateway_calls_total", transport="sip") == 1
    assert metric(text, "realtalk_gateway_sip_webhooks_total", result="taken") == 1
    [row] = rows
    assert (row["transport"], row["user"]) == ("sip", "sip:+1425…12")
    assert CALLER not in text and CALLER[1:] not in str(rows)
    gateway_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("realtalk.gateway"))
    assert "+1425…12" in gateway_log
    assert CALLER[1:] not in gateway_log and SECRET[6:] not in gateway_log


@pytest.mark.slow
async def test_a_blocklisted_caller_is_declined_with_603_and_no_session(
    tmp_path: Path, fast_engines: Engines
) -> None:
    async with phone(tmp_path, fast_engines) as line:
        result = await line.call("silence", **{"from": BLOCKED})
        prefixed = await line.call("silence", **{"from": "+19005550199"})
        text = await line.metrics()
    rows = await line.ledger_sessions()
    assert (result["outcome"], result["status_code"], result["duration_s"]) == ("rejected", 603, 0)
    assert (prefixed["outcome"], prefixed["status_code"]) == ("rejected", 603)
    assert heard(result) == b""
    assert metric(text, "realtalk_gateway_sip_decisions_total", decision="rejected", reason="blocked") == 2
    assert rows == [] and line.emu.stats.connections_accepted == 0


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["bad_signature", "stale_timestamp", "future_timestamp"])
async def test_a_delivery_that_is_not_verified_is_refused_every_time_and_nothing_is_accepted(
    tmp_path: Path, fast_engines: Engines, attack: str, caplog: pytest.LogCaptureFixture
) -> None:
    def alter(body: bytes, sent: dict[str, str]) -> dict[str, str]:
        stamp = int(sent["webhook-timestamp"])
        if attack == "bad_signature":
            return {**sent, "webhook-signature": sign(OTHER_SECRET, sent["webhook-id"], stamp, body)}
        stamp += -(TOLERANCE_S + 30) if attack == "stale_timestamp" else TOLERANCE_S + 30
        # re-signed with the right secret: only the time is wrong
        return {
            **sent,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, sent["webhook-id"], stamp, body),
        }

    async with phone(tmp_path, fast_engines) as line:
        tap = Tap(line.webhook_url, alter)
        async with TapServer(tap) as server:
            result = await line.call("silence", webhook_url=server.http_base_url + "/", answer_timeout_s=10)
        text = await line.metrics()
    assert result["outcome"] == "webhook_failed", result
    assert result["webhook_status"] == 401 and result["webhook_attempts"] == len(tap.deliveries) > 1
    assert metric(text, "realtalk_gateway_sip_webhooks_total", result=attack) == len(tap.deliveries)
    assert "realtalk_gateway_sip_decisions_total{" not in text
    assert line.emu.stats.connections_accepted == 0
    refusals = [r.getMessage() for r in caplog.records if r.name == "realtalk.gateway.sip"]
    assert refusals and all(attack in message for message in refusals)
    assert not any(SECRET[6:] in m or "v1," in m for m in refusals)  # no secret, no signature


@pytest.mark.slow
async def test_a_replayed_delivery_is_refused_and_the_call_is_answered_once(
    tmp_path: Path, fast_engines: Engines
) -> None:
    async with phone(tmp_path, fast_engines) as line:
        tap = Tap(line.webhook_url)
        async with TapServer(tap) as server:
            result = await line.call("silence", webhook_url=server.http_base_url + "/", **{"from": BLOCKED})
        [(body, sent, status)] = tap.deliveries
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            replay = await http.post(line.webhook_url, content=body, headers=sent)
            # the same id signed again with a fresh timestamp is still a replay
            stamp = int(time.time())
            fresh = {
                **sent,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(SECRET, sent["webhook-id"], stamp, body),
            }
            again = await http.post(line.webhook_url, content=body, headers=fresh)
        text = await line.metrics()
    assert (result["outcome"], status) == ("rejected", 200)
    # answered before the call was decided: the rejection is a task's, after the 200
    assert tap.answer_s[0] < 0.25, tap.answer_s
    assert (replay.status_code, again.status_code) == (409, 409)
    assert metric(text, "realtalk_gateway_sip_webhooks_total", result="replayed") == 2
    assert metric(text, "realtalk_gateway_sip_decisions_total", decision="rejected", reason="blocked") == 1


@pytest.mark.slow
async def test_transfer_to_human_refers_the_call_to_the_configured_target(
    tmp_path: Path, fast_engines: Engines
) -> None:
    # The model generates 40 times faster than real time, so its function call comes long before
    # its words ("Let me put you through.", 1.4 s) have been played: a refer sent at once would
    # cut them (the caller would hear none of it).
    async with phone(tmp_path, fast_engines, scenario=TRANSFER_SCENARIO, pace=40.0) as line:
        result = await line.call("question", hangup_after_s=15)
        text = await line.metric_reaches(
            1, "realtalk_gateway_sip_decisions_total", decision="referred", reason="transfer_to_human"
        )
        creates = [json.dumps(event) for event in line.emu.stats.events_received("response.create")]
    assert (result["outcome"], result["refer_target"]) == ("referred", TRANSFER_TARGET), result
    # the agent's words before the transfer were played to the caller before it was referred
    assert loud_ms(heard(result)[5 * 24_000 * 2 :]) > 1000
    # ... and no "one moment" filler was asked for while the transfer waited for them
    assert not any("One moment" in create for create in creates), creates
    assert (
        metric(text, "realtalk_gateway_sip_decisions_total", decision="referred", reason="transfer_to_human")
        == 1
    )


@pytest.mark.slow
async def test_keypad_presses_reach_the_agent_as_one_entry_ended_by_hash_or_a_pause(
    tmp_path: Path, fast_engines: Engines
) -> None:
    dtmf = [
        {"digit": "4", "at_s": 1.0},
        {"digit": "2", "at_s": 1.2},
        {"digit": "#", "at_s": 1.4},
        {"digit": "7", "at_s": 1.8},  # then nothing: sent after dtmf_timeout_s (0.5 s)
    ]
    async with phone(tmp_path, fast_engines) as line:
        result = await line.call("silence", dtmf=dtmf, hangup_after_s=2)
        text = await line.metrics()
        created = [json.dumps(event) for event in line.emu.stats.events_received("conversation.item.create")]
    assert result["outcome"] == "accepted", result
    keypad = [entry for entry in created if "phone keypad" in entry]
    assert len(keypad) == 2, created
    assert "[The caller pressed 4 2 # on the phone keypad.]" in keypad[0]
    assert "[The caller pressed 7 on the phone keypad.]" in keypad[1]
    assert metric(text, "realtalk_gateway_dtmf_digits_total") == 4


@pytest.mark.slow
async def test_a_call_over_its_budget_is_hung_up(tmp_path: Path, fast_engines: Engines) -> None:
    async with phone(tmp_path, fast_engines, gateway_budget_usd=Decimal("0.000001")) as line:
        result = await line.call("question", hangup_after_s=20)
        text = await line.metrics()
    rows = await line.ledger_sessions()
    assert (result["outcome"], result["ended_by"]) == ("accepted", "hangup"), result
    assert result["duration_s"] < 15
    assert metric(text, "realtalk_gateway_session_ends_total", reason="budget") == 1
    [row] = rows
    assert row["end_reason"] == "budget"


@pytest.mark.slow
async def test_outside_opening_hours_the_call_is_declined_with_480(
    tmp_path: Path, fast_engines: Engines
) -> None:
    today = datetime.now(UTC).date()
    dates = f'"{today}", "{today + timedelta(days=1)}"'  # the day may turn during the test
    closed = f'[sip.hours]\ntime_zone = "UTC"\ndaily = "00:00-24:00"\nclosed_on = [{dates}]\n'
    async with phone(tmp_path, fast_engines, profile_extra=closed) as line:
        result = await line.call("silence")
        text = await line.metrics()
    assert (result["outcome"], result["status_code"]) == ("rejected", 480)
    assert metric(text, "realtalk_gateway_sip_decisions_total", decision="rejected", reason="closed") == 1
    assert line.emu.stats.connections_accepted == 0


@pytest.mark.slow
async def test_a_full_gateway_answers_busy_with_486(tmp_path: Path, fast_engines: Engines) -> None:
    async with phone(tmp_path, fast_engines, gateway_max_sessions=1) as line:
        first = asyncio.create_task(line.call("silence", hangup_after_s=2))
        await line.metric_reaches(1, "realtalk_gateway_sip_decisions_total", decision="accepted", reason="")
        second = await line.call("silence", **{"from": "+14255550123"})
        await first
        text = await line.metrics()
    assert (first.result()["outcome"], second["outcome"], second["status_code"]) == (
        "accepted",
        "rejected",
        486,
    )
    assert metric(text, "realtalk_gateway_sip_decisions_total", decision="rejected", reason="busy") == 1


@pytest.mark.slow
async def test_once_the_callers_daily_budget_is_spent_the_next_call_is_declined_with_480(
    tmp_path: Path, fast_engines: Engines
) -> None:
    async with phone(tmp_path, fast_engines, gateway_user_daily_budget_usd=Decimal("0.000001")) as line:
        first = await line.call("silence", hangup_after_s=10)
        second = await line.call("silence")
        other = await line.call("silence", **{"from": "+4791234567890"}, hangup_after_s=10)
        text = await line.metrics()
    assert (first["outcome"], first["ended_by"]) == ("accepted", "hangup"), first  # the greeting spent it
    assert (second["outcome"], second["status_code"]) == ("rejected", 480)
    assert other["outcome"] == "accepted"  # another caller has a budget of their own
    assert (
        metric(text, "realtalk_gateway_sip_decisions_total", decision="rejected", reason="over_budget") == 1
    )


@pytest.mark.slow
async def test_the_webhook_route_ignores_other_events_and_is_off_without_a_secret(
    tmp_path: Path, fast_engines: Engines
) -> None:
    body = json.dumps({"object": "event", "id": "evt_1", "type": "response.completed", "data": {}}).encode()
    async with phone(tmp_path, fast_engines) as line, httpx.AsyncClient(trust_env=False) as http:
        ignored = await http.post(
            line.webhook_url, content=body, headers=headers(body, webhook_id="wh_other")
        )
        too_large = await http.post(
            line.webhook_url, content=b"{" + b" " * 300_000 + b"}", headers=headers(b"{}")
        )
        text = await line.metrics()
    assert (ignored.status_code, too_large.status_code) == (200, 413)
    assert metric(text, "realtalk_gateway_sip_webhooks_total", result="ignored") == 1
    async with Emulator(EmulatorConfig(), engines=fast_engines) as emu:
        app = create_app(gateway_settings(emu), emulator_engines=fast_engines)
        async with Gateway(app) as gw, httpx.AsyncClient(trust_env=False) as http:
            off = await http.post(
                f"{gw.http_base_url}/webhooks/realtime", content=body, headers=headers(body)
            )
    assert off.status_code == 404
    assert off.json()["error"]["code"] == "sip_not_configured"
