"""The time grammar (pex/http/wire.py) is exact: a string matches the pattern the API
description publishes if and only if the server reads it, and always to an instant in range."""

from __future__ import annotations

from decimal import Decimal

import re
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pex.domain.errors import InvalidField
from pex.domain.negotiation import LATEST_INSTANT, LATEST_START
from pex.http import openapi, wire

LATEST = {"startTime": LATEST_START, "endTime": LATEST_INSTANT}
LAST_DAY = {"startTime": date(9900, 1, 24), "endTime": date(9999, 12, 31)}
EPOCH = date(1970, 1, 1)


def published(field: str) -> list[re.Pattern[str]]:
    branches = {"startTime": openapi.START_IN, "endTime": openapi.END_IN}[field]["anyOf"]
    return [re.compile(branch["pattern"]) for branch in branches if branch["type"] == "string"]


def read(field: str, text: str) -> int | None:
    try:
        return wire.parse_time(field, text)
    except InvalidField:
        return None


@pytest.mark.parametrize("field", ["startTime", "endTime"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_string_the_pattern_admits_is_read_to_an_instant_in_range(field, data):
    pattern = data.draw(st.sampled_from(published(field)))
    text = data.draw(st.from_regex(pattern.pattern.removeprefix("^").removesuffix("$"), fullmatch=True))
    assert 0 <= wire.parse_time(field, text) <= LATEST[field]


def _truth(day: date | None, hour: int, minute: int, second: int, offset_minutes: int) -> int | None:
    if day is None or not (hour < 24 and minute < 60 and second < 60 and abs(offset_minutes) < 24 * 60):
        return None
    return ((day - EPOCH).days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1000


def _days():
    for base in (EPOCH, date(9900, 1, 24), date(9999, 12, 31), date(2024, 2, 28), date(2100, 2, 28), date(2000, 2, 28)):
        for step in range(-2, 3):
            try:
                day = base + timedelta(days=step)
            except OverflowError:
                continue
            yield day.year, day.month, day.day
    yield from [(2023, 2, 29), (2100, 2, 29), (1969, 12, 31), (2024, 4, 31), (2024, 13, 1), (2024, 0, 10), (2024, 6, 0)]


@pytest.mark.parametrize("field", ["startTime", "endTime"])
def test_the_server_reads_exactly_the_published_grammar_at_its_edges(field):
    patterns = published(field)
    for year, month, day_of_month in _days():
        try:
            day: date | None = date(year, month, day_of_month)
        except ValueError:
            day = None
        for hour, minute, second in ((0, 0, 0), (23, 59, 59), (23, 59, 60), (24, 0, 0)):
            for zone, offset in (("", 0), ("Z", 0), ("z", 0), ("+00:00", 0), ("-00:00", 0), ("+01:00", 60),
                                 ("-23:59", -1439), ("+23:59", 1439), ("+24:00", 1440)):
                iso = f"{year:04d}-{month:02d}-{day_of_month:02d}T{hour:02d}:{minute:02d}:{second:02d}{zone}"
                truth = _truth(day, hour, minute, second, offset)
                # Only the zones that keep them in range on the first and the last day.
                expected = truth is not None and EPOCH <= day <= LAST_DAY[field] and 0 <= truth <= LATEST[field] \
                    and not (day == EPOCH and offset > 0) and not (day == LAST_DAY[field] and offset < 0)
                assert (read(field, iso) == truth) if expected else read(field, iso) is None, iso
                assert any(p.fullmatch(iso) for p in patterns) == expected, iso
                if zone == "":
                    month_name = wire._MONTH_NAMES[month - 1] if 1 <= month <= 12 else "Xyz"
                    rfc = f"Mon, {day_of_month:02d} {month_name} {year:04d} {hour:02d}:{minute:02d}:{second:02d} GMT"
                    expected = truth is not None and EPOCH <= day <= LAST_DAY[field]
                    assert (read(field, rfc) == truth) if expected else read(field, rfc) is None, rfc
                    assert any(p.fullmatch(rfc) for p in patterns) == expected, rfc


@pytest.mark.parametrize("text", [
    "Mon, 17 Aug 2009 04:49:03 GMT\n", " 2009-08-17T04:49:03Z", "mon, 17 Aug 2009 04:49:03 GMT", "Mon, 17 aug 2009 04:49:03 GMT",
    "Mon, 7 Aug 2009 04:49:03 GMT", "Mon, 17 Aug 2009 04:49:03 +0000", "2009-08-17", "2009-08-17T04", "20090817T044903Z",
    "2009-08-17T04:49:03.1234567890Z", "2009-08-17T04:49:03+0000", "\uff12009-08-17T04:49:03Z", "tomorrow", "",
])
def test_other_spellings_are_refused_and_outside_the_pattern(text):
    assert read("startTime", text) is None
    assert not any(p.fullmatch(text) for p in published("startTime"))


def test_fractions_and_zones_are_read_to_the_millisecond():
    assert wire.parse_time("startTime", "2009-08-17T04:49:03.123456789+05:30") == 1_250_464_743_123
    assert wire.parse_time("startTime", "2009-08-17 04:49z") == 1_250_484_540_000
    assert wire.parse_time("endTime", "9999-12-31T23:59:59.999999999Z") == LATEST_INSTANT
    assert wire.parse_time("startTime", "Sat, 24 Jan 9900 23:59:59 GMT") <= LATEST_START


def test_numbers_that_json_schema_counts_as_integers_are_integers():
    assert wire.parse_json(b'[1.0, 3e2, -0.0, 1.5, 1e400, 12345678901234567890.0, 1.0000000000000001]') == \
        [1, 300, 0, Decimal("1.5"), Decimal("1e400"), Decimal("12345678901234567890.0"), Decimal("1.0000000000000001")]
    assert all(type(n) is int for n in wire.parse_json(b'[1.0, 3e2, -0.0]'))
