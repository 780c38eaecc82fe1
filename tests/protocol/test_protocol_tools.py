"""The core's tool-call decisions (§2.5 D): cancellation on barge-in, the filler, tool costs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from realtalk.protocol import ToolCallRequested, ToolCallsCancelled
from realtalk.protocol.client import DEFAULT_TOOL_FILLER, filler_instructions

from .test_protocol_client import Harness, _done_with_calls, _two_calls, _types


def _one_call(h: Harness, wire: Any, *, response: str = "resp_1", call: str = "call_1") -> None:
    h.feed(
        wire.response_created(response),
        *wire.function_call(response, f"item_{call}", call, "get_ticket", '{"id":"XR-4892"}', "item_U", 0),
        wire.response_done(
            response,
            output=[
                {
                    "id": f"item_{call}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call,
                    "name": "get_ticket",
                    "arguments": '{"id":"XR-4892"}',
                }
            ],
        ),
    )


def test_a_barge_in_cancels_the_calls_still_running_and_drops_their_late_outputs(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _two_calls(h, wire)
    h.feed(_done_with_calls(wire))
    assert h.proto.submit_tool_output("call_1", '{"temp_c":7}') is True
    h.take_sent()
    h.feed(wire.speech_started("item_U2", 5000))
    assert h.take_events(ToolCallsCancelled) == [ToolCallsCancelled(("call_2",), "barge_in")]
    assert h.proto.pending_tool_calls == ()
    # The slow tool finishes after all: its output is stale and nothing at all is sent for it.
    assert h.proto.submit_tool_output("call_2", '{"time":"12:00"}') is False
    assert h.take_sent() == []


def test_a_local_interrupt_cancels_running_calls_too(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    h.take_events()
    h.proto.interrupt()
    assert h.take_events(ToolCallsCancelled) == [ToolCallsCancelled(("call_1",), "interrupted")]


def test_a_barge_in_with_no_call_running_cancels_nothing(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    h.proto.submit_tool_output("call_1", "{}")
    h.take_events()
    h.feed(wire.speech_started("item_U2", 5000))
    assert h.take_events(ToolCallsCancelled) == []


def test_a_call_made_by_a_response_the_user_spoke_over_is_not_run(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.assistant_speaking(response="resp_1", item="item_A")
    h.feed(wire.speech_started("item_U2", 5000))
    h.take_events()
    h.feed(*wire.function_call("resp_1", "item_F", "call_1", "get_ticket", "{}", "item_A", 1))
    events = h.take_events()
    assert [e for e in events if isinstance(e, ToolCallRequested)] == []
    assert ToolCallsCancelled(("call_1",), "barge_in") in events
    assert h.proto.submit_tool_output("call_1", "{}") is False


def test_a_slow_call_gets_one_filler_that_cannot_call_tools_again(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    assert h.proto.tool_call_slow("call_1") is True
    [create] = h.take_sent()
    assert create["type"] == "response.create"
    assert create["response"] == {
        "instructions": filler_instructions(DEFAULT_TOOL_FILLER),
        "tool_choice": "none",
    }
    # Reported slow again, or while the filler is being said: nothing more.
    assert h.proto.tool_call_slow("call_1") is False
    assert h.take_sent() == []


def test_the_follow_up_waits_for_the_filler_to_finish(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    h.proto.tool_call_slow("call_1")
    h.take_sent()
    h.feed(wire.response_created("resp_filler"))
    h.proto.submit_tool_output("call_1", '{"status":"open"}')
    assert _types(h.take_sent()) == ["conversation.item.create"]
    h.feed(wire.response_done("resp_filler"))
    [follow_up] = h.take_sent()
    assert follow_up["type"] == "response.create"
    assert "instructions" not in follow_up.get("response", {}), "the filler's instructions do not leak"


def test_no_filler_while_the_user_speaks_or_a_response_runs_or_when_disabled(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    h.proto.create_response()  # something else is being said
    h.take_sent()
    assert h.proto.tool_call_slow("call_1") is False
    quiet = Harness(wire, tool_filler=None)
    quiet.start()
    _one_call(quiet, wire)
    assert quiet.proto.tool_call_slow("call_1") is False
    assert quiet.take_sent() == []


def test_no_filler_before_the_calling_response_is_done(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    h.feed(
        wire.response_created("resp_1"),
        *wire.function_call("resp_1", "item_F", "call_1", "t", "{}", "item_U"),
    )
    assert h.proto.tool_call_slow("call_1") is False


def test_a_filler_that_loses_a_race_is_not_retried(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    h.proto.tool_call_slow("call_1")
    [create] = h.take_sent()
    h.feed(
        wire.error(
            "conversation_already_has_active_response", "busy", event_id=create["event_id"], param=None
        )
    )
    h.feed(wire.response_created("resp_2"), wire.response_done("resp_2"))
    assert h.take_sent() == [], "no filler is sent late, after the other response"


def test_what_a_tool_cost_is_in_the_session_total_even_when_its_output_is_dropped(wire: Any) -> None:
    h = Harness(wire)
    h.start()
    _one_call(h, wire)
    before = h.proto.total_cost_usd
    h.proto.submit_tool_output("call_1", '{"answer":"42"}', cost_usd=Decimal("0.0012"))
    assert h.proto.total_cost_usd - before == Decimal("0.0012")
    assert h.proto.costs.total.tools_usd == Decimal("0.0012")
    _one_call(h, wire, response="resp_2", call="call_2")
    h.feed(wire.speech_started("item_U3", 9000))
    h.proto.submit_tool_output("call_2", "{}", cost_usd=Decimal("0.0008"))
    assert h.proto.costs.total.tools_usd == Decimal("0.0020")


def test_calls_of_tools_the_app_does_not_answer_are_neither_reported_nor_waited_for(wire: Any) -> None:
    h = Harness(wire, answered_tools=frozenset({"get_time"}))
    h.start()
    _two_calls(h, wire)
    assert [e.name for e in h.take_events(ToolCallRequested)] == ["get_time"]
    h.feed(_done_with_calls(wire))
    h.proto.submit_tool_output("call_2", '{"time":"12:00"}')
    # Only the answered tool is waited for: its output alone brings the follow-up.
    assert _types(h.take_sent()) == ["conversation.item.create", "response.create"]
