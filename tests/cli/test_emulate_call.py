"""``realtalk emulate call``: a simulated phone call placed through a running emulator, end to end;
and ``realtalk emulate``'s webhook options (the secret is never printed).

The emulator and a webhook receiver run in-process on 127.0.0.1; the command runs in a thread
(it blocks on its HTTP request while the event loop serves the call).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner, Result

from realtalk.audio.pcm import read_wav, rms_dbfs
from realtalk.cli.emulate import emulate_app, parse_dtmf, render_banner, render_call_result
from realtalk.embedded_server import EmbeddedApp
from realtalk.emulator import Emulator, EmulatorConfig, Engines, load_engines
from realtalk.emulator.sip import DtmfPress

FIXTURES = Path(__file__).parents[1] / "fixtures"
KEY = "cli-call-key"
SECRET = "whsec_" + base64.b64encode(b"cli-call-test-signing-secret-key").decode()


@pytest.fixture(autouse=True)
def _isolated(isolated_env: Path) -> None:
    """No Azure or realtalk settings or .env from the developer's checkout."""


@pytest.fixture(scope="module")
def engines() -> Engines:
    return load_engines("energy", "none", "tone")


Decide = Callable[[str, str], Awaitable[None]]  # (emulator URL, call id)


class Receiver(EmbeddedApp):
    """An app's webhook endpoint: verifies with standardwebhooks, answers, decides in a task."""

    name = "webhook receiver"

    def __init__(self, secret: str, decide: Decide) -> None:
        super().__init__("127.0.0.1", 0, handle_signals=False, stop_timeout_s=2)
        self.secret = secret
        self.decide = decide
        self.emulator_url = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self.verified = 0

    @property
    def url(self) -> str:
        return f"{self.http_base_url}/hook"

    async def webhook(self, request: Request) -> Response:
        try:
            event = Webhook(self.secret).verify(await request.body(), dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=400)
        self.verified += 1
        self.tasks.add(asyncio.create_task(self.decide(self.emulator_url, event["data"]["call_id"])))
        return Response(status_code=200)

    async def start(self) -> None:
        await self._serve(Starlette(routes=[Route("/hook", self.webhook, methods=["POST"])]), lifespan="off")

    async def stop(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await super().stop()


async def control(emulator_url: str, call_id: str, action: str, body: dict[str, Any] | None = None) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            f"{emulator_url}/openai/v1/realtime/calls/{call_id}/{action}", headers={"api-key": KEY}, json=body
        )
    assert response.status_code == 200, response.text


async def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, emulate_app, list(args), env={"COLUMNS": "200", **(env or {})}
    )


# --- parsing and rendering -----------------------------------------------------------------------


def test_dtmf_is_written_digit_at_seconds_comma_separated() -> None:
    assert parse_dtmf("1@2.5, #@3,*@0") == [DtmfPress("1", 2.5), DtmfPress("#", 3.0), DtmfPress("*", 0.0)]
    assert parse_dtmf("") == []
    for bad in ("1", "x@1", "1@soon", "1@-2", "12@1"):
        with pytest.raises(ValueError, match="--dtmf"):
            parse_dtmf(bad)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"outcome": "rejected", "status_code": 486}, "rejected with SIP status 486"),
        ({"outcome": "referred", "refer_target": "tel:+14155550123"}, "referred to tel:+14155550123"),
        ({"outcome": "no_answer"}, "never called /accept, /reject or /refer"),
        ({"outcome": "webhook_failed", "webhook_status": 400}, "HTTP 400 after 1 attempts"),
        (
            {"outcome": "accepted", "duration_s": 7.25, "ended_by": "hangup"},
            "accepted, 7.2 s, ended by hangup",
        ),
    ],
)
def test_each_outcome_is_said_in_one_sentence(result: dict[str, Any], expected: str) -> None:
    console = Console(record=True, width=300)
    console.print(render_call_result({"call_id": "rtc_1", "webhook_attempts": 1, **result}, None))
    assert expected in console.export_text()


def test_the_group_keeps_the_server_options_and_offers_call() -> None:
    served = CliRunner().invoke(emulate_app, ["--help"], env={"COLUMNS": "200"})
    assert served.exit_code == 0
    for option in ("--port", "--key", "--scenario", "--webhook-url", "--webhook-secret", "call"):
        assert option in served.output
    called = CliRunner().invoke(emulate_app, ["call", "--help"], env={"COLUMNS": "200"})
    assert called.exit_code == 0
    for option in ("--wav", "--emulator", "--from", "--to", "--dtmf", "--record", "--hangup-after"):
        assert option in called.output


