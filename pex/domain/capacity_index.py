"""The bucket index: per node and fixed-width time bucket, the least free amount of each
resource in that bucket, so admission can bound many nodes at once with numpy.

Rows are buckets (shape buckets x 3 x nodes) so a range of buckets is one contiguous block.
A coarse copy (one row per `fold` buckets) makes a long range cost a few dozen rows, and the
per-bucket totals over counted nodes give a cluster-wide bound that is cheaper still.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from pex.domain.clock import Millis

Vector = tuple[int, int, int]  # an amount of each resource: cpus, memory MB, disk GB
Levels = NDArray[np.signedinteger]  # free amounts of any width (capacities are int64, buckets int32)
_Scalar = TypeVar("_Scalar", bound=np.generic)


def sliding_min(values: NDArray[_Scalar], width: int) -> NDArray[_Scalar]:
    """Minimum of every `width` consecutive rows; returns len(values) - width + 1 rows.

    By doubling: after k steps each row holds the minimum of the 2**k rows from it, and two
    overlapping such spans cover any window. log2(width) contiguous `np.minimum` passes are
    several times faster than the two `accumulate` passes of van Herk/Gil-Werman along axis 0."""
    m = values.shape[0]
    span, spans = 1, values
    while span * 2 <= width:
        spans = np.minimum(spans[:-span], spans[span:])
        span *= 2
    rows = m - width + 1
    minima: NDArray[_Scalar] = np.minimum(spans[:rows], spans[width - span : width - span + rows])
    return minima


class BucketIndex:
    def __init__(self, origin: Millis, width: Millis, buckets: int, fold: int = 16) -> None:
        self.width = width
        self.origin = origin - origin % width
        self.fold = fold
        self.buckets = -(-max(buckets, 1) // fold) * fold
        self.nodes = 0
        # Node columns are allocated in doubling steps (adding 1,000 nodes one at a time must
        # not copy the whole index 1,000 times); the public arrays are views of the used part.
        self._room = 0
        self._capacity = np.zeros((3, 0), dtype=np.int64)
        self._fine = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        # Free amounts at each bucket's first and last instant: a window that only partly
        # covers an edge bucket still contains one of them, which bounds its minimum from
        # above; where the level does not change inside the bucket the bound is exact.
        self._first = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        self._last = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        self._coarse = np.zeros((self.buckets // fold, 3, 0), dtype=np.int32)
        self._counted = np.zeros(0, dtype=bool)
        self.totals = np.zeros((self.buckets, 3), dtype=np.int64)

    @property
    def capacity(self) -> NDArray[np.int64]:
        return self._capacity[:, : self.nodes]

    @property
    def fine(self) -> NDArray[np.int32]:
        return self._fine[:, :, : self.nodes]

    @property
    def first(self) -> NDArray[np.int32]:
        return self._first[:, :, : self.nodes]

    @property
    def last(self) -> NDArray[np.int32]:
        return self._last[:, :, : self.nodes]

    @property
    def coarse(self) -> NDArray[np.int32]:
        return self._coarse[:, :, : self.nodes]

    @property
    def counted(self) -> NDArray[np.bool_]:
        return self._counted[: self.nodes]

    # ------------------------------------------------------------------ geometry

    def bucket_of(self, t: Millis) -> int:
        return (t - self.origin) // self.width

    def start_of(self, j: int) -> Millis:
        return self.origin + j * self.width

    @property
    def end(self) -> Millis:
        return self.start_of(self.buckets)

    def grow_to(self, t: Millis) -> None:
        """Cover every bucket up to the one holding t; new buckets are entirely free."""
        needed = self.bucket_of(t) + 1
        if needed <= self.buckets:
            return
        more = -(-(max(needed, 2 * self.buckets) - self.buckets) // self.fold) * self.fold
        free = self._capacity.astype(np.int32)[None]
        self._fine = np.concatenate([self._fine, np.repeat(free, more, axis=0)])
        self._first = np.concatenate([self._first, np.repeat(free, more, axis=0)])
        self._last = np.concatenate([self._last, np.repeat(free, more, axis=0)])
        self._coarse = np.concatenate([self._coarse, np.repeat(free, more // self.fold, axis=0)])
        counted_total = (self.capacity * self.counted).sum(axis=1)
        self.totals = np.concatenate([self.totals, np.repeat(counted_total[None], more, axis=0)])
        self.buckets += more

    # ------------------------------------------------------------------ writing

    def add_node(self, capacity: Vector, counted: bool) -> None:
        if self.nodes == self._room:
            self._room = max(8, 2 * self._room)
            extra = self._room - self._capacity.shape[1]
            self._capacity = np.concatenate([self._capacity, np.zeros((3, extra), np.int64)], axis=1)
            self._fine = np.concatenate([self._fine, np.zeros((self.buckets, 3, extra), np.int32)], axis=2)
            self._first = np.concatenate([self._first, np.zeros((self.buckets, 3, extra), np.int32)], axis=2)
            self._last = np.concatenate([self._last, np.zeros((self.buckets, 3, extra), np.int32)], axis=2)
            self._coarse = np.concatenate(
                [self._coarse, np.zeros((self.buckets // self.fold, 3, extra), np.int32)], axis=2
            )
            self._counted = np.concatenate([self._counted, np.zeros(extra, bool)])
        n = self.nodes
        self.nodes += 1
        self._capacity[:, n] = capacity
        self._counted[n] = counted
        self._fine[:, :, n] = capacity
        self._first[:, :, n] = capacity
        self._last[:, :, n] = capacity
        self._coarse[:, :, n] = capacity
        if counted:
            self.totals += np.array(capacity, dtype=np.int64)

    def set_counted(self, n: int, counted: bool) -> None:
        if self._counted[n] != counted:
            sign = 1 if counted else -1
            self.totals += sign * self._fine[:, :, n].astype(np.int64)
            self._counted[n] = counted

    def update(self, n: int, j0: int, j1: int, delta: Vector,
               edges: Mapping[int, tuple[Vector, Vector, Vector]]) -> None:
        """Node n changed by `delta` over buckets j0..j1: rows strictly inside shift by delta
        (every instant in them changed by delta, so did their minimum and end levels); the
        edge rows were recomputed exactly by the caller: edges[j] = (minimum, first, last)."""
        lo, hi = max(j0, 0), min(j1, self.buckets - 1)
        if lo > hi:
            return
        fine = self._fine
        before = fine[lo : hi + 1, :, n].copy() if self._counted[n] else None
        if j1 - j0 >= 2:
            inner_lo, inner_hi = max(j0 + 1, 0), min(j1 - 1, self.buckets - 1)
            if inner_lo <= inner_hi:
                shift = np.array(delta, dtype=np.int32)
                fine[inner_lo : inner_hi + 1, :, n] += shift
                self._first[inner_lo : inner_hi + 1, :, n] += shift
                self._last[inner_lo : inner_hi + 1, :, n] += shift
        for j, (minima, first, last) in edges.items():
            if lo <= j <= hi:
                fine[j, :, n] = minima
                self._first[j, :, n] = first
                self._last[j, :, n] = last
        if before is not None:
            self.totals[lo : hi + 1] += fine[lo : hi + 1, :, n] - before
        self._refold(n, lo, hi)

    def load_node(self, n: int, minima: NDArray[np.integer], first: NDArray[np.integer],
                  last: NDArray[np.integer]) -> None:
        """Set every bucket of node n at once (each 3 x buckets)."""
        self._fine[:, :, n] = minima.T
        self._first[:, :, n] = first.T
        self._last[:, :, n] = last.T

    def finish_load(self) -> None:
        fine = self.fine
        self._coarse[:, :, : self.nodes] = fine.reshape((self.buckets // self.fold, self.fold) + fine.shape[1:]).min(axis=1)
        self.totals = (fine.astype(np.int64) * self.counted).sum(axis=2)

    def _refold(self, n: int, lo: int, hi: int) -> None:
        c0, c1 = lo // self.fold, hi // self.fold
        rows = self._fine[c0 * self.fold : (c1 + 1) * self.fold, :, n]
        self._coarse[c0 : c1 + 1, :, n] = rows.reshape(-1, self.fold, 3).min(axis=1)

    # ------------------------------------------------------------------ reading

    def range_min(self, j0: int, j1: int) -> Levels:
        """Per resource and node, the least free amount over buckets j0..j1 (3 x nodes);
        buckets past the horizon are free."""
        hi = min(j1, self.buckets - 1)
        if j0 > hi:
            return self.capacity
        f = self.fold
        c0, c1 = -(-j0 // f), (hi + 1) // f - 1
        least: NDArray[np.int32]
        if c1 - c0 < 1:
            least = self.fine[j0 : hi + 1].min(axis=0)
            return least
        least = self.coarse[c0 : c1 + 1].min(axis=0)
        if j0 < c0 * f:
            np.minimum(least, self.fine[j0 : c0 * f].min(axis=0), out=least)
        if (c1 + 1) * f <= hi:
            np.minimum(least, self.fine[(c1 + 1) * f : hi + 1].min(axis=0), out=least)
        return least

    def totals_sliding_min(self, first: int, last: int, width: int) -> NDArray[np.int64]:
        """For start buckets first..last, the least cluster total of each resource over the
        `width` buckets after each (rows j+1..j+width): shape (last-first+1) x 3."""
        free = (self.capacity * self.counted).sum(axis=1)
        return _window_minima(self.totals, free, first, last, width)

    def fine_sliding_min(self, first: int, last: int, width: int) -> NDArray[np.int32]:
        """For start buckets first..last, per resource and node the least free amount over the
        `width` buckets after each: shape (last-first+1) x 3 x nodes."""
        return _window_minima(self.fine, self.capacity.astype(np.int32), first, last, width)

    def coarse_sliding_min(self, first: int, last: int, width: int) -> NDArray[np.int32]:
        """For coarse blocks first..last, per resource and node the least free amount over the
        `width` coarse blocks after each: shape (last-first+1) x 3 x nodes."""
        return _window_minima(self.coarse, self.capacity.astype(np.int32), first, last, width)


def _window_minima(rows: NDArray[_Scalar], free: Levels, first: int, last: int, width: int) -> NDArray[_Scalar]:
    """sliding_min over rows first+1 .. last+width, rows past the end being `free`."""
    lo, hi = first + 1, last + width + 1
    have = rows[max(lo, 0) : min(hi, len(rows))]
    missing = (hi - lo) - len(have)
    if missing > 0:
        have = np.concatenate([have, np.repeat(free[None].astype(rows.dtype), missing, axis=0)])
    return sliding_min(have, width)
