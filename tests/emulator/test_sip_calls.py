"""Simulated phone calls: the signed webhook, accept/reject/refer, the G.711 phone leg, DTMF.

Each test runs the emulator and a small webhook receiver on 127.0.0.1. The receiver is an app as
a real one would be written: it verifies the Standard Webhooks signature with the
``standardwebhooks`` package, answers at once, and decides in a task by calling the emulator's
call-control endpoints over HTTP; it may attach the sideband WebSocket (``?call_id=``). Calls are
placed through ``POST /_emulator/calls``, what ``realtalk emulate call`` uses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtalk.audio.pcm import read_wav, rms_dbfs
from realtalk.embedded_server import EmbeddedApp
from realtalk.emulator import Emulator
from realtalk.emulator.webhook_signing import (
    deliver_webhook,
    incoming_call_event,
    sign_webhook,
    signed_headers,
    signing_key,
)

from .conftest import FIXTURES, KEY

SECRET = "whsec_" + base64.b64encode(b"emulator-sip-test-signing-key-32").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-apps-signing-key-0032").decode()


def wav_b64(name: str) -> str:
    return base64.b64encode((FIXTURES / f"{name}.wav").read_bytes()).decode()


def loudest_frame_dbfs(pcm: bytes, frame_bytes: int = 960) -> float:
    frames = [pcm[i : i + frame_bytes] for i in range(0, len(pcm) - frame_bytes + 1, frame_bytes)]
    return max((rms_dbfs(f) for f in frames), default=-120.0)


Decide = Callable[["WebhookApp", str], Awaitable[None]]


@dataclass
class WebhookApp:
    """The app under test's stand-in: verifies, answers, decides in a task."""

    emulator_url: str
    secret: str
    decide: Decide | None
    statuses: list[int] = field(default_factory=list)  # scripted answers before verification
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # headers + body of each POST
    verified: list[dict[str, Any]] = field(default_factory=list)
    control: list[tuple[str, int]] = field(default_factory=list)  # (action, HTTP status)
    sideband: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    stall: asyncio.Event | None = None  # set: the webhook's answer waits for it

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        self.deliveries.append({"headers": headers, "body": body})
        if self.stall is not None:
            await self.stall.wait()
        if self.statuses:
            return Response(status_code=self.statuses.pop(0))
        try:
            event = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return Response(status_code=400)
        self.verified.append(event)
        if self.decide is not None:
            task = asyncio.create_task(self.decide(self, event["data"]["call_id"]))
            self.tasks.add(task)
        return Response(status_code=200)

    async def post(self, call_id: str, action: str, body: dict[str, Any] | None = None) -> int:
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(
                f"{self.emulator_url}/openai/v1/realtime/calls/{call_id}/{action}",
                headers={"Authorization": f"Bearer {KEY}"},
                json=body,
            )
        self.control.append((action, response.status_code))
        return response.status_code

    async def attach_sideband(self, call_id: str, until: Callable[[dict[str, Any]], bool]) -> None:
        url = self.emulator_url.replace("http://", "ws://") + f"/openai/v1/realtime?call_id={call_id}"
        async with websockets.connect(url, additional_headers={"api-key": KEY}, max_size=None) as ws:
            async for raw in ws:
                event = json.loads(raw)
                self.sideband.append(event)
                if until(event):
                    return


class Receiver(EmbeddedApp):
    name = "webhook receiver"

    def __init__(self, app: WebhookApp) -> None:
        super().__init__("127.0.0.1", 0, handle_signals=False, stop_timeout_s=2)
        self.app = app

    @property
    def url(self) -> str:
        return f"{self.http_base_url}/webhooks/realtime"

    async def start(self) -> None:
        routes = [Route("/webhooks/realtime", self.app.webhook, methods=["POST"])]
        await self._serve(Starlette(routes=routes), lifespan="off")

    async def stop(self) -> None:
        await asyncio.gather(*self.app.tasks, return_exceptions=True)
        await super().stop()


