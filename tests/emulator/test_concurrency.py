"""Many sessions at once, each isolated from the others."""

from __future__ import annotations

import asyncio

from .conftest import fixture_pcm

SESSIONS = 8


async def test_concurrent_sessions_keep_their_own_conversations_and_settings(emulator, session) -> None:
    async with emulator(pace=20.0) as emu:

        async def one(index: int) -> dict:
            async with session(emu) as stream:
                voice = ["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse"][index]
                instructions = f"session number {index}"
                await stream.send(
                    {
                        "type": "session.update",
                        "session": {
                            "type": "realtime",
                            "instructions": instructions,
                            "audio": {"output": {"voice": voice}},
                        },
                    }
                )
                updated = (await stream.until("session.updated"))["session"]
                assert (updated["instructions"], updated["audio"]["output"]["voice"]) == (instructions, voice)
                if index % 2:
                    await stream.append_audio(fixture_pcm("stop"))  # a spoken turn in every other session
                else:
                    text = {"type": "input_text", "text": f"number {index}"}
                    await stream.send(
                        {
                            "type": "conversation.item.create",
                            "item": {"type": "message", "role": "user", "content": [text]},
                        }
                    )
                    await stream.send({"type": "response.create"})
                done = (await stream.until("response.done"))["response"]
                assert done["status"] == "completed" and done["audio"]["output"]["voice"] == voice
                spoken = done["output"][0]["content"][0]["transcript"]
                if index % 2 == 0:
                    assert spoken == f"You said: number {index}"
                else:
                    assert spoken.startswith("I heard ")
                items = [e["item"]["id"] for e in stream.events if e["type"] == "conversation.item.added"]
                return {"session": updated["id"], "conversation": done["conversation_id"], "items": items}

        results = await asyncio.gather(*(one(i) for i in range(SESSIONS)))
        assert len({r["session"] for r in results}) == SESSIONS
        assert len({r["conversation"] for r in results}) == SESSIONS
        all_items = [item for r in results for item in r["items"]]
        assert len(all_items) == len(set(all_items)) == SESSIONS * 2
        assert emu.stats.connections_accepted == SESSIONS
        await emu.stats.wait_for(lambda stats: stats.active_sessions == 0)
