"""The bucket index: per node and fixed-width time bucket, the least free amount of each
resource in that bucket, so admission can bound many nodes at once with numpy.

Rows are buckets (shape buckets x 3 x nodes) so a range of buckets is one contiguous block.
A coarse copy (one row per `fold` buckets) makes a long range cost a few dozen rows, and the
per-bucket totals over counted nodes give a cluster-wide bound that is cheaper still.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from pex.domain.clock import Millis

Vector = tuple[int, int, int]  # an amount of each resource: cpus, memory MB, disk GB
Levels = NDArray[np.signedinteger]  # free amounts of any width (capacities are int64, buckets int32)
_Scalar = TypeVar("_Scalar", bound=np.generic)
_Array = TypeVar("_Array", bound=NDArray[np.generic])
LOAD_CHUNK = 256  # nodes whose buckets a bulk load writes at once
LOAD_ROWS = 256  # buckets whose coarse rows and totals a bulk load works out at once


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


LEVEL_LIMIT = 2**31  # free amounts are kept as int32: a node's capacity must stay below this


class BucketIndex:
    def __init__(self, origin: Millis, width: Millis, buckets: int, fold: int = 16) -> None:
        self.width = width
        self.origin = origin - origin % width
        self.fold = fold
        self.buckets = -(-max(buckets, 1) // fold) * fold
        self.nodes = 0
        # Nodes added but not yet given columns: a rebuild adds ten thousand one at a time
        # before it asks anything, and filling their columns then, all at once and at the exact
        # width, costs one vectorised write instead of a strided column write (and a widening
        # copy of every array) per node.
        self._pending: list[tuple[Vector, bool]] = []
        self._columns = 0  # nodes with columns (the first `nodes - len(_pending)`)
        self._room = 0  # columns allocated; later additions widen by an eighth (amortised)
        self._capacity = np.zeros((3, 0), dtype=np.int64)
        self._fine = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        # Free amounts at each bucket's first and last instant: a window that only partly
        # covers an edge bucket still contains one of them, which bounds its minimum from
        # above; where the level does not change inside the bucket the bound is exact.
        self._first = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        self._last = np.zeros((self.buckets, 3, 0), dtype=np.int32)
        self._coarse = np.zeros((self.buckets // fold, 3, 0), dtype=np.int32)
        self._counted = np.zeros(0, dtype=bool)
        self._totals = np.zeros((self.buckets, 3), dtype=np.int64)

    @property
    def capacity(self) -> NDArray[np.int64]:
        self._ready()
        return self._capacity[:, : self.nodes]

    @property
    def fine(self) -> NDArray[np.int32]:
        self._ready()
        return self._fine[:, :, : self.nodes]

    @property
    def first(self) -> NDArray[np.int32]:
        self._ready()
        return self._first[:, :, : self.nodes]

    @property
    def last(self) -> NDArray[np.int32]:
        self._ready()
        return self._last[:, :, : self.nodes]

    @property
    def coarse(self) -> NDArray[np.int32]:
        self._ready()
        return self._coarse[:, :, : self.nodes]

    @property
    def counted(self) -> NDArray[np.bool_]:
        self._ready()
        return self._counted[: self.nodes]

    @property
    def totals(self) -> NDArray[np.int64]:
        """Per bucket, the free amount of each resource summed over the counted nodes."""
        self._ready()
        return self._totals

    def _ready(self) -> None:
        """Give the nodes added since the last question their columns (entirely free)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        n0, n1 = self._columns, self.nodes
        if n1 > self._room:
            # (the first time exactly as wide as needed: the rebuild's bulk, with no slack)
            self._room = n1 if self._room == 0 else max(n1, self._room + max(8, self._room // 8))
            self._capacity = _widened(self._capacity, self._room, n0)
            self._fine = _widened(self._fine, self._room, n0)
            self._first = _widened(self._first, self._room, n0)
            self._last = _widened(self._last, self._room, n0)
            self._coarse = _widened(self._coarse, self._room, n0)
            self._counted = _widened(self._counted, self._room, n0)
        capacity = np.array([c for c, _ in pending], dtype=np.int64).T  # 3 x added
        counted = np.array([k for _, k in pending], dtype=bool)
        self._capacity[:, n0:n1] = capacity
        self._counted[n0:n1] = counted
        free = capacity.astype(np.int32)
        for levels in (self._fine, self._first, self._last, self._coarse):
            levels[:, :, n0:n1] = free
        self._totals += (capacity * counted).sum(axis=1)
        self._columns = n1

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
        self._ready()
        more = -(-(max(needed, 2 * self.buckets) - self.buckets) // self.fold) * self.fold
        free = self._capacity.astype(np.int32)[None]
        self._fine = np.concatenate([self._fine, np.repeat(free, more, axis=0)])
        self._first = np.concatenate([self._first, np.repeat(free, more, axis=0)])
        self._last = np.concatenate([self._last, np.repeat(free, more, axis=0)])
        self._coarse = np.concatenate([self._coarse, np.repeat(free, more // self.fold, axis=0)])
        counted_total = (self.capacity * self.counted).sum(axis=1)
        self._totals = np.concatenate([self._totals, np.repeat(counted_total[None], more, axis=0)])
        self.buckets += more

    # ------------------------------------------------------------------ writing

    def add_node(self, capacity: Vector, counted: bool) -> None:
        """A node, entirely free; its columns come with the next question (`_ready`). Raises
        ValueError for an amount the int32 levels cannot hold."""
        check_capacity(capacity)
        self._pending.append((capacity, counted))
        self.nodes += 1

    def set_counted(self, n: int, counted: bool) -> None:
        if n >= self._columns:  # (not given columns yet: counted or not from the start)
            capacity, _ = self._pending[n - self._columns]
            self._pending[n - self._columns] = (capacity, counted)
            return
        if self._counted[n] != counted:
            sign = 1 if counted else -1
            self._totals += sign * self._fine[:, :, n].astype(np.int64)
            self._counted[n] = counted

    def update(self, n: int, j0: int, j1: int, delta: Vector,
               edges: Mapping[int, tuple[Vector, Vector, Vector]]) -> None:
        """Node n changed by `delta` over buckets j0..j1: rows strictly inside shift by delta
        (every instant in them changed by delta, so did their minimum and end levels); the
        edge rows were recomputed exactly by the caller: edges[j] = (minimum, first, last)."""
        lo, hi = max(j0, 0), min(j1, self.buckets - 1)
        if lo > hi:
            return
        self._ready()
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
            self._totals[lo : hi + 1] += fine[lo : hi + 1, :, n] - before
        self._refold(n, lo, hi)

    def load(self, levels: Iterable[tuple[int, NDArray[np.integer], NDArray[np.integer], NDArray[np.integer]]]) -> None:
        """Set every bucket of every node at once: the nodes in `levels` (node, minima, first,
        last, each 3 x buckets) to those, every other node to entirely free; then the coarse
        rows and the totals. Written LOAD_CHUNK nodes at a time, row by row, so each row of
        the (buckets x 3 x nodes) arrays is visited once per chunk rather than once per node."""
        self._ready()
        nodes = self.nodes
        free = self._capacity[:, :nodes].astype(np.int32)
        for array in (self._fine, self._first, self._last):
            array[:, :, :nodes] = free
        chunk: list[tuple[int, NDArray[np.integer], NDArray[np.integer], NDArray[np.integer]]] = []
        for item in levels:
            chunk.append(item)
            if len(chunk) == LOAD_CHUNK:
                self._load_chunk(chunk)
                chunk = []
        if chunk:
            self._load_chunk(chunk)
        self._finish_load()

    def _load_chunk(self, chunk: list[tuple[int, NDArray[np.integer], NDArray[np.integer], NDArray[np.integer]]]) -> None:
        columns = np.array([n for n, *_ in chunk])
        for k, array in enumerate((self._fine, self._first, self._last), start=1):
            stacked = np.stack([item[k] for item in chunk], axis=-1)  # 3 x buckets x chunk
            array[:, :, columns] = stacked.transpose(1, 0, 2)

    def _finish_load(self) -> None:
        fold, nodes = self.fold, self.nodes
        counted = self._counted[:nodes]
        # Row blocks at a time: a sum over a 32-bit copy of the whole index as 64 bits would
        # double the memory the index takes, for a moment, at every rebuild.
        for c0 in range(0, self.buckets // fold, LOAD_ROWS // fold):
            c1 = min(c0 + LOAD_ROWS // fold, self.buckets // fold)
            rows = self._fine[c0 * fold : c1 * fold, :, :nodes]
            self._coarse[c0:c1, :, :nodes] = rows.reshape((c1 - c0, fold) + rows.shape[1:]).min(axis=1)
            self._totals[c0 * fold : c1 * fold] = rows.sum(axis=2, dtype=np.int64, where=counted)

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


def check_capacity(capacity: Vector) -> None:
    """The index keeps free amounts as int32: a capacity it cannot hold is refused here, at the
    node's registration, rather than wrapping round in some bucket later."""
    for amount in capacity:
        if not 0 <= amount < LEVEL_LIMIT:
            raise ValueError(f"a node's capacity {capacity} must be amounts from 0 to {LEVEL_LIMIT - 1} "
                             f"(the capacity index keeps them as 32-bit integers)")


def _widened(array: _Array, room: int, used: int) -> _Array:
    """A copy of `array` with `room` node columns (its last axis), the first `used` kept."""
    wider = np.zeros(array.shape[:-1] + (room,), dtype=array.dtype)
    wider[..., :used] = array[..., :used]
    return wider  # type: ignore[return-value]