@asynccontextmanager
async def phone_setup(
    emulator: Any, decide: Decide | None, *, secret: str = SECRET, statuses: tuple[int, ...] = ()
) -> AsyncIterator[tuple[Emulator, WebhookApp, Receiver]]:
    async with emulator(keys=(KEY,)) as emu:
        app = WebhookApp(emu.http_base_url, secret, decide, list(statuses))
        async with Receiver(app) as receiver:
            yield emu, app, receiver


async def place(emu: Emulator, receiver: Receiver, **body: Any) -> dict[str, Any]:
    body.setdefault("webhook_url", receiver.url)
    body.setdefault("webhook_secret", SECRET)
    body.setdefault("wav_base64", wav_b64("silence"))
    async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
        response = await client.post(
            f"{emu.http_base_url}/_emulator/calls", headers={"api-key": KEY}, json=body
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def agent_audio(result: dict[str, Any]) -> bytes:
    pcm, rate_hz, channels = read_wav(base64.b64decode(result["agent_wav_base64"]))
    assert (rate_hz, channels) == (24_000, 1)
    return pcm


# --- signing -------------------------------------------------------------------------------------


def test_a_signed_webhook_verifies_with_standardwebhooks_and_the_openai_sdk() -> None:
    body = b'{"object":"event","type":"realtime.call.incoming"}'
    headers = signed_headers(SECRET, body, webhook_id="wh_1", timestamp=int(time.time()))
    Webhook(SECRET).verify(body, headers)
    AsyncOpenAI(api_key="unused").webhooks.verify_signature(body, headers, secret=SECRET)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


def test_a_secret_without_the_whsec_prefix_is_used_as_its_utf8_bytes_as_the_openai_sdk_does() -> None:
    assert signing_key("plain-secret") == b"plain-secret"
    body = b"{}"
    headers = signed_headers("plain-secret", body, webhook_id="wh_2", timestamp=int(time.time()))
    AsyncOpenAI(api_key="unused").webhooks.verify_signature(body, headers, secret="plain-secret")


def test_the_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    # Standard Webhooks' published example (whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!"])
def test_an_unusable_secret_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ValueError) as raised:
        signing_key(secret)
    assert "not base64!" not in str(raised.value)


def test_the_incoming_call_event_has_the_sdk_shape() -> None:
    headers = [{"name": "From", "value": "sip:+14255550123@sip.example.com"}]
    event = incoming_call_event("rtc_" + "0" * 32, headers, created_at=1750287018)
    parsed = RealtimeCallIncomingWebhookEvent.model_validate(event, strict=True)
    assert parsed.data.call_id == "rtc_" + "0" * 32 and event["id"].startswith("evt_")


async def test_delivery_retries_with_the_same_id_and_a_fresh_signature_then_gives_up() -> None:
    app = WebhookApp("http://unused", SECRET, None, statuses=[503, 503, 503])
    async with Receiver(app) as receiver:
        delivery = await deliver_webhook(receiver.url, SECRET, {"x": 1}, max_attempts=3, first_backoff_s=0.05)
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 3, 503)
    ids = {d["headers"]["webhook-id"] for d in app.deliveries}
    assert ids == {delivery.webhook_id} and len(app.deliveries) == 3
    for sent in app.deliveries:
        Webhook(SECRET).verify(sent["body"], sent["headers"])


async def test_a_refused_connection_counts_as_a_failed_attempt() -> None:
    app = WebhookApp("http://unused", SECRET, None)
    async with Receiver(app) as receiver:
        url = receiver.url
    delivery = await deliver_webhook(url, SECRET, {"x": 1}, max_attempts=2, first_backoff_s=0.01)
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 2, None)
    assert delivery.error and "Connect" in delivery.error


# --- calls ---------------------------------------------------------------------------------------


