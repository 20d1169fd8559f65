"""The aggregates on their own, with no store: each public method decides (or refuses), and the
events it records rebuild the same state when replayed, without re-running any rule."""

from __future__ import annotations

from typing import Any

import pytest

from pex.domain.aggregates import Account, Instance, Node, Reservation, named_id
from pex.domain.capacity import Allocation, Share
from pex.domain.catalogue import node_size
from pex.domain.clock import HOUR, MINUTE
from pex.domain.errors import OfferExpired, ProtocolViolation
from pex.domain.negotiation import Reply, Status, Terms
from pex.domain.sizes import InstanceType, Resources
from pex.domain.statuses import InstanceStatus, NodeStatus

NOW = 1_900_000_000_000
TERMS = Terms("SMALL", "debian-12", 2, 0, NOW + HOUR, HOUR)
SMALL = InstanceType.SMALL.resources


def allocation(node: str = "n1", start: int = NOW + HOUR, end: int = NOW + 2 * HOUR, count: int = 2) -> Allocation:
    return Allocation(SMALL, (Share(node, start, end, count),))


def offered(reply: Reply = Reply.ACCEPT, terms: Terms = TERMS) -> Reservation:
    reservation = Reservation("alice", terms.to_dict())
    reservation.answer(reply, terms=terms, allocation=allocation(), hold_until=NOW + 5 * MINUTE, opened=NOW)
    return reservation


def replayed(aggregate: Any) -> Any:
    """The aggregate rebuilt from the events it recorded (what a projection does)."""
    rebuilt = None
    for event in aggregate.collect_events():
        rebuilt = event.mutate(rebuilt)
    return rebuilt


def state(reservation: Reservation) -> tuple[Any, ...]:
    return (reservation.status, reservation.agreed, reservation.booking, reservation.offer, reservation.reason,
            reservation.launched, reservation.activated)


# ---------------------------------------------------------------------- Reservation

def test_an_accepted_offer_confirmed_activated_launched_and_expired_replays_to_the_same_state():
    reservation = offered()
    assert reservation.status is Status.ACCEPTED and reservation.held_allocation() == allocation()
    reservation.confirm(NOW + MINUTE)
    assert reservation.status is Status.CONFIRMED and reservation.agreed_terms == TERMS and reservation.offer is None
    reservation.activate()
    with pytest.raises(ProtocolViolation, match="not started"):
        reservation.launch(NOW)
    reservation.launch(NOW + HOUR)
    with pytest.raises(ProtocolViolation, match="not ended"):
        reservation.expire(NOW + HOUR)
    reservation.expire(NOW + 2 * HOUR)
    assert reservation.status is Status.EXPIRED and reservation.held_allocation() is None
    expected = state(reservation)
    assert state(replayed(reservation)) == expected


def test_an_offer_cannot_be_confirmed_once_its_hold_has_passed_nor_lapse_before():
    reservation = offered()
    with pytest.raises(ProtocolViolation, match="still held"):
        reservation.lapse(NOW + 5 * MINUTE - 1)
    with pytest.raises(OfferExpired):
        reservation.confirm(NOW + 5 * MINUTE)
    reservation.lapse(NOW + 5 * MINUTE)
    assert reservation.status is Status.OFFER_EXPIRED and reservation.held_allocation() is None


def test_a_counter_must_be_accepted_before_it_is_confirmed():
    reservation = offered(Reply.COUNTER)
    assert reservation.status is Status.COUNTERED
    with pytest.raises(ProtocolViolation, match="must be ACCEPTed"):
        reservation.confirm(NOW)
    reservation.accept_counter(NOW, NOW + 5 * MINUTE)
    assert reservation.status is Status.ACCEPTED
    reservation.confirm(NOW)
    assert reservation.status is Status.CONFIRMED


def test_a_users_withdrawal_reads_withdrawn_and_openpexs_refusal_reads_rejected():
    withdrawn = offered()
    withdrawn.withdraw()
    cancelled = offered()
    cancelled.cancel(0)  # a DELETE of an open offer is a withdrawal too
    refused = Reservation("alice", TERMS.to_dict())
    refused.answer(Reply.REJECT, reason="no room")
    assert (withdrawn.status, cancelled.status, refused.status) == (Status.WITHDRAWN, Status.WITHDRAWN, Status.REJECTED)
    assert refused.reason == "no room" and withdrawn.reason is None
    for closed in (withdrawn, refused):
        with pytest.raises(ProtocolViolation):
            closed.confirm(NOW)


