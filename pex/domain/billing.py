"""Charges and statements (issue 12): what a reservation costs its user over a period, read off
its recorded life. Pure: the reservations come from the projections (so a replay of the log
gives the same numbers), and nothing here is stored.

A reservation is charged its bound price for the hours it was booked, pro rata over its
instance-hours: cancelled before its start it costs nothing; cancelled after, the hours up to
the cancellation are charged; instances lost with a node and placed nowhere else are refunded
for the hours they could not run (the booking, re-planned at the loss, no longer holds them).
Hours still to come are not charged yet. Each line is rounded to cents; a statement's totals
are the exact sums of its lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

from pex.domain.aggregates import Reservation
from pex.domain.capacity import Allocation
from pex.domain.clock import HOUR, Millis, month_start
from pex.domain.errors import InvalidField
from pex.domain.negotiation import Status
from pex.domain.pricing import Quote, money_of


@dataclass(frozen=True, slots=True)
class Charge:
    """One reservation's line of a statement."""

    reservation_id: UUID
    userid: str
    status: Status
    price: Decimal  # the price bound for the whole reservation
    instance_hours: Fraction  # booked and run within the period
    charged: Decimal  # the hours scheduled within the period, at the bound price
    refunded: Decimal  # the hours of those that lost instances could not run


@dataclass(frozen=True, slots=True)
class Statement:
    """What one user (or, for the admin, everyone: `userid` None) owes for [start, end)."""

    userid: str | None
    start: Millis
    end: Millis
    currency: str
    lines: tuple[Charge, ...]

    @property
    def instance_hours(self) -> Fraction:
        return sum((line.instance_hours for line in self.lines), Fraction(0))

    @property
    def charges(self) -> Decimal:
        return sum((line.charged for line in self.lines), Decimal("0.00"))

    @property
    def refunds(self) -> Decimal:
        return sum((line.refunded for line in self.lines), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.charges - self.refunds


@dataclass(frozen=True, slots=True)
class Statements:
    """The statements of one period: the caller's own, or every user's with a charge (admin)."""

    start: Millis
    end: Millis
    currency: str
    users: tuple[Statement, ...]

    @property
    def total(self) -> Decimal:
        return sum((one.total for one in self.users), Decimal("0.00"))


def charge_of(reservation: Reservation, start: Millis, end: Millis, now: Millis) -> Charge | None:
    """The reservation's charge for [start, end) as of `now`, or None if it has none there."""
    stored: dict[str, Any] | None = getattr(reservation, "price", None)
    terms = reservation.agreed_terms
    if stored is None or terms is None:
        return None
    stop = min(terms.end, now)
    if reservation.status is Status.CANCELLED:
        cancelled_at = getattr(reservation, "cancelled_at", None)
        stop = min(stop, cancelled_at if cancelled_at is not None else terms.start)  # (none: recorded before 2026-11-26)
    lo, hi = max(terms.start, start), min(stop, end)
    if hi <= lo:
        return None
    price = Quote.from_dict(stored)
    shares = Allocation.from_list(reservation.booking).shares if reservation.booking else ()
    refunds, booked = _lost(price, shares, terms.start, lo, hi)
    # Each figure is the difference of rounded running totals, so that the statements of
    # adjacent periods add up to that of the whole, to the cent.
    return Charge(reservation.id, reservation.userid, reservation.status, price.total, Fraction(booked, HOUR),
                  money_of(price.amount_before(hi)) - money_of(price.amount_before(lo)),
                  money_of(refunds[1]) - money_of(refunds[0]))


def _lost(price: Quote, shares: Iterable[Any], since: Millis, lo: Millis, hi: Millis
          ) -> tuple[tuple[Fraction, Fraction], int]:
    """What the hours instances could not run (scheduled but not booked: lost with a node and
    placed nowhere else) were priced at, from `since` up to `lo` and up to `hi`; and the
    instance-ms booked within [lo, hi). One sweep over the schedule's runs and the booking's
    shares: between two instants, the instances scheduled, their amount per ms, and those booked."""
    deltas: dict[Millis, list[int]] = defaultdict(lambda: [0, 0, 0])
    for first, last, count, rate, factor in price.runs:
        for instant, sign in ((first, 1), (last, -1)):
            change = deltas[instant]
            change[0] += sign * count
            change[1] += sign * count * rate * factor
    for share in shares:
        deltas[share.start][2] += share.count
        deltas[share.end][2] -= share.count
    instants = sorted({*deltas, since, lo, hi})
    scheduled = per_ms = on = booked = 0
    lost = before_lo = Fraction(0)
    for instant, following in zip(instants, instants[1:]):
        scheduled, per_ms, on = (a + b for a, b in zip((scheduled, per_ms, on), deltas.get(instant, (0, 0, 0))))
        if instant == lo:
            before_lo = lost
        if instant >= hi:
            break
        if instant >= since and scheduled > 0:
            width = following - instant
            if on < scheduled:
                lost += Fraction(per_ms * width * (scheduled - on), scheduled)
            if instant >= lo:
                booked += min(on, scheduled) * width
    return (before_lo, lost), booked


def statement(reservations: Iterable[Reservation], userid: str | None, currency: str, start: Millis, end: Millis,
              now: Millis) -> Statement:
    lines = (charge_of(reservation, start, end, now) for reservation in reservations)
    return Statement(userid, start, end, currency, tuple(line for line in lines if line is not None))


def statements(reservations: Mapping[UUID, Reservation], reservations_of: Mapping[str, Sequence[UUID]],
               users: Sequence[str] | None, currency: str, start: Millis, end: Millis, now: Millis) -> Statements:
    """The statements of [start, end) as of `now`: one for each of `users` (with no line too),
    or (None) one for every user with a charge in it, as the admin sees them."""
    chosen = sorted(reservations_of) if users is None else users
    found = (statement((reservations[rid] for rid in reservations_of.get(user, ())), user, currency, start, end, now)
             for user in chosen)
    return Statements(start, end, currency, tuple(one for one in found if one.lines or users is not None))


def period(start: Millis | None, end: Millis | None, now: Millis) -> tuple[Millis, Millis]:
    """A statement's period as asked: `from` left out is the first of its end's month (UTC),
    `to` left out is now; InvalidField naming the bound that does not fit."""
    if end is None:
        if start is not None and start >= now:
            raise InvalidField("from", "must be before now when to is left out (it is then now)", as_given=True)
        end = now
    if start is None:
        start = max(0, month_start(min(now, end - 1)))
    if end <= start:
        raise InvalidField("to", "must be after from", as_given=True)
    return start, end
