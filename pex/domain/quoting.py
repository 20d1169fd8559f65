"""Quoting: the price of an offer, and price as a term of the negotiation (issue 12).

Admission decides on capacity alone; `priced` then prices what it offers from the rate card,
the pricing policy and the cluster's committed utilisation over the offer's hours, and applies
the user's `maxPrice`: terms that fit but cost more are countered at their price (the same
window), with the nearest later window that costs at most `maxPrice` among the alternatives.
A change of agreed terms is priced as the change: the hours added at today's prices, the hours
given up taken out of the bound schedule exactly as they were priced.

The model is asked as it stands for the decision (the reservation being priced left out), so a
price never counts the reservation's own hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from pex.domain.admission import Decision, Offer
from pex.domain.capacity import CapacityModel
from pex.domain.clock import HOUR, Millis
from pex.domain.negotiation import Reply, Terms
from pex.domain.pricing import (PricingPolicy, Quote, RateCard, money_of, most_units, priced_runs, quote_pieces,
                                window_sums, without_instances)
from pex.domain.sizes import InstanceType

# Later windows whose price is within maxPrice are checked for room at most this many times
# (cheap hours are mostly empty ones, so the first few nearly always have room).
ROOM_CHECKS = 256


@dataclass(frozen=True)
class Pricing:
    """Prices as they stand: the admin's card, the policy, and the capacity model to read the
    committed utilisation of each hour from."""

    card: RateCard
    policy: PricingPolicy
    model: CapacityModel
    now: Millis  # a change never alters the hours before it

    def of(self, terms: Terms) -> Quote:
        return quote_pieces(self.card, terms.instance_type, [(terms.start, terms.end, terms.count)], self.factors)

    def factors(self, first: Millis, hours: int) -> np.ndarray:
        """The policy's multiplier of each clock hour from `first` (read-only; the model keeps
        them until an hour's commitments change)."""
        return self.model.hourly(first, hours, self.policy.multipliers)

    def of_change(self, agreed: Terms, bound: Quote | None, new: Terms) -> Quote:
        """The price of agreed terms changed to `new`: the bound schedule with the hours given
        up taken out (exactly as they were priced: `credit`), and the hours added at today's
        prices. Hours before `now` are never changed: what was used stays as it was priced."""
        runs = list(bound.runs) if bound is not None else []  # (bound before prices: nothing to keep)
        points = sorted({agreed.start, agreed.end, new.start, new.end, self.now})
        added: list[tuple[Millis, Millis, int]] = []
        taken = 0
        for lo, hi in zip(points, points[1:]):
            if hi <= self.now:
                continue
            before = agreed.count if agreed.start <= lo < agreed.end else 0
            after = new.count if new.start <= lo < new.end else 0
            if after > before:
                added.append((lo, hi, after - before))
            elif before > after:
                runs, amount = without_instances(runs, lo, hi, before - after)
                taken += amount
        runs += priced_runs(self.card, new.instance_type, added, self.factors)
        return Quote.of_runs(self.card.currency, runs, agreed=bound.total if bound is not None else Decimal("0.00"),
                             credit=money_of(taken))

    def cheaper_window(self, terms: Terms, ceiling: Decimal, latest_start: Millis) -> Terms | None:
        """The nearest later window (starting on a clock hour, up to `latest_start`) where the
        instances fit and cost at most `ceiling`, or None."""
        size = InstanceType.named(terms.instance_type)
        assert size is not None
        first = -(-terms.start // HOUR) * HOUR
        if first == terms.start:
            first += HOUR  # (the window asked is the one that costs too much)
        # Past the model's horizon nothing is held: every later window costs the card's price
        # and has the whole cluster, so the first one there stands for all that follow.
        latest_start = min(latest_start, max(first, -(-self.model.horizon // HOUR) * HOUR))
        if latest_start < first:
            return None
        limit = most_units(self.card, terms.instance_type, terms.count, ceiling)
        starts = (latest_start - first) // HOUR + 1
        sums = window_sums(self.factors(first, starts + -(-terms.duration // HOUR)), terms.duration)[:starts]
        for k in np.flatnonzero(sums <= limit)[:ROOM_CHECKS]:  # (mostly the first has room)
            start = first + int(k) * HOUR
            if self.model.has_room(size.resources, start, start + terms.duration, terms.count):
                return replace(terms, start=start)
        return None


@dataclass(frozen=True)
class PricedDecision:
    """Admission's decision with prices: the offer's, and each alternative's."""

    reply: Reply
    offer: Offer | None = None
    price: Quote | None = None
    reason: str | None = None
    alternatives: tuple[tuple[Terms, Quote], ...] = field(default=())


def priced(decision: Decision, asked: Terms, pricing: Pricing, *, latest_start: Millis,
           agreed: tuple[Terms, Quote | None] | None = None) -> PricedDecision:
    """Price `decision` (on `asked`, the user's terms) and apply the user's maxPrice. For a
    renegotiation `agreed` gives the terms in force and the price bound for them."""
    if decision.offer is None:
        return PricedDecision(decision.reply, reason=decision.reason)

    def price_of(terms: Terms) -> Quote:
        return pricing.of(terms) if agreed is None else pricing.of_change(agreed[0], agreed[1], terms)

    offer = decision.offer
    price = price_of(offer.terms)
    alternatives = [(alt.terms, price_of(alt.terms)) for alt in decision.alternatives]
    reply = decision.reply
    ceiling = asked.max_price
    if ceiling is not None and price.total > ceiling:
        reply = Reply.COUNTER  # the terms at their price; a cheaper window is the alternative
        if agreed is None:
            cheaper = pricing.cheaper_window(offer.terms, ceiling, latest_start)
            if cheaper is not None:
                alternatives.insert(0, (cheaper, pricing.of(cheaper)))
    return PricedDecision(reply, offer, price, alternatives=tuple(alternatives))
