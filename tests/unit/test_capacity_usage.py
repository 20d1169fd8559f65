"""What readers ask of capacity: the least free amounts per step, of one node
(`CapacityModel.least_free`) and of the whole cluster (`ClusterTimeline`), against brute force,
whatever holds were taken, changed and released, and nodes added, between two syncs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pex.domain.capacity import Allocation, CapacityModel, ClusterTimeline, Share
from pex.domain.errors import CapacityExceeded
from pex.domain.sizes import InstanceType, Resources

from tests.unit.reference import BruteForceCluster

SIZES = [t.resources for t in InstanceType]
CAPACITY = Resources(12, 12 * 1024, 300)


def least_by_brute_force(ref: BruteForceCluster, nodes: list[str], bounds: list[int]) -> list[tuple[int, int, int]]:
    """Per step, the least free total over `nodes` of each resource at any instant in it."""
    least = []
    for a, b in zip(bounds, bounds[1:]):
        instants = sorted(set().union(*(ref.instants(n, a, b) for n in nodes)))
        totals = [sum((ref.free_at(n, t) for n in nodes), Resources(0, 0, 0)).as_tuple() for t in instants]
        least.append(tuple(min(total[r] for total in totals) for r in range(3)))
    return least


@st.composite
def histories(draw):
    """Rounds of changes (holds taken or replaced, releases, new nodes), each followed by a sync."""
    rounds = []
    for _ in range(draw(st.integers(1, 4))):
        changes = []
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(["hold", "hold", "release", "node"]))
            shares = [(draw(st.integers(0, 2)), draw(st.integers(0, 300)), draw(st.integers(1, 120)),
                       draw(st.integers(1, 3))) for _ in range(draw(st.integers(1, 3)))]
            changes.append((kind, draw(st.integers(0, 5)), draw(st.sampled_from(SIZES)), shares))
        rounds.append(changes)
    return rounds


@st.composite
def step_bounds(draw):
    start = draw(st.integers(0, 400))
    step = draw(st.integers(1, 90))
    steps = draw(st.integers(1, 8))
    end = start + step * steps - draw(st.integers(0, step - 1))  # the last step may be shorter
    return [min(start + k * step, end) for k in range(steps + 1)]


@settings(max_examples=150, deadline=None)
@given(histories(), step_bounds())
def test_least_free_per_step_agrees_with_brute_force(history, bounds):
    model = CapacityModel(origin=0, bucket=7, horizon=100)
    nodes = ["n0", "n1"]
    for name in nodes:
        model.add_node(name, CAPACITY)
    timeline = ClusterTimeline(model)
    for changes in history:
        for kind, key, size, shares in changes:
            if kind == "node":
                nodes.append(f"n{len(nodes)}")
                model.add_node(nodes[-1], CAPACITY)
            elif kind == "release":
                model.release(key)
            else:
                allocation = Allocation(size, tuple(Share(nodes[n % len(nodes)], start, start + length, count)
                                                    for n, start, length, count in shares))
                try:
                    model.hold(key, allocation)
                except CapacityExceeded:
                    pass
        timeline.sync()
        ref = BruteForceCluster(dict.fromkeys(nodes, CAPACITY), model.holders())
        asked = np.array(bounds, dtype=np.int64)
        assert [tuple(c) for c in timeline.least_free(asked).T.tolist()] == least_by_brute_force(ref, nodes, bounds)
        assert timeline.capacity == Resources(*(len(nodes) * r for r in CAPACITY.as_tuple()))
        for name in nodes:
            assert [tuple(c) for c in model.least_free(name, asked).T.tolist()] == \
                least_by_brute_force(ref, [name], bounds)


def test_a_sync_with_nothing_changed_keeps_the_timeline():
    model = CapacityModel(origin=0)
    model.add_node("n0", CAPACITY)
    model.hold("a", Allocation(SIZES[0], (Share("n0", 10, 20, 2),)))
    timeline = ClusterTimeline(model)
    bounds = np.array([0, 10, 20, 30], dtype=np.int64)
    before = timeline.least_free(bounds).tolist()
    timeline.sync()
    assert timeline.least_free(bounds).tolist() == before == [[12, 10, 12], [12288, 10752, 12288], [300, 280, 300]]


def test_a_timeline_left_unsynced_too_long_is_dropped_by_the_model_and_starts_afresh(monkeypatch):
    """The writer keeps no unbounded journal for a reader that asks seldom (an admin's chart)."""
    import pex.domain.capacity as capacity

    monkeypatch.setattr(capacity, "JOURNAL_LIMIT", 10)
    model = CapacityModel(origin=0, bucket=7, horizon=100)
    model.add_node("n0", CAPACITY)
    timeline = ClusterTimeline(model)
    small = InstanceType.SMALL.resources
    for key in range(8):  # 16 journal entries at most: (held, released) each
        model.hold(key, Allocation(small, (Share("n0", key, key + 5, 1),)))
        if key % 2:
            model.release(key)
    assert timeline._journal.lapsed and len(timeline._journal) == 0, "dropped, and emptied"
    timeline.sync()  # starts afresh from what is held now
    bounds = np.array([0, 5, 10, 15], dtype=np.int64)
    assert timeline.least_free(bounds).tolist() == ClusterTimeline(model).least_free(bounds).tolist()
    assert not timeline._journal.lapsed
