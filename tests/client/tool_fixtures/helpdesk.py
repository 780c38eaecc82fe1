"""Sample help-desk tools for the tool tests: loaded by module name and by file path."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from realtalk.client.tools import FunctionTool

TICKETS = {"XR-4892": "open", "AB-1234": "closed"}
NOT_A_FUNCTION = 42
calls: list[str] = []
"""Every ticket ID looked up since this module was loaded (module state the tools share)."""


def get_ticket(ticket_id: str) -> dict[str, Any]:
    """Look up a support ticket by its ID.

    Args:
        ticket_id: the ticket's ID as the caller spelled it, like XR-4892.
    """
    calls.append(ticket_id)
    return {"ticket_id": ticket_id, "status": TICKETS.get(ticket_id.upper(), "unknown")}


async def search_tickets(status: Literal["open", "closed"], limit: int = 5) -> list[str]:
    """Find tickets by status."""
    await asyncio.sleep(0)
    return [ticket for ticket, state in TICKETS.items() if state == status][:limit]


def lookups() -> int:
    """How many lookups this module's get_ticket has made."""
    return len(calls)


ticket_status = FunctionTool(get_ticket, name="ticket_status", timeout_s=2.0)
"""A tool object made in code: load_tools uses it as it is."""