def test_a_webhook_url_that_is_not_http_stops_the_emulator_with_exit_2() -> None:
    result = CliRunner().invoke(emulate_app, ["--port", "0", "--webhook-url", "ftp://x"])
    assert result.exit_code == 2
    assert "the webhook URL must start with http:// or https://" in result.output


def test_a_malformed_secret_stops_the_emulator_without_printing_it() -> None:
    result = CliRunner().invoke(emulate_app, ["--port", "0", "--webhook-secret", "whsec_%%secret%%"])
    assert result.exit_code == 2
    assert "not base64" in result.output and "%%secret%%" not in result.output


async def test_the_banner_says_where_calls_ring_and_never_shows_the_secret(engines: Engines) -> None:
    config = EmulatorConfig(webhook_url="http://127.0.0.1:9/hook?token=abc", webhook_secret=SECRET)
    async with Emulator(config, engines=engines) as emu:
        console = Console(record=True, width=300)
        console.print(render_banner(emu, engines.description))
        text = console.export_text()
    assert f"webhook http://127.0.0.1:9/hook?… (signed, secret of {len(SECRET)} characters)" in text
    assert f"realtalk emulate call --wav caller.wav --emulator http://127.0.0.1:{emu.port}" in text
    assert SECRET not in text and SECRET[6:] not in text and "token=abc" not in text
    assert SECRET not in repr(config)


# --- end to end ----------------------------------------------------------------------------------


async def test_a_call_from_the_command_is_answered_and_the_agent_recorded(
    engines: Engines, tmp_path: Path
) -> None:
    async def accept(emulator_url: str, call_id: str) -> None:
        await control(emulator_url, call_id, "accept", {"type": "realtime"})

    recording = tmp_path / "agent.wav"
    async with Receiver(SECRET, accept) as receiver:
        config = EmulatorConfig(keys=(KEY,), pace=40.0, webhook_url=receiver.url, webhook_secret=SECRET)
        async with Emulator(config, engines=engines) as emu:
            receiver.emulator_url = emu.http_base_url
            result = await run_cli(
                "call",
                "--wav",
                str(FIXTURES / "stop.wav"),
                "--emulator",
                emu.http_base_url,
                "--key",
                KEY,
                "--from",
                "+15550001111",
                "--dtmf",
                "1@0.5",
                "--record",
                str(recording),
                "--hangup-after",
                "3",
            )
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "ended by caller" in result.output
    assert f"→ {recording}" in result.output
    assert SECRET not in result.output and KEY not in result.output
    pcm, rate_hz, channels = read_wav(recording)
    assert (rate_hz, channels) == (24_000, 1)
    frames = [pcm[i : i + 960] for i in range(0, len(pcm) - 960, 960)]
    assert max(rms_dbfs(f) for f in frames) > -30, "the agent's reply is not in the recording"
    assert receiver.verified == 1


async def test_a_call_whose_webhook_is_refused_exits_1_and_says_why(engines: Engines) -> None:
    async def never(emulator_url: str, call_id: str) -> None:
        raise AssertionError("the receiver must not accept a call it could not verify")

    async with Receiver(
        "whsec_" + base64.b64encode(b"the-apps-own-other-secret-000000").decode(), never
    ) as rx:
        async with Emulator(EmulatorConfig(keys=(KEY,)), engines=engines) as emu:
            result = await run_cli(
                "call",
                "--wav",
                str(FIXTURES / "silence.wav"),
                "--emulator",
                emu.http_base_url,
                "--key",
                KEY,
                env={"REALTALK_EMULATOR_WEBHOOK_URL": rx.url, "REALTALK_EMULATOR_WEBHOOK_SECRET": SECRET},
            )
    assert result.exit_code == 1, result.output
    assert "the webhook failed" in result.output and "HTTP 400" in result.output
    assert SECRET not in result.output and rx.verified == 0


async def test_an_unreachable_emulator_or_a_wrong_key_is_named(engines: Engines) -> None:
    wav = str(FIXTURES / "silence.wav")
    async with Emulator(EmulatorConfig(keys=(KEY,)), engines=engines) as emu:
        wrong_key = await run_cli("call", "--wav", wav, "--emulator", emu.http_base_url, "--key", "nope")
        url = emu.http_base_url
    gone = await run_cli("call", "--wav", wav, "--emulator", url, "--key", KEY)
    assert wrong_key.exit_code == 1 and "refused the key" in wrong_key.output
    assert gone.exit_code == 1 and f"Cannot reach the emulator at {url}" in gone.output


def test_a_bad_dtmf_script_stops_before_calling_with_exit_2() -> None:
    result = CliRunner().invoke(
        emulate_app,
        ["call", "--wav", str(FIXTURES / "silence.wav"), "--dtmf", "9@later"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2 and "--dtmf" in result.output
