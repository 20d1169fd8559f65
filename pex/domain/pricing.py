"""Price as a term of the negotiation (issue 12; docs/pricing.md): amounts in exact decimals,
the admin's rate card (a price per instance-hour of each size), the policies that turn an
hour's committed utilisation into a multiplier (flat, or demand-based in steps), and a price
as a schedule: runs of instances at the card's rate and the hour's multiplier.

Pure: the callers give the utilisation of each hour (pex.domain.quoting reads it off the
capacity model); nothing here reads the store or a clock. Amounts are exact, never floats:
rates are `Decimal` (at most 6 decimal places), a schedule's parts are integers, and a price
is rounded to cents (half up) once, at its total."""

from __future__ import annotations

import functools
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

    @functools.cached_property
    def micros(self) -> dict[str, int]:
        """Each size's rate in millionths (as runs keep it)."""
        return {size: int(rate * 10**RATE_PLACES) for size, rate in self.rates.items()}


class PricingPolicy(Protocol):
    """How an hour's utilisation of the cluster (0 to 1) changes its rate: a multiplier in
    ten-thousandths (BASIS is x1), never falling as utilisation rises."""

    @property
    def name(self) -> str: ...

    def multipliers(self, utilisation: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


BASIS = 10_000  # a multiplier of 1, in the ten-thousandths policies give


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
    """The rate card's price while the cluster is at most `calm` committed in an hour, rising
    along the straight line to `peak` times it at full, in steps of `step` (the line's value
    rounded half up to a step: x1.25, x1.5, ...); never falling as utilisation rises. Steps
    keep neighbouring hours of like demand at one price, so a price reads in a few runs."""

    calm: Decimal = Decimal("0.5")
    peak: Decimal = Decimal(3)
    step: Decimal = Decimal("0.25")
    name: str = "demand"

    def __post_init__(self) -> None:
        if not (Decimal(0) <= self.calm < Decimal(1) and Decimal(1) <= self.peak <= Decimal(100)
                and Decimal("0.0001") <= self.step <= self.peak and (self.step * BASIS) % 1 == 0):
            raise ValueError("demand pricing needs 0 <= calm < 1, 1 <= peak <= 100 and a step of whole "
                             "ten-thousandths up to the peak")

    @functools.cached_property
    def _line(self) -> tuple[float, float, float, int]:
        """calm, steps per unit of utilisation above it, the most steps, a step in ten-thousandths."""
        steps = (self.peak - 1) / self.step
        return float(self.calm), float(steps / (1 - self.calm)), float(math.floor(steps)), int(self.step * BASIS)

    def multipliers(self, utilisation: np.ndarray) -> np.ndarray:
        # In steps above x1: (u - calm) / (1 - calm) x (peak - 1) / step, rounded half up, held
        # within [0, (peak - 1) / step] (fmax/fmin also take an unknown utilisation, NaN, as
        # x1). A few numpy calls: every decision asks.
        calm, per_unit, most, step = self._line
        taken = np.floor((np.asarray(utilisation, dtype=np.float64) - calm) * per_unit + 0.5)
        return BASIS + step * np.fmin(np.fmax(taken, 0.0), most).astype(np.int64)

    def describe(self) -> dict[str, Any]:
        return {"policy": self.name,
                "multiplier": f"1 up to {(self.calm * 100).normalize():f} % committed, rising linearly to "
                              f"{self.peak} at 100 %, in steps of {self.step}",
                "calm": str(self.calm), "peak": str(self.peak), "step": str(self.step)}


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


# A run of a price's schedule: `count` instances over [start, end) at the card's rate (in
# millionths) times a multiplier (in ten-thousandths). Integers, so sums are exact.
Run = tuple[Millis, Millis, int, int, int]
PER = HOUR * 10**RATE_PLACES * BASIS  # a run's amount is count x ms x rate x factor / PER


def run_amount(run: Run, start: Millis | None = None, end: Millis | None = None) -> int:
    """The run's amount within [start, end) (default: all of it), in 1/PER of the currency."""
    first, last, count, rate, factor = run
    lo = first if start is None else max(first, start)
    hi = last if end is None else min(last, end)
    return count * max(0, hi - lo) * rate * factor


def money_of(amount: int | Fraction) -> Decimal:
    """An amount in 1/PER of the currency, rounded half up to cents."""
    if isinstance(amount, int):  # (every decision rounds one: integers only)
        return Decimal((200 * amount + PER) // (2 * PER)) * CENT
    return money(amount / PER)


@dataclass(frozen=True)
class Quote:
    """A price: its schedule (runs of instances at one rate, which say what every hour of the
    reservation costs) and its total, rounded half up to cents once from the exact sum. A
    statement charges the schedule's hours as they are used; a change of agreed terms keeps
    the runs of the hours it keeps, takes out exactly those it gives up, and adds the new
    hours at today's prices. For a change, `agreed` is the price bound before and `credit`
    what the hours given up were priced at (both for reading: the total is the schedule's).

    Kept as plain integers (a quote is made for every decision, and most are never shown);
    `spans` spells the runs out in Decimals for readers."""

    currency: str
    total: Decimal
    runs: tuple[Run, ...]
    agreed: Decimal | None = None
    credit: Decimal | None = None

    @classmethod
    def of_runs(cls, currency: str, runs: Sequence[Run], *, agreed: Decimal | None = None,
                credit: Decimal | None = None) -> Quote:
        # In the order added (a change gives back the runs added last first): not sorted.
        kept = tuple(run for run in runs if run[2] > 0 and run[1] > run[0])
        return cls(currency, money_of(sum(run_amount(run) for run in kept)), kept, agreed, credit)

    @property
    def spans(self) -> tuple[PricedSpan, ...]:
        """The runs in time order, in Decimals."""
        return tuple(PricedSpan(start, end, count, Decimal(rate * factor) / (10**RATE_PLACES * BASIS),
                                Decimal(factor) / BASIS)
                     for start, end, count, rate, factor in sorted(self.runs))

    @property
    def instance_hours(self) -> Fraction:
        return Fraction(sum(run[2] * (run[1] - run[0]) for run in self.runs), HOUR)

    def amount_before(self, instant: Millis) -> int:
        """The schedule's exact amount before `instant` (in 1/PER of the currency)."""
        return sum(run_amount(run, None, instant) for run in self.runs if run[0] < instant)

    def to_dict(self) -> dict[str, Any]:
        """As events store it: amounts as strings, runs as lists of integers."""
        stored: dict[str, Any] = {"currency": self.currency, "total": str(self.total),
                                  "runs": [list(run) for run in self.runs]}
        if self.agreed is not None:
            stored["agreed"] = str(self.agreed)
            stored["credit"] = str(self.credit if self.credit is not None else Decimal("0.00"))
        return stored

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Quote:
        agreed = stored.get("agreed")
        return cls(stored["currency"], Decimal(stored["total"]),
                   tuple((start, end, count, rate, factor) for start, end, count, rate, factor in stored["runs"]),
                   Decimal(agreed) if agreed is not None else None,
                   Decimal(stored["credit"]) if agreed is not None else None)


class HourlyFactors(Protocol):
    """The policy's multiplier (in ten-thousandths) of each clock hour from `first` on, at the
    cluster's committed utilisation then."""

    def __call__(self, first: Millis, hours: int) -> np.ndarray: ...


def quote_pieces(card: RateCard, size: str, pieces: Sequence[tuple[Millis, Millis, int]],
                 factors_of: HourlyFactors) -> Quote:
    """The price of instances over several spans (start, end, count) at each hour's multiplier:
    exact, rounded half up to cents once, at the total."""
    runs: list[Run] = []
    amount = _price_runs(card, size, pieces, factors_of, runs)
    return Quote(card.currency, money_of(amount), tuple(runs))


def priced_runs(card: RateCard, size: str, pieces: Sequence[tuple[Millis, Millis, int]],
                factors_of: HourlyFactors) -> list[Run]:
    """The runs of a schedule for instances over spans (start, end, count): cut at clock hours,
    each hour at its multiplier, consecutive hours at one multiplier merged."""
    runs: list[Run] = []
    _price_runs(card, size, pieces, factors_of, runs)
    return runs


def _price_runs(card: RateCard, size: str, pieces: Sequence[tuple[Millis, Millis, int]],
                factors_of: HourlyFactors, runs: list[Run]) -> int:
    """Append the pieces' runs to `runs`; their exact amount (in 1/PER). Every decision prices
    its offer here: one list of the hours' multipliers, then plain integers (a window has tens
    of hours, for which numpy's calls cost more than Python's loop)."""
    rate = card.micros[size]
    amount = 0
    for start, end, count in pieces:
        if end <= start or count <= 0:
            continue
        first = start - start % HOUR
        hours = -(-(end - first) // HOUR)
        factor = factors_of(first, hours).tolist()
        # Every hour is whole but the first and the last: sum them all whole, then take off
        # what the window leaves out of those two.
        whole = HOUR * sum(factor) - (start - first) * factor[0] - (first + hours * HOUR - end) * factor[-1]
        amount += count * rate * whole
        at, current = start, factor[0]
        for k in range(1, hours):
            if factor[k] != current:
                cut = first + k * HOUR
                runs.append((at, cut, count, rate, current))
                at, current = cut, factor[k]
        runs.append((at, end, count, rate, current))
    return amount


def without_instances(runs: Sequence[Run], start: Millis, end: Millis, count: int) -> tuple[list[Run], int]:
    """The schedule with `count` instances taken out over [start, end), from the runs added
    last first (a change gives back what it added before what was agreed first), and the exact
    amount taken out. Runs covering part of [start, end) are cut at its edges."""
    points = sorted({start, end, *(t for run in runs for t in run[:2] if start < t < end)})
    kept = list(runs)
    taken = 0
    for lo, hi in zip(points, points[1:]):
        left = count
        for i in range(len(kept) - 1, -1, -1):
            if left == 0:
                break
            first, last, instances, rate, factor = kept[i]
            if not (first <= lo and hi <= last):
                continue
            take = min(instances, left)
            left -= take
            taken += take * (hi - lo) * rate * factor
            kept[i:i + 1] = [piece for piece in ((first, lo, instances, rate, factor),
                                                  (lo, hi, instances - take, rate, factor),
                                                  (hi, last, instances, rate, factor))
                             if piece[1] > piece[0] and piece[2] > 0]
    return kept, taken


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
    # money(x) <= ceiling  <=>  x < ceiling + 1/2 cent;  x = sums x count x rate / (HOUR x BASIS)
    # In integers: ceiling in half cents, the rate in millionths.
    numerator = (int(ceiling * 100) * 2 + 1) * HOUR * BASIS * 10**RATE_PLACES
    denominator = 200 * count * int(card.rate(size) * 10**RATE_PLACES)
    most: int = -(-numerator // denominator) - 1
    return most
