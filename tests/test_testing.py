"""``realtalk.testing`` is enough, on its own, to test a voice agent end to end."""

from __future__ import annotations

import asyncio

import numpy as np

from realtalk.protocol.app_events import ResponseFinished
from realtalk.testing import (
    Emulator,
    EmulatorConfig,
    MemorySink,
    PacedDriver,
    PlaybackBuffer,
    SilenceSource,
    VirtualDuplex,
    VoiceLoop,
    connect_to_emulator,
    parse_scenario,
)


async def test_a_scripted_reply_reaches_an_in_memory_speaker_using_only_realtalk_testing() -> None:
    scenario = parse_scenario({"turns": [{"say": "Hello from the fake server."}]})
    async with Emulator(EmulatorConfig(keys=("k",), pace=8, scenario=scenario)) as emu:
        async with connect_to_emulator(emu) as session:
            done: list[ResponseFinished] = []
            session.on_event(lambda e: done.append(e) if isinstance(e, ResponseFinished) else None)
            playback, speaker = PlaybackBuffer(), MemorySink()
            device = VirtualDuplex(SilenceSource(), speaker, playback)
            loop = VoiceLoop(session, device, playback)
            driver = PacedDriver(device, speed=8)
            loop.start()
            driver.start()
            session.send_text("hi")
            async with asyncio.timeout(20):
                while not (done and not playback.is_playing):  # noqa: ASYNC110 - spans loop and session
                    await asyncio.sleep(0.01)
            await driver.stop()
            loop.stop()
    assert done[0].status == "completed"
    assert int(np.count_nonzero(np.frombuffer(speaker.pcm, dtype="<i2"))) > 12_000
    assert emu.stats.events_received("conversation.item.create")[0]["item"]["content"][0]["text"] == "hi"
