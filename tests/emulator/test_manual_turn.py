"""Push-to-talk: turn detection off, manual commit, response.create (§2.5 C)."""

from __future__ import annotations

import base64

from realtalk.audio.pcm import silence

from .conftest import fixture_pcm


async def _manual(stream) -> None:
    await stream.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    await stream.until("session.updated")


async def test_a_commit_of_less_than_100_ms_gets_the_real_error(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await _manual(stream)
        await stream.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
        error = await stream.error()
        assert error == {
            "type": "invalid_request_error",
            "code": "input_audio_buffer_commit_empty",
            "message": "Error committing input audio buffer: buffer too small. "
            "Expected at least 100ms of audio, but buffer only has 0.00ms of audio.",
            "param": None,
            "event_id": "evt_empty",
        }
        await stream.append_audio(silence(50))
        await stream.send({"type": "input_audio_buffer.commit"})
        assert (await stream.error())["message"].endswith("but buffer only has 50.00ms of audio.")


async def test_a_manual_commit_adds_the_user_item_and_no_response_until_asked(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await _manual(stream)
        pcm = fixture_pcm("stop")
        await stream.append_audio(pcm)
        await stream.send({"type": "input_audio_buffer.commit"})
        committed = await stream.until("input_audio_buffer.committed")
        added = await stream.next()
        done = await stream.next()
        assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
        assert added["item"]["id"] == committed["item_id"] and committed["previous_item_id"] is None
        assert "input_audio_buffer.speech_started" not in stream.types()
        await stream.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
        retrieved = (await stream.until("conversation.item.retrieved"))["item"]
        assert base64.b64decode(retrieved["content"][0]["audio"]) == pcm
        assert "response.created" not in stream.types()
        await stream.send({"type": "response.create"})
        response = (await stream.until("response.done"))["response"]
        assert response["status"] == "completed"
        assert response["usage"]["input_token_details"]["audio_tokens"] == len(pcm) // 48 // 100 + 1


async def test_clear_empties_the_buffer(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await _manual(stream)
        await stream.append_audio(silence(500))
        await stream.send({"type": "input_audio_buffer.clear"})
        await stream.until("input_audio_buffer.cleared")
        await stream.send({"type": "input_audio_buffer.commit"})
        assert (await stream.error())["code"] == "input_audio_buffer_commit_empty"
