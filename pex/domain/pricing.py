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
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from pex.domain.clock import HOUR, Millis
from pex.domain.errors import InvalidField
from pex.domain.sizes import InstanceType

CENT = Decimal("0.01")
RATE_PLACES = 6
LARGEST_AMOUNT = Decimal(1_000_000_000)  # no price or rate of ours comes near a billion
CURRENCY = "USD"
# The first start's rate card: per instance-hour, roughly in proportion to each size's CPUs.
DEFAULT_RATES = {"SMALL": Decimal("0.05"), "MEDIUM": Decimal("0.10"), "LARGE": Decimal("0.15"),
                 "XLARGE": Decimal("0.20")}


def amount_pattern(places: int) -> str:
    """An amount as a string must be written: a positive number of at most 9 digits before the
    point (so below a billion), no leading zero, at most `places` after it. A regular expression
    with no lookaround, so the OpenAPI document can give the very same rule."""
    fractions = "|".join(f"0{{{zeros}}}[1-9][0-9]{{0,{places - 1 - zeros}}}" for zeros in range(places))
    return f"[1-9][0-9]{{0,8}}(?:\\.[0-9]{{1,{places}}})?|0\\.(?:{fractions})"


_AMOUNTS = {places: re.compile(amount_pattern(places)) for places in (2, RATE_PLACES)}


def amount_in(value: Any, field: str, *, places: int = 2) -> Decimal:
    """An amount as a client sends it (a decimal string, or a JSON number): positive, finite,
    below a billion, with at most `places` decimals; else InvalidField naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InvalidField(field, "must be an amount: a decimal string such as \"12.50\", or a number")
    if isinstance(value, str):
        if not _AMOUNTS[places].fullmatch(value):
            raise InvalidField(field, f"must be written as digits, more than 0 and less than {LARGEST_AMOUNT:,}, with "
                                      f"at most {places} decimal places and no leading zero, such as \"12.50\"")
        return Decimal(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidField(field, "must be a finite amount")
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
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

    @classmethod
    def stored(cls, currency: str, rates: Mapping[str, str]) -> RateCard:
        """The card as events store it (rates as decimal strings)."""
        return cls(currency, {size: Decimal(rate) for size, rate in rates.items()})

    def to_stored(self) -> dict[str, str]:
        return {size: str(rate) for size, rate in self.rates.items()}

    def rate(self, size: str) -> Decimal:
        return self.rates[size]


class PricingPolicy(Protocol):
    """How an hour's utilisation of the cluster (0 to 1) changes its rate: a multiplier in
    ten-thousandths (BASIS is x1), never falling as utilisation rises."""

    @property
    def name(self) -> str: ...

    def multipliers(self, utilisation: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


BASIS = 10_000  # a multiplier of 1, in the ten-thousandths policies give


def multiplier(policy: PricingPolicy, utilisation: float) -> Decimal:
    """The policy's multiplier at one utilisation, exactly."""
    return Decimal(int(policy.multipliers(np.array([utilisation], dtype=np.float64))[0])) / BASIS


@dataclass(frozen=True)
class FlatPricing:
    """Every hour at the rate card's price."""

    name: str = "flat"

    def multipliers(self, utilisation: np.ndarray) -> np.ndarray:
        return np.full(len(utilisation), BASIS, dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "multiplier": "1 at any utilisation"}


@dataclass(frozen=True)
class DemandPricing:
    """The rate card's price while the cluster is at most `calm` committed in an hour, rising in
    a straight line to `peak` times it at full; never falling as utilisation rises."""

    calm: Decimal = Decimal("0.5")
    peak: Decimal = Decimal(3)
    name: str = "demand"

    def __post_init__(self) -> None:
        if not (Decimal(0) <= self.calm < Decimal(1) and Decimal(1) <= self.peak <= Decimal(100)):
            raise ValueError("demand pricing needs 0 <= calm < 1 and 1 <= peak <= 100")

    def multipliers(self, utilisation: np.ndarray) -> np.ndarray:
        used = np.clip(np.nan_to_num(np.asarray(utilisation, dtype=np.float64), nan=1.0), 0.0, 1.0)
        calm, rise = float(self.calm), float((self.peak - 1) * BASIS)
        steep = np.floor(BASIS + rise * (used - calm) / (1.0 - calm) + 0.5).astype(np.int64)
        return np.where(used <= calm, BASIS, np.maximum(steep, BASIS))

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name, "multiplier": f"1 up to {(self.calm * 100).normalize():f} % committed, rising linearly "
                f"to {self.peak} at 100 %", "calm": str(self.calm), "peak": str(self.peak)}


POLICIES: dict[str, PricingPolicy] = {"demand": DemandPricing(), "flat": FlatPricing()}


@dataclass(frozen=True)
class PricedSpan:
    """Part of a priced window at one rate: `count` instances over [start, end). Exact: 20
    minutes are a third of an hour, not 0.3333."""

    start: Millis
    end: Millis
    count: int
    rate: Decimal  # per instance-hour here: the card's rate times the policy's multiplier
    multiplier: Decimal = Decimal(1)

    @property
    def instance_hours(self) -> Fraction:
        return Fraction(self.count * (self.end - self.start), HOUR)

    @property
    def amount(self) -> Fraction:
        return self.instance_hours * Fraction(self.rate)


