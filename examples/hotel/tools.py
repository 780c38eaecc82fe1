"""Tools of the hotel example: room rates, and bookings that the guest must confirm first.

``book_room`` books in two steps, and the tool enforces it, not only the instructions: a call
without ``confirmed=true`` returns a summary with ``needs_confirmation``; a call with
``confirmed=true`` books only if that same booking was summarised before. A model that skips the
read-back gets the summary instead of a booking.

State lives in one ``FrontDesk`` per process (``DESK``), shared by every conversation and guarded
by a lock: sync tools run on worker threads, several at once. Replace ``FrontDesk`` with calls to
your property-management system; keep the results' shape.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from realtalk.client.tools import InvalidToolArguments

RoomType = Literal["single", "double", "king", "suite"]

NIGHTLY_RATE_USD: dict[str, Decimal] = {
    "single": Decimal("119.00"),
    "double": Decimal("149.00"),
    "king": Decimal("189.00"),
    "suite": Decimal("329.00"),
}
WEEKEND_SURCHARGE = Decimal("0.20")  # Friday and Saturday nights cost 20 % more
ROOMS: dict[str, int] = {"single": 6, "double": 8, "king": 4, "suite": 1}
BOOKING_WINDOW_DAYS = 365
MAX_NIGHTS = 14
# Summaries not yet confirmed, kept so that a confirmation can be matched to one (oldest dropped).
MAX_PENDING = 256
# Booking references: no 0/O, 1/I/L, so they survive being read aloud.
_REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Stay:
    """A room type from ``check_in`` for ``nights`` nights."""

    room_type: str
    check_in: date
    nights: int

    @property
    def check_out(self) -> date:
        return self.check_in + timedelta(days=self.nights)

    def night_dates(self) -> list[date]:
        return [self.check_in + timedelta(days=n) for n in range(self.nights)]


def nightly_rates_usd(stay: Stay) -> list[Decimal]:
    """The rate of each night of ``stay``: the room's rate, plus the weekend surcharge on Friday
    and Saturday nights."""
    base = NIGHTLY_RATE_USD[stay.room_type]
    weekend = (base * (1 + WEEKEND_SURCHARGE)).quantize(_CENT)
    return [weekend if night.weekday() in (4, 5) else base for night in stay.night_dates()]


def _usd(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _spoken_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


class FrontDesk:
    """Rooms, quotes and bookings of one hotel, safe to use from several threads at once.

    ``today`` gives the hotel's current date (tests pass a fixed one).
    """

    def __init__(self, today: Callable[[], date] = date.today) -> None:
        self._today = today
        self._lock = threading.Lock()
        self._bookings: dict[str, tuple[str, Stay]] = {}  # reference -> (guest, stay)
        self._pending: OrderedDict[tuple[str, Stay], None] = OrderedDict()

    def check(self, room_type: str, check_in: date, nights: int) -> Stay:
        """The stay, if its dates can be booked; else ``InvalidToolArguments`` saying why (the model
        gets the sentence as an error output, and can ask the guest again)."""
        today = self._today()
        if check_in < today:
            raise InvalidToolArguments(f"check_in {check_in.isoformat()} is in the past; today is {today}")
        if check_in > today + timedelta(days=BOOKING_WINDOW_DAYS):
            raise InvalidToolArguments(f"check_in can be at most {BOOKING_WINDOW_DAYS} days ahead")
        if not 1 <= nights <= MAX_NIGHTS:
            raise InvalidToolArguments(f"nights must be from 1 to {MAX_NIGHTS}")
        return Stay(room_type, check_in, nights)

    def quote(self, stay: Stay) -> dict[str, Any]:
        """Price and availability of ``stay``."""
        rates = nightly_rates_usd(stay)
        with self._lock:
            full = self._full_nights(stay)
        return {
            "room_type": stay.room_type,
            "check_in": stay.check_in.isoformat(),
            "check_out": stay.check_out.isoformat(),
            "nights": stay.nights,
            "nightly_usd": [_usd(rate) for rate in rates],
            "total_usd": _usd(sum(rates, Decimal(0))),
            "available": not full,
            **({"fully_booked_nights": [night.isoformat() for night in full]} if full else {}),
        }

    def book(self, guest_name: str, stay: Stay, *, confirmed: bool) -> dict[str, Any]:
        """Step one (not ``confirmed``): a summary to read back. Step two: the booking."""
        guest = " ".join(guest_name.split())
        key = (guest.casefold(), stay)
        total = sum(nightly_rates_usd(stay), Decimal(0))
        summary = (
            f"A {stay.room_type} room for {guest}, {stay.nights} night{'s' if stay.nights > 1 else ''} "
            f"from {_spoken_date(stay.check_in)} to {_spoken_date(stay.check_out)}, "
            f"{_usd(total)} US dollars in total."
        )
        with self._lock:  # check, then book, with no other call in between
            if confirmed:
                for reference, booked in self._bookings.items():
                    if (booked[0].casefold(), booked[1]) == key:
                        # A repeated confirmation (the model retrying) must not book twice.
                        return {"booked": True, "already_booked": True, "booking_reference": reference}
            full = self._full_nights(stay)
            if full:
                nights = ", ".join(night.isoformat() for night in full)
                return {
                    "booked": False,
                    "reason": f"No {stay.room_type} room is free on {nights}. Offer other rooms or dates.",
                }
            if not confirmed or key not in self._pending:
                self._pending[key] = None
                self._pending.move_to_end(key)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
                return {
                    "booked": False,
                    "needs_confirmation": True,
                    "summary": summary,
                    "next_step": (
                        "Read the summary to the guest and ask if you should book it. Only if they say "
                        "yes, call book_room again with the same details and confirmed=true."
                    ),
                }
            del self._pending[key]
            reference = self._new_reference()
            self._bookings[reference] = (guest, stay)
        return {"booked": True, "booking_reference": reference, "summary": summary}

    def bookings(self) -> dict[str, tuple[str, Stay]]:
        """A copy of the bookings by reference."""
        with self._lock:
            return dict(self._bookings)

    def _full_nights(self, stay: Stay) -> list[date]:
        # Called with the lock held.
        taken = [booked for _, booked in self._bookings.values() if booked.room_type == stay.room_type]
        return [
            night
            for night in stay.night_dates()
            if sum(1 for other in taken if other.check_in <= night < other.check_out) >= ROOMS[stay.room_type]
        ]

    def _new_reference(self) -> str:
        while True:
            reference = "HV-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(5))
            if reference not in self._bookings:
                return reference


DESK = FrontDesk()

_CheckInArg = Annotated[date, Field(description="The arrival date, as YYYY-MM-DD.")]
_NightsArg = Annotated[int, Field(ge=1, le=MAX_NIGHTS, description="How many nights.")]


def get_room_rate(room_type: RoomType, check_in: _CheckInArg, nights: _NightsArg = 1) -> dict[str, Any]:
    """The price of a stay in US dollars, night by night, and whether a room of that type is free."""
    return DESK.quote(DESK.check(room_type, check_in, nights))


def book_room(
    room_type: RoomType,
    check_in: _CheckInArg,
    nights: _NightsArg,
    guest_name: Annotated[str, Field(min_length=2, max_length=80, description="The guest's full name.")],
    confirmed: Annotated[
        bool,
        Field(description="true only after the guest heard the summary and said yes to it."),
    ] = False,
) -> dict[str, Any]:
    """Book a room. First call it without confirmed: it returns a summary to read to the guest.
    Call it again with confirmed=true only after the guest agreed to that summary."""
    return DESK.book(guest_name, DESK.check(room_type, check_in, nights), confirmed=confirmed)
