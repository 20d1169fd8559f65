"""The bucket index's bulk paths (issue 13, ten thousand hosts): nodes are given their columns
only when a question comes, all at once, and a rebuild sets every node's buckets in one pass;
neither may change an answer. Its levels are 32-bit, so a capacity they cannot hold is refused
when the node is added."""

from __future__ import annotations

import numpy as np
import pytest

from pex.domain.capacity import Allocation, CapacityModel
from pex.domain.capacity_index import LEVEL_LIMIT
from pex.domain.clock import HOUR, MINUTE
from pex.domain.sizes import Resources

NODE = Resources(8, 16384, 200)
SMALL = Resources(1, 1024, 10)


def model_of(count: int) -> CapacityModel:
    model = CapacityModel(origin=0, bucket=15 * MINUTE, horizon=2 * 24 * HOUR)
    for i in range(count):
        model.add_node(f"n{i}", NODE)
    return model


@pytest.mark.parametrize("capacity", [Resources(2**31, 1024, 10), Resources(8, LEVEL_LIMIT, 10),
                                      Resources(8, 1024, 2**40)])
def test_a_capacity_the_32_bit_levels_cannot_hold_is_refused_when_the_node_is_added(capacity):
    model = model_of(2)
    with pytest.raises(ValueError, match="32-bit"):
        model.add_node("huge", capacity)
    assert model.nodes() == ["n0", "n1"]  # nothing of it was kept
    assert model.count_fitting(SMALL, 0, HOUR) == 16


def test_the_largest_capacity_the_levels_hold_is_taken_and_counted_exactly():
    model = model_of(0)
    model.add_node("big", Resources(LEVEL_LIMIT - 1, LEVEL_LIMIT - 1, LEVEL_LIMIT - 1))
    model.hold("r", Allocation.uniform(SMALL, [("big", 3)], HOUR, 2 * HOUR))
    assert model.count_fitting(Resources(1, 1, 1), HOUR, 2 * HOUR) == LEVEL_LIMIT - 1 - 3 * 1024  # (memory binds)


def test_nodes_added_after_questions_were_asked_are_free_and_leave_the_others_as_they_were():
    model = model_of(3)
    model.hold("r", Allocation.uniform(SMALL, [("n1", 5)], HOUR, 3 * HOUR))
    assert model.count_fitting(SMALL, HOUR, 2 * HOUR) == 19
    for i in range(3, 40):  # (widens the index's columns more than once)
        model.add_node(f"n{i}", NODE)
    assert model.count_fitting(SMALL, HOUR, 2 * HOUR) == 40 * 8 - 5
    assert model.free_at("n1", HOUR) == Resources(3, 16384 - 5 * 1024, 150)
    assert model.place(SMALL, 8, HOUR, 2 * HOUR) == [("n1", 3), ("n0", 5)]


def test_a_node_down_before_any_question_is_not_counted():
    model = model_of(3)
    model.set_eligible("n2", False)  # (registered DOWN: no question has been asked yet)
    assert model.count_fitting(SMALL, 0, HOUR) == 16
    assert model.committed(0, 1).tolist() == [0.0]
    model.set_eligible("n2", True)
    assert model.count_fitting(SMALL, 0, HOUR) == 24


def test_a_bulk_load_answers_as_holding_one_by_one():
    held = {k: Allocation.uniform(SMALL, [(f"n{(7 * k) % 50}", 1 + k % 3)], k * 37 * MINUTE, k * 37 * MINUTE + 2 * HOUR)
            for k in range(60)}
    live = model_of(50)
    for key, allocation in held.items():
        live.hold(key, allocation)
    loaded = model_of(50)
    loaded.set_eligible("n3", False)
    live.set_eligible("n3", False)
    loaded.load(held)
    assert np.array_equal(loaded._index.fine, live._index.fine)
    assert np.array_equal(loaded._index.coarse, live._index.coarse)
    assert np.array_equal(loaded._index.totals, live._index.totals)
    for start in range(0, 40 * HOUR, 5 * HOUR + 7 * MINUTE):
        assert loaded.count_fitting(SMALL, start, start + HOUR) == live.count_fitting(SMALL, start, start + HOUR)
        assert loaded.earliest_start(SMALL, 390, start, 3 * HOUR) == live.earliest_start(SMALL, 390, start, 3 * HOUR)