async def test_an_accepted_call_is_answered_by_the_agent_over_g711_and_seen_on_the_sideband(emulator) -> None:
    async def accept(app: WebhookApp, call_id: str) -> None:
        status = await app.post(call_id, "accept", {"type": "realtime", "instructions": "Be brief."})
        assert status == 200
        await app.attach_sideband(call_id, lambda e: e["type"] == "output_audio_buffer.stopped")

    async with phone_setup(emulator, accept) as (emu, app, receiver):
        result = await place(emu, receiver, wav_base64=wav_b64("stop"), hangup_after_s=4)
    assert result["outcome"] == "accepted", result
    assert result["ended_by"] == "caller" and result["webhook_attempts"] == 1
    assert result["duration_s"] >= 4.0 + 4.0 - 0.5  # real time: the 4.2 s WAV, then 4 s
    assert loudest_frame_dbfs(agent_audio(result)) > -30, "the caller heard no agent"
    # The sideband saw the session in G.711 µ-law, the caller's turn and the agent's reply, no audio.
    types = [e["type"] for e in app.sideband]
    assert types[0] == "session.created"
    audio = app.sideband[0]["session"]["audio"]
    assert (
        audio["input"]["format"]["type"] == "audio/pcmu" and audio["output"]["format"]["type"] == "audio/pcmu"
    )
    assert app.sideband[0]["session"]["instructions"] == "Be brief."
    assert "input_audio_buffer.speech_stopped" in types and "response.done" in types
    assert "response.output_audio_transcript.done" in types
    assert "response.output_audio.delta" not in types
    # The phone leg is the playout clock: the reply's audio was played, start to end.
    assert types.index("output_audio_buffer.started") < types.index("output_audio_buffer.stopped")
    event = app.verified[0]
    assert event["type"] == "realtime.call.incoming" and event["data"]["call_id"] == result["call_id"]
    headers = {h["name"]: h["value"] for h in event["data"]["sip_headers"]}
    assert headers["From"] == "sip:+14255550123@sip.example.com"


async def test_a_rejected_call_ends_with_the_apps_status_and_no_session(emulator) -> None:
    async def reject(app: WebhookApp, call_id: str) -> None:
        await app.post(call_id, "reject", {"status_code": 486})

    async with phone_setup(emulator, reject) as (emu, app, receiver):
        result = await place(emu, receiver, wav_base64=wav_b64("question"), **{"from": "+15551230000"})
        assert app.control == [("reject", 200)]
        # Decided: accepting it now is refused.
        assert await app.post(result["call_id"], "accept", {"type": "realtime"}) == 400
    assert (result["outcome"], result["status_code"], result["duration_s"]) == ("rejected", 486, 0)
    assert agent_audio(result) == b""
    assert app.verified[0]["data"]["sip_headers"][0]["value"] == "sip:+15551230000@sip.example.com"


async def test_a_reject_without_a_status_declines_with_603(emulator) -> None:
    async def reject(app: WebhookApp, call_id: str) -> None:
        await app.post(call_id, "reject")

    async with phone_setup(emulator, reject) as (emu, _, receiver):
        result = await place(emu, receiver)
    assert (result["outcome"], result["status_code"]) == ("rejected", 603)


async def test_a_referred_call_reports_its_target(emulator) -> None:
    async def refer(app: WebhookApp, call_id: str) -> None:
        assert await app.post(call_id, "refer", {"target_uri": "sip:agent@example.com"}) == 200

    async with phone_setup(emulator, refer) as (emu, _, receiver):
        result = await place(emu, receiver)
    assert (result["outcome"], result["refer_target"]) == ("referred", "sip:agent@example.com")


async def test_a_refer_on_an_active_call_transfers_the_caller_mid_call(emulator) -> None:
    async def accept_then_transfer(app: WebhookApp, call_id: str) -> None:
        assert await app.post(call_id, "accept", {"type": "realtime"}) == 200
        await asyncio.sleep(1.0)
        assert await app.post(call_id, "refer", {"target_uri": "tel:+14155550123"}) == 200

    async with phone_setup(emulator, accept_then_transfer) as (emu, _, receiver):
        result = await place(emu, receiver, hangup_after_s=20)
    assert (result["outcome"], result["refer_target"]) == ("referred", "tel:+14155550123")
    assert 0.8 < result["duration_s"] < 5


