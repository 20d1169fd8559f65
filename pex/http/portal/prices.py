"""Prices as the portal shows them (issue 12): an offer's price beside the most the visitor said
they would pay, and how a price is made up (instance-hours, the rate of each run of hours and
its multiplier). Amounts are written as the API writes them (`presenters.amount`, `quantity`):
exact decimals, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pex.domain.clock import Millis
from pex.domain.negotiation import Terms
from pex.domain.pricing import Quote, money
from pex.http.presenters import amount, quantity


def priced(value: Decimal | None, currency: str) -> str:
    """An amount with its currency ("0.10 USD"), or a dash."""
    return "—" if value is None else f"{amount(value)} {currency}"


def hours(value: Fraction) -> str:
    """Instance-hours, exact where six places hold them ("0.75", "1.333333")."""
    return quantity(value)


def over(quote: Quote | None, terms: Terms) -> bool:
    """Whether `quote` costs more than the most the visitor said they would pay for `terms`."""
    return quote is not None and terms.max_price is not None and quote.total > terms.max_price


def price_row(asked: Terms, quote: Quote | None, currency: str) -> tuple[str, str, Any, Any, bool]:
    """The price as a row of the terms side by side (pages.compared): the most the visitor
    would pay, the price offered, marked changed when it is more."""
    limit = f"at most {priced(asked.max_price, currency)}" if asked.max_price is not None else "no limit given"
    offered = priced(quote.total, quote.currency) if quote is not None else "not priced"
    return ("Price", "price", limit, offered, over(quote, asked))


@dataclass(frozen=True)
class Line:
    """One run of hours at one rate."""

    start: Millis
    end: Millis
    count: int
    instance_hours: str
    rate: str  # per instance-hour, the multiplier included
    multiplier: str
    amount: str


@dataclass(frozen=True)
class Breakdown:
    """How a price is made up: its schedule, a line per run of hours at one rate. For a change
    of agreed terms, `agreed` is the price bound before and `credit` what the hours given up
    were priced at (the lines are then the new schedule: hours kept as priced, hours added at
    today's rates)."""

    currency: str
    total: str
    instance_hours: str
    lines: tuple[Line, ...]
    agreed: str | None
    credit: str | None


def breakdown(quote: Quote) -> Breakdown:
    lines = tuple(Line(span.start, span.end, span.count, hours(span.instance_hours), amount(span.rate.normalize()),
                       amount(span.multiplier.normalize()), amount(money(span.amount))) for span in quote.spans)
    return Breakdown(quote.currency, amount(quote.total), hours(quote.instance_hours), lines,
                     amount(quote.agreed) if quote.agreed is not None else None,
                     amount(quote.credit if quote.credit is not None else Decimal("0.00"))
                     if quote.agreed is not None else None)
