"""The wire format: the paper's JSON, with times as RFC 1123 strings in GMT.

The domain speaks epoch milliseconds; this module turns incoming times (RFC 1123, ISO 8601, or
epoch milliseconds) into them and outgoing ones back into RFC 1123.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import date, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any
from uuid import UUID

from multidict import MultiMapping

from pex.domain.clock import DAY, HOUR, MINUTE, SECOND, Millis, to_datetime
from pex.domain.errors import DomainError, InvalidField
from pex.domain.event_log import EventListing, kinds_named
from pex.domain.listing import LONGEST_PAGE, Listing, statuses_named
from pex.domain.quotas import Quota
from pex.domain.negotiation import LATEST_INSTANT, LATEST_START, TermsChange

DEEPEST = 16  # levels of nesting a body may have (the deepest real one has 3)
# The domain's field names as the API writes them (the others are the same in both).
WIRE_NAMES = {"instance_type": "type", "fixed": "numInstancesFixed", "optional": "numInstancesOption",
              "start": "startTime", "end": "endTime", "memory_mb": "memoryMB", "disk_gb": "diskGB",
              "open_offers": "openOffers", "held_instance_hours": "heldInstanceHours",
              "proposals_per_minute": "proposalsPerMinute", "hold_until": "holdUntil",
              "reservation_id": "reservationId", "is_admin": "isAdmin", "max_price": "maxPrice"}
DOMAIN_NAMES = {wire: name for name, wire in WIRE_NAMES.items()}

# Reservation and instance ids in paths: UUIDs written the usual way (36 characters, either
# case); the other spellings Python would read (braces, urn:uuid:, no hyphens) name nothing.
UUID_PATTERN = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
LARGEST_SIZE = 2**31 - 1


class InvalidBody(DomainError):
    code = "INVALID_JSON"


def _refuse_constant(name: str) -> Any:
    raise InvalidBody(f"the body is not valid JSON: {name} is not a JSON number")


_WHOLE = Decimal(10) ** 18  # beyond every integer field's bounds: a larger whole number stays a float


def _read_number(text: str) -> int | Decimal:
    """A JSON number written with a fraction or an exponent. JSON has one kind of number, and
    JSON Schema counts 3.0 and 3e2 as integers: so do we (within 10**18, past which no field
    reaches); anything else is an exact Decimal (an amount must not lose digits on its way:
    1.0000000000000001 is not 1), for the field to refuse if it wants an integer."""
    value = Decimal(text)
    if value.copy_abs() < _WHOLE and value == value.to_integral_value():
        return int(value)
    return value


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or InvalidBody: UTF-8, standard JSON only (no NaN or
    Infinity), numbers Python can hold, and at most DEEPEST levels of nesting (deeper input
    would exhaust the parser's recursion)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBody("the body is not UTF-8") from None
    if not text.strip():
        return None
    try:
        body = json.loads(text, parse_constant=_refuse_constant, parse_float=_read_number)
    except json.JSONDecodeError as error:
        raise InvalidBody(f"the body is not valid JSON: {error.msg} at {error.pos}") from None
    except RecursionError:
        raise InvalidBody(f"the body nests deeper than {DEEPEST} levels") from None
    except ValueError:  # an integer too long to convert
        raise InvalidBody("the body holds a number too large to read") from None
    if _depth(body) > DEEPEST:
        raise InvalidBody(f"the body nests deeper than {DEEPEST} levels")
    return body


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            level.extend((child, depth + 1) for child in item)
    return deepest


@functools.lru_cache(maxsize=16_384)  # (an answer's price shows each hour's edges; hours repeat)
def format_time(instant: Millis) -> str | int:
    """'Mon, 17 Aug 2009 04:49:03 GMT' (seconds: RFC 1123 has no finer unit). An instant no
    calendar can show (which input checks now refuse) is shown as the number it is."""
    try:
        return format_datetime(to_datetime(instant).astimezone(timezone.utc), usegmt=True)
    except (OverflowError, OSError, ValueError):
        return instant


# ---------------------------------------------------------------------- the time grammar
#
# A time a client sends is one of three spellings, and the API description publishes the exact
# grammar as a `pattern` (pex/http/openapi.py), built here from the same pieces:
#   - RFC 1123 in GMT, as HTTP dates are written: 'Mon, 17 Aug 2009 04:49:03 GMT' (the day name
#     is not checked against the date);
#   - ISO 8601 / RFC 3339: '2009-08-17T04:49:03Z', with 'T', 't' or a space between date and
#     time, seconds and up to 9 digits of fraction optional, and 'Z', 'z', '+hh:mm' or '-hh:mm'
#     (no zone: GMT, as in the paper); no leap second (':60');
#   - epoch milliseconds, an integer.
# Only real dates match (no 30 February; 29 February in leap years), from 1 January 1970 to the
# field's last day: 24 January 9900 for startTime (LATEST_START: a reservation that starts then
# can still end by 9999 however long it lasts), 31 December 9999 for endTime. On those two days an
# ISO time carries only a zone that keeps it in range (on 1970-01-01 'Z', '+00:00' or '-hh:mm';
# on the last day 'Z', '-00:00' or '+hh:mm'). So a string matches the published pattern if and
# only if it is read here, and always to an instant the domain accepts.

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_MONTHS = (1, 3, 5, 7, 8, 10, 12)
_SHORT_MONTHS = (4, 6, 9, 11)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def _one_of(*parts: str) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _digit(low: int, high: int) -> str:
    return str(low) if low == high else f"[{low}{high}]" if high == low + 1 else f"[{low}-{high}]"


def _number(low: int, high: int, width: int) -> str:
    """The zero-padded decimal numbers low..high written with `width` digits."""
    assert 0 <= low <= high < 10 ** width
    if width == 1:
        return _digit(low, high)
    unit = 10 ** (width - 1)
    first, last = divmod(low, unit), divmod(high, unit)
    if first[0] == last[0]:
        return str(first[0]) + _number(first[1], last[1], width - 1)
    parts = []
    full_from, full_to = first[0] + (first[1] != 0), last[0] - (last[1] != unit - 1)
    if first[1] != 0:
        parts.append(str(first[0]) + _number(first[1], unit - 1, width - 1))
    if full_from <= full_to:
        parts.append(_digit(full_from, full_to) + ("[0-9]" if width == 2 else f"[0-9]{{{width - 1}}}"))
    if last[1] != unit - 1:
        parts.append(str(last[0]) + _number(0, last[1], width - 1))
    return _one_of(*parts)


def _numbers(values: list[int], width: int) -> str:
    """Any of `values` (sorted, distinct), runs of consecutive ones written as ranges."""
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return _one_of(*(_number(low, high, width) for low, high in runs))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_LEAP_ENDINGS = [y for y in range(1, 100) if y % 4 == 0]  # of a century's years, those that leap


def _leap_years(first: int, last: int) -> str:
    """The leap years from `first` to `last`, four digits each."""
    whole, turns, partial = [], [], []
    for century in range(first // 100, last // 100 + 1):
        endings = [y for y in _LEAP_ENDINGS if first <= century * 100 + y <= last]
        if endings == _LEAP_ENDINGS:
            whole.append(century)
        elif endings:
            partial.append(f"{century:02d}" + _numbers(endings, 2))
        if first <= century * 100 <= last and _is_leap(century * 100):
            turns.append(century)
    parts = [*partial]
    if whole:
        parts.append(_numbers(whole, 2) + _numbers(_LEAP_ENDINGS, 2))
    if turns:
        parts.append(_numbers(turns, 2) + "00")
    return _one_of(*parts)


def _date(years: str, month: int, days: str, iso: bool) -> str:
    return f"{years}-{month:02d}-{days}" if iso else f"{days} {_MONTH_NAMES[month - 1]} {years}"


def _days_in(month: int, year: int | None) -> int:
    """Days in `month` of `year` (of any year, if None: February has 28)."""
    if month == 2:
        return 29 if year is not None and _is_leap(year) else 28
    return 31 if month in _LONG_MONTHS else 30


def _whole_years(first: int, last: int, iso: bool) -> str:
    """Every real date of the years `first` to `last`."""
    years = _number(first, last, 4)
    by_length = [(_LONG_MONTHS, 31), (_SHORT_MONTHS, 30), ((2,), 28)]
    if iso:
        month_days = _one_of(*(f"{_numbers(list(months), 2)}-{_number(1, days, 2)}" for months, days in by_length))
        common = f"{years}-{month_days}"
    else:
        day_months = _one_of(*(f"{_number(1, days, 2)} {_one_of(*(_MONTH_NAMES[m - 1] for m in months))}"
                               for months, days in by_length))
        common = f"{day_months} {years}"
    leap = [f"{_date(_leap_years(first, last), 2, '29', iso)}"] if any(map(_is_leap, range(first, last + 1))) else []
    return _one_of(common, *leap)


def _dates(first: date, last: date, iso: bool) -> str:
    """Every real date from `first` to `last` (inclusive)."""
    parts = []
    lo_year = first.year if first.timetuple().tm_yday > 1 else None
    hi_year = last.year if (last.month, last.day) != (12, 31) else None
    whole_from = first.year + (lo_year is not None)
    whole_to = last.year - (hi_year is not None)
    for year in sorted({y for y in (lo_year, hi_year) if y is not None}):
        for month in range(1, 13):
            day_from = first.day if (year, month) == (first.year, first.month) else 1
            day_to = last.day if (year, month) == (last.year, last.month) else _days_in(month, year)
            if (year, month) < (first.year, first.month) or (year, month) > (last.year, last.month):
                continue
            parts.append(_date(str(year), month, _number(day_from, day_to, 2), iso))
    if whole_from <= whole_to:
        parts.append(_whole_years(whole_from, whole_to, iso))
    return _one_of(*parts)


_HOUR_MINUTE = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_ISO_TIME = rf"{_HOUR_MINUTE}(?::[0-5][0-9](?:\.[0-9]{{1,9}})?)?"
_OFFSET = _HOUR_MINUTE
_ANY_ZONE = rf"(?:[Zz]|[+-]{_OFFSET})?"
_ZONE_NOT_AHEAD = rf"(?:[Zz]|-{_OFFSET}|\+00:00)?"  # local time not ahead of GMT: never earlier in GMT
_ZONE_NOT_BEHIND = rf"(?:[Zz]|\+{_OFFSET}|-00:00)?"  # never later in GMT
_SEPARATOR = "[Tt ]"


def _iso_pattern(last: date) -> str:
    """ISO 8601 times from 1970-01-01 to `last` (the first and last day with only the zones that
    keep them in range)."""
    inner = _dates(date(1970, 1, 2), last - timedelta(days=1), True)
    return _one_of(f"{inner}{_SEPARATOR}{_ISO_TIME}{_ANY_ZONE}",
                   f"1970-01-01{_SEPARATOR}{_ISO_TIME}{_ZONE_NOT_AHEAD}",
                   f"{last.isoformat()}{_SEPARATOR}{_ISO_TIME}{_ZONE_NOT_BEHIND}")


def _rfc_pattern(last: date) -> str:
    return f"{_one_of(*_DAY_NAMES)}, {_dates(date(1970, 1, 1), last, False)} {_HOUR_MINUTE}:[0-5][0-9] GMT"


def _millis(year: int, month: int, day: int, hour: int, minute: int, second: int = 0, fraction: str = "") -> Millis:
    days = date(year, month, day).toordinal() - _EPOCH_DAY
    return days * DAY + hour * HOUR + minute * MINUTE + second * SECOND + int((fraction + "000")[:3])


# The last calendar day of each time field: the day of LATEST_START (so that the latest start can
# still end by 9999 with the longest duration) and of LATEST_INSTANT.
_LAST_DAY = {"startTime": date(9900, 1, 24), "endTime": date(9999, 12, 31)}
LATEST_MILLIS = {"startTime": LATEST_START, "endTime": LATEST_INSTANT}
assert all(_millis(day.year, day.month, day.day, 23, 59, 59, "999") == LATEST_MILLIS[field]
           for field, day in _LAST_DAY.items())
# Exact, per field: what a client may send (regular expressions without anchors, to fullmatch).
RFC1123_IN = {field: _rfc_pattern(last) for field, last in _LAST_DAY.items()}
ISO8601_IN = {field: _iso_pattern(last) for field, last in _LAST_DAY.items()}
# What the API answers with: RFC 1123 in GMT.
RFC1123_OUT = rf"{_one_of(*_DAY_NAMES)}, [0-9]{{2}} {_one_of(*_MONTH_NAMES)} [0-9]{{4}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} GMT"

_COMPILED = {field: (re.compile(RFC1123_IN[field]), re.compile(ISO8601_IN[field])) for field in _LAST_DAY}
_RFC_PARTS = re.compile(r"[A-Za-z]{3}, ([0-9]{2}) ([A-Za-z]{3}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT")
_ISO_PARTS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
                        r"(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))?")


def parse_time(field: str, value: Any) -> Millis:
    """A time as a client sent it (see the grammar above), in epoch milliseconds: a string that
    matches the field's grammar, or an integer (whose range the domain checks)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidField(field, "must be an RFC 1123 or ISO 8601 time, or epoch milliseconds")
    if isinstance(value, int):
        return value
    rfc, iso = _COMPILED.get(field, _COMPILED["endTime"])
    # (each field's grammar is a subset of the general patterns, which only split it in parts)
    rfc_parts = _RFC_PARTS.fullmatch(value) if rfc.fullmatch(value) else None
    if rfc_parts is not None:
        day, month, year, hour, minute, second = rfc_parts.groups()
        return _millis(int(year), _MONTH_NAMES.index(month) + 1, int(day), int(hour), int(minute), int(second))
    iso_parts = _ISO_PARTS.fullmatch(value) if iso.fullmatch(value) else None
    if iso_parts is not None:
        year, month, day, hour, minute, second, fraction, sign, zone_hours, zone_minutes = iso_parts.groups()
        local = _millis(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), fraction or "")
        offset = (int(zone_hours) * HOUR + int(zone_minutes) * MINUTE) * (-1 if sign == "-" else 1) if sign else 0
        return local - offset
    last = _LAST_DAY.get(field, _LAST_DAY["endTime"])
    raise InvalidField(field, f"{value[:64]!r} is not a time from 1970 to {last.day} {_MONTH_NAMES[last.month - 1]} "
                              f"{last.year}: RFC 1123 in GMT "
                              "('Mon, 17 Aug 2009 04:49:03 GMT'), ISO 8601 ('2009-08-17T04:49:03Z') or epoch "
                              "milliseconds")


