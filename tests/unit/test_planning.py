"""Instance planning without a store: instances keep their identity wherever placement allows."""

from __future__ import annotations

from pex.domain.planning import PlannedInstance as I
from pex.domain.planning import plan_instances


def test_instances_on_nodes_the_booking_keeps_stay_there():
    plan = plan_instances({"n1": 2}, [I("a", "n1", "RUNNING"), I("b", "n1", "PENDING")])
    assert plan.placed == {"a": "n1", "b": "n1"} and plan.discarded == [] and plan.new == []


def test_an_instance_never_booted_moves_to_a_node_that_needs_one_instead_of_being_replaced():
    plan = plan_instances({"n2": 1, "n3": 1}, [I("a", "n1", "PENDING"), I("b", "n1", "PENDING")])
    assert plan.placed == {"a": "n2", "b": "n3"} and plan.discarded == [] and plan.new == []


def test_a_booted_instance_on_a_node_no_longer_booked_is_replaced():
    plan = plan_instances({"n2": 1}, [I("a", "n1", "RUNNING")])
    assert plan.placed == {} and plan.discarded == ["a"] and plan.new == ["n2"]


def test_fewer_instances_discard_the_newest_and_more_create_what_is_missing():
    assert plan_instances({"n1": 1}, [I("a", "n1", "PENDING"), I("b", "n1", "PENDING")]).discarded == ["b"]
    more = plan_instances({"n1": 1, "n2": 2}, [I("a", "n1", "PENDING")])
    assert more.placed == {"a": "n1"} and more.new == ["n2", "n2"]
