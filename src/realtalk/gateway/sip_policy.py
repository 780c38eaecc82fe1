"""Which phone calls the gateway answers: the profile's ``[sip]`` table, and its decisions (§5).

Pure: no I/O and no clock (``decide`` is given the time), so every rule is a plain function of
its inputs. ``sip.py`` does the I/O around it.

A profile file's ``[sip]`` table (every key optional)::

    [sip]
    transfer_to = "tel:+14155550123"   # offers the model transfer_to_human (a refer to this URI)
    greeting = "Say that they reached the Grand Hotel front desk and ask how you can help."
    blocklist = ["+14255550100", "+1900*", "anonymous"]   # numbers; "*" ends a prefix
    dtmf_timeout_s = 1.5               # keypad digits are collected until "#" or this much quiet

    [sip.hours]                         # absent: always open
    time_zone = "Europe/Oslo"
    mon = "08:00-17:00"                 # days not named are closed; "daily" sets every day
    sat = ["10:00-12:00", "13:00-15:00"]
    closed_on = ["2026-12-25"]

    [sip.reject_status]                 # the SIP status of each refusal (these are the defaults)
    blocked = 603
    closed = 480
    busy = 486
    over_budget = 480
    unavailable = 503

Why those statuses (RFC 3261 §21): **603 Decline** for a blocked caller: the callee will not take
the call, definitively and without saying why (what the API itself answers by default, and what
carriers answer for blocked numbers), so nothing retries it elsewhere. **480 Temporarily
Unavailable** outside opening hours and once a daily budget is spent: the callee exists but cannot
take calls *now*; a caller retrying later may succeed. **486 Busy Here** when the gateway is at its
session limits: this end system takes no more calls at the moment. **503 Service Unavailable** when
the gateway cannot serve at all (shutting down, the ledger unreachable): a SIP proxy may try
another server.

``greeting``: a sentence for the model (the first response's instructions) rather than a recording,
so the agent greets in its own voice and language. Absent: the agent greets as its instructions say
(a plain ``response.create``); ``false``: the agent waits for the caller to speak first.

Callers are named in logs, metrics labels never, and the ledger by :func:`mask_number`:
``+142555512112`` → ``+1425…12`` (the country code and three more digits, and the last two: enough
to tell callers apart in a day's log, not enough to call anyone back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from realtalk.errors import ConfigError

__all__ = [
    "DEFAULT_REJECT_STATUS",
    "Accept",
    "CallerId",
    "OpeningHours",
    "Reject",
    "RejectReason",
    "SipPolicy",
    "caller_from_headers",
    "mask_number",
    "parse_sip_policy",
]

RejectReason = Literal["blocked", "closed", "busy", "over_budget", "unavailable"]

DEFAULT_REJECT_STATUS: Final[Mapping[RejectReason, int]] = {
    "blocked": 603,  # Decline
    "closed": 480,  # Temporarily Unavailable
    "busy": 486,  # Busy Here
    "over_budget": 480,  # Temporarily Unavailable (until the budget's day ends)
    "unavailable": 503,  # Service Unavailable
}
DEFAULT_DTMF_TIMEOUT_S: Final = 1.5
ANONYMOUS: Final = "anonymous"
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_KEYS: Final = frozenset({"transfer_to", "greeting", "blocklist", "dtmf_timeout_s", "hours", "reject_status"})
_HOURS_KEYS: Final = frozenset({"time_zone", "daily", "closed_on", *_DAYS})
_RANGE: Final = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_NUMBER_ENTRY: Final = re.compile(r"^\+?\d{2,15}\*?$")
_SEPARATORS: Final = re.compile(r"[\s().\-]")
_URI_IN_BRACKETS: Final = re.compile(r"<([^>]*)>")
_EXAMPLE: Final = '[sip]\ntransfer_to = "tel:+14155550123"\nblocklist = ["+1900*"]'
_MIN_HIDDEN_DIGITS: Final = 4
_TWO_DIGIT_COUNTRY_CODES: Final = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)


@dataclass(frozen=True)
class CallerId:
    """Who is calling: the number from the SIP headers (``None``: withheld or not a number)."""

    number: str | None

    @property
    def masked(self) -> str:
        """The number as logs and the ledger show it (``anonymous`` when there is none)."""
        return mask_number(self.number) if self.number else ANONYMOUS


def _country_code_digits(digits: str) -> int:
    """How many of an E.164 number's leading digits are its country code (ITU-T E.164 zones)."""
    if digits[:1] in ("1", "7"):
        return 1
    if digits[:2] in _TWO_DIGIT_COUNTRY_CODES:
        return 2
    return 3