def proposal_in(body: Any) -> TermsChange:
    """A proposal in the paper's names (Fig. 7) as the terms it gives; null is the same as
    leaving a field out. Each field is judged on its own here and in TermsChange; the rules
    between fields are TermsChange.applied_to's, which alone knows the terms a partial
    proposal changes."""
    if not isinstance(body, dict):
        raise InvalidField("proposal", "must be a JSON object")
    given = {key: value for key, value in body.items() if value is not None}
    kind = given.get("type")
    if kind is not None:
        if not isinstance(kind, str):
            raise InvalidField("type", "must be a string")
        kind = kind.upper() if kind.isascii() else kind  # a known size in any mix of cases
    return TermsChange(
        instance_type=kind, template=given.get("template"), fixed=given.get("numInstancesFixed"),
        optional=given.get("numInstancesOption"), duration=given.get("duration"),
        start=parse_time("startTime", given["startTime"]) if "startTime" in given else None,
        end=parse_time("endTime", given["endTime"]) if "endTime" in given else None,
        max_price=given.get("maxPrice"))


def prices_in(body: Any) -> tuple[dict[str, Any], Any]:
    """An admin's change of the rate card: `rates` (size -> price per instance-hour, as decimal
    strings or numbers; the domain judges them) and, optionally, `currency`."""
    if not isinstance(body, dict):
        raise InvalidField("body", "must be a JSON object")
    for name in body:
        if name not in ("rates", "currency"):
            raise InvalidField(str(name)[:64], "is not part of the rate card; give rates and, optionally, currency",
                               as_given=True)
    rates = body.get("rates")
    if not isinstance(rates, dict):
        raise InvalidField("rates", "must be an object of sizes and their prices per instance-hour")
    return rates, body.get("currency")


