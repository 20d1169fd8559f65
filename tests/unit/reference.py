"""A brute-force capacity reference: obviously right, hopelessly slow, for property tests."""

from __future__ import annotations

from collections.abc import Mapping

from pex.domain.capacity import Allocation
from pex.domain.sizes import Resources


class BruteForceCluster:
    def __init__(self, nodes: Mapping[str, Resources], held: Mapping[object, Allocation]):
        self.nodes = dict(nodes)
        self.shares = [(a.size, s) for a in held.values() for s in a.shares]

    def used_at(self, node: str, t: int) -> Resources:
        used = Resources(0, 0, 0)
        for size, share in self.shares:
            if share.node == node and share.start <= t < share.end:
                used = used + size * share.count
        return used

    def free_at(self, node: str, t: int) -> Resources:
        return self.nodes[node] - self.used_at(node, t)

    def instants(self, node: str, start: int, end: int) -> list[int]:
        points = {start}
        for _, share in self.shares:
            if share.node == node:
                points.update(p for p in (share.start, share.end) if start < p < end)
        return sorted(points)

    def fit(self, node: str, size: Resources, start: int, end: int) -> int:
        return min(size.how_many_fit_in(self.free_at(node, t)) for t in self.instants(node, start, end))

    def count_fitting(self, size: Resources, start: int, end: int, eligible=None) -> int:
        return sum(
            self.fit(n, size, start, end) for n in self.nodes if eligible is None or n in eligible
        )

    def earliest_start(self, size: Resources, count: int, start: int, duration: int, eligible=None):
        candidates = sorted({start} | {s.end for _, s in self.shares if s.end > start})
        for t in candidates:
            if self.count_fitting(size, t, t + duration, eligible) >= count:
                return t
        return None

    def over_capacity(self) -> list[tuple[str, int]]:
        bad = []
        for node, cap in self.nodes.items():
            for t in sorted({s.start for _, s in self.shares if s.node == node}):
                free = self.free_at(node, t)
                if min(free.as_tuple()) < 0:
                    bad.append((node, t))
        return bad
