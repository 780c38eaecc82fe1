"""examples/helpdesk: its ticket-ID normaliser and lookup, and the agent run from its profile file
against the emulator, through ``talk``'s session and through the gateway."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml

from realtalk.emulator import Engines, load_scenario

from .conftest import EXAMPLES, KEY, gateway_client, load_example, talk_session, tools_module

HELPDESK = load_example("helpdesk")
tools = tools_module(HELPDESK)
DEMO = EXAMPLES / "helpdesk" / "emulator-scenario.yaml"
SPELLED = "x-ray romeo four eight nine two"


@pytest.mark.parametrize(
    "heard",
    [
        "XR-4892",
        "XR 4892",
        "xr4892",
        "X R 4 8 9 2",
        "x-ray romeo four eight nine two",
        "X-ray Romeo 4 8 9 2",
        "xray romeo four eight niner two",
        "ticket number X R dash 4 8 9 2.",
        "my ticket is XR\u20134892?",  # an en dash, as a transcript may write it
    ],
)
def test_every_way_of_saying_the_ticket_id_normalises_to_xr_4892(heard: str) -> None:
    assert tools.normalise_ticket_id(heard) == "XR-4892"


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        ("kilo bravo one two oh seven", "KB-1207"),
        ("X R double four nine two", "XR-4492"),
        ("alpha bravo triple one two", "AB-1112"),
    ],
)
def test_phonetic_letters_zero_as_oh_and_repeated_digits_are_understood(heard: str, expected: str) -> None:
    assert tools.normalise_ticket_id(heard) == expected


@pytest.mark.parametrize(
    "heard",
    ["XR 489", "X R 4 8 9 2 7", "4892", "XRZ 4892", "hello", "", "ex are four eight nine two", "XR 48 nine"],
)
def test_what_is_not_two_letters_and_four_digits_is_no_ticket_id(heard: str) -> None:
    assert tools.normalise_ticket_id(heard) is None


def test_a_known_ticket_comes_back_with_status_owner_and_update_time() -> None:
    result = tools.get_ticket_status(SPELLED)
    assert result["found"] is True
    assert result["ticket_id"] == "XR-4892"
    assert {"status", "owner", "updated"} <= set(result)
    assert result["status"] == tools.TICKETS["XR-4892"]["status"]


def test_an_unknown_ticket_is_a_not_found_result_naming_the_id_not_an_exception() -> None:
    result = tools.get_ticket_status("X R 0 0 0 1")
    assert result["found"] is False
    assert result["ticket_id"] == "XR-0001"
    assert "no ticket XR-0001" in result["message"]


def test_words_that_are_no_ticket_id_ask_for_the_id_to_be_spelled() -> None:
    result = tools.get_ticket_status("the one from last week")
    assert result["found"] is False
    assert result["heard"] == "the one from last week"
    assert "spell" in result["message"]


def test_the_profile_declares_the_lookup_and_the_delegation_tool_with_their_schemas() -> None:
    definitions = {tool["name"]: tool for tool in HELPDESK.agent.tools}
    assert set(definitions) == {"get_ticket_status", "ask_senior_engineer"}
    lookup = definitions["get_ticket_status"]["parameters"]
    assert lookup["required"] == ["ticket_id"]
    assert "spelled" in lookup["properties"]["ticket_id"]["description"]
    assert HELPDESK.delegate is not None
    assert (HELPDESK.delegate.deployment, HELPDESK.delegate.name) == ("gpt-5-mini", "ask_senior_engineer")
    assert HELPDESK.server_tool_names == {"get_ticket_status", "ask_senior_engineer"}
    assert "get_ticket_status" in (HELPDESK.agent.instructions or "")


async def test_the_demo_scenario_plays_as_its_comments_say(engines: Engines) -> None:
    load_scenario(DEMO)  # what `realtalk emulate --scenario` does with it
    async with talk_session(HELPDESK, yaml.safe_load(DEMO.read_text()), engines) as talk:
        await talk.say(
            f"Hi, what is the status of my ticket? It is {SPELLED}.",
            responses=2,
        )
        await talk.say(
            "Why does my VPN drop every twenty minutes, but only on the office Wi-Fi?",
            responses=2,
        )
    assert talk.finished() == [("get_ticket_status", "ok"), ("ask_senior_engineer", "ok")]
    ticket, expert = talk.outputs()
    assert (ticket["ticket_id"], ticket["owner"]) == ("XR-4892", "Dana Whitfield, network team")
    assert "short address leases" in expert["answer"]
    assert "short address leases" in talk.transcript()


async def test_a_spelled_out_ticket_id_is_looked_up_and_the_status_is_read_back(engines: Engines) -> None:
    scenario = {"turns": [{"call": {"name": "get_ticket_status", "arguments": {"ticket_id": SPELLED}}}]}
    async with talk_session(HELPDESK, scenario, engines) as talk:
        await talk.say(
            f"What is the status of my ticket? It is {SPELLED}.",
            responses=2,
        )
    assert talk.finished() == [("get_ticket_status", "ok")]
    [output] = talk.outputs()
    assert (output["found"], output["ticket_id"]) == (True, "XR-4892")
    assert '"status": "in progress"' in talk.transcript()


async def test_a_hard_question_goes_to_the_responses_api_and_its_answer_and_cost_come_back(
    engines: Engines,
) -> None:
    question = "Why does the VPN drop every 20 minutes, only on the office Wi-Fi?"
    scenario = {"turns": [{"call": {"name": "ask_senior_engineer", "arguments": {"question": question}}}]}
    async with talk_session(HELPDESK, scenario, engines) as talk:
        await talk.say(
            "My VPN keeps dropping, can you find out why?",
            responses=2,
        )
        assert talk.delegation is not None and talk.delegation.last_response_id is not None
        async with httpx.AsyncClient(base_url=talk.emulator.http_base_url, headers={"api-key": KEY}) as http:
            stored = (await http.get(f"/openai/v1/responses/{talk.delegation.last_response_id}")).json()
        tools_usd = talk.session.protocol.costs.total.tools_usd
        total_usd = talk.session.total_cost_usd
    assert talk.finished() == [("ask_senior_engineer", "ok")]
    assert talk.outputs() == [{"answer": f"Expert answer 1 to: {question}"}]
    assert f"Expert answer 1 to: {question}" in talk.transcript()
    # The profile's [delegate] table is what went on the wire.
    assert stored["model"] == "gpt-5-mini"
    assert stored["reasoning"]["effort"] == "low"
    assert tools_usd > 0 and tools_usd == talk.delegation.cost_usd
    assert total_usd > tools_usd, "the realtime turns are billed as well"
    assert isinstance(tools_usd, Decimal)


async def test_behind_the_gateway_the_client_hears_the_status_but_never_sees_the_tool(
    engines: Engines, static_dir: Path
) -> None:
    scenario = {"turns": [{"call": {"name": "get_ticket_status", "arguments": {"ticket_id": "X R 4 8 9 2"}}}]}
    profile = EXAMPLES / "helpdesk" / "agent.toml"
    async with gateway_client(profile, scenario, engines, static_dir) as (emu, client):
        await client.text_turn("What is the status of ticket X R 4 8 9 2?")
        await client.until_responses_done(2)  # the call's response, then the answer's
        received = emu.stats.events_received()
    answer = json.dumps(client.events[-1]["response"]["output"])
    assert "in progress" in answer and "XR-4892" in answer
    outputs = [e for e in received if e.get("item", {}).get("type") == "function_call_output"]
    assert len(outputs) == 1, "the gateway answered the call itself"
    # Nothing of the tools reaches the client but speech: no definition, instructions, call or output.
    assert "function_call" not in json.dumps(client.events)
    assert not [e for e in client.events if e["type"].startswith(("response.function_call", "realtalk."))]
    sessions = [e["session"] for e in client.events if "session" in e]
    assert sessions, "the client got session.created"
    assert all(not s.get("tools") and "instructions" not in s for s in sessions)
