"""Text input and output, conversation items, and the response rules (§2.2, §2.3, §2.5)."""

from __future__ import annotations

import asyncio

from realtalk.emulator import Faults


def _user_text(text: str, **extra) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], **extra}


async def _text_mode(stream) -> None:
    await stream.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    await stream.until("session.updated")


async def test_a_text_turn_streams_output_text(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await _text_mode(stream)
        await stream.send({"type": "conversation.item.create", "item": _user_text("hello there")})
        added = await stream.until("conversation.item.added")
        assert added["item"]["content"] == [{"type": "input_text", "text": "hello there"}]
        assert added["item"]["status"] == "completed" and added["previous_item_id"] is None
        await stream.until("conversation.item.done")
        start = len(stream.events)
        await stream.send({"type": "response.create"})
        done = await stream.until("response.done")
        types = stream.types(start)
        assert "response.output_audio.delta" not in types
        assert types[:5] == [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
        ]
        assert types[-5:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
        text = "".join(e["delta"] for e in stream.events[start:] if e["type"] == "response.output_text.delta")
        assert text == "You said: hello there"
        assert done["response"]["output"][0]["content"] == [{"type": "output_text", "text": text}]
        assert done["response"]["output_modalities"] == ["text"]
        assert done["response"]["usage"]["output_token_details"]["audio_tokens"] == 0


async def test_previous_item_id_root_inserts_first_and_an_unknown_one_is_refused(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send({"type": "conversation.item.create", "item": _user_text("second", id="item_two")})
        await stream.until("conversation.item.done")
        await stream.send(
            {"type": "conversation.item.create", "previous_item_id": "root", "item": _user_text("first")}
        )
        added = await stream.until("conversation.item.added")
        assert added["previous_item_id"] is None
        await stream.send(
            {
                "type": "conversation.item.create",
                "event_id": "evt_p",
                "previous_item_id": "item_nope",
                "item": _user_text("x"),
            }
        )
        error = await stream.error()
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "previous_item_id",
            "evt_p",
        )
        await stream.send(
            {"type": "conversation.item.create", "previous_item_id": "item_two", "item": _user_text("third")}
        )
        assert (await stream.until("conversation.item.added"))["previous_item_id"] == "item_two"


async def test_items_are_retrieved_and_deleted_and_unknown_ids_are_errors(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send({"type": "conversation.item.create", "item": _user_text("keep me", id="item_keep")})
        await stream.until("conversation.item.done")
        await stream.send({"type": "conversation.item.retrieve", "item_id": "item_keep"})
        retrieved = await stream.until("conversation.item.retrieved")
        assert retrieved["item"]["content"][0]["text"] == "keep me"
        await stream.send({"type": "conversation.item.delete", "item_id": "item_keep"})
        assert (await stream.until("conversation.item.deleted"))["item_id"] == "item_keep"
        for kind in ("retrieve", "delete"):
            await stream.send(
                {"type": f"conversation.item.{kind}", "item_id": "item_keep", "event_id": f"evt_{kind}"}
            )
            error = await stream.error()
            assert error["code"] == f"item_{kind}_invalid_item_id" and error["event_id"] == f"evt_{kind}"


async def test_a_second_response_create_while_one_is_active_is_refused(emulator, session) -> None:
    async with emulator(pace=2.0) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        created = await stream.until("response.created")
        await stream.send({"type": "response.create", "event_id": "evt_second"})
        error = await stream.error()
        response_id = created["response"]["id"]
        assert (
            error["code"] == "conversation_already_has_active_response" and error["event_id"] == "evt_second"
        )
        assert error["message"] == (
            f"Conversation already has an active response in progress: {response_id}. "
            "Wait until the response is finished before creating a new one."
        )
        await stream.send({"type": "response.cancel"})
        done = await stream.until("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}


async def test_response_cancel_with_nothing_active_gets_response_cancel_not_active(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send({"type": "response.cancel", "event_id": "evt_c"})
        error = await stream.error()
        assert (error["code"], error["message"], error["event_id"]) == (
            "response_cancel_not_active",
            "Cancellation failed: no active response found",
            "evt_c",
        )


async def test_out_of_band_responses_run_in_parallel_and_write_nothing_to_the_conversation(
    emulator, session
) -> None:
    async with emulator(pace=4.0) as emu, session(emu) as stream:
        await stream.send(
            {"type": "conversation.item.create", "item": _user_text("the weather please", id="item_u")}
        )
        await stream.until("conversation.item.done")
        await stream.send({"type": "response.create"})
        await stream.until("response.created")
        await stream.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "output_modalities": ["text"],
                    "metadata": {"purpose": "classify"},
                    "input": [{"type": "item_reference", "id": "item_u"}],
                },
            }
        )
        oob = await stream.until("response.done", where=lambda e: e["response"]["conversation_id"] is None)
        assert oob["response"]["metadata"] == {"purpose": "classify"}
        assert oob["response"]["output"][0]["content"][0]["text"] == "You said: the weather please"
        main = await stream.until("response.done")
        assert main["response"]["conversation_id"] is not None and main["response"]["status"] == "completed"
        oob_item = oob["response"]["output"][0]["id"]
        added_ids = [e["item"]["id"] for e in stream.events if e["type"] == "conversation.item.added"]
        assert oob_item not in added_ids


async def test_max_output_tokens_ends_the_response_incomplete(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        await stream.send(
            {"type": "conversation.item.create", "item": _user_text("a rather long sentence to echo back")}
        )
        await stream.send({"type": "response.create", "response": {"max_output_tokens": 12}})
        done = (await stream.until("response.done"))["response"]
        assert done["status"] == "incomplete"
        assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
        assert done["output"][0]["status"] == "incomplete"
        assert done["usage"]["output_tokens"] <= 12


async def test_the_input_context_grows_and_the_stable_prefix_is_billed_as_cached(emulator, session) -> None:
    async with emulator() as emu, session(emu) as stream:
        usages = []
        for text in ("one", "two"):
            await stream.send({"type": "conversation.item.create", "item": _user_text(text)})
            await stream.send({"type": "response.create"})
            usages.append((await stream.until("response.done"))["response"]["usage"])
        first, second = usages
        assert first["input_token_details"]["cached_tokens"] == 0
        assert second["input_tokens"] > first["input_tokens"]
        assert second["input_token_details"]["cached_tokens"] >= first["input_tokens"]
        assert (
            second["input_token_details"]["cached_tokens_details"]["audio_tokens"] > 0
        )  # the first reply's audio


async def test_a_rate_limited_response_gets_rate_limits_updated_and_the_error(emulator, session) -> None:
    async with emulator(faults=Faults(rate_limit_from_response=2)) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        first = await stream.until("rate_limits.updated")
        assert first["rate_limits"][0]["remaining"] > 0
        await stream.until("response.done")
        await stream.send({"type": "response.create", "event_id": "evt_rl"})
        limits = await stream.until("rate_limits.updated")
        assert limits["rate_limits"][0]["name"] == "tokens" and limits["rate_limits"][0]["remaining"] == 0
        error = await stream.error()
        assert (error["code"], error["event_id"]) == ("rate_limit_exceeded", "evt_rl")
        await stream.send({"type": "response.cancel"})
        assert (await stream.error())["code"] == "response_cancel_not_active"  # nothing was created


async def test_slow_first_audio_delays_the_first_delta(emulator, session) -> None:
    async with emulator(pace=None, faults=Faults(first_audio_delay_ms=300)) as emu, session(emu) as stream:
        await stream.send({"type": "response.create"})
        await stream.until("response.created")
        loop = asyncio.get_running_loop()
        created_at = loop.time()
        await stream.until("response.output_audio.delta")
        assert loop.time() - created_at >= 0.28
