"""Property tests: the capacity model agrees with a brute-force reference and never lets a
node go over capacity, whatever the sequence of holds and releases."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pex.domain.capacity import Allocation, CapacityModel, Share
from pex.domain.errors import CapacityExceeded
from pex.domain.sizes import InstanceType, Resources

from tests.unit.reference import BruteForceCluster

# Tiny buckets make windows cross many bucket edges and use the coarse rows; a bucket longer
# than any window disables pruning, so the incremental sweep walks every end.
BUCKETS = st.sampled_from([3, 10, 1000])
SIZES = [t.resources for t in InstanceType]

node_capacity = st.builds(
    Resources,
    cpus=st.integers(1, 12),
    memory_mb=st.integers(700, 12 * 1024),
    disk_gb=st.integers(10, 300),
)


@st.composite
def clusters(draw):
    count = draw(st.integers(1, 5))
    nodes = {f"n{i}": draw(node_capacity) for i in range(count)}
    return nodes


@st.composite
def operations(draw, nodes):
    names = sorted(nodes)
    ops = []
    for key in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["place", "raw", "release", "ineligible"]))
        size = draw(st.sampled_from(SIZES))
        start = draw(st.integers(0, 400))
        duration = draw(st.integers(1, 150))
        count = draw(st.integers(1, 6))
        node = draw(st.sampled_from(names))
        ops.append((kind, key, size, start, duration, count, node))
    return ops


def build(nodes, bucket, horizon=200):
    model = CapacityModel(origin=0, bucket=bucket, horizon=horizon)
    for name, cap in nodes.items():
        model.add_node(name, cap)
    return model


def check_queries(model, nodes, held, data, eligible):
    ref = BruteForceCluster(nodes, held)
    assert ref.over_capacity() == []
    assert model.within_capacity()
    for _ in range(3):
        size = data.draw(st.sampled_from(SIZES))
        start = data.draw(st.integers(0, 500))
        duration = data.draw(st.integers(1, 200))
        end = start + duration
        assert model.count_fitting(size, start, end) == ref.count_fitting(size, start, end, eligible)
        for name in nodes:
            assert model.fit_on(name, size, start, end) == ref.fit(name, size, start, end)
        count = data.draw(st.integers(1, 12))
        assert model.has_room(size, start, end, count) == (ref.count_fitting(size, start, end, eligible) >= count)
        expected = ref.earliest_start(size, count, start, duration, eligible)
        assert model.earliest_start(size, count, start, duration) == expected
        placement = model.place(size, count, start, end)
        if ref.count_fitting(size, start, end, eligible) >= count:
            assert placement is not None and sum(n for _, n in placement) == count
            for name, n in placement:
                assert name in eligible and n <= ref.fit(name, size, start, end)
        else:
            assert placement is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_holds_and_releases_agree_with_brute_force(data):
    nodes = data.draw(clusters())
    model = build(nodes, data.draw(BUCKETS))
    held: dict[int, Allocation] = {}
    eligible = set(nodes)
    for kind, key, size, start, duration, count, node in data.draw(operations(nodes)):
        if kind == "place":
            placement = model.place(size, count, start, start + duration)
            if placement is not None:
                allocation = Allocation.uniform(size, placement, start, start + duration)
                model.hold(key, allocation)
                held[key] = allocation
        elif kind == "raw":
            # Anything may be attempted; the model must refuse what does not fit.
            allocation = Allocation(size, (Share(node, start, start + duration, count),))
            ref = BruteForceCluster(nodes, {**held, key: allocation})
            try:
                model.hold(key, allocation)
            except CapacityExceeded:
                assert ref.over_capacity() != []
            else:
                assert ref.over_capacity() == []
                held[key] = allocation
        elif kind == "release" and held:
            victim = data.draw(st.sampled_from(sorted(held)))
            model.release(victim)
            del held[victim]
        elif kind == "ineligible" and len(eligible) > 1:
            model.set_eligible(node, False)
            eligible.discard(node)
        check_queries(model, nodes, held, data, eligible)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_bulk_load_builds_the_same_model_as_holding_one_by_one(data):
    nodes = data.draw(clusters())
    bucket = data.draw(BUCKETS)
    live = build(nodes, bucket)
    held = {}
    for kind, key, size, start, duration, count, node in data.draw(operations(nodes)):
        placement = live.place(size, count, start, start + duration)
        if placement is not None:
            held[key] = Allocation.uniform(size, placement, start, start + duration)
            live.hold(key, held[key])
    loaded = build(nodes, bucket)
    loaded.load(held)
    for name in nodes:
        assert loaded.timeline(name, 0, 10_000) == live.timeline(name, 0, 10_000)
    # Horizons may have grown differently; past the shorter one every node is entirely free.
    a, b = sorted([loaded._index.fine, live._index.fine], key=lambda m: m.shape[0])
    assert (a == b[: a.shape[0]]).all()
    assert (b[a.shape[0] :] == b[-1:]).all()
    check_queries(loaded, nodes, held, data, set(nodes))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_envelope_is_the_pointwise_maximum(data):
    size = SIZES[0]
    def allocs():
        return st.lists(
            st.builds(
                lambda n, s, d, c: Share(n, s, s + d, c),
                st.sampled_from(["a", "b"]), st.integers(0, 50), st.integers(1, 30), st.integers(1, 3),
            ),
            max_size=4,
        ).map(lambda shares: Allocation(size, tuple(shares)))
    first, second = data.draw(allocs()), data.draw(allocs())
    env = first.envelope(second)

    def count(alloc, node, t):
        return sum(s.count for s in alloc.shares if s.node == node and s.start <= t < s.end)

    for node in "ab":
        for t in range(0, 90):
            assert count(env, node, t) == max(count(first, node, t), count(second, node, t))
