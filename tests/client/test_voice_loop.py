"""The client against the emulator, no sound card: WAV and memory devices driven in (fast) real time.

These are the integration tests of ``RealtimeSession`` and ``VoiceLoop``: a voice turn, barge-in
accuracy (what the truncate says was heard is what the speaker got), push-to-talk, a text turn,
reconnect with history replay, unrecoverable failures, and the echo gate on a looped-back reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtalk.audio.duplex import VirtualDuplex
from realtalk.audio.echo import EchoGate, EchoProcessor
from realtalk.audio.pcm import read_wav, silence
from realtalk.audio.playback import PlaybackBuffer
from realtalk.audio.sources import AudioSource, MemorySink, MemorySource, SilenceSource
from realtalk.client.credentials import ApiKeyCredential
from realtalk.client.session import ConnectionStatus, RealtimeSession, SessionEvent
from realtalk.client.voice import PacedDriver, VoiceLoop
from realtalk.emulator.config import EmulatorConfig
from realtalk.emulator.faults import Faults
from realtalk.emulator.runner import Emulator
from realtalk.emulator.scenario import parse_scenario
from realtalk.errors import HandshakeRejected
from realtalk.protocol import AgentProfile
from realtalk.protocol.app_events import ResponseFinished, SpeechStarted, SpeechStopped
from realtalk.protocol.endpoint import resolve_endpoint

FIXTURES = Path(__file__).parents[1] / "fixtures"
SPEED = 4.0  # emulator pace and device clock, times real time
KEY = "test-key"
BLOCK = 480
LONG_REPLY = (
    "Here is a long answer so that there is plenty of audio to interrupt. The lighthouse stood on the "
    "rocks for a hundred years, and every night its keeper climbed the stairs to light the lamp."
)


def wav(name: str) -> bytes:
    return read_wav(FIXTURES / f"{name}.wav")[0]


@dataclass
class Rig:
    emulator: Emulator
    session: RealtimeSession
    events: list[SessionEvent] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        # Polling is deliberate: the conditions span the session, the loop and the emulator.
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)


@asynccontextmanager
async def rig(
    profile: AgentProfile | None = None, *, replies: list[dict[str, Any]] | None = None, **config: Any
) -> AsyncIterator[Rig]:
    scenario = parse_scenario({"turns": replies}) if replies else None
    async with Emulator(EmulatorConfig(keys=(KEY,), pace=SPEED, scenario=scenario, **config)) as emu:
        endpoint = resolve_endpoint(emu.http_base_url, "gpt-realtime-1.5")
        session = RealtimeSession(
            endpoint,
            ApiKeyCredential(KEY, style="bearer"),
            profile=profile or AgentProfile(),
            rng=lambda: 0.0,
        )
        result = Rig(emu, session)
        session.on_event(result.events.append)
        async with session:
            yield result


@asynccontextmanager
async def voice(
    r: Rig, source: AudioSource, *, echo_gate: EchoGate | None = None, push_to_talk: bool = False
) -> AsyncIterator[tuple[VoiceLoop, MemorySink]]:
    playback, sink = PlaybackBuffer(), MemorySink()
    device = VirtualDuplex(source, sink, playback, block_samples=BLOCK)
    loop = VoiceLoop(r.session, device, playback, echo_gate=echo_gate, push_to_talk=push_to_talk)
    driver = PacedDriver(device, speed=SPEED)
    loop.start()
    driver.start()
    try:
        yield loop, sink
    finally:
        await driver.stop()
        loop.stop()


def finished(r: Rig) -> list[ResponseFinished]:
    return r.of(ResponseFinished)


async def test_a_spoken_question_gets_a_spoken_reply_in_the_output() -> None:
    async with (
        rig(replies=[{"say": "It is seven degrees in Oslo."}]) as r,
        voice(r, MemorySource(wav("question"))) as (
            loop,
            sink,
        ),
    ):
        await r.until(lambda: bool(finished(r)) and not loop.playback.is_playing)
    assert finished(r)[0].status == "completed"
    out = np.frombuffer(sink.pcm, dtype="<i2")
    reply_samples = int(np.count_nonzero(np.abs(out) > 300))
    assert reply_samples > 24_000  # more than a second of audible reply reached the speaker
    lines = r.session.protocol.conversation.transcript_lines()
    assert [line.role for line in lines] == ["user", "assistant"]
    assert lines[1].text == "It is seven degrees in Oslo."
    assert r.session.total_cost_usd > 0


async def test_barge_in_stops_the_output_and_truncates_at_the_samples_actually_played() -> None:
    # The user asks, the agent starts a long reply, the user says "stop please wait" over it.
    mic = wav("question") + silence(3000) + wav("stop")
    played_at_speech_start: dict[str, int] = {}
    sink_at_speech_start: list[int] = []
    sink_at_speech_stop: list[int] = []

    async with rig(replies=[{"say": LONG_REPLY}]) as r, voice(r, MemorySource(mic)) as (loop, sink):

        def on_event(event: SessionEvent) -> None:
            if isinstance(event, SpeechStarted) and not r.of(ResponseFinished):
                item = r.session.protocol.conversation.last_unheard_audio_item()
                if item is not None:
                    played_at_speech_start[item.item_id] = loop.playback.played_samples(item.item_id)
                    sink_at_speech_start.append(sink.samples_written)
            elif isinstance(event, SpeechStopped) and sink_at_speech_start and not sink_at_speech_stop:
                # No new reply can start before the user stops: the window that must be silent.
                sink_at_speech_stop.append(sink.samples_written)

        # Handlers see each event in turn: SpeechStarted reaches this one before FlushPlayback is sent.
        r.session.on_event(on_event)
        await r.until(lambda: bool(r.emulator.stats.events_received("conversation.item.truncate")))
        await r.until(lambda: bool(finished(r)) and bool(sink_at_speech_stop))

    [(item_id, played_before)] = played_at_speech_start.items()
    played_total = loop.playback.played_samples(item_id)
    # The speaker got at most one more block after speech_started.
    assert 0 <= played_total - played_before <= BLOCK
    [truncate] = r.emulator.stats.events_received("conversation.item.truncate")
    assert truncate["item_id"] == item_id
    assert truncate["audio_end_ms"] == played_total // 24
    assert played_total > 0  # the user heard part of the reply before interrupting
    assert finished(r)[0].status == "cancelled"
    assert finished(r)[0].reason == "turn_detected"
    [reply] = [
        line for line in r.session.protocol.conversation.transcript_lines() if line.role == "assistant"
    ]
    assert reply.cut and 0 < len(reply.text) < len(LONG_REPLY)
    assert loop.stats.flushes == 1
    # From one block after speech_started on, only silence reached the speaker.
    after_flush = np.frombuffer(sink.pcm, dtype="<i2")[
        sink_at_speech_start[0] + BLOCK : sink_at_speech_stop[0]
    ]
    assert after_flush.size > 0 and np.count_nonzero(after_flush) == 0


async def test_push_to_talk_sends_nothing_until_pressed_and_commits_on_release() -> None:
    profile = AgentProfile(turn_detection=None)
    async with (
        rig(profile, replies=[{"say": "Heard you."}]) as r,
        voice(r, MemorySource(silence(500) + wav("question")), push_to_talk=True) as (loop, _),
    ):
        await asyncio.sleep(0.3 / SPEED)
        assert r.emulator.stats.events_received("input_audio_buffer.append") == []
        loop.ptt_press()
        await r.until(lambda: loop.stats.mic_samples_sent >= 24 * 6000)
        loop.ptt_release()
        await r.until(lambda: bool(finished(r)))
    types = r.emulator.stats.sessions[0].client_event_types
    assert "input_audio_buffer.commit" in types
    assert types.index("response.create") > types.index("input_audio_buffer.commit")
    assert finished(r)[0].status == "completed"
    assert not any(isinstance(e, SpeechStarted) for e in r.events)


async def test_a_typed_message_gets_a_reply_while_the_microphone_streams_silence() -> None:
    async with rig(replies=[{"say": "Typed reply."}]) as r, voice(r, SilenceSource()):
        r.session.send_text("hello from the keyboard")
        await r.until(lambda: bool(finished(r)))
    lines = r.session.protocol.conversation.transcript_lines()
    assert [(line.role, line.text) for line in lines] == [
        ("user", "hello from the keyboard"),
        ("assistant", "Typed reply."),
    ]


async def test_after_session_expiry_it_reconnects_and_replays_the_conversation_as_text() -> None:
    async with rig(replies=[{"say": "First answer."}], session_limit_s=1.5) as r:
        r.session.send_text("remember the number forty two")
        await r.until(lambda: bool(finished(r)))
        cost_before = r.session.total_cost_usd
        await r.until(lambda: r.session.connections == 2 and r.session.status.state == "connected")
        await r.emulator.stats.wait_for(
            lambda s: len(s.sessions) == 2 and len(s.sessions[1].client_events) >= 3
        )
        states = [e.state for e in r.of(ConnectionStatus)]
    assert states[:2] == ["connected", "reconnecting"] and states[-1] == "connected"
    second = list(r.emulator.stats.sessions[1].client_events)
    assert second[0]["type"] == "session.update"
    replayed = [e["item"] for e in second if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["type"], i["content"][0]["text"]) for i in replayed] == [
        ("user", "input_text", "remember the number forty two"),
        ("assistant", "output_text", "First answer."),
    ]
    assert r.emulator.stats.sessions[0].close_code == 1001
    assert r.session.total_cost_usd == cost_before  # costs carried over, nothing new billed


async def test_a_wrong_key_fails_at_once_with_the_reason_and_opens_no_session() -> None:
    async with Emulator(EmulatorConfig(keys=("right-key",), pace=None)) as emu:
        endpoint = resolve_endpoint(emu.http_base_url, "gpt-realtime-1.5")
        session = RealtimeSession(endpoint, ApiKeyCredential("wrong-key", style="bearer"))
        with pytest.raises(HandshakeRejected) as caught:
            await session.start()
        assert emu.stats.connections_accepted == 0
    assert caught.value.status == 401
    assert "refused the key" in caught.value.reason
    assert "wrong-key" not in str(caught.value)
    assert session.status.state == "closed"


async def test_a_token_refused_on_reconnect_ends_the_session_with_the_reason() -> None:
    faults = Faults(reject_from_connection=2)
    async with rig(session_limit_s=0.5, faults=faults) as r:
        status = await asyncio.wait_for(r.session.wait_closed(), 10)
    assert status.state == "closed"
    assert isinstance(status.error, HandshakeRejected) and status.error.status == 401
    assert r.session.connections == 1


class LoopbackSource:
    """A microphone that hears the speaker: the previous played block at ``gain`` (acoustic echo)."""

    def __init__(self, gain_db: float) -> None:
        self.gain = 10 ** (gain_db / 20)
        self.last_played = b""

    @property
    def exhausted(self) -> bool:
        return False

    def read(self, frames: int) -> bytes:
        heard = np.frombuffer(self.last_played, dtype="<i2").astype(np.float64) * self.gain
        out = np.zeros(frames, dtype="<i2")
        out[: heard.size] = np.round(heard[:frames]).astype("<i2")
        return out.tobytes()


class LoopbackSink(MemorySink):
    def __init__(self, source: LoopbackSource) -> None:
        super().__init__()
        self.source = source

    def write(self, pcm: bytes) -> None:
        super().write(pcm)
        self.source.last_played = pcm


async def _reply_with_echo(
    echo_gate: EchoGate | None, echo_canceller: EchoProcessor | None = None
) -> ResponseFinished:
    async with rig(replies=[{"say": LONG_REPLY}]) as r:
        source = LoopbackSource(gain_db=-6.0)
        playback = PlaybackBuffer()
        device = VirtualDuplex(source, LoopbackSink(source), playback, block_samples=BLOCK)
        loop = VoiceLoop(r.session, device, playback, echo_gate=echo_gate, echo_canceller=echo_canceller)
        driver = PacedDriver(device, speed=SPEED)
        loop.start()
        driver.start()
        r.session.send_text("tell me a story")
        await r.until(lambda: bool(finished(r)), timeout_s=30)
        await driver.stop()
        loop.stop()
        return finished(r)[0]


async def test_with_the_echo_gate_the_agent_does_not_interrupt_itself_on_its_own_echo() -> None:
    done = await _reply_with_echo(EchoGate())
    assert (done.status, done.reason) == ("completed", None)


async def test_without_the_echo_gate_its_own_echo_at_minus_6_db_interrupts_the_agent() -> None:
    # The control for the test above: the loopback really is loud enough to be heard as speech.
    done = await _reply_with_echo(None)
    assert (done.status, done.reason) == ("cancelled", "turn_detected")