async def test_scripted_dtmf_reaches_a_sideband_attached_to_the_call(emulator) -> None:
    async def accept(app: WebhookApp, call_id: str) -> None:
        assert await app.post(call_id, "accept", {"type": "realtime"}) == 200
        dtmf = "input_audio_buffer.dtmf_event_received"
        await app.attach_sideband(call_id, lambda e: e["type"] == dtmf and e["event"] == "#")

    async with phone_setup(emulator, accept) as (emu, app, receiver):
        dtmf = [{"digit": "4", "at_s": 0.3}, {"digit": "2", "at_s": 0.6}, {"digit": "#", "at_s": 0.9}]
        result = await place(emu, receiver, dtmf=dtmf, hangup_after_s=1)
    assert result["outcome"] == "accepted"
    presses = [e for e in app.sideband if e["type"] == "input_audio_buffer.dtmf_event_received"]
    assert [p["event"] for p in presses] == ["4", "2", "#"]
    assert all(isinstance(p["received_at"], int) for p in presses)


async def test_a_webhook_answered_500_then_200_is_retried_and_the_call_goes_through(emulator) -> None:
    async def reject(app: WebhookApp, call_id: str) -> None:
        await app.post(call_id, "reject", {"status_code": 480})

    async with phone_setup(emulator, reject, statuses=(500,)) as (emu, app, receiver):
        result = await place(emu, receiver)
    assert (result["outcome"], result["webhook_attempts"], result["webhook_status"]) == ("rejected", 2, 200)
    first, second = app.deliveries
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]


async def test_a_receiver_with_another_secret_refuses_every_attempt_and_nothing_is_accepted(emulator) -> None:
    async def accept(app: WebhookApp, call_id: str) -> None:
        await app.post(call_id, "accept", {"type": "realtime"})

    async with phone_setup(emulator, accept, secret=OTHER_SECRET) as (emu, app, receiver):
        result = await place(emu, receiver)
    assert (result["outcome"], result["webhook_status"]) == ("webhook_failed", 400)
    assert result["webhook_attempts"] == len(app.deliveries) > 1
    assert app.verified == [] and app.control == []
    assert SECRET not in json.dumps(result)


async def test_a_call_nobody_decides_gives_no_answer_and_cannot_be_accepted_after(emulator) -> None:
    async with phone_setup(emulator, None) as (emu, app, receiver):
        result = await place(emu, receiver, answer_timeout_s=1)
        assert result["outcome"] == "no_answer" and result["webhook_attempts"] == 1
        assert await app.post(result["call_id"], "accept", {"type": "realtime"}) == 400


async def test_a_webhook_that_never_answers_gives_no_answer_at_the_ring_timeout(emulator) -> None:
    async with phone_setup(emulator, None) as (emu, app, receiver):
        app.stall = asyncio.Event()
        started = time.monotonic()
        result = await place(emu, receiver, answer_timeout_s=1)
        waited_s = time.monotonic() - started
        app.stall.set()
    assert (result["outcome"], result["webhook_attempts"], result["webhook_status"]) == ("no_answer", 1, None)
    assert waited_s < 3, "the caller waited for the webhook's own 10 s timeout"


async def test_an_app_that_hangs_up_ends_the_call(emulator) -> None:
    async def accept_then_hang_up(app: WebhookApp, call_id: str) -> None:
        assert await app.post(call_id, "accept", {"type": "realtime"}) == 200
        await asyncio.sleep(0.5)
        assert await app.post(call_id, "hangup") == 200

    async with phone_setup(emulator, accept_then_hang_up) as (emu, _, receiver):
        result = await place(emu, receiver, hangup_after_s=20)
    assert (result["outcome"], result["ended_by"]) == ("accepted", "hangup")
    assert result["duration_s"] < 3


# --- call control: refusals ----------------------------------------------------------------------


