"""The portal's forms read into the domain's terms, with a message per field for what is
wrong: a form that comes back shows every value as it was typed and each message next to its
field; nothing is recorded.

A new reservation's terms are judged here as far as one field tells: an unknown size or
template, and the service's own limits on times (`negotiation.beyond_limits`: a start in the
past or too far ahead, a duration too long). The engine would answer such terms REJECT and
record it (an API client asked for that); a person at a form is better served by the form.
Whether the cluster has room is the negotiation's question, never the form's.

The most the visitor will pay (`max_price`, optional) is judged by the domain's own rule for an
amount (`pricing.amount_in`: more than 0, below a billion, at most two decimal places); left
empty it is no term of a new proposal, and in a counter or a change it keeps the one given
before (the form shows it).

Times: the page's script sends the instant the visitor picked in their own time zone
(`start_utc`, ISO 8601 in UTC; the page leaves that field empty, so only the script fills it);
without the script the typed date and time are read as UTC, which the form says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from pex.domain.clock import DAY, HOUR, MINUTE, Millis
from pex.domain.errors import InvalidField
from pex.domain.negotiation import Beyond, Limits, Terms, TermsChange, beyond_limits
from pex.domain.pricing import amount_in

UNITS = {"minutes": MINUTE, "hours": HOUR, "days": DAY}
FIELDS = ("instance_type", "template", "fixed", "optional", "start", "start_utc", "length", "duration", "unit",
          "end", "end_utc", "max_price")
_WHOLE = re.compile(r"\s*[0-9]{1,9}\s*")
_NUMBER = re.compile(r"\s*[0-9]{1,9}(\.[0-9]{1,6})?\s*")
_LOCAL = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
_UTC = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?Z")


@dataclass
class Judged:
    """A form as read: its values as typed (to show again), and what is wrong with them."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    def refuse(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)


@dataclass(frozen=True)
class Catalogue:
    """What the form is judged against: the service's now, its sizes, templates and limits."""

    now: Millis
    types: Collection[str]
    templates: Collection[str]
    limits: Limits


def values_of(form: Mapping[str, Any], names: Collection[str] = FIELDS) -> dict[str, str]:
    """The fields as typed (whole: what is too long is refused where it is judged, never cut;
    the body's own limit bounds them)."""
    return {name: str(form.get(name, "")) for name in names}


def reservation_terms(form: Mapping[str, Any], known: Catalogue, *,
                      base: Terms | None = None, running: bool = False) -> tuple[TermsChange | None, Judged]:
    """The terms a new reservation's form asks for (base None), or a change of `base` (a
    renegotiation: the form shows every term; a reservation already `running` may only change
    its end, so its start is not judged). None and the messages, if any field is wrong."""
    judged = Judged(values_of(form))
    values = judged.values
    kind = values["instance_type"].strip().upper()
    if kind not in known.types:
        judged.refuse("instance_type", "choose one of the sizes")
    template = values["template"].strip()
    if template not in known.templates:
        judged.refuse("template", "choose one of the templates")
    fixed = _whole(judged, "fixed", least=1)
    optional = _whole(judged, "optional", least=0, empty=0)
    start = base.start if running and base is not None else _instant(judged, "start")
    duration = None
    if values["length"] == "end":
        end = _instant(judged, "end")
        if end is not None and start is not None:
            if end <= start:
                judged.refuse("end", "must be after the start")
            else:
                duration = end - start
    else:
        duration = _duration(judged)
    max_price = most_price(judged)
    limits = known.limits
    said = {Beyond.PAST: ("start", "is in the past: choose a later start"),
            Beyond.ADVANCE: ("start", f"may be at most {limits.max_advance // DAY} days ahead"),
            Beyond.DURATION: ("end" if values["length"] == "end" else "duration",
                              f"may be at most {limits.max_duration // DAY} days")}
    for beyond in beyond_limits(limits, now=known.now, start=start, duration=duration, running=running):
        judged.refuse(*said[beyond])
    if judged.errors:
        return None, judged
    try:
        change = TermsChange(kind, template, fixed, optional, start, duration, max_price=max_price)
        change.applied_to(None)
    except InvalidField as error:  # (bounds the engine keeps: the largest count, the latest instant)
        judged.refuse(error.field, error.reason)
        return None, judged
    return change, judged