def test_a_renegotiation_holds_the_old_booking_and_the_new_offer_until_confirmed():
    reservation = offered()
    reservation.confirm(NOW)
    longer = Terms("SMALL", "debian-12", 2, 0, NOW + HOUR, 2 * HOUR)
    reservation.propose(longer)
    reservation.answer(Reply.ACCEPT, terms=longer, allocation=allocation(end=NOW + 3 * HOUR),
                       hold_until=NOW + 5 * MINUTE, opened=NOW)
    assert reservation.status is Status.CONFIRMED and reservation.terms_in_force == TERMS
    assert reservation.latest_terms == longer
    held = reservation.held_allocation()
    assert held is not None and max(share.end for share in held.shares) == NOW + 3 * HOUR
    reservation.withdraw()  # the new terms are given up; the agreed ones stand
    assert reservation.status is Status.CONFIRMED and reservation.held_allocation() == allocation()


def test_a_lost_node_that_left_instances_unplaced_degrades_the_reservation_with_the_reason():
    reservation = offered()
    reservation.confirm(NOW)
    reservation.replan(allocation(node="n2", count=1), unplaced=1, lost_node="n1")
    assert reservation.status is Status.DEGRADED and "node n1 was lost" in (reservation.reason or "")
    assert state(replayed(reservation)) == state(reservation)


# ---------------------------------------------------------------------- Instance

def instance() -> Instance:
    return Instance(named_id("reservation", "r"), "alice", "r-1", "n1", "SMALL", "debian-12", NOW, NOW + HOUR)


def test_an_instance_records_only_what_a_hypervisor_can_report_and_nothing_after_deletion():
    vm = instance()
    assert vm.status is InstanceStatus.PENDING
    for impossible in ("PENDING", "DELETED", "BOOTING"):
        with pytest.raises(ValueError):
            vm.record_status(impossible)
    vm.record_status("RUNNING")
    vm.record_status("RUNNING")  # the same report twice is one event
    vm.discard()
    vm.discard()
    vm.record_status("CRASHED")  # a late report of a deleted VM changes nothing
    assert vm.status is InstanceStatus.DELETED
    assert [type(e).__name__ for e in vm.pending_events] == ["Planned", "StatusChanged", "Discarded"]


def test_a_moved_instance_boots_again_and_a_stranded_one_has_no_node():
    moved, stranded = instance(), instance()
    for vm in (moved, stranded):
        vm.record_status("RUNNING")
    moved.relocate("n2")
    stranded.strand("no room")
    assert (moved.node, moved.status) == ("n2", InstanceStatus.PENDING)
    assert (stranded.node, stranded.status, stranded.reason) == ("", InstanceStatus.CRASHED, "no room")
    again = replayed(stranded)
    assert (again.node, again.status, again.reason) == ("", InstanceStatus.CRASHED, "no room")


def test_rescheduling_to_the_same_place_and_time_records_nothing():
    vm = instance()
    vm.reschedule("n1", NOW, NOW + HOUR)
    assert len(vm.pending_events) == 1
    vm.reschedule("n1", NOW, NOW + 2 * HOUR)
    assert vm.end == NOW + 2 * HOUR and len(vm.pending_events) == 2


# ---------------------------------------------------------------------- Node and Account

def test_a_drained_node_that_fails_and_comes_back_is_still_drained():
    node = Node("n1", "test:///n1.xml", 8, 16384, 200)
    node.drain()
    node.go_down()
    node.come_back()
    assert node.status is NodeStatus.DRAINED
    node.undrain()
    assert node.status is NodeStatus.UP
    node.go_down()
    node.go_down()  # once is enough
    assert [type(e).__name__ for e in node.pending_events] == [
        "Registered", "Drained", "NodeWentDown", "NodeCameBack", "Undrained", "NodeWentDown"]
    assert replayed(node).status is NodeStatus.DOWN


def test_an_accounts_identity_is_its_name_in_any_case_and_an_unchanged_quota_records_nothing():
    assert Account.create_id("Alice") == Account.create_id("alice")
    account = Account("Alice", "hash", "", "", False)
    account.set_quota({"open_offers": 3})
    account.set_quota({"open_offers": 3})
    assert [type(e).__name__ for e in account.pending_events] == ["Registered", "QuotaSet"]


def test_a_nodes_size_is_what_was_given_else_what_the_host_reports_else_the_default():
    default = Resources(8, 16384, 200)
    assert node_size({}, None, default) == default
    assert node_size({}, Resources(32, 65536, 0), default) == Resources(32, 65536, 200)
    assert node_size({"cpus": 4, "disk_gb": 50}, Resources(32, 65536, 0), default) == Resources(4, 65536, 50)
