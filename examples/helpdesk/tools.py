"""Tools of the help-desk example: look up an IT ticket by the ID the caller says or spells.

Callers read ticket IDs in many ways ("XR-4892", "X R 4 8 9 2", "x-ray romeo four eight nine
two"), and the transcript of what they said comes in any of those forms. The tool takes the ID as
heard and normalises it with ``normalise_ticket_id``, plain Python you can unit-test, instead of
trusting the model to rewrite it.

Replace ``TICKETS`` and ``get_ticket_status``'s lookup with your ticket system's client; keep the
shape of the results: a found ticket, or ``found: false`` with a sentence saying what to do.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field

# Ticket IDs are two letters and four digits: XR-4892.
TICKET_ID = re.compile(r"([A-Z]{2})(\d{4})")

# Stands in for the ticket system. Times are UTC.
TICKETS: dict[str, dict[str, str]] = {
    "XR-4892": {
        "summary": "VPN disconnects every 20 minutes on the office Wi-Fi",
        "status": "in progress",
        "owner": "Dana Whitfield, network team",
        "updated": "2026-03-02 14:10",
    },
    "XR-4901": {
        "summary": "New laptop for a starter in finance",
        "status": "resolved",
        "owner": "Sam Okafor, desktop support",
        "updated": "2026-03-01 09:45",
    },
    "KB-1207": {
        "summary": "Shared mailbox not visible in Outlook",
        "status": "waiting for the caller",
        "owner": "Priya Raman, messaging team",
        "updated": "2026-02-27 16:30",
    },
}

# The NATO spelling alphabet, with the spellings people also use.
_LETTER_WORDS = {
    "alfa": "A", "alpha": "A", "bravo": "B", "charlie": "C", "delta": "D", "echo": "E",
    "foxtrot": "F", "golf": "G", "hotel": "H", "india": "I", "juliet": "J", "juliett": "J",
    "kilo": "K", "lima": "L", "mike": "M", "november": "N", "oscar": "O", "papa": "P",
    "quebec": "Q", "romeo": "R", "sierra": "S", "tango": "T", "uniform": "U", "victor": "V",
    "whiskey": "W", "whisky": "W", "xray": "X", "yankee": "Y", "zulu": "Z",
}  # fmt: skip
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "niner": "9",
}  # fmt: skip
# Words around an ID that carry no character of it: "ticket number X R dash 4 8 9 2".
_SKIPPED_WORDS = {"my", "ticket", "id", "number", "no", "is", "the", "dash", "hyphen", "minus"}
_REPEATS = {"double": 2, "triple": 3}
_SEPARATORS = re.compile(r"[^a-z0-9]+")  # spaces, dashes, dots, any punctuation


def normalise_ticket_id(heard: str) -> str | None:
    """The ticket ID in ``heard`` as ``XR-4892``, or ``None`` if it is not two letters and four digits.

    Accepts the ID written ("XR-4892", "xr4892", "XR 4892"), spelled ("X R 4 8 9 2"), in the
    NATO alphabet ("x-ray romeo four eight nine two"), with "double"/"triple" ("double four"),
    and with words like "ticket" or "dash" around it.
    """
    # "x-ray" is one word, not "x" and "ray".
    text = re.sub(r"\bx[\s-]ray\b", "xray", heard.lower())
    characters: list[str] = []
    repeat = 1
    for word in _SEPARATORS.split(text):
        if not word or word in _SKIPPED_WORDS:
            continue
        if word in _REPEATS:
            repeat = _REPEATS[word]
            continue
        spelled = _LETTER_WORDS.get(word) or _DIGIT_WORDS.get(word)
        if spelled is None:
            spelled = word.upper()
        # "double four" is 44; "double" before a whole word ("double XR") means nothing here.
        characters.append(spelled * repeat if len(spelled) == 1 else spelled)
        repeat = 1
    match = TICKET_ID.fullmatch("".join(characters))
    return f"{match[1]}-{match[2]}" if match else None


def get_ticket_status(
    ticket_id: Annotated[
        str,
        Field(
            description=(
                "The ticket ID exactly as the caller said or spelled it, e.g. 'XR-4892', "
                "'X R 4 8 9 2' or 'x-ray romeo four eight nine two'."
            )
        ),
    ],
) -> dict[str, Any]:
    """Look up an IT help-desk ticket: its status, who owns it and when it was last updated."""
    normalised = normalise_ticket_id(ticket_id)
    if normalised is None:
        return {
            "found": False,
            "heard": ticket_id,
            "message": (
                "That is not a ticket ID: they are two letters and four digits, like XR-4892. "
                "Ask the caller to spell it, one character at a time."
            ),
        }
    ticket = TICKETS.get(normalised)
    if ticket is None:
        return {
            "found": False,
            "ticket_id": normalised,
            "message": (
                f"There is no ticket {normalised}. Read the ID back to the caller character by "
                "character and ask them to check it."
            ),
        }
    return {"found": True, "ticket_id": normalised, **ticket}
