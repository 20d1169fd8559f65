"""Admission answers: ACCEPT as asked, COUNTER with the fewest changed terms, REJECT with a reason."""

from __future__ import annotations

from pex.domain.admission import AdmissionPolicy, decide
from pex.domain.capacity import Allocation, CapacityModel
from pex.domain.clock import HOUR
from pex.domain.negotiation import Reply, Terms
from pex.domain.sizes import InstanceType, Resources

XL = InstanceType.XLARGE.resources  # 4 CPUs: two fit on an 8-CPU node


def cluster(nodes=2):
    model = CapacityModel(origin=0)
    for i in range(nodes):
        model.add_node(f"n{i}", Resources(8, 16384, 200))
    return model


def book(model, key, count, start, end):
    placement = model.place(XL, count, start, end)
    model.hold(key, Allocation.uniform(XL, placement, start, end))


def terms(fixed, optional=0, start=10 * HOUR, duration=HOUR):
    return Terms("XLARGE", "debian", fixed, optional, start, duration)


def test_accepts_what_fits_as_asked_and_places_it():
    decision = decide(cluster(), terms(3))
    assert decision.reply is Reply.ACCEPT
    assert decision.offer.terms == terms(3)
    assert sorted(decision.offer.allocation.per_node().values()) == [1, 2]


def test_places_on_the_most_loaded_node_first():
    model = cluster()
    book(model, "a", 1, 0, 100 * HOUR)  # n0 has room for one more
    decision = decide(model, terms(1))
    assert decision.offer.allocation.per_node() == {"n0": 1}


def test_a_spreading_policy_can_be_plugged_in():
    from pex.domain.capacity import least_loaded_first

    model = cluster()
    book(model, "a", 1, 0, 100 * HOUR)
    decision = decide(model, terms(1), policy=AdmissionPolicy(placement=least_loaded_first))
    assert decision.offer.allocation.per_node() == {"n1": 1}


def test_counters_with_the_earliest_start_at_which_everything_fits():
    model = cluster()
    book(model, "a", 4, 9 * HOUR, 12 * HOUR)
    decision = decide(model, terms(2))
    assert decision.reply is Reply.COUNTER
    assert decision.offer.terms == terms(2, start=12 * HOUR)


def test_the_counter_start_is_an_exact_end_not_a_rounded_step():
    model = cluster()
    book(model, "a", 4, 9 * HOUR, 12 * HOUR + 1234)
    decision = decide(model, terms(1))
    assert decision.offer.terms.start == 12 * HOUR + 1234


def test_offers_fewer_optional_instances_when_the_full_request_is_far_away():
    model = cluster()
    book(model, "a", 2, 0, 100 * HOUR)  # two slots stay free until hour 100
    decision = decide(model, terms(1, optional=3))
    assert decision.reply is Reply.COUNTER
    assert decision.offer.terms == terms(1, optional=1)  # as asked, with one optional of three
    (alternative,) = decision.alternatives
    assert alternative.terms == terms(1, optional=3, start=100 * HOUR)


def test_prefers_moving_the_start_when_it_moves_only_a_little():
    model = cluster()
    book(model, "a", 2, 0, 10 * HOUR + 30 * 60_000)  # busy for 30 more minutes
    decision = decide(model, terms(1, optional=3))
    assert decision.offer.terms == terms(1, optional=3, start=10 * HOUR + 30 * 60_000)
    assert decision.alternatives[0].terms == terms(1, optional=1)


def test_rejects_more_fixed_instances_than_the_cluster_can_ever_hold():
    decision = decide(cluster(), terms(5))
    assert decision.reply is Reply.REJECT
    assert "more than the cluster can ever hold at once (4)" in decision.reason


def test_rejects_when_nothing_fits_before_the_latest_start():
    model = cluster()
    book(model, "a", 4, 0, 1000 * HOUR)
    decision = decide(model, terms(1), latest_start=500 * HOUR)
    assert decision.reply is Reply.REJECT and "horizon" in decision.reason


def test_down_or_drained_nodes_take_nothing_new():
    model = cluster()
    model.set_eligible("n0", False)
    decision = decide(model, terms(2))
    assert decision.offer.allocation.per_node() == {"n1": 2}
    assert decide(model, terms(3)).reply is Reply.REJECT


def test_an_instance_needs_every_resource_not_only_cpus():
    model = CapacityModel(origin=0)
    model.add_node("tiny-disk", Resources(64, 65536, 100))  # disk for one XLARGE (60 GB)
    assert decide(model, terms(1)).reply is Reply.ACCEPT
    assert decide(model, terms(2)).reply is Reply.REJECT


def test_envelope_of_old_and_new_terms_is_held_during_renegotiation():
    model = cluster(1)
    old = Allocation.uniform(XL, [("n0", 2)], 0, 2 * HOUR)
    new = Allocation.uniform(XL, [("n0", 2)], HOUR, 3 * HOUR)
    model.hold("r", old.envelope(new))
    assert model.free_at("n0", HOUR + 1).cpus == 0  # two instances, not four
    assert model.free_at("n0", 2 * HOUR + 1).cpus == 0
    assert model.free_at("n0", 3 * HOUR).cpus == 8
