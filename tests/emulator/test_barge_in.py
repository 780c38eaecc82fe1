"""Barge-in over WebSocket and conversation.item.truncate (§2.5 E)."""

from __future__ import annotations

import base64

from realtalk.emulator import parse_scenario

from .conftest import fixture_pcm

LONG_REPLY = " ".join(["This is a long answer that keeps going so that the user can interrupt it."] * 6)
CANCEL_ORDER = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def _audio_ms(stream, item_id: str) -> int:
    deltas = [
        e for e in stream.events if e["type"] == "response.output_audio.delta" and e["item_id"] == item_id
    ]
    return sum(len(base64.b64decode(e["delta"])) for e in deltas) // 48


async def _start_long_reply(stream) -> str:
    await stream.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "tell me"}],
            },
        }
    )
    await stream.send({"type": "response.create"})
    added = await stream.until("response.output_item.added")
    for _ in range(3):
        await stream.until("response.output_audio.delta")
    return added["item"]["id"]  # type: ignore[no-any-return]


async def test_user_speech_cancels_the_reply_then_truncate_cuts_what_was_not_heard(emulator, session) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=4.0, scenario=scenario) as emu, session(emu) as stream:
        assistant_item = await _start_long_reply(stream)
        await stream.append_audio(fixture_pcm("question"))
        started = await stream.until("input_audio_buffer.speech_started")
        index = len(stream.events)
        done = await stream.until("response.done")
        closing = [t for t in stream.types(index) if t != "response.output_audio.delta"]
        assert closing == CANCEL_ORDER
        response = done["response"]
        assert response["status"] == "cancelled"
        assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert response["output"][0]["status"] == "incomplete"
        spoken = response["output"][0]["content"][0]["transcript"]
        assert spoken and LONG_REPLY.startswith(spoken) and len(spoken) < len(LONG_REPLY)

        received_ms = _audio_ms(stream, assistant_item)
        played_ms = received_ms // 2
        await stream.send(
            {
                "type": "conversation.item.truncate",
                "item_id": assistant_item,
                "content_index": 0,
                "audio_end_ms": played_ms,
            }
        )
        truncated = await stream.until("conversation.item.truncated")
        assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (
            assistant_item,
            0,
            played_ms,
        )
        await stream.send({"type": "conversation.item.retrieve", "item_id": assistant_item})
        item = (await stream.until("conversation.item.retrieved"))["item"]
        assert item["content"][0]["transcript"] is None  # the server drops the transcript
        assert len(base64.b64decode(item["content"][0]["audio"])) == played_ms * 48

        await stream.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_far",
                "item_id": assistant_item,
                "content_index": 0,
                "audio_end_ms": played_ms + 100,
            }
        )
        beyond = await stream.error()
        assert (
            beyond["message"] == f"Audio content of {played_ms}ms is already shorter than {played_ms + 100}ms"
        )
        assert beyond["event_id"] == "evt_far"
        await stream.send(
            {
                "type": "conversation.item.truncate",
                "item_id": assistant_item,
                "content_index": 0,
                "audio_end_ms": -11,
            }
        )
        negative = await stream.error()
        assert (negative["code"], negative["param"], negative["message"]) == (
            "integer_below_min_value",
            "audio_end_ms",
            "Invalid 'audio_end_ms': integer below minimum value. "
            "Expected a value >= 0, but got -11 instead.",
        )
        user_item = stream.events[1]["item"]["id"]
        await stream.send(
            {
                "type": "conversation.item.truncate",
                "item_id": user_item,
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
        not_audio = await stream.error()
        assert (not_audio["code"], not_audio["message"]) == (
            "unsupported_content_type",
            "Only model output audio messages can be truncated",
        )

        # The user's turn went on meanwhile (its events may have come before the errors).
        stopped = await stream.until("input_audio_buffer.speech_stopped", since=index)
        assert stopped["item_id"] == started["item_id"]
        committed = await stream.until("input_audio_buffer.committed", since=index)
        assert committed["previous_item_id"] == assistant_item
        reply = await stream.until(
            "response.done", where=lambda e: e["response"]["id"] != response["id"], since=index
        )
        assert reply["response"]["status"] == "completed"


async def test_with_interrupt_response_off_the_client_cancels_and_the_reply_goes_on_until_then(
    emulator, session
) -> None:
    scenario = parse_scenario({"turns": [{"say": LONG_REPLY}]})
    async with emulator(pace=4.0, scenario=scenario) as emu, session(emu) as stream:
        detection = {"type": "server_vad", "interrupt_response": False, "create_response": False}
        await stream.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}},
            }
        )
        await stream.until("session.updated")
        await _start_long_reply(stream)
        await stream.append_audio(fixture_pcm("stop"))
        await stream.until("input_audio_buffer.speech_started")
        await stream.until("response.output_audio.delta")  # still speaking
        await stream.send({"type": "response.cancel"})
        done = await stream.until("response.done")
        assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        await stream.send({"type": "response.cancel"})
        assert (await stream.error())["code"] == "response_cancel_not_active"


async def test_a_reply_that_already_finished_is_not_cancelled_but_can_be_truncated(emulator, session) -> None:
    async with emulator(pace=None) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        done = await stream.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        await stream.append_audio(fixture_pcm("stop"))
        await stream.until("input_audio_buffer.speech_started")
        await stream.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 300,
            }
        )
        await stream.until("conversation.item.truncated")
        assert [e for e in stream.events if e["type"] == "response.done"] == [done]
        await stream.until("response.done")  # the reply to the new turn
