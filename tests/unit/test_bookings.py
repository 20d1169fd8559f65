"""Changes to a booking in force, on a capacity model without a store: a running reservation
moving its end, and a lost node's shares moving elsewhere."""

from __future__ import annotations

from pex.domain.bookings import decide_running_change, replan_lost
from pex.domain.capacity import Allocation, Share, most_loaded_first
from pex.domain.clock import HOUR
from pex.domain.negotiation import Reply, Terms
from tests.unit.test_admission import XL, book, cluster

AGREED = Terms("XLARGE", "debian", 2, 0, 0, 2 * HOUR)


def booked(model, key="r", nodes=("n0", "n1"), start=0, end=2 * HOUR):
    allocation = Allocation(XL, tuple(Share(node, start, end, 1) for node in nodes))
    model.hold(key, allocation)
    return allocation


def test_a_running_reservation_may_end_sooner_and_its_shares_follow():
    model = cluster()
    allocation = booked(model)
    shorter = Terms("XLARGE", "debian", 2, 0, 0, HOUR)
    decision = decide_running_change("r", AGREED, allocation, shorter, model, {"n0": "UP", "n1": "UP"})
    assert decision.reply is Reply.ACCEPT and {s.end for s in decision.offer.allocation.shares} == {HOUR}


def test_a_running_reservation_is_extended_only_where_it_runs_and_only_into_room():
    model = cluster()
    allocation = booked(model)
    longer = Terms("XLARGE", "debian", 2, 0, 0, 4 * HOUR)
    up = {"n0": "UP", "n1": "UP"}
    assert decide_running_change("r", AGREED, allocation, longer, model, up).reply is Reply.ACCEPT
    book(model, "other", 2, 2 * HOUR, 3 * HOUR)  # takes n0's or n1's room after the end
    book(model, "more", 2, 2 * HOUR, 3 * HOUR)
    refused = decide_running_change("r", AGREED, allocation, longer, model, up)
    assert refused.reply is Reply.REJECT and "no room to extend" in refused.reason
    drained = decide_running_change("r", AGREED, allocation, longer, cluster(), {"n0": "DRAINED", "n1": "UP"})
    assert drained.reply is Reply.REJECT and "n0 is DRAINED" in drained.reason


def test_a_running_reservation_cannot_change_anything_but_its_end():
    model = cluster()
    allocation = booked(model)
    more = Terms("XLARGE", "debian", 3, 0, 0, 2 * HOUR)
    assert decide_running_change("r", AGREED, allocation, more, model, {"n0": "UP", "n1": "UP"}).reply is Reply.REJECT


def test_a_lost_nodes_shares_move_from_now_on_and_its_past_stays():
    model = cluster(3)
    allocation = booked(model)
    model.set_eligible("n0", False)
    lost = [s for s in allocation.shares if s.node == "n0"]
    moved_to, moved, unplaced = replan_lost("r", allocation, lost, HOUR, model, most_loaded_first)
    assert unplaced == 0 and [(s.node, s.start, s.end) for s in moved] in ([("n1", HOUR, 2 * HOUR)],
                                                                          [("n2", HOUR, 2 * HOUR)])
    assert Share("n0", 0, HOUR, 1) in moved_to.shares, "what already ran on the lost node stays its history"
    assert model.held("r") == allocation and model.held(("re-planning", "r")) is None, "the model is left as found"


def test_shares_that_find_no_room_are_counted_unplaced():
    model = cluster(2)
    allocation = booked(model)
    book(model, "full", 2, 0, 10 * HOUR)  # the last room on both nodes
    model.set_eligible("n0", False)  # lost: down nodes take no bookings
    lost = [s for s in allocation.shares if s.node == "n0"]
    _, moved, unplaced = replan_lost("r", allocation, lost, HOUR, model, most_loaded_first)
    assert (len(moved), unplaced) == (0, 1)
