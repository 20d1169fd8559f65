"""Prices (issue 12 groundwork): amounts as clients send them, the rate card, the flat and the
demand-based policies, and the quote of a window."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pex.domain.clock import HOUR, MINUTE, Millis
from pex.domain.errors import InvalidField
from pex.domain.pricing import (BASIS, DemandPricing, FlatPricing, PricingPolicy, Quote, RateCard, amount_in, money,
                                quote_pieces)

CARD = RateCard.default()


def hour_slices(start: Millis, end: Millis) -> list[tuple[Millis, Millis]]:
    """[start, end) cut at each full clock hour (UTC): the slices a quote has one utilisation for."""
    slices = []
    at = start
    while at < end:
        following = min(end, (at // HOUR + 1) * HOUR)
        slices.append((at, following))
        at = following
    return slices


def quote(card: RateCard, policy: PricingPolicy, size: str, count: int, start: Millis, end: Millis,
          utilisation: list[float]) -> Quote:
    """quote_pieces over one window, one utilisation per clock hour it touches."""
    if len(utilisation) != len(hour_slices(start, end)):
        raise ValueError(f"{len(hour_slices(start, end))} hours need as many utilisations, not {len(utilisation)}")
    return quote_pieces(card, size, [(start, end, count)], lambda first, hours: policy.multipliers(np.asarray(utilisation)))


def multiplier(policy: PricingPolicy, utilisation: float) -> Decimal:
    """The policy's multiplier at one utilisation, exactly."""
    return Decimal(int(policy.multipliers(np.array([utilisation], dtype=np.float64))[0])) / BASIS


def test_money_rounds_half_up_to_cents_exactly():
    assert [money(Fraction(n, 1000)) for n in (4, 5, 6, 15, 25)] == [
        Decimal("0.00"), Decimal("0.01"), Decimal("0.01"), Decimal("0.02"), Decimal("0.03")]
    assert money(Fraction(1, 3)) == Decimal("0.33") and money(Decimal("2.675")) == Decimal("2.68")


@pytest.mark.parametrize("given, expected", [
    ("12.50", Decimal("12.50")), ("7", Decimal(7)), (12.5, Decimal("12.5")), (3, Decimal(3)), ("0.01", Decimal("0.01")),
    ("0.5", Decimal("0.5")), ("999999999.99", Decimal("999999999.99")),
])
def test_an_amount_may_be_a_decimal_string_or_a_number(given, expected):
    assert amount_in(given, "maxPrice") == expected


@pytest.mark.parametrize("given, said", [
    ("-1", "digits"), (-1, "more than 0"), (0, "more than 0"), ("0.00", "more than 0"), ("abc", "digits"),
    ("NaN", "digits"), (float("nan"), "finite"), (float("inf"), "finite"), ("1e3", "digits"), ("12.345", "decimal places"),
    (10 ** 12, "less than"), ("999999999999", "less than"), (True, "amount"), (None, "amount"), ([1], "amount"),
    ("1.2.3", "digits"), ("²", "digits"), ("", "digits"), (1e-7, "decimal places"), (" 1", "digits"),
    ("012", "leading zero"), ("1000000000", "less than"), ("1.", "digits"), (".5", "digits"), ("1e2", "digits"),
])
def test_an_amount_that_is_no_price_is_refused_naming_its_field(given, said):
    with pytest.raises(InvalidField) as refused:
        amount_in(given, "maxPrice")
    assert refused.value.field == "maxPrice" and said in refused.value.reason


def test_a_rate_card_has_a_rate_for_every_size_and_nothing_else():
    assert set(CARD.rates) == {"SMALL", "MEDIUM", "LARGE", "XLARGE"} and CARD.currency == "USD"
    with pytest.raises(InvalidField, match="no rate for XLARGE"):
        RateCard("USD", {k: v for k, v in CARD.rates.items() if k != "XLARGE"})
    with pytest.raises(InvalidField, match="'HUGE' is not a size"):
        RateCard("USD", {**CARD.rates, "HUGE": Decimal(1)})
    with pytest.raises(InvalidField, match="rates.SMALL"):
        RateCard("USD", {**CARD.rates, "SMALL": Decimal(0)})
    with pytest.raises(InvalidField, match="ISO 4217"):
        RateCard("dollars", dict(CARD.rates))
    assert RateCard("EUR", {**CARD.rates, "SMALL": Decimal("0.012345")}).rate("SMALL") == Decimal("0.012345")


def test_a_window_is_cut_at_every_clock_hour():
    assert hour_slices(30 * MINUTE, 2 * HOUR + 15 * MINUTE) == [
        (30 * MINUTE, HOUR), (HOUR, 2 * HOUR), (2 * HOUR, 2 * HOUR + 15 * MINUTE)]
    assert hour_slices(HOUR, 2 * HOUR) == [(HOUR, 2 * HOUR)]


def test_flat_pricing_is_the_rate_times_the_instance_hours():
    priced = quote(CARD, FlatPricing(), "MEDIUM", 3, 30 * MINUTE, 4 * HOUR, [0.9, 0.1, 1.0, 0.0])
    assert priced.total == Decimal("1.05")  # 3 × 3.5 h × 0.10
    assert sum(hour.instance_hours for hour in priced.spans) == Fraction(21, 2)


def test_demand_pricing_is_the_card_price_when_calm_and_three_times_it_when_full():
    policy = DemandPricing()
    assert [multiplier(policy, u) for u in (0.0, 0.5, 0.75, 1.0, 1.7, -0.2)] == [
        Decimal(1), Decimal(1), Decimal(2), Decimal(3), Decimal(3), Decimal(1)]
    priced = quote(CARD, policy, "SMALL", 2, 30 * MINUTE, 3 * HOUR + 15 * MINUTE, [0.1, 0.8, 0.95, 1.0])
    assert priced.total == Decimal("0.63")  # 0.05 + 2×0.11 + 2×0.14 + 0.5×0.15 = 0.625, rounded half up
    assert "50 %" in policy.describe()["multiplier"]


@given(st.floats(0, 1), st.floats(0, 1))
def test_a_price_never_falls_when_utilisation_rises(first, second):
    low, high = sorted((first, second))
    policy = DemandPricing()
    assert multiplier(policy, low) <= multiplier(policy, high)
    assert (quote(CARD, policy, "LARGE", 2, 0, 3 * HOUR, [low] * 3).total
            <= quote(CARD, policy, "LARGE", 2, 0, 3 * HOUR, [high] * 3).total)


@given(st.integers(0, 10 * 24 * 60), st.integers(1, 5 * 24 * 60), st.integers(1, 50), st.data())
def test_a_quote_is_the_sum_of_its_hours_rounded_once(start_minute, minutes, count, data):
    start, end = start_minute * MINUTE, (start_minute + minutes) * MINUTE
    used = data.draw(st.lists(st.floats(0, 1), min_size=len(hour_slices(start, end)),
                              max_size=len(hour_slices(start, end))))
    priced = quote(CARD, DemandPricing(), "XLARGE", count, start, end, used)
    assert priced.total == money(sum(hour.amount for hour in priced.spans))
    assert sum(hour.instance_hours for hour in priced.spans) == Fraction(count * minutes, 60)
    assert Fraction(CARD.rate("XLARGE")) * Fraction(count * minutes, 60) <= Fraction(priced.total) + Fraction(1, 200)
    with pytest.raises(ValueError):
        quote(CARD, DemandPricing(), "XLARGE", count, start, end, used + [0.5])
