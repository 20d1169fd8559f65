"""The portal's pure parts: a form read into terms (with a message per wrong field), where a
login may lead, and the Gantt's geometry."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from uuid import uuid4

import pytest

from pex.domain.clock import DAY, HOUR, MINUTE
from pex.domain.errors import InvalidField
from pex.domain.negotiation import Limits, Status, Terms
from pex.domain.pricing import Quote, amount_in
from pex.domain.read_models import Booking, NodeView
from pex.domain.sizes import Resources
from pex.domain.statuses import NodeStatus
from pex.http.portal.accounts import _next_page
from pex.http.portal.forms import Catalogue, form_of, instant, reservation_terms
from pex.http.portal.gantt import LABELS, WIDTH, chart, lanes
from pex.http.portal.prices import breakdown, hours, over, price_row, priced

NOW = 1_900_000_000_000  # 2030-03-17T17:46:40Z
KNOWN = Catalogue(NOW, ["SMALL", "MEDIUM"], ["debian-12"], Limits(max_advance=365 * DAY, max_duration=90 * DAY))
GOOD = {"instance_type": "small", "template": "debian-12", "fixed": "2", "optional": "", "start": "2030-03-18T10:00",
        "length": "duration", "duration": "1.5", "unit": "hours"}


def test_a_good_form_gives_its_terms():
    change, judged = reservation_terms(GOOD, KNOWN)
    assert judged.errors == {}
    assert change is not None
    terms = change.applied_to(None)
    assert terms == Terms("SMALL", "debian-12", 2, 0, instant("2030-03-18T10:00", "start"), 90 * MINUTE)


def test_the_scripts_utc_copy_of_a_time_counts_over_the_typed_one():
    change, _ = reservation_terms({**GOOD, "start_utc": "2030-03-18T09:00:00.000Z"}, KNOWN)
    assert change is not None and change.start == instant("2030-03-18T09:00", "start")
    change, _ = reservation_terms({**GOOD, "start_utc": "garbage"}, KNOWN)  # (then the typed one, as UTC)
    assert change is not None and change.start == instant("2030-03-18T10:00", "start")


def test_an_end_may_stand_for_the_duration():
    change, judged = reservation_terms({**GOOD, "length": "end", "end": "2030-03-18T12:30"}, KNOWN)
    assert judged.errors == {} and change is not None and change.duration == 150 * MINUTE
    _, judged = reservation_terms({**GOOD, "length": "end", "end": "2030-03-18T09:00"}, KNOWN)
    assert judged.errors == {"end": "must be after the start"}


@pytest.mark.parametrize("given, field, said", [
    ({"instance_type": "HUGE"}, "instance_type", "choose one of the sizes"),
    ({"template": "windows-95"}, "template", "choose one of the templates"),
    ({"fixed": ""}, "fixed", "is required"),
    ({"fixed": "0"}, "fixed", "must be at least 1"),
    ({"fixed": "-1"}, "fixed", "must be a whole number"),
    ({"fixed": "1e3"}, "fixed", "must be a whole number"),
    ({"fixed": "9" * 12}, "fixed", "must be a whole number"),
    ({"fixed": "99999999"}, "fixed", "must be at most"),
    ({"optional": "x"}, "optional", "must be a whole number"),
    ({"start": ""}, "start", "is required"),
    ({"start": "tomorrow"}, "start", "must be a date and time"),
    ({"start": "2030-02-30T10:00"}, "start", "is not a date on the calendar"),
    ({"start": "2030-03-17T10:00"}, "start", "is in the past"),
    ({"start": "2032-03-17T10:00"}, "start", "may be at most 365 days ahead"),
    ({"duration": "abc"}, "duration", "must be a number"),
    ({"duration": "0"}, "duration", "must be at least a minute"),
    ({"duration": "0.5", "unit": "minutes"}, "duration", "must be at least a minute"),
    ({"duration": "91", "unit": "days"}, "duration", "may be at most 90 days"),
    ({"unit": "weeks"}, "duration", "choose minutes, hours or days"),
])
def test_a_wrong_field_is_named_with_what_is_wrong(given, field, said):
    change, judged = reservation_terms({**GOOD, **given}, KNOWN)
    assert change is None
    assert said in judged.errors[field]
    assert judged.values["template"] == {**GOOD, **given}["template"]  # kept as typed


def test_every_wrong_field_is_named_at_once_and_values_are_kept_whole():
    change, judged = reservation_terms({**GOOD, "fixed": "0", "duration": "abc", "template": "x" * 10_000}, KNOWN)
    assert change is None and set(judged.errors) == {"fixed", "duration", "template"}
    assert judged.values["template"] == "x" * 10_000  # (shown again as typed, never cut and used)


def test_a_running_reservation_keeps_its_start():
    base = Terms("SMALL", "debian-12", 1, 0, NOW - HOUR, 2 * HOUR)
    change, judged = reservation_terms({**GOOD, "start": "", "duration": "3", "fixed": "1"}, KNOWN, base=base,
                                       running=True)
    assert judged.errors == {} and change is not None and change.start == base.start


def test_terms_fill_a_form_that_reads_back_as_them():
    terms = Terms("MEDIUM", "debian-12", 3, 1, NOW + DAY, 36 * HOUR)
    change, judged = reservation_terms(form_of(terms), KNOWN)
    assert judged.errors == {} and change is not None and change.applied_to(None) == terms
    assert form_of(terms)["unit"] == "hours" and form_of(terms)["duration"] == "36"


@pytest.mark.parametrize("given, goes", [
    ("/instances", "/instances"), ("/reservations/new?from=x", "/reservations/new?from=x"),
    ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/"),
    ("javascript:alert(1)", "/"), ("instances", "/"),
])
def test_a_login_leads_only_to_a_page_of_this_site(given, goes):
    assert _next_page(given) == goes


def booking(node: str, start: int, end: int, held: bool = False) -> Booking:
    return Booking(uuid4(), "u", Status.CONFIRMED, held, node, start, end, 1,
                   Terms("SMALL", "debian-12", 1, 0, start, end - start))


def test_overlapping_bookings_get_lanes_of_their_own():
    found = [booking("a", 0, 10), booking("a", 5, 15), booking("a", 10, 20), booking("a", 12, 13)]
    assert lanes(found) == [0, 1, 0, 2]


def test_the_chart_places_bars_in_time_and_clips_them_to_the_window():
    nodes = [NodeView("a", "test:///a", NodeStatus.UP, Resources(2, 4096, 10)),
             NodeView("b", "test:///b", NodeStatus.DRAINED, Resources(2, 4096, 10))]
    start = NOW - NOW % DAY
    drawn = chart(nodes, [booking("a", start - HOUR, start + 6 * HOUR), booking("b", start + 12 * HOUR, start + 2 * DAY),
                          booking("a", start + 6 * HOUR, start + 7 * HOUR, held=True)], start, start + DAY, start + 3 * HOUR)
    a, b = drawn.rows
    assert [bar.x for bar in a.bars] == [LABELS, LABELS + WIDTH / 4]
    assert a.bars[0].clipped_left and a.bars[0].width == WIDTH / 4
    assert b.bars[0].clipped_right and b.bars[0].x + b.bars[0].width == LABELS + WIDTH
    assert b.y == a.y + a.height
    assert drawn.now_x == LABELS + WIDTH / 8
    assert [tick.at - start for tick in drawn.ticks][:3] == [0, 2 * HOUR, 4 * HOUR]


# ---------------------------------------------------------------------- the most a visitor will pay

def test_the_most_a_visitor_will_pay_is_a_term_of_the_proposal():
    change, judged = reservation_terms({**GOOD, "max_price": " 12.50 "}, KNOWN)
    assert judged.errors == {} and change is not None
    assert change.applied_to(None).max_price == Decimal("12.50")
    change, judged = reservation_terms({**GOOD, "max_price": ""}, KNOWN)  # optional: no limit
    assert judged.errors == {} and change is not None and change.applied_to(None).max_price is None
    change, _ = reservation_terms(GOOD, KNOWN)  # (a form without the field at all)
    assert change is not None and change.max_price is None


@pytest.mark.parametrize("given", ["abc", "-1", "0", "0.00", "1.234", "1e3", "NaN", "Infinity", "012", "12,50",
                                   "1000000000", "$5", "5 USD", "9" * 5000])
def test_a_wrong_max_price_is_named_by_the_domains_rule(given):
    change, judged = reservation_terms({**GOOD, "max_price": given, "fixed": "0"}, KNOWN)
    assert change is None
    assert set(judged.errors) == {"max_price", "fixed"}  # named with the others, at once
    with pytest.raises(InvalidField) as refused:
        amount_in(given.strip(), "max_price")
    assert judged.errors["max_price"] == refused.value.reason  # the domain's own words
    assert judged.values["max_price"] == given  # kept as typed


def test_a_counter_keeps_the_max_price_given_before_unless_a_new_one_is_typed():
    base = Terms("SMALL", "debian-12", 1, 0, NOW + DAY, HOUR, max_price=Decimal("0.06"))
    values = form_of(base)
    assert values["max_price"] == "0.06"
    change, judged = reservation_terms(values, KNOWN, base=base)
    assert judged.errors == {} and change is not None and change.applied_to(base).max_price == Decimal("0.06")
    change, _ = reservation_terms({**values, "max_price": "0.12"}, KNOWN, base=base)
    assert change is not None and change.applied_to(base).max_price == Decimal("0.12")
    change, _ = reservation_terms({**values, "max_price": ""}, KNOWN, base=base)  # (empty: the one before)
    assert change is not None and change.applied_to(base).max_price == Decimal("0.06")


def test_a_price_beside_the_most_the_visitor_would_pay():
    asked = Terms("SMALL", "debian-12", 1, 0, NOW, HOUR, max_price=Decimal("0.06"))
    dear = Quote.of_runs("USD", [(NOW, NOW + HOUR, 1, 50_000, 20_000)])
    cheap = Quote.of_runs("USD", [(NOW, NOW + HOUR, 1, 50_000, 10_000)])
    assert price_row(asked, dear, "USD") == ("Price", "price", "at most 0.06 USD", "0.10 USD", True)
    assert price_row(asked, cheap, "USD")[4] is False and over(cheap, asked) is False
    unlimited = Terms("SMALL", "debian-12", 1, 0, NOW, HOUR)
    assert price_row(unlimited, dear, "USD") == ("Price", "price", "no limit given", "0.10 USD", False)
    assert price_row(asked, None, "USD") == ("Price", "price", "at most 0.06 USD", "not priced", False)


def test_how_a_price_is_made_up():
    runs = [(NOW, NOW + HOUR, 2, 50_000, 10_000), (NOW + HOUR, NOW + HOUR + 20 * MINUTE, 2, 50_000, 15_000)]
    shown = breakdown(Quote.of_runs("USD", runs))
    assert (shown.total, shown.instance_hours, shown.agreed, shown.credit) == ("0.15", "2.666667", None, None)
    assert [(line.instance_hours, line.rate, line.multiplier, line.amount) for line in shown.lines] == [
        ("2", "0.05", "1", "0.10"), ("0.666667", "0.075", "1.5", "0.05")]
    change = breakdown(Quote.of_runs("USD", runs[:1], agreed=Decimal("0.05"), credit=Decimal("0.03")))
    assert (change.agreed, change.credit) == ("0.05", "0.03")
    assert priced(Decimal("12.5"), "USD") == "12.5 USD" and priced(None, "USD") == "—"
    assert hours(Fraction(1, 3)) == "0.333333"