def most_price(judged: Judged) -> Decimal | None:
    """The most the visitor will pay (`max_price`), by the domain's rule for an amount; None
    if the field is empty (no limit given)."""
    given = judged.values.get("max_price", "").strip()
    if not given:
        return None
    try:
        return amount_in(given, "max_price")
    except InvalidField as error:
        judged.refuse("max_price", error.reason)
        return None


def form_of(terms: Terms) -> dict[str, str]:
    """A form filled with `terms` (to counter an offer, change a reservation, try again):
    times in UTC, as the page's script localizes them."""
    unit = next(name for name, size in reversed(UNITS.items()) if terms.duration % size == 0) \
        if terms.duration % MINUTE == 0 else "minutes"
    return {"instance_type": terms.instance_type, "template": terms.template, "fixed": str(terms.fixed),
            "optional": str(terms.optional), "start": _local(terms.start), "start_utc": iso(terms.start),
            "length": "duration", "duration": _amount(terms.duration / UNITS[unit]), "unit": unit,
            "end": _local(terms.end), "end_utc": iso(terms.end),
            "max_price": f"{terms.max_price:f}" if terms.max_price is not None else ""}


def picker_value(typed: str) -> str:
    """What a date-and-time field can show of a value: itself if it is one, else nothing (a
    browser's picker cannot hold other text; the field's message says what was wrong)."""
    return typed if _LOCAL.fullmatch(typed) and "T" in typed else ""


def iso(instant: Millis) -> str:
    """An instant as ISO 8601 in UTC (what <time datetime> and the page's script read)."""
    return datetime.fromtimestamp(instant / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(instant: Millis) -> str:
    return datetime.fromtimestamp(instant / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _amount(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _whole(judged: Judged, name: str, *, least: int, empty: int | None = None) -> int | None:
    given = judged.values[name]
    if not given.strip() and empty is not None:
        return empty
    if not given.strip():
        judged.refuse(name, "is required")
        return None
    if not _WHOLE.fullmatch(given):
        judged.refuse(name, "must be a whole number")
        return None
    value = int(given)
    if value < least:
        judged.refuse(name, f"must be at least {least}")
        return None
    return value


def _duration(judged: Judged) -> Millis | None:
    given, unit = judged.values["duration"], judged.values["unit"]
    if unit not in UNITS:
        judged.refuse("duration", "choose minutes, hours or days")
        return None
    if not given.strip():
        judged.refuse("duration", "is required")
        return None
    if not _NUMBER.fullmatch(given):
        judged.refuse("duration", "must be a number, such as 2 or 1.5")
        return None
    millis = float(given) * UNITS[unit]
    if millis < MINUTE:
        judged.refuse("duration", "must be at least a minute")
        return None
    return math.floor(millis)


def _instant(judged: Judged, name: str) -> Millis | None:
    """The instant the visitor picked: the script's UTC copy if it sent one, else the typed
    date and time read as UTC."""
    sent = judged.values.get(f"{name}_utc", "").strip()
    typed = judged.values[name].strip()
    if not _UTC.fullmatch(sent) and not typed:
        judged.refuse(name, "is required")
        return None
    try:
        return instant(sent if _UTC.fullmatch(sent) else typed, name)
    except InvalidField as error:
        judged.refuse(name, error.reason)
        return None


def instant(given: str, name: str) -> Millis:
    """A date and time as a form sends it (2026-12-24T18:30, read as UTC) or as the page's
    script does (2026-12-24T17:30:00.000Z)."""
    match = _UTC.fullmatch(given.strip()) or _LOCAL.fullmatch(given.strip())
    if match is None:
        raise InvalidField(name, "must be a date and time, such as 2026-12-24T18:30")
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise InvalidField(name, "is not a date on the calendar") from None
    return int(moment.timestamp() * 1000)
