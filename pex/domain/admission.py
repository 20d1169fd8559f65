"""Admission: the answer to a proposal (ACCEPT, COUNTER or REJECT) from the capacity model.

A COUNTER changes the fewest terms (DESIGN §2): it moves the start to the earliest instant at
which every instance fits; where that is further than the policy's patience and the fixed
instances fit sooner, it offers fewer optional instances instead. The other choice is kept as
an alternative, so a client may show both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pex.domain.capacity import Allocation, CapacityModel, PlacementPolicy, most_loaded_first
from pex.domain.clock import HOUR, Millis
from pex.domain.negotiation import Reply, Terms
from pex.domain.sizes import InstanceType


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    placement: PlacementPolicy = most_loaded_first
    # A COUNTER may move the start by up to max(patience, duration) before it rather offers
    # fewer optional instances at a time nearer the one asked.
    patience: Millis = HOUR


@dataclass(frozen=True, slots=True)
class Offer:
    terms: Terms
    allocation: Allocation


@dataclass(frozen=True, slots=True)
class Decision:
    reply: Reply  # ACCEPT, COUNTER or REJECT
    offer: Offer | None = None
    reason: str | None = None
    alternatives: tuple[Offer, ...] = field(default=())

    @classmethod
    def reject(cls, reason: str) -> Decision:
        return cls(Reply.REJECT, reason=reason)


def decide(
    model: CapacityModel,
    terms: Terms,
    *,
    latest_start: Millis | None = None,
    policy: AdmissionPolicy = AdmissionPolicy(),
) -> Decision:
    """ACCEPT if every instance fits as asked, else the best COUNTER, else REJECT.

    `terms` must already have passed `negotiation.rejection_reason`.
    """
    instance_type = InstanceType.named(terms.instance_type)
    if instance_type is None:
        return Decision.reject(f"unknown type {terms.instance_type!r}")
    size = instance_type.resources
    ceiling = model.ceiling(size)
    if terms.fixed > ceiling:
        return Decision.reject(
            f"{terms.fixed} {terms.instance_type} instances are more than the cluster can "
            f"ever hold at once ({ceiling})"
        )

    def offer_at(start: Millis, count: int) -> Offer:
        offered = replace(terms, start=start, optional=count - terms.fixed)
        placement = model.place(size, count, start, start + terms.duration, policy.placement)
        assert placement is not None, "admission found room that placement cannot use"
        return Offer(offered, Allocation.uniform(size, placement, start, start + terms.duration))

    wanted = min(terms.count, ceiling)
    placement = model.place(size, terms.count, terms.start, terms.end, policy.placement)
    if placement is not None:
        allocation = Allocation.uniform(size, placement, terms.start, terms.end)
        return Decision(Reply.ACCEPT, Offer(terms, allocation))

    moved: Offer | None = None
    all_start = model.earliest_start(size, wanted, terms.start, terms.duration, latest=latest_start)
    if all_start is not None:
        moved = offer_at(all_start, wanted)

    fewer: Offer | None = None
    if terms.optional:
        fixed_start = model.earliest_start(
            size, terms.fixed, terms.start, terms.duration, latest=latest_start
        )
        if fixed_start is not None and (all_start is None or fixed_start < all_start):
            room = model.count_fitting(size, fixed_start, fixed_start + terms.duration)
            fewer = offer_at(fixed_start, min(terms.count, room))

    if moved is None and fewer is None:
        return Decision.reject("no room for the fixed instances before the booking horizon ends")
    patience = max(policy.patience, terms.duration)
    if moved is not None and (fewer is None or moved.terms.start - terms.start <= patience):
        chosen, other = moved, fewer
    else:
        assert fewer is not None
        chosen, other = fewer, moved
    return Decision(Reply.COUNTER, chosen, alternatives=(other,) if other else ())
