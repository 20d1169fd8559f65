"""How a booking in force changes: its end moved while the reservation runs, or its shares
moved off a lost node. Pure rules over the capacity model (no store): the application records
what they decide."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from pex.domain.admission import Decision, Offer
from pex.domain.capacity import Allocation, CapacityModel, PlacementPolicy, Share
from pex.domain.clock import Millis
from pex.domain.negotiation import Reply, Terms


def decide_running_change(holder: Hashable, agreed: Terms, booking: Allocation, terms: Terms,
                          capacity: CapacityModel, node_status: Mapping[str, str]) -> Decision:
    """A reservation that has started may only change its end, on the nodes it runs on: a
    shorter one always fits; a longer one if every node it runs on is UP and has room."""
    if (terms.start, terms.fixed, terms.optional, terms.instance_type, terms.template) != (
        agreed.start, agreed.fixed, agreed.optional, agreed.instance_type, agreed.template
    ):
        return Decision.reject("a reservation that has started can only change its duration")
    # Shares that reach the agreed end are the placement in force: they move with the end;
    # earlier ones (before a node was lost) are history and stay as they were.
    shares = []
    for share in booking.shares:
        end = terms.end if share.end == agreed.end else min(share.end, terms.end)
        if share.start < end:
            shares.append(share._replace(end=end))
    if terms.end > agreed.end:
        with capacity.without(holder):
            for share in booking.shares:
                if share.end != agreed.end:
                    continue
                if node_status[share.node] != "UP":
                    return Decision.reject(f"node {share.node} is {node_status[share.node]}: "
                                           "the reservation cannot be extended there")
                if capacity.fit_on(share.node, booking.size, agreed.end, terms.end) < share.count:
                    return Decision.reject(f"node {share.node} has no room to extend the reservation")
    return Decision(Reply.ACCEPT, Offer(terms, Allocation(booking.size, tuple(shares))))


def replan_lost(holder: Hashable, booking: Allocation, lost: list[Share], now: Millis, capacity: CapacityModel,
                placement: PlacementPolicy) -> tuple[Allocation, list[Share], int]:
    """Move the `lost` shares of a booking (those on a node that went down, from `now` on) to
    nodes with room, placed as a new booking would be. The lost node keeps what already
    happened there. Returns the new booking, the moved shares and how many instances found no
    room."""
    size = booking.size
    kept = [s for s in booking.shares if s not in lost] + [s._replace(end=now) for s in lost if s.start < now]
    moved: list[Share] = []
    unplaced = 0
    scratch = ("re-planning", holder)
    with capacity.without(holder):
        try:
            for share in lost:
                start = max(share.start, now)
                capacity.hold(scratch, Allocation(size, tuple(kept + moved)))  # what is placed so far
                fitting = min(share.count, capacity.count_fitting(size, start, share.end))
                placed = capacity.place(size, fitting, start, share.end, placement) if fitting else []
                capacity.release(scratch)
                moved += [Share(node, start, share.end, count) for node, count in placed or []]
                unplaced += share.count - fitting
        finally:
            capacity.release(scratch)
    return Allocation(size, tuple(kept + moved)), moved, unplaced
