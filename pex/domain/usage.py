"""Capacity over a period as readers ask for it: per step, the least free and the most used
CPUs, memory and disk at any instant in it, of one node or of the whole cluster. One rule for
`pex.query` and `GET /OpenPEX/capacity`."""

from __future__ import annotations

import numpy as np

from pex.domain.capacity import CapacityModel, ClusterTimeline
from pex.domain.clock import Millis
from pex.domain.read_models import CapacityStep
from pex.domain.sizes import Resources

MOST_STEPS = 100_000  # steps one question may ask for


def step_bounds(start: Millis, end: Millis, step: Millis) -> np.ndarray:
    """The steps' bounds from `start` to `end` (the last step shorter if `step` does not divide
    the period): start < end and step > 0, which the caller has checked."""
    steps = -(-(end - start) // step)
    return np.minimum(start + step * np.arange(steps + 1, dtype=np.int64), end)


def step_count(start: Millis, end: Millis, step: Millis) -> int:
    return -(-(end - start) // step)


def capacity_steps(model: CapacityModel, cluster: ClusterTimeline | None, node: str | None,
                   bounds: np.ndarray) -> list[CapacityStep]:
    """Per step [bounds[k], bounds[k+1]) of `node` (None: the cluster, as `cluster` has it
    synced), counting everything held: bookings and the holds of open offers. A node's used
    is its size less its least free; the cluster's, every registered node's, whatever its status."""
    if node is None:
        assert cluster is not None
        least, capacity = cluster.least_free(bounds), cluster.capacity
    else:
        least, capacity = model.least_free(node, bounds), model.capacity_of(node)
    c, m, d = capacity.as_tuple()
    cpus, memory, disk = least.tolist()
    return [CapacityStep(a, b, Resources(fc, fm, fd), Resources(c - fc, m - fm, d - fd))
            for a, b, fc, fm, fd in zip(bounds[:-1].tolist(), bounds[1:].tolist(), cpus, memory, disk)]
