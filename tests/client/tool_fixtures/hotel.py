"""Sample hotel front-desk tools for the tool tests: a pydantic model argument, a dotted attribute."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Guest(BaseModel):
    """Who the booking is for."""

    name: str = Field(description="The guest's full name.")
    email: str | None = None


class FrontDesk:
    """Tools that share one booking ledger."""

    def __init__(self) -> None:
        self.bookings: list[tuple[str, str]] = []

    def book_room(
        self, room: Literal["single", "double"], guest: Guest, nights: int = 1
    ) -> dict[str, object]:
        """Book a room for a guest; ask the guest to confirm first."""
        self.bookings.append((room, guest.name))
        return {"booked": room, "guest": guest.name, "nights": nights, "guest_type": type(guest).__name__}


desk = FrontDesk()
