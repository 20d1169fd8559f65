"""Price as a term (issue 12, groundwork): amounts in exact decimals, the admin's rate card (a
price per instance-hour of each size), and the policies that turn it into the price of a
window: flat, or demand-based (an hour costs more the more of the cluster is committed then).

Pure: the callers give the utilisation of each hour; nothing here reads the store, the capacity
model or a clock. Amounts are exact, never floats: rates are `Decimal` (at most 6 decimal
places), a window's parts are fractions, and a price is rounded to cents (half up) once, at its
total.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Protocol

from pex.domain.clock import HOUR, Millis
from pex.domain.errors import InvalidField
from pex.domain.sizes import InstanceType

CENT = Decimal("0.01")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
RATE_PLACES = 6
LARGEST_AMOUNT = Decimal(1_000_000_000)  # no price or rate of ours comes near a billion
CURRENCY = "USD"
# The first start's rate card: per instance-hour, roughly in proportion to each size's CPUs.
DEFAULT_RATES = {"SMALL": Decimal("0.05"), "MEDIUM": Decimal("0.10"), "LARGE": Decimal("0.15"),
                 "XLARGE": Decimal("0.20")}


def amount_in(value: Any, field: str, *, places: int = 2) -> Decimal:
    """An amount as a client sends it (a decimal string, or a JSON number): positive, finite,
    below a billion, with at most `places` decimals; else InvalidField naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InvalidField(field, "must be an amount: a decimal string such as \"12.50\", or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidField(field, "must be a finite amount")
    text = value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and not _DECIMAL.fullmatch(text):
        raise InvalidField(field, "must be written as digits with at most one decimal point, such as \"12.50\"")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidField(field, "must be an amount, such as \"12.50\"") from None
    if not amount.is_finite():
        raise InvalidField(field, "must be a finite amount")
    if amount <= 0:
        raise InvalidField(field, "must be more than 0")
    if amount >= LARGEST_AMOUNT:
        raise InvalidField(field, f"must be less than {LARGEST_AMOUNT:,}")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise InvalidField(field, f"may have at most {places} decimal places")
    return amount


def money(amount: Fraction | Decimal) -> Decimal:
    """An exact amount rounded to cents (half up), as prices are charged."""
    cents = Fraction(amount) * 100
    return Decimal(math.floor(cents + Fraction(1, 2))) * CENT


@dataclass(frozen=True)
class RateCard:
    """What an instance-hour of each size costs, in one currency."""

    currency: str
    rates: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        if not (len(self.currency) == 3 and self.currency.isascii() and self.currency.isupper()):
            raise InvalidField("currency", "must be an ISO 4217 code, such as USD")
        unknown = sorted(set(self.rates) - set(InstanceType.__members__))
        if unknown:
            raise InvalidField("rates", f"{unknown[0]!r} is not a size")
        missing = sorted(set(InstanceType.__members__) - set(self.rates))
        if missing:
            raise InvalidField("rates", f"has no rate for {missing[0]}")
        for size, rate in self.rates.items():
            amount_in(rate, f"rates.{size}", places=RATE_PLACES)

    @classmethod
    def default(cls) -> RateCard:
        return cls(CURRENCY, dict(DEFAULT_RATES))

    def rate(self, size: str) -> Decimal:
        return self.rates[size]


class PricingPolicy(Protocol):
    """How an hour's utilisation of the cluster (0 to 1) changes its rate."""

    name: str

    def multiplier(self, utilisation: float) -> Decimal: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FlatPricing:
    """Every hour at the rate card's price."""

    name: str = "flat"

    def multiplier(self, utilisation: float) -> Decimal:
        return Decimal(1)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "multiplier": "1"}


@dataclass(frozen=True)
class DemandPricing:
    """The rate card's price while the cluster is at most `calm` committed in an hour, rising in
    a straight line to `peak` times it at full; never falling as utilisation rises."""

    calm: Decimal = Decimal("0.5")
    peak: Decimal = Decimal(3)
    name: str = "demand"

    def __post_init__(self) -> None:
        if not (Decimal(0) <= self.calm < Decimal(1) and self.peak >= Decimal(1)):
            raise ValueError("demand pricing needs 0 <= calm < 1 and peak >= 1")

    def multiplier(self, utilisation: float) -> Decimal:
        used = min(max(Decimal(repr(float(utilisation))), Decimal(0)), Decimal(1))
        if used <= self.calm:
            return Decimal(1)
        rise = (used - self.calm) / (Decimal(1) - self.calm)
        return (Decimal(1) + (self.peak - Decimal(1)) * rise).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "multiplier": f"1 up to {(self.calm * 100).normalize():f} % committed, rising linearly "
                f"to {self.peak} at 100 %", "calm": str(self.calm), "peak": str(self.peak)}


@dataclass(frozen=True)
class PricedHour:
    """One slice of a window, within one clock hour: its instance-hours at its rate. Exact:
    a slice of 20 minutes is a third of an hour, not 0.3333."""

    start: Millis
    end: Millis
    count: int
    rate: Decimal  # per instance-hour in this slice (the card's rate times the policy's multiplier)

    @property
    def instance_hours(self) -> Fraction:
        return Fraction(self.count * (self.end - self.start), HOUR)

    @property
    def amount(self) -> Fraction:
        return self.instance_hours * Fraction(self.rate)


@dataclass(frozen=True)
class Quote:
    """What a window costs: the total (in cents) and how it is made up."""

    currency: str
    total: Decimal
    hours: tuple[PricedHour, ...]


def hour_slices(start: Millis, end: Millis) -> list[tuple[Millis, Millis]]:
    """[start, end) cut at each full clock hour (UTC)."""
    slices = []
    at = start
    while at < end:
        following = min(end, (at // HOUR + 1) * HOUR)
        slices.append((at, following))
        at = following
    return slices


def quote(card: RateCard, policy: PricingPolicy, size: str, count: int, start: Millis, end: Millis,
          utilisation: Sequence[float]) -> Quote:
    """The price of `count` instances of `size` over [start, end), one utilisation per slice of
    `hour_slices(start, end)` (the cluster's committed share in that hour)."""
    slices = hour_slices(start, end)
    if len(utilisation) != len(slices):
        raise ValueError(f"{len(slices)} hours need as many utilisations, not {len(utilisation)}")
    base = card.rate(size)
    hours = tuple(PricedHour(first, last, count, base * policy.multiplier(used))
                  for (first, last), used in zip(slices, utilisation))
    return Quote(card.currency, money(sum((hour.amount for hour in hours), Fraction(0))), hours)
