"""examples/hotel: rates, validation and the two-step booking, in the tools and through the agent
run from its profile file against the emulator."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml

from realtalk.client.tools import InvalidToolArguments, ToolRunner
from realtalk.emulator import Engines, load_scenario

from .conftest import EXAMPLES, load_example, talk_session, tools_module

HOTEL = load_example("hotel")
tools = tools_module(HOTEL)
DEMO = EXAMPLES / "hotel" / "emulator-scenario.yaml"
DEMO_CHECK_IN = "2027-10-14"
TODAY = date(2026, 5, 1)
THURSDAY = date(2026, 5, 14)
SOON = (date.today() + timedelta(days=30)).isoformat()
REFERENCE = re.compile(r"HV-[A-HJ-KMNP-Z2-9]{5}")


def desk() -> Any:
    """A fresh front desk whose today is ``TODAY``."""
    return tools.FrontDesk(today=lambda: TODAY)


def test_a_weekday_night_costs_the_rooms_rate_and_friday_and_saturday_20_percent_more() -> None:
    stay = tools.Stay("king", THURSDAY, 4)  # Thursday, Friday, Saturday and Sunday nights
    assert tools.nightly_rates_usd(stay) == [
        Decimal("189.00"),
        Decimal("226.80"),
        Decimal("226.80"),
        Decimal("189.00"),
    ]


def test_a_quote_has_each_nights_rate_the_total_and_the_check_out_date() -> None:
    front = desk()
    quote = front.quote(front.check("suite", THURSDAY, 2))
    assert quote == {
        "room_type": "suite",
        "check_in": "2026-05-14",
        "check_out": "2026-05-16",
        "nights": 2,
        "nightly_usd": ["329.00", "394.80"],
        "total_usd": "723.80",
        "available": True,
    }


@pytest.mark.parametrize(
    ("check_in", "nights", "reason"),
    [
        (TODAY - timedelta(days=1), 1, "in the past; today is 2026-05-01"),
        (TODAY + timedelta(days=366), 1, "at most 365 days ahead"),
        (THURSDAY, 15, "from 1 to 14"),
    ],
)
def test_dates_that_cannot_be_booked_are_refused_with_the_reason(
    check_in: date, nights: int, reason: str
) -> None:
    with pytest.raises(InvalidToolArguments, match=re.escape(reason)):
        desk().check("double", check_in, nights)


def test_a_booking_needs_a_summary_first_and_only_a_confirmation_books() -> None:
    front = desk()
    stay = front.check("king", THURSDAY, 2)
    first = front.book("Ada  Lovelace", stay, confirmed=False)
    assert first["booked"] is False and first["needs_confirmation"] is True
    assert first["summary"] == (
        "A king room for Ada Lovelace, 2 nights from Thursday 14 May 2026 to Saturday 16 May 2026, "
        "415.80 US dollars in total."
    )
    assert front.bookings() == {}
    second = front.book("Ada Lovelace", stay, confirmed=True)
    assert second["booked"] is True and REFERENCE.fullmatch(second["booking_reference"])
    assert front.bookings() == {second["booking_reference"]: ("Ada Lovelace", stay)}


def test_a_confirmation_without_a_summary_before_it_books_nothing_and_returns_the_summary() -> None:
    front = desk()
    result = front.book("Ada Lovelace", front.check("king", THURSDAY, 2), confirmed=True)
    assert result["needs_confirmation"] is True and "415.80" in result["summary"]
    assert front.bookings() == {}


def test_a_confirmation_of_other_details_than_the_summary_books_nothing() -> None:
    front = desk()
    front.book("Ada Lovelace", front.check("king", THURSDAY, 2), confirmed=False)
    result = front.book("Ada Lovelace", front.check("king", THURSDAY, 3), confirmed=True)
    assert result["needs_confirmation"] is True
    assert front.bookings() == {}


def test_a_repeated_confirmation_does_not_book_twice() -> None:
    front = desk()
    stay = front.check("double", THURSDAY, 1)
    front.book("Ada Lovelace", stay, confirmed=False)
    first = front.book("Ada Lovelace", stay, confirmed=True)
    again = front.book("Ada Lovelace", stay, confirmed=True)
    assert again == {"booked": True, "already_booked": True, "booking_reference": first["booking_reference"]}
    assert len(front.bookings()) == 1


def test_concurrent_confirmations_for_the_last_room_book_it_once() -> None:
    front = desk()
    stay = front.check("suite", THURSDAY, 2)  # the hotel has one suite
    guests = [f"Guest Number {n}" for n in range(16)]
    for guest in guests:
        front.book(guest, stay, confirmed=False)
    start = threading.Barrier(len(guests))

    def confirm(guest: str) -> dict[str, Any]:
        start.wait()
        result: dict[str, Any] = front.book(guest, stay, confirmed=True)
        return result

    with ThreadPoolExecutor(len(guests)) as pool:
        results = list(pool.map(confirm, guests))
    assert sum(result["booked"] for result in results) == 1
    assert all("No suite room is free" in r["reason"] for r in results if not r["booked"])
    assert len(front.bookings()) == 1
    assert front.quote(stay)["available"] is False


def test_summaries_never_confirmed_are_forgotten_oldest_first_beyond_the_limit() -> None:
    front = desk()
    stay = front.check("single", THURSDAY, 1)
    for n in range(tools.MAX_PENDING + 1):
        front.book(f"Guest {n}", stay, confirmed=False)
    assert front.book("Guest 1", stay, confirmed=True)["booked"] is True
    assert front.book("Guest 0", stay, confirmed=True)["booked"] is False  # the oldest was dropped


def test_the_profile_declares_both_tools_with_literal_room_types_and_an_iso_date() -> None:
    definitions = {tool["name"]: tool["parameters"] for tool in HOTEL.agent.tools}
    assert set(definitions) == {"get_room_rate", "book_room"}
    assert definitions["get_room_rate"]["properties"]["room_type"]["enum"] == [
        "single",
        "double",
        "king",
        "suite",
    ]
    assert definitions["get_room_rate"]["properties"]["check_in"]["format"] == "date"
    assert definitions["book_room"]["properties"]["confirmed"] == {
        "default": False,
        "description": "true only after the guest heard the summary and said yes to it.",
        "type": "boolean",
    }
    assert "confirmed" not in definitions["book_room"]["required"]
    assert HOTEL.delegate is None


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"room_type": "penthouse", "check_in": SOON}, "room_type"),
        ({"room_type": "king", "check_in": "next Friday"}, "check_in"),
        ({"room_type": "king", "check_in": "2020-01-14"}, "in the past"),
        ({"room_type": "king", "check_in": SOON, "nights": 0}, "nights"),
    ],
)
async def test_bad_arguments_come_back_to_the_model_as_an_error_naming_what_is_wrong(
    arguments: dict[str, Any], field: str
) -> None:
    runner = ToolRunner(HOTEL.tools)
    outcome = await runner.run("call_1", "get_room_rate", json.dumps(arguments))
    assert outcome.status == "invalid_arguments"
    assert field in json.loads(outcome.output)["error"]


async def test_a_booking_through_the_agent_takes_a_summary_then_a_confirmation(engines: Engines) -> None:
    check_in = (date.today() + timedelta(days=30)).isoformat()
    details = {"room_type": "king", "check_in": check_in, "nights": 2, "guest_name": "Grace Hopper"}
    turns = [
        {"call": {"name": "book_room", "arguments": details}},
        {"say": "Here is the summary. Shall I book that for you?"},
        {"call": {"name": "book_room", "arguments": {**details, "confirmed": True}}},
    ]
    async with talk_session(HOTEL, {"turns": turns}, engines) as talk:
        await talk.say("Please book a king room for two nights for Grace Hopper.", responses=2)
        await talk.say("Yes, book it.", responses=2)
    assert talk.finished() == [("book_room", "ok"), ("book_room", "ok")]
    summary, booking = talk.outputs()
    assert summary["needs_confirmation"] is True and "Grace Hopper" in summary["summary"]
    assert booking["booked"] is True
    reference = booking["booking_reference"]
    assert reference in talk.transcript(), "the agent reads the reference back"
    assert tools.DESK.bookings()[reference][0] == "Grace Hopper"


async def test_a_date_the_tool_refuses_is_read_back_to_the_caller_and_the_talk_goes_on(
    engines: Engines,
) -> None:
    turns = [
        {"call": {"name": "get_room_rate", "arguments": {"room_type": "king", "check_in": "next Friday"}}}
    ]
    async with talk_session(HOTEL, {"turns": turns}, engines) as talk:
        await talk.say("How much is a king room next Friday?", responses=2)
        await talk.say("Sorry, I mean the fourteenth.", responses=1)
    assert talk.finished() == [("get_room_rate", "invalid_arguments")]
    [output] = talk.outputs()
    assert "check_in" in output["error"]
    assert "get_room_rate function returned" in talk.transcript()
    assert talk.transcript().endswith("You said: Sorry, I mean the fourteenth.")


async def test_the_demo_scenario_plays_as_its_comments_say(engines: Engines) -> None:
    load_scenario(DEMO)  # what `realtalk emulate --scenario` does with it
    text = DEMO.read_text()
    assert text.count(DEMO_CHECK_IN) == 3
    # The demo's dates are fixed; a Thursday within the booking window keeps its amounts right.
    thursday = date.today() + timedelta(days=(3 - date.today().weekday()) % 7 + 7)
    async with talk_session(
        HOTEL, yaml.safe_load(text.replace(DEMO_CHECK_IN, thursday.isoformat())), engines
    ) as talk:
        await talk.say("How much is a king room for two nights from the fourteenth?", responses=2)
        await talk.say("Great, please book it for Ada Lovelace.", responses=2)
        await talk.say("Yes, please book it.", responses=2)
    assert talk.finished() == [("get_room_rate", "ok"), ("book_room", "ok"), ("book_room", "ok")]
    rate, summary, booking = talk.outputs()
    assert rate["total_usd"] == "415.80"  # what the scripted turns say
    assert "415.80 US dollars" in summary["summary"]
    assert booking["booked"] is True and booking["booking_reference"] in talk.transcript()