async def test_call_control_refuses_unknown_calls_bad_bodies_and_missing_keys(emulator) -> None:
    seen: dict[str, Any] = {}

    async def probe(app: WebhookApp, call_id: str) -> None:
        base = f"{app.emulator_url}/openai/v1/realtime/calls/{call_id}"
        auth = {"api-key": KEY}
        async with httpx.AsyncClient(trust_env=False) as client:
            seen["no key"] = (await client.post(f"{base}/accept", json={"type": "realtime"})).status_code
            seen["unknown"] = await client.post(
                f"{app.emulator_url}/openai/v1/realtime/calls/rtc_{'0' * 32}/accept", headers=auth, json={}
            )
            seen["no type"] = await client.post(
                f"{base}/accept", headers=auth, json={"model": "gpt-realtime"}
            )
            seen["bad field"] = await client.post(
                f"{base}/accept", headers=auth, json={"type": "realtime", "voice_of": "x"}
            )
            seen["bad status"] = await client.post(f"{base}/reject", headers=auth, json={"status_code": 200})
            seen["bad uri"] = await client.post(
                f"{base}/refer", headers=auth, json={"target_uri": "http://x"}
            )
            seen["no uri"] = await client.post(f"{base}/refer", headers=auth, json={})
            seen["ek"] = (await client.post(f"{base}/reject", headers={"api-key": "ek_123"})).status_code
        await app.post(call_id, "reject")

    async with phone_setup(emulator, probe) as (emu, _, receiver):
        result = await place(emu, receiver)
    assert result["outcome"] == "rejected"  # every bad request left the call ringing
    assert seen["no key"] == 401 and seen["ek"] == 401
    assert seen["unknown"].status_code == 404
    assert seen["no type"].status_code == 400 and seen["no type"].json()["error"]["param"] == "type"
    assert seen["bad field"].status_code == 400 and "voice_of" in seen["bad field"].text
    assert (
        seen["bad status"].status_code == 400 and seen["bad status"].json()["error"]["param"] == "status_code"
    )
    assert seen["bad uri"].status_code == 400 and "tel: or sip:" in seen["bad uri"].text
    assert seen["no uri"].status_code == 400 and seen["no uri"].json()["error"]["param"] == "target_uri"


async def test_placing_a_call_names_what_is_missing(emulator) -> None:
    async with emulator(keys=(KEY,)) as emu:
        async with httpx.AsyncClient(trust_env=False) as client:
            url = f"{emu.http_base_url}/_emulator/calls"
            no_key = await client.post(url, json={})
            no_hook = await client.post(
                url, headers={"api-key": KEY}, json={"wav_base64": wav_b64("silence")}
            )
            bad_wav = await client.post(
                url,
                headers={"api-key": KEY},
                json={
                    "webhook_url": "http://127.0.0.1:9/x",
                    "webhook_secret": SECRET,
                    "wav_base64": "aGVsbG8=",
                },
            )
            bad_dtmf = await client.post(
                url,
                headers={"api-key": KEY},
                json={
                    "webhook_url": "http://127.0.0.1:9/x",
                    "webhook_secret": SECRET,
                    "wav_base64": wav_b64("silence"),
                    "dtmf": [{"digit": "x", "at_s": 1}],
                },
            )
    assert no_key.status_code == 401
    assert no_hook.status_code == 400 and "--webhook-url" in no_hook.json()["error"]["message"]
    assert bad_wav.status_code == 400 and bad_wav.json()["error"]["param"] == "wav_base64"
    assert bad_dtmf.status_code == 400 and bad_dtmf.json()["error"]["param"] == "dtmf[0]"


async def test_the_emulators_own_webhook_settings_are_used_when_a_call_names_none(emulator) -> None:
    async def reject(app: WebhookApp, call_id: str) -> None:
        await app.post(call_id, "reject", {"status_code": 486})

    app = WebhookApp("", SECRET, reject)
    async with Receiver(app) as receiver:
        async with emulator(keys=(KEY,), webhook_url=receiver.url, webhook_secret=SECRET) as emu:
            app.emulator_url = emu.http_base_url
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                response = await client.post(
                    f"{emu.http_base_url}/_emulator/calls",
                    headers={"api-key": KEY},
                    json={"wav_base64": wav_b64("silence")},
                )
    assert response.json()["outcome"] == "rejected" and len(app.verified) == 1