def usage_period_in(query: MultiMapping[str]) -> tuple[Millis | None, Millis | None]:
    """A statement's `from` and `to` (times; left out: the first of this month, and now)."""
    start = _query_time("from", query["from"]) if "from" in query else None
    end = _query_time("to", query["to"]) if "to" in query else None
    if start is not None and end is not None and end <= start:
        raise InvalidField("to", "must be after from", as_given=True)
    return start, end


def listing_in(query: MultiMapping[str], statuses: Collection[str]) -> Listing:
    """A list's query string: `limit`, `after` (the last id of the previous page), `status`
    (one or more, comma-separated) and `from`/`to` (a period the items meet)."""
    limit = _page_limit(query)
    after = query.get("after")
    if after is not None and not re.fullmatch(UUID_PATTERN, after):
        raise InvalidField("after", "must be the id of the last item of the previous page")
    names = [name for given in query.getall("status", []) for name in given.split(",")]
    return Listing(after=UUID(after) if after else None, limit=limit,
                   statuses=statuses_named(names, statuses),
                   start=_query_time("from", query["from"]) if "from" in query else None,
                   end=_query_time("to", query["to"]) if "to" in query else None)


def events_in(query: MultiMapping[str], reservation: UUID | None = None) -> EventListing:
    """A page of the log as the query string asks for it: `limit`, `after` (the position of the
    last event of the previous page), `type` (one or more event types, comma-separated:
    "Confirmed", "Reservation.Confirmed" or "Reservation") and `reservation` (an id: its events
    and its instances'), unless the path names the reservation."""
    limit = _page_limit(query)
    after = query.get("after", "0")
    if not re.fullmatch(r"[0-9]{1,15}", after):
        raise InvalidField("after", "must be the position of the last event of the previous page (a whole number, "
                                    "0 or more)")
    if reservation is None and "reservation" in query:
        given = query["reservation"]
        if not re.fullmatch(UUID_PATTERN, given):
            raise InvalidField("reservation", "must be a reservation's id")
        reservation = UUID(given)
    names = [name for given in query.getall("type", []) for name in given.split(",")]
    return EventListing(after=int(after), limit=limit, kinds=kinds_named(names), reservation=reservation)