@dataclass(frozen=True)
class Quote:
    """A price and how it is made up: the spans priced at their rates. For a change of agreed
    terms, `agreed` is the price bound before and `credit` what the hours given up take off it
    (at the agreed price's own average rate); the spans are then the hours added."""

    currency: str
    total: Decimal
    spans: tuple[PricedSpan, ...]
    agreed: Decimal | None = None
    credit: Decimal | None = None

    @property
    def instance_hours(self) -> Fraction:
        return sum((span.instance_hours for span in self.spans), Fraction(0))

    def to_dict(self) -> dict[str, Any]:
        """As events store it: amounts as strings, spans as lists."""
        stored: dict[str, Any] = {"currency": self.currency, "total": str(self.total),
                                  "spans": [[s.start, s.end, s.count, str(s.rate), str(s.multiplier)]
                                            for s in self.spans]}
        if self.agreed is not None:
            stored["agreed"], stored["credit"] = str(self.agreed), str(self.credit or 0)
        return stored

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Quote:
        spans = tuple(PricedSpan(start, end, count, Decimal(rate), Decimal(multiplier))
                      for start, end, count, rate, multiplier in stored["spans"])
        agreed = stored.get("agreed")
        return cls(stored["currency"], Decimal(stored["total"]), spans,
                   Decimal(agreed) if agreed is not None else None,
                   Decimal(stored["credit"]) if agreed is not None else None)


def hour_slices(start: Millis, end: Millis) -> list[tuple[Millis, Millis]]:
    """[start, end) cut at each full clock hour (UTC)."""
    slices = []
    at = start
    while at < end:
        following = min(end, (at // HOUR + 1) * HOUR)
        slices.append((at, following))
        at = following
    return slices


class HourlyUse(Protocol):
    """The cluster's committed utilisation (0 to 1) of each clock hour from `first` on."""

    def __call__(self, first: Millis, hours: int) -> np.ndarray: ...


def quote(card: RateCard, policy: PricingPolicy, size: str, count: int, start: Millis, end: Millis,
          utilisation: Sequence[float]) -> Quote:
    """The price of `count` instances of `size` over [start, end), one utilisation per slice of
    `hour_slices(start, end)` (the cluster's committed share in that hour)."""
    slices = hour_slices(start, end)
    if len(utilisation) != len(slices):
        raise ValueError(f"{len(slices)} hours need as many utilisations, not {len(utilisation)}")
    return quote_pieces(card, policy, size, [(start, end, count)],
                        lambda first, hours: np.asarray(utilisation, dtype=np.float64))


def quote_pieces(card: RateCard, policy: PricingPolicy, size: str, pieces: Sequence[tuple[Millis, Millis, int]],
                 use: HourlyUse) -> Quote:
    """The price of instances over several spans (start, end, count) at `use`'s utilisation of
    each hour they touch: exact, rounded half up to cents once, at the total."""
    base = card.rate(size)
    spans: list[PricedSpan] = []
    units = 0  # the total in ms x instances x ten-thousandths of the card's rate
    for start, end, count in pieces:
        if end <= start or count <= 0:
            continue
        first = start // HOUR * HOUR
        hours = -(-(end - first) // HOUR)
        edges = np.clip(first + HOUR * np.arange(hours + 1, dtype=np.int64), start, end)
        widths = np.diff(edges)
        factors = policy.multipliers(use(first, hours))
        units += count * int((widths * factors).sum())
        # Runs of hours at one multiplier are one span of the detail.
        breaks = np.flatnonzero(np.diff(factors)) + 1
        for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), hours]):
            factor = Decimal(int(factors[lo])) / BASIS
            spans.append(PricedSpan(int(edges[lo]), int(edges[hi]), count, base * factor, factor))
    return Quote(card.currency, money(Fraction(units, HOUR * BASIS) * Fraction(base)), tuple(spans))


def window_sums(factors: np.ndarray, duration: Millis) -> np.ndarray:
    """For a window of `duration` starting at each clock hour k of `factors` (the multipliers of
    consecutive hours), the sum of (ms x multiplier) over the window: its price in units of the
    card's rate per instance (as `quote_pieces` counts), for every start at once."""
    full, rest = divmod(duration, HOUR)
    spans = len(factors) - full - (1 if rest else 0) + 1
    if spans <= 0:
        return np.zeros(0, dtype=np.int64)
    prefix = np.concatenate([[0], np.cumsum(factors, dtype=np.int64)])
    sums: np.ndarray = HOUR * (prefix[full: full + spans] - prefix[:spans])
    if rest:
        sums = sums + rest * factors[full: full + spans]
    return sums


def most_units(card: RateCard, size: str, count: int, ceiling: Decimal) -> int:
    """The largest `window_sums` value whose price, once rounded to cents, is at most `ceiling`
    for `count` instances of `size` (-1: none is)."""
    # money(x) <= ceiling  <=>  x < ceiling + 1/2 cent;  x = units x count x rate / (HOUR x BASIS)
    bound = (Fraction(ceiling) + Fraction(1, 200)) * HOUR * BASIS / (count * Fraction(card.rate(size)))
    return math.ceil(bound) - 1
