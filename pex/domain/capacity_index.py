"""The bucket index: per node and fixed-width time bucket, the least free amount of each
resource in that bucket, so admission can bound many nodes at once with numpy.

Rows are buckets (shape buckets x 3 x nodes) so a range of buckets is one contiguous block.
A coarse copy (one row per `fold` buckets) makes a long range cost a few dozen rows, and the
per-bucket totals over counted nodes give a cluster-wide bound that is cheaper still.
"""

from __future__ import annotations

import numpy as np

from pex.domain.clock import Millis


def sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """Minimum of every `width` consecutive rows (van Herk/Gil-Werman: a constant number of
    passes whatever the width). Returns len(values) - width + 1 rows."""
    m = values.shape[0]
    pad = (-m) % width
    if pad:
        filler = np.full((pad,) + values.shape[1:], np.iinfo(values.dtype).max, values.dtype)
        values = np.concatenate([values, filler])
    blocks = values.reshape((-1, width) + values.shape[1:])
    prefix = np.minimum.accumulate(blocks, axis=1).reshape(values.shape)
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(values.shape)
    return np.minimum(suffix[: m - width + 1], prefix[width - 1 : m])


class BucketIndex:
    def __init__(self, origin: Millis, width: Millis, buckets: int, fold: int = 16) -> None:
        self.width = width
        self.origin = origin - origin % width
        self.fold = fold
        self.buckets = -(-max(buckets, 1) // fold) * fold
        self.capacity = np.zeros((3, 0), dtype=np.int64)
        self.fine = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        self.coarse = np.zeros((self.buckets // fold, 3, 0), dtype=np.int32)
        self.counted = np.zeros(0, dtype=bool)
        self.totals = np.zeros((self.buckets, 3), dtype=np.int64)

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
        free = self.capacity.astype(np.int32)[None]
        self.fine = np.concatenate([self.fine, np.repeat(free, more, axis=0)])
        self.coarse = np.concatenate([self.coarse, np.repeat(free, more // self.fold, axis=0)])
        counted_total = (self.capacity * self.counted).sum(axis=1)
        self.totals = np.concatenate([self.totals, np.repeat(counted_total[None], more, axis=0)])
        self.buckets += more

    # ------------------------------------------------------------------ writing

    def add_node(self, capacity: tuple[int, int, int], counted: bool) -> None:
        column = np.array(capacity, dtype=np.int64).reshape(3, 1)
        self.capacity = np.concatenate([self.capacity, column], axis=1)
        self.counted = np.append(self.counted, counted)
        free = column.astype(np.int32)[None]
        self.fine = np.concatenate([self.fine, np.repeat(free, self.buckets, axis=0)], axis=2)
        self.coarse = np.concatenate(
            [self.coarse, np.repeat(free, self.buckets // self.fold, axis=0)], axis=2
        )
        if counted:
            self.totals += column[:, 0]

    def set_counted(self, n: int, counted: bool) -> None:
        if self.counted[n] != counted:
            sign = 1 if counted else -1
            self.totals += sign * self.fine[:, :, n].astype(np.int64)
            self.counted[n] = counted

    def update(self, n: int, j0: int, j1: int, delta: tuple[int, int, int], edges: dict[int, tuple[int, int, int]]) -> None:
        """Node n changed by `delta` over buckets j0..j1: rows strictly inside shift by delta
        (every instant in them changed by delta, so did their minimum); the edge rows were
        recomputed exactly by the caller and are given in `edges`."""
        lo, hi = max(j0, 0), min(j1, self.buckets - 1)
        if lo > hi:
            return
        before = self.fine[lo : hi + 1, :, n].copy() if self.counted[n] else None
        if j1 - j0 >= 2:
            inner_lo, inner_hi = max(j0 + 1, 0), min(j1 - 1, self.buckets - 1)
            if inner_lo <= inner_hi:
                self.fine[inner_lo : inner_hi + 1, :, n] += np.array(delta, dtype=np.int32)
        for j, minima in edges.items():
            if lo <= j <= hi:
                self.fine[j, :, n] = minima
        if before is not None:
            self.totals[lo : hi + 1] += self.fine[lo : hi + 1, :, n] - before
        self._refold(n, lo, hi)

    def load_node(self, n: int, minima: np.ndarray) -> None:
        """Set every bucket of node n at once (minima: 3 x buckets)."""
        self.fine[:, :, n] = minima.T

    def finish_load(self) -> None:
        self.coarse = self.fine.reshape((self.buckets // self.fold, self.fold) + self.fine.shape[1:]).min(axis=1)
        self.totals = (self.fine.astype(np.int64) * self.counted).sum(axis=2)

    def _refold(self, n: int, lo: int, hi: int) -> None:
        c0, c1 = lo // self.fold, hi // self.fold
        rows = self.fine[c0 * self.fold : (c1 + 1) * self.fold, :, n]
        self.coarse[c0 : c1 + 1, :, n] = rows.reshape(-1, self.fold, 3).min(axis=1)

    # ------------------------------------------------------------------ reading

    def range_min(self, j0: int, j1: int) -> np.ndarray:
        """Per resource and node, the least free amount over buckets j0..j1 (3 x nodes);
        buckets past the horizon are free."""
        hi = min(j1, self.buckets - 1)
        if j0 > hi:
            return self.capacity
        f = self.fold
        c0, c1 = -(-j0 // f), (hi + 1) // f - 1
        if c1 - c0 < 1:
            return self.fine[j0 : hi + 1].min(axis=0)
        least = self.coarse[c0 : c1 + 1].min(axis=0)
        if j0 < c0 * f:
            np.minimum(least, self.fine[j0 : c0 * f].min(axis=0), out=least)
        if (c1 + 1) * f <= hi:
            np.minimum(least, self.fine[(c1 + 1) * f : hi + 1].min(axis=0), out=least)
        return least

    def totals_sliding_min(self, first: int, last: int, width: int) -> np.ndarray:
        """For start buckets first..last, the least cluster total of each resource over the
        `width` buckets after each (rows j+1..j+width): shape (last-first+1) x 3."""
        lo, hi = first + 1, last + width + 1
        have = self.totals[max(lo, 0) : min(hi, self.buckets)]
        missing = (hi - lo) - have.shape[0]
        if missing > 0:
            free = (self.capacity * self.counted).sum(axis=1)
            have = np.concatenate([have, np.repeat(free[None], missing, axis=0)])
        return sliding_min(have, width)