def _page_limit(query: MultiMapping[str]) -> int:
    """`limit`: how many items a page may hold (the domain bounds it: Listing, EventListing)."""
    limit = query.get("limit", str(LONGEST_PAGE))
    if not re.fullmatch(r"[0-9]{1,4}", limit):
        raise InvalidField("limit", f"must be a whole number from 1 to {LONGEST_PAGE}")
    return int(limit)


def _query_time(field: str, value: str) -> Millis:
    """A time in a query string, where epoch milliseconds are written in digits."""
    if not re.fullmatch(r"[0-9]{1,15}", value):
        return parse_time(field, value)
    if int(value) > LATEST_INSTANT:
        raise InvalidField(field, "must be a time from 1970 to 9999", as_given=True)
    return int(value)


def quota_in(body: Any) -> dict[str, Any]:
    """An admin's quota change in the API's names (openOffers, ...) as the domain's, values as
    given (the domain judges them)."""
    names = [WIRE_NAMES[f.name] for f in fields(Quota)]
    if not isinstance(body, dict) or not body:
        raise InvalidField("quota", f"must be an object with one or more of {', '.join(names)}")
    for name in body:
        if name not in names:
            raise InvalidField(str(name)[:64], f"is not a quota; quotas are {', '.join(names)}", as_given=True)
    return {DOMAIN_NAMES[name]: value for name, value in body.items()}


def period_in(query: MultiMapping[str]) -> tuple[Millis | None, Millis | None, Millis]:
    """`from`, `to` (times; left out: the service's now, and a day after `from`) and `step`
    (milliseconds, default an hour) of a question about capacity over time."""
    start = _query_time("from", query["from"]) if "from" in query else None
    end = _query_time("to", query["to"]) if "to" in query else None
    step = query.get("step", str(HOUR))
    if not re.fullmatch(r"[0-9]{1,12}", step) or int(step) < MINUTE:
        raise InvalidField("step", f"must be milliseconds, at least {MINUTE} (a minute)", as_given=True)
    if start is not None and end is not None and end <= start:
        raise InvalidField("to", "must be after from", as_given=True)
    return start, end, int(step)


def node_size_in(body: Mapping[str, Any]) -> dict[str, Any]:
    """The size an admin gives a new node (cpus, memoryMB, diskGB: those given), in the
    domain's names; the values are the domain's to judge."""
    return {DOMAIN_NAMES.get(key, key): body[key] for key in ("cpus", "memoryMB", "diskGB") if key in body}