def mask_number(number: str) -> str:
    """``+142555512112`` → ``+1425…12``: the country code and the next three digits, and the
    last two; never fewer than four digits hidden (a short number shows less of its start). A
    number without ``+`` has no known country code: its first three digits are kept."""
    digits = number.lstrip("+")
    plus = "+" if number.startswith("+") else ""
    kept = (_country_code_digits(digits) if plus else 0) + 3
    kept = max(0, min(kept, len(digits) - 2 - _MIN_HIDDEN_DIGITS))
    return f"{plus}{digits[:kept]}…{digits[-2:]}"


def _normalise_number(text: str) -> str | None:
    """``+1 (425) 555-0123`` → ``+14255550123``; ``None`` when it is not a phone number."""
    compact = _SEPARATORS.sub("", text)
    if re.fullmatch(r"\+?\d{2,20}", compact):
        return compact
    return None


def _uri_user(value: str) -> str | None:
    """The user part of a From/P-Asserted-Identity header value (``"Ann" <sip:+1425…@host>;tag=x``)."""
    bracketed = _URI_IN_BRACKETS.search(value)
    uri = bracketed.group(1) if bracketed else value.split(";", 1)[0]
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips", "tel"):
        return None
    user = rest.split("@", 1)[0] if scheme.lower() != "tel" else rest
    return user.split(";", 1)[0].strip() or None


def caller_from_headers(sip_headers: Sequence[Mapping[str, Any]]) -> CallerId:
    """The caller's number from the webhook's ``sip_headers`` (§5.3): the network-asserted
    ``P-Asserted-Identity`` when present, else ``From``. Header names are case-insensitive."""
    values: dict[str, str] = {}
    for header in sip_headers:
        name, value = header.get("name"), header.get("value")
        if isinstance(name, str) and isinstance(value, str):
            values.setdefault(name.strip().lower(), value)
    for name in ("p-asserted-identity", "from"):
        value = values.get(name)
        if value is None:
            continue
        user = _uri_user(value)
        number = _normalise_number(user) if user else None
        if number is not None:
            return CallerId(number)
    return CallerId(None)


@dataclass(frozen=True)
class _Window:
    start: time
    end: time | None  # None: midnight at the end of the day

    def holds(self, moment: time) -> bool:
        """Whether ``moment`` of this window's own day is in it (a window that runs past
        midnight, like 22:00-06:00, holds from its start to the end of its day here)."""
        if self.end is None or self.end <= self.start:
            return self.start <= moment
        return self.start <= moment < self.end

    def spills_into(self, moment: time) -> bool:
        """Whether ``moment`` of the next day is in the part of this window past midnight."""
        return self.end is not None and self.end <= self.start and moment < self.end


@dataclass(frozen=True)
class OpeningHours:
    """When calls are taken, on the local clock of ``time_zone``."""

    time_zone: ZoneInfo
    days: Mapping[int, tuple[_Window, ...]]  # weekday (Monday 0) → windows
    closed_on: frozenset[date] = frozenset()

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` (timezone-aware) falls in a window."""
        local = now.astimezone(self.time_zone)
        moment = local.time().replace(tzinfo=None)
        today = local.date()
        if today not in self.closed_on and any(
            window.holds(moment) for window in self.days.get(local.weekday(), ())
        ):
            return True
        yesterday = today - timedelta(days=1)
        return yesterday not in self.closed_on and any(
            window.spills_into(moment) for window in self.days.get(yesterday.weekday(), ())
        )


@dataclass(frozen=True)
class Accept:
    """Answer the call."""


@dataclass(frozen=True)
class Reject:
    """Decline the call with SIP ``status_code`` because of ``reason``."""

    reason: RejectReason
    status_code: int


@dataclass(frozen=True)
class SipPolicy:
    """The profile's ``[sip]`` table, checked (see the module docstring)."""

    transfer_to: str | None = None
    greeting: str | bool = True  # True: a plain response.create; False: none; str: its instructions
    blocked_numbers: frozenset[str] = frozenset()
    blocked_prefixes: tuple[str, ...] = ()
    block_anonymous: bool = False
    hours: OpeningHours | None = None
    reject_status: Mapping[RejectReason, int] = field(default_factory=lambda: dict(DEFAULT_REJECT_STATUS))
    dtmf_timeout_s: float = DEFAULT_DTMF_TIMEOUT_S

    def is_blocked(self, caller: CallerId) -> bool:
        number = caller.number
        if number is None:
            return self.block_anonymous
        bare = number.lstrip("+")
        if bare in self.blocked_numbers:
            return True
        return any(bare.startswith(prefix) for prefix in self.blocked_prefixes)

    def reject(self, reason: RejectReason) -> Reject:
        return Reject(reason, self.reject_status[reason])

    def decide(self, caller: CallerId, now: datetime) -> Accept | Reject:
        """The gateway's first answer to a ringing call: the blocklist, then the opening hours.
        (Session limits and budgets are asked after this, by the gateway's admission.)"""
        if self.is_blocked(caller):
            return self.reject("blocked")
        if self.hours is not None and not self.hours.is_open(now):
            return self.reject("closed")
        return Accept()


# -- parsing ------------------------------------------------------------------------------------------


def _error(source: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: [sip] {message}", variable="REALTALK_GATEWAY_PROFILE", example=_EXAMPLE)


def _check_keys(source: str, table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise _error(
            source, f"{where} has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _target(source: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _error(source, "transfer_to must be a tel: or sip: URI, like tel:+14155550123")
    scheme, sep, rest = value.strip().partition(":")
    if (
        not sep
        or scheme.lower() not in ("tel", "sip", "sips")
        or not rest.strip()
        or any(c.isspace() for c in rest)
    ):
        raise _error(
            source,
            f"transfer_to {value!r} is not a tel: or sip: URI (tel:+14155550123, sip:desk@example.com)",
        )
    return value.strip()


def _blocklist(source: str, value: Any) -> tuple[frozenset[str], tuple[str, ...], bool]:
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise _error(
            source, 'blocklist must be a list of numbers, like ["+14255550100", "+1900*", "anonymous"]'
        )
    numbers: set[str] = set()
    prefixes: list[str] = []
    anonymous = False
    for entry in value:
        compact = _SEPARATORS.sub("", entry)
        if compact.lower() == ANONYMOUS:
            anonymous = True
        elif _NUMBER_ENTRY.match(compact):
            bare = compact.lstrip("+")
            if bare.endswith("*"):
                prefixes.append(bare[:-1])
            else:
                numbers.add(bare)
        else:
            raise _error(
                source,
                f"blocklist entry {entry!r} is not a phone number (+14255550100), a prefix ending in * "
                "(+1900*), or anonymous",
            )
    return frozenset(numbers), tuple(prefixes), anonymous


def _clock(source: str, hours: str, minutes: str, text: str, *, end: bool) -> time | None:
    h, m = int(hours), int(minutes)
    if end and (h, m) == (24, 0):
        return None
    if h > 23 or m > 59:
        raise _error(source, f"hours: {text!r} is not a time range like 08:00-17:00")
    return time(h, m)


def _windows(source: str, day: str, value: Any) -> tuple[_Window, ...]:
    ranges = [value] if isinstance(value, str) else value
    if not isinstance(ranges, list) or not all(isinstance(text, str) for text in ranges):
        raise _error(source, f'hours.{day} must be a time range ("08:00-17:00") or a list of them')
    windows = []
    for text in ranges:
        for part in text.split(","):
            match = _RANGE.match(part)
            if match is None:
                raise _error(source, f"hours.{day}: {part.strip()!r} is not a time range like 08:00-17:00")
            start = _clock(source, match[1], match[2], part, end=False)
            end = _clock(source, match[3], match[4], part, end=True)
            assert start is not None
            if end == start:
                raise _error(source, f"hours.{day}: {part.strip()!r} is empty (use 00:00-24:00 for all day)")
            windows.append(_Window(start, end))
    return tuple(windows)


def _hours(source: str, value: Any) -> OpeningHours:
    if not isinstance(value, Mapping):
        raise _error(source, "hours must be a table ([sip.hours]) with time_zone and days")
    _check_keys(source, value, _HOURS_KEYS, "[sip.hours]")
    zone_name = value.get("time_zone")
    if not isinstance(zone_name, str):
        raise _error(source, 'hours needs a time_zone, like time_zone = "Europe/Oslo" (an IANA name)')
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        if not available_timezones():
            raise _error(
                source,
                f"hours.time_zone {zone_name!r} cannot be read: this system has no time zone database "
                "(install one: pip install tzdata, or the tzdata system package)",
            ) from None
        raise _error(
            source, f"hours.time_zone {zone_name!r} is not an IANA time zone (Europe/Oslo, America/New_York)"
        ) from None
    days: dict[int, tuple[_Window, ...]] = {}
    if "daily" in value:
        every = _windows(source, "daily", value["daily"])
        days = dict.fromkeys(range(7), every)
    for index, day in enumerate(_DAYS):
        if day in value:
            days[index] = _windows(source, day, value[day])
    closed = value.get("closed_on", [])
    if not isinstance(closed, list):
        raise _error(source, 'hours.closed_on must be a list of dates, like ["2026-12-25"]')
    closed_on: set[date] = set()
    for entry in closed:
        if isinstance(entry, date) and not isinstance(entry, datetime):
            closed_on.add(entry)
            continue
        try:
            closed_on.add(date.fromisoformat(str(entry)))
        except ValueError:
            raise _error(source, f"hours.closed_on: {entry!r} is not a date like 2026-12-25") from None
    if not any(days.values()):
        raise _error(
            source, "hours names no open day: every call would be refused (name days, or drop [sip.hours])"
        )
    return OpeningHours(zone, days, frozenset(closed_on))


def _statuses(source: str, value: Any) -> dict[RejectReason, int]:
    if not isinstance(value, Mapping):
        raise _error(source, "reject_status must be a table ([sip.reject_status]) of SIP statuses")
    _check_keys(source, value, frozenset(DEFAULT_REJECT_STATUS), "[sip.reject_status]")
    statuses = dict(DEFAULT_REJECT_STATUS)
    for reason, status in value.items():
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 699:
            raise _error(
                source, f"reject_status.{reason} must be a SIP failure status from 400 to 699, got {status!r}"
            )
        statuses[reason] = status
    return statuses


def parse_sip_policy(table: Any, source: str) -> SipPolicy:
    """The ``[sip]`` table of profile ``source``, checked.

    Raises:
        ConfigError: an unknown key or a value that is not what the module docstring shows.
    """
    if not isinstance(table, Mapping):
        raise _error(source, "sip must be a table ([sip])")
    _check_keys(source, table, _KEYS, "[sip]")
    greeting = table.get("greeting", True)
    if not isinstance(greeting, str | bool) or (isinstance(greeting, str) and not greeting.strip()):
        raise _error(source, "greeting must be a sentence for the model, true (the agent greets) or false")
    timeout = table.get("dtmf_timeout_s", DEFAULT_DTMF_TIMEOUT_S)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0.1 <= timeout <= 30:
        raise _error(source, f"dtmf_timeout_s must be a number of seconds from 0.1 to 30, got {timeout!r}")
    numbers, prefixes, anonymous = _blocklist(source, table.get("blocklist", []))
    return SipPolicy(
        transfer_to=_target(source, table["transfer_to"]) if "transfer_to" in table else None,
        greeting=greeting.strip() if isinstance(greeting, str) else greeting,
        blocked_numbers=numbers,
        blocked_prefixes=prefixes,
        block_anonymous=anonymous,
        hours=_hours(source, table["hours"]) if "hours" in table else None,
        reject_status=_statuses(source, table.get("reject_status", {})),
        dtmf_timeout_s=float(timeout),
    )
