"""Capacity over time: per-node availability profiles and the queries admission needs.

Each node has an `AvailabilityProfile`, the exact step function of its free CPUs, memory and
disk over time. Asking 1,000 profiles one by one costs milliseconds in Python, so the model
also keeps a `BucketIndex` (capacity_index.py): per node and fixed-width time bucket, the least
free amount of each resource. For a window, the buckets it fully covers give an upper bound on
how many instances fit on each node and the buckets it touches give a lower bound; where the
two agree (most nodes) the answer is exact without touching a profile, and only the nodes in
between are asked exactly.

The earliest start is `start` or the end of some allocation (room only grows when one ends).
The sweep skips, with cluster-wide totals and then per-node bounds, every bucket in which no
start could leave enough room, and walks the ends inside the remaining buckets exactly but
incrementally: moving the window from one end to the next re-asks only the nodes that have a
change point in the stretch the window left or entered.

Holds and bookings are both `Allocation`s held under a key (the reservation id). The model
refuses any allocation that would put a node over capacity at any instant (CapacityExceeded).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from sortedcontainers import SortedList

from pex.domain.capacity_index import BucketIndex
from pex.domain.clock import DAY, HOUR, MINUTE, Millis
from pex.domain.errors import CapacityExceeded, NotFound
from pex.domain.sizes import Resources

NEVER: Millis = -(2**62)  # the start of every profile: "since forever"
FINE_CHUNK = 32  # start buckets judged per vectorised pass
ROOMY = 4  # nodes has_room asks first: those with the most room when it last found some


class Share(NamedTuple):
    """`count` instances on `node` over [start, end). A named tuple: a rebuild makes one per
    stored share, and tuples are several times cheaper to build than dataclasses."""

    node: str
    start: Millis
    end: Millis
    count: int  # type: ignore[assignment]  # (shadows tuple.count, which no share needs)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The capacity one reservation holds: instances of one size, spread over nodes."""

    size: Resources
    shares: tuple[Share, ...]

    def per_node(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for share in self.shares:
            counts[share.node] = max(counts[share.node], share.count)
        return dict(counts)

    def to_list(self) -> list[Any]:
        """A msgpack-friendly form for stored events."""
        return [
            list(self.size.as_tuple()),
            [[s.node, s.start, s.end, s.count] for s in self.shares],
        ]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Allocation:
        size, shares = data
        return cls(Resources(*size), tuple(Share(*s) for s in shares))

    @classmethod
    def uniform(
        cls, size: Resources, placement: Iterable[tuple[str, int]], start: Millis, end: Millis
    ) -> Allocation:
        return cls(size, tuple(Share(node, start, end, n) for node, n in placement if n > 0))

    def envelope(self, other: Allocation) -> Allocation:
        """Per node and instant, the larger of the two: what must stay held while a
        reservation's old terms remain in force and new ones are on offer."""
        if other.size != self.size:
            raise ValueError("an envelope needs allocations of one size")
        by_node: dict[str, list[tuple[Share, int]]] = defaultdict(list)
        for which, alloc in enumerate((self, other)):
            for share in alloc.shares:
                by_node[share.node].append((share, which))
        shares: list[Share] = []
        for node in sorted(by_node):
            items = by_node[node]
            points = sorted({p for s, _ in items for p in (s.start, s.end)})
            previous: Share | None = None
            for lo, hi in zip(points, points[1:]):
                sums = [0, 0]
                for s, which in items:
                    if s.start <= lo and hi <= s.end:
                        sums[which] += s.count
                count = max(sums)
                if count == 0:
                    previous = None
                    continue
                if previous is not None and previous.end == lo and previous.count == count:
                    previous = Share(node, previous.start, hi, count)
                    shares[-1] = previous
                else:
                    previous = Share(node, lo, hi, count)
                    shares.append(previous)
        return Allocation(self.size, tuple(shares))


class AvailabilityProfile:
    """Free resources of one node as a step function: level i holds on [times[i], times[i+1])."""

    __slots__ = ("capacity", "times", "cpus", "memory", "disk")

    def __init__(self, capacity: Resources) -> None:
        self.capacity = capacity
        self.times: list[Millis] = [NEVER]
        self.cpus: list[int] = [capacity.cpus]
        self.memory: list[int] = [capacity.memory_mb]
        self.disk: list[int] = [capacity.disk_gb]

    def _split(self, t: Millis) -> int:
        i = bisect_right(self.times, t) - 1
        if self.times[i] == t:
            return i
        i += 1
        self.times.insert(i, t)
        self.cpus.insert(i, self.cpus[i - 1])
        self.memory.insert(i, self.memory[i - 1])
        self.disk.insert(i, self.disk[i - 1])
        return i

    def _merge_at(self, i: int) -> None:
        # Keep the profile minimal: drop a breakpoint whose level equals the one before it.
        if 0 < i < len(self.times) and (
            self.cpus[i] == self.cpus[i - 1]
            and self.memory[i] == self.memory[i - 1]
            and self.disk[i] == self.disk[i - 1]
        ):
            del self.times[i], self.cpus[i], self.memory[i], self.disk[i]

    def add(self, start: Millis, end: Millis, delta: Resources) -> None:
        """Add `delta` to the free amounts over [start, end) (negative to take capacity)."""
        i = self._split(start)
        j = self._split(end)
        dc, dm, dd = delta.cpus, delta.memory_mb, delta.disk_gb
        cpus, memory, disk = self.cpus, self.memory, self.disk
        for k in range(i, j):
            cpus[k] += dc
            memory[k] += dm
            disk[k] += dd
        self._merge_at(j)
        self._merge_at(i)

    def min_free(self, start: Millis, end: Millis) -> tuple[int, int, int]:
        """The least free amount of each resource at any instant of [start, end)."""
        i = bisect_right(self.times, start) - 1
        j = bisect_left(self.times, end, i + 1)
        return min(self.cpus[i:j]), min(self.memory[i:j]), min(self.disk[i:j])

    def fit(self, size: Resources, start: Millis, end: Millis) -> int:
        c, m, d = self.min_free(start, end)
        return max(0, min(c // size.cpus, m // size.memory_mb, d // size.disk_gb))

    def free_at(self, t: Millis) -> Resources:
        i = bisect_right(self.times, t) - 1
        return Resources(self.cpus[i], self.memory[i], self.disk[i])

    def steps(self, start: Millis, end: Millis) -> list[tuple[Millis, Resources]]:
        """The free levels that hold within [start, end), each with the time it begins."""
        i = bisect_right(self.times, start) - 1
        j = bisect_left(self.times, end, i + 1)
        return [
            (max(self.times[k], start), Resources(self.cpus[k], self.memory[k], self.disk[k]))
            for k in range(i, j)
        ]

    def is_within_capacity(self) -> bool:
        return min(self.cpus) >= 0 and min(self.memory) >= 0 and min(self.disk) >= 0

    def levels(self) -> np.ndarray:
        return np.array([self.cpus, self.memory, self.disk], dtype=np.int64)


# A placement policy orders the candidate nodes for a window: `candidates` are node indices
# (ascending), `room` how many instances of the size fit on each at most. Earlier is filled first.
PlacementPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]


def most_loaded_first(candidates: np.ndarray, room: np.ndarray) -> np.ndarray:
    """The paper's bin packing: fill the nodes with the least room left first."""
    return candidates[np.argsort(room, kind="stable")]


def least_loaded_first(candidates: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Spread: fill the emptiest nodes first."""
    return candidates[np.argsort(-room, kind="stable")]


def in_node_order(candidates: np.ndarray, room: np.ndarray) -> np.ndarray:
    """First fit in the order nodes were added."""
    return candidates


PLACEMENT_POLICIES: dict[str, PlacementPolicy] = {
    "most-loaded-first": most_loaded_first,
    "least-loaded-first": least_loaded_first,
    "first-fit": in_node_order,
}


class CapacityModel:
    """The cluster's capacity over time: nodes, their profiles, and what each key holds."""

    def __init__(self, *, origin: Millis, bucket: Millis = 15 * MINUTE, horizon: Millis = 32 * DAY) -> None:
        self._index = BucketIndex(origin, bucket, -(-horizon // bucket))
        self._names: list[str] = []
        self._number: dict[str, int] = {}
        self._profiles: list[AvailabilityProfile] = []
        self._eligible = np.zeros(0, dtype=bool)  # a view of the first len(_names) of _eligible_room
        self._eligible_room = np.zeros(0, dtype=bool)  # (widened by doubling: nodes come one at a time)
        self._held: dict[Hashable, Allocation] = {}
        self._ends: SortedList[Millis] = SortedList()  # end of every held share: candidate starts
        self._changes: SortedList[tuple[Millis, int]] = SortedList()  # (instant, node) of every share start and end
        self._followers: list[Journal] = []  # journals of readers (follow)
        self._supply: np.ndarray | None = None  # 1 / the eligible nodes' capacity in all (committed)
        self._roomy: list[int] = []  # nodes asked first by has_room
        # What is derived from each clock hour's committed share (hourly): per derivation, the
        # values of the index's hours and whether each is still current (1) or not (0).
        self._hourly: dict[Callable[[np.ndarray], np.ndarray], _Kept] = {}

    @property
    def origin(self) -> Millis:
        return self._index.origin

    @property
    def bucket(self) -> Millis:
        return self._index.width

    # ----------------------------------------------------------------- nodes

    def add_node(self, name: str, capacity: Resources, *, eligible: bool = True) -> None:
        if name in self._number:
            raise ValueError(f"node {name!r} is already in the model")
        self._index.add_node(capacity.as_tuple(), eligible)  # (refuses amounts it cannot hold)
        n = len(self._names)
        self._number[name] = n
        self._names.append(name)
        self._profiles.append(AvailabilityProfile(capacity))
        if n == len(self._eligible_room):
            room = np.zeros(max(8, 2 * n), dtype=bool)
            room[:n] = self._eligible_room
            self._eligible_room = room
        self._eligible_room[n] = eligible
        self._eligible = self._eligible_room[: n + 1]
        self._supply = None
        self._hourly.clear()

    def set_eligible(self, name: str, eligible: bool) -> None:
        """Whether new allocations may use the node (not while it is down or drained)."""
        n = self._node(name)
        if self._eligible[n] == eligible:
            return  # (every event of a node says it: the supply and the prices kept stand)
        self._eligible[n] = eligible
        self._index.set_counted(n, eligible)
        self._supply = None
        self._hourly.clear()

    def nodes(self) -> list[str]:
        return list(self._names)

    def capacity_of(self, name: str) -> Resources:
        return self._profiles[self._node(name)].capacity

    def _node(self, name: str) -> int:
        try:
            return self._number[name]
        except KeyError:
            raise NotFound(f"no node named {name!r}") from None

    # ----------------------------------------------------------------- holding

    def held(self, key: Hashable) -> Allocation | None:
        return self._held.get(key)

    def holders(self) -> Mapping[Hashable, Allocation]:
        return self._held

    def hold(self, key: Hashable, allocation: Allocation) -> None:
        """Make `allocation` what `key` holds, replacing what it held before.

        Raises CapacityExceeded, changing nothing, if any node would go over capacity.
        """
        previous = self._held.pop(key, None)
        if previous is not None:
            self._apply(previous, +1)
        try:
            self._apply(allocation, -1, check=True)
        except CapacityExceeded:
            if previous is not None:
                self._apply(previous, -1)
                self._held[key] = previous
            raise
        self._held[key] = allocation

    def follow(self) -> Journal:
        """A journal the model appends to every allocation it takes (-1) or gives back (+1)
        from now on, for a reader that keeps a view of its own in step (ClusterTimeline) at the
        cost of what changed; the reader empties it as it takes the entries in. One left
        unread past JOURNAL_LIMIT entries is dropped (`lapsed`): a reader that asks seldom
        starts afresh rather than make the writer keep every change since."""
        journal = Journal()
        self._followers.append(journal)
        return journal

    def _journal(self, entries: Iterable[tuple[Allocation, int]]) -> None:
        for journal in list(self._followers):
            journal.extend(entries)
            if len(journal) > JOURNAL_LIMIT:
                journal.clear()
                journal.lapsed = True
                self._followers.remove(journal)

    def release(self, key: Hashable) -> None:
        previous = self._held.pop(key, None)
        if previous is not None:
            self._apply(previous, +1)

    @contextmanager
    def without(self, key: Hashable) -> Iterator[None]:
        """Ask questions as if `key` held nothing (a renegotiation competes only with others)."""
        previous = self._held.pop(key, None)
        if previous is not None:
            self._apply(previous, +1)
        try:
            yield
        finally:
            if previous is not None:
                self._apply(previous, -1)
                self._held[key] = previous

    def _apply(self, allocation: Allocation, sign: int, *, check: bool = False) -> None:
        """Take (sign -1) or give back (sign +1) an allocation's shares."""
        done: list[Share] = []
        for share in allocation.shares:
            if check:
                profile = self._profiles[self._node(share.node)]
                need = allocation.size * share.count
                if not need.fits_in(Resources(*profile.min_free(share.start, share.end))):
                    for undo in done:
                        self._change(allocation.size, undo, -sign)
                    raise CapacityExceeded(
                        f"node {share.node} cannot take {share.count} more instances over "
                        f"[{share.start}, {share.end})"
                    )
            self._change(allocation.size, share, sign)
            done.append(share)
        if self._followers:
            self._journal(((allocation, sign),))

    def _change(self, size: Resources, share: Share, sign: int) -> None:
        n = self._node(share.node)
        delta = size * (sign * share.count)
        profile = self._profiles[n]
        profile.add(share.start, share.end, delta)
        self._reindex(n, share.start, share.end, delta)
        marks = ((share.start, n), (share.end, n))
        if sign < 0:
            self._ends.add(share.end)
            self._changes.update(marks)
        else:
            self._ends.remove(share.end)
            for mark in marks:
                self._changes.remove(mark)

    def _reindex(self, n: int, start: Millis, end: Millis, delta: Resources) -> None:
        index = self._index
        if end <= index.origin:
            return
        index.grow_to(end)
        j0 = max(0, index.bucket_of(start))
        j1 = index.bucket_of(end - 1)
        profile = self._profiles[n]
        edges = {}
        for j in {j0, j1}:
            lo, hi = index.start_of(j), index.start_of(j + 1)
            edges[j] = (profile.min_free(lo, hi), profile.free_at(lo).as_tuple(), profile.free_at(hi - 1).as_tuple())
        index.update(n, j0, j1, delta.as_tuple(), edges)
        if self._hourly:  # the hours met are no longer current (buckets tile whole hours, or none is kept)
            first = self._first_hour()
            h0, h1 = max(0, (start - first) // HOUR), max(0, -(-(end - first) // HOUR))
            for kept in self._hourly.values():
                kept.current[h0:h1] = bytes(max(0, min(h1, len(kept.current)) - h0))

    # ----------------------------------------------------------------- bulk load

    def load(self, held: Mapping[Any, Allocation]) -> None:
        """Replace everything held with `held`, building profiles and index in bulk (rebuild)."""
        deltas: dict[int, list[tuple[Millis, int, int, int]]] = defaultdict(list)
        ends: list[Millis] = []
        changes: list[tuple[Millis, int]] = []
        for allocation in held.values():
            c, m, d = allocation.size.as_tuple()
            for share in allocation.shares:
                k, n = share.count, self._node(share.node)
                deltas[n].append((share.start, -c * k, -m * k, -d * k))
                deltas[n].append((share.end, c * k, m * k, d * k))
                ends.append(share.end)
                changes.append((share.start, n))
                changes.append((share.end, n))
        self._index.grow_to(max(ends, default=self.origin))
        if self._followers:
            self._journal([*((allocation, +1) for allocation in self._held.values()),
                           *((allocation, -1) for allocation in held.values())])
        self._held = dict(held)
        self._ends = SortedList(ends)
        self._changes = SortedList(changes)
        for n, profile in enumerate(self._profiles):
            shifts = deltas.get(n)
            fresh = _profile_from_changes(profile.capacity, sorted(shifts)) if shifts else AvailabilityProfile(profile.capacity)
            if not fresh.is_within_capacity():
                raise CapacityExceeded(f"the stored allocations put node {self._names[n]} over capacity")
            self._profiles[n] = fresh
        # Only nodes that hold something have levels of their own; the index sets every other
        # node entirely free in one write.
        index = self._index
        bounds = index.origin + index.width * np.arange(index.buckets + 1, dtype=np.int64)
        self._index.load((n, *self._bucket_levels(self._profiles[n], bounds)) for n in sorted(deltas))
        self._hourly.clear()

    @staticmethod
    def _bucket_levels(profile: AvailabilityProfile, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bucket (between `bounds`): the least free amounts, and those at its first and last instant."""
        levels = profile.levels()
        minima, first, last = least_in_steps(np.asarray(profile.times, dtype=np.int64), levels, bounds)
        return minima, levels[:, first], levels[:, last]

    # ----------------------------------------------------------------- bounds

    def _fits(self, minima: np.ndarray, size: Resources) -> np.ndarray:
        """Instances of `size` that fit in each node's free amounts (3 x nodes), 0 if ineligible."""
        fits: np.ndarray = (minima // np.array(size.as_tuple(), dtype=np.int64)[:, None]).min(axis=0)
        np.maximum(fits, 0, out=fits)
        fits[~self._eligible] = 0
        return fits

    def _bounds(self, size: Resources, start: Millis, end: Millis) -> tuple[np.ndarray, np.ndarray]:
        """Per node, a lower and an upper bound of how many instances fit over [start, end)."""
        index = self._index
        if start < index.origin:
            exact = self._exact_fits(size, start, end)
            return exact, exact
        j0, j1 = index.bucket_of(start), index.bucket_of(end - 1)
        if j0 >= index.buckets:  # past the horizon nothing is held
            free = self._fits(index.capacity, size)
            return free, free
        lower = self._fits(index.range_min(j0, j1), size)
        lo = j0 if start == index.start_of(j0) else j0 + 1
        hi = j1 if end == index.start_of(j1 + 1) or j1 >= index.buckets else j1 - 1
        if (lo, hi) == (j0, j1):
            return lower, lower
        upper = index.range_min(lo, hi) if lo <= hi else index.capacity
        if lo > j0 and j0 < j1:  # the window holds the last instant of its first bucket
            upper = np.minimum(upper, index.last[j0])
        if hi < j1 and j0 < j1 < index.buckets:  # ... and the first instant of its last bucket
            upper = np.minimum(upper, index.first[j1])
        return lower, self._fits(upper, size)

    def _exact_fits(self, size: Resources, start: Millis, end: Millis) -> np.ndarray:
        fits = np.zeros(len(self._names), dtype=np.int64)
        for n in np.flatnonzero(self._eligible).tolist():
            fits[n] = self._profiles[n].fit(size, start, end)
        return fits

    def _fits_exactly(self, size: Resources, start: Millis, end: Millis) -> np.ndarray:
        lower, upper = self._bounds(size, start, end)
        for n in np.flatnonzero(lower < upper).tolist():
            lower[n] = self._profiles[n].fit(size, start, end)
        return lower

    # ----------------------------------------------------------------- queries

    def ceiling(self, size: Resources) -> int:
        """The most instances of `size` the eligible nodes could ever hold at once."""
        return int(self._fits(self._index.capacity, size).sum())

    def fit_on(self, node: str, size: Resources, start: Millis, end: Millis) -> int:
        return self._profiles[self._node(node)].fit(size, start, end)

    def count_fitting(self, size: Resources, start: Millis, end: Millis) -> int:
        """How many instances of `size` fit over [start, end), spread over eligible nodes."""
        return int(self._fits_exactly(size, start, end).sum())

    def has_room(self, size: Resources, start: Millis, end: Millis, count: int) -> bool:
        """Whether `count` instances of `size` fit over [start, end); stops asking nodes as
        soon as the answer is known."""
        # The nodes with the most room the last time often have enough again: asked exactly,
        # a few settle a yes without bounding every node (the cheaper-window search asks
        # mostly quiet hours).
        eligible, profiles, hinted = self._eligible, self._profiles, 0
        for n in self._roomy:
            if eligible[n]:
                hinted += profiles[n].fit(size, start, end)
                if hinted >= count:
                    return True
        lower, upper = self._bounds(size, start, end)
        low, high = int(lower.sum()), int(upper.sum())
        if low >= count:
            self._roomy = np.argpartition(lower, -ROOMY)[-ROOMY:].tolist() if len(lower) > ROOMY else list(range(len(lower)))
        if low >= count or high < count:
            return low >= count
        profiles = self._profiles
        for n in np.flatnonzero(lower < upper).tolist():
            exact = profiles[n].fit(size, start, end)
            low += exact - int(lower[n])
            high -= int(upper[n]) - exact
            if low >= count or high < count:
                break
        return low >= count

    def place(
        self,
        size: Resources,
        count: int,
        start: Millis,
        end: Millis,
        policy: PlacementPolicy = most_loaded_first,
    ) -> list[tuple[str, int]] | None:
        """Nodes and counts for `count` instances over [start, end), in the policy's order;
        None if they do not fit."""
        lower, upper = self._bounds(size, start, end)
        if int(upper.sum()) < count:
            return None
        candidates = np.flatnonzero(upper > 0)
        order = policy(candidates, upper[candidates]).tolist()
        placement: list[tuple[str, int]] = []
        remaining = count
        for n in order:
            room = int(upper[n]) if lower[n] == upper[n] else self._profiles[n].fit(size, start, end)
            if room <= 0:
                continue
            take = min(room, remaining)
            placement.append((self._names[n], take))
            remaining -= take
            if remaining == 0:
                return placement
        return None

    def earliest_start(
        self,
        size: Resources,
        count: int,
        start: Millis,
        duration: Millis,
        *,
        latest: Millis | None = None,
    ) -> Millis | None:
        """The first instant >= start at which `count` instances fit for `duration`, or None
        if there is none (more than the eligible nodes hold, or none by `latest`)."""
        if count > self.ceiling(size):
            return None
        if self.has_room(size, start, start + duration, count):
            return start
        if not self._ends or self._ends[-1] <= start:
            return None  # nothing ends later, so nothing frees up
        index = self._index
        first = index.bucket_of(start)
        last = index.bucket_of(self._ends[-1])
        if latest is not None:
            last = min(last, index.bucket_of(latest))
        # Before the index's origin there are no buckets to prune with: walk every end.
        runs = [(first, last)] if start < self.origin else self._hopeful_runs(size, count, duration, first, last)
        for lo, hi in runs:
            t = self._sweep(size, count, duration, max(start + 1, index.start_of(lo)), index.start_of(hi + 1))
            if t is not None:
                return t if latest is None or t <= latest else None
        return None

    def _hopeful_runs(
        self, size: Resources, count: int, duration: Millis, first: int, last: int
    ) -> Iterator[tuple[int, int]]:
        """Runs of start buckets in [first, last] where some start might leave room for `count`.

        Three filters, cheapest first, each an upper bound on the instances that fit for any
        start in the bucket: the cluster's totals, then per node the coarse blocks every such
        window covers, then per node the fine buckets it covers.
        """
        index = self._index
        width = duration // index.width - 1  # buckets surely inside any window starting in a bucket
        if width < 1:
            yield first, last
            return
        vector = np.array(size.as_tuple(), dtype=np.int64)
        hopeful = (index.totals_sliding_min(first, last, width) // vector).min(axis=1) >= count
        fold = index.fold
        coarse_width = (width + 1) // fold - 1  # coarse blocks inside every such window
        verdicts: dict[int, bool] = {}  # coarse block -> might it fit? (computed a chunk at a time)
        fine: dict[int, bool] = {}  # start bucket -> might it fit? (computed a chunk at a time)
        run: list[int] = []
        for j in (first + np.flatnonzero(hopeful)).tolist():
            block = j // fold
            if coarse_width >= 1:
                if block not in verdicts:
                    verdicts.update(self._coarse_verdicts(vector, count, block, block + 7, coarse_width))
                if not verdicts[block]:
                    continue
            # Every window starting in bucket j covers buckets j+1..j+width and the last
            # instant of bucket j.
            if j + FINE_CHUNK <= index.buckets:  # one pass for a chunk beats a query per bucket
                if j not in fine:
                    fine.update(self._fine_verdicts(vector, count, j, min(j + FINE_CHUNK - 1, last), width))
                if not fine[j]:
                    continue
            else:
                surely = (np.minimum(index.range_min(j + 1, j + width), index.last[j]) if j < index.buckets
                          else index.capacity)
                if int(self._fits(surely, size).sum()) < count:
                    continue
            if run and j == run[1] + 1:
                run[1] = j
                continue
            if run:
                yield run[0], run[1]
            run = [j, j]
        if run:
            yield run[0], run[1]

    def _fine_verdicts(self, vector: np.ndarray, count: int, j0: int, j1: int, width: int) -> dict[int, bool]:
        """For start buckets j0..j1 (inside the index): could a start in the bucket leave room
        for `count`, judged per node on buckets j+1..j+width and the last instant of bucket j?"""
        index = self._index
        minima = np.minimum(index.fine_sliding_min(j0, j1, width), index.last[j0 : j1 + 1])
        fits = (minima // vector[None, :, None]).min(axis=1)
        np.maximum(fits, 0, out=fits)
        fits[:, ~self._eligible] = 0
        return dict(zip(range(j0, j1 + 1), (fits.sum(axis=1) >= count).tolist()))

    def _coarse_verdicts(self, vector: np.ndarray, count: int, b0: int, b1: int, width: int) -> dict[int, bool]:
        """For coarse blocks b0..b1: could any start in the block leave room for `count`,
        judged per node on the `width` coarse blocks every such window covers?"""
        minima = self._index.coarse_sliding_min(b0, b1, width)  # blocks x 3 x nodes
        fits = (minima // vector[None, :, None]).min(axis=1)
        np.maximum(fits, 0, out=fits)
        fits[:, ~self._eligible] = 0
        return dict(zip(range(b0, b1 + 1), (fits.sum(axis=1) >= count).tolist()))

    def _sweep(self, size: Resources, count: int, duration: Millis, lo: Millis, hi: Millis) -> Millis | None:
        """The first allocation end t in [lo, hi) with room for `count` over [t, t+duration).

        Only the first window is asked of every node. Moving the window from one end to the
        next changes a node's minimum only if the node has a change point in the stretch the
        window left, (t, t_next], which can raise it (at most to the node's full room), or in
        the stretch it entered, [t + d, t_next + d), which can only lower it. Such nodes are
        marked stale and re-asked only once the room they could at most add would reach the
        count: most ends are passed over without asking any node.
        """
        candidates = self._ends.irange(lo, hi, inclusive=(True, False))
        t = next(candidates, None)
        if t is None:
            return None
        fits = self._fits_exactly(size, t, t + duration).tolist()
        total = sum(fits)
        if total >= count:
            return t
        profiles, changes = self._profiles, self._changes
        eligible = self._eligible.tolist()
        room = self._fits(self._index.capacity, size).tolist()
        stale: set[int] = set()
        rising: set[int] = set()  # stale nodes whose possible gain is counted in `hope`
        hope = 0
        for t_next in candidates:
            if t_next == t:
                continue
            for _, n in changes.irange((t + 1, -1), (t_next + 1, -1), inclusive=(True, False)):
                if n not in rising and eligible[n]:
                    rising.add(n)
                    stale.add(n)
                    hope += room[n] - fits[n]
            for _, n in changes.irange((t + duration, -1), (t_next + duration, -1), inclusive=(True, False)):
                if eligible[n]:
                    stale.add(n)
            t = t_next
            if total + hope < count:
                continue  # even if every stale node came back empty, too little room
            for n in stale:
                fit = profiles[n].fit(size, t, t + duration)
                total += fit - fits[n]
                fits[n] = fit
            stale.clear()
            rising.clear()
            hope = 0
            if total >= count:
                return t
        return None

    # ----------------------------------------------------------------- read side

    @property
    def horizon(self) -> Millis:
        """Where the index ends: nothing is held from here on."""
        return self._index.end

    def committed(self, first: Millis, hours: int) -> np.ndarray:
        """The cluster's committed share (0 to 1) of each of `hours` clock hours from `first`
        (an hour's start): per bucket the most committed of its resources on the eligible
        nodes (from each node's least free amount then), averaged over the buckets the hour
        meets. What demand pricing reads (for every decision: a few numpy calls on the rows
        asked); outside the index nothing is committed."""
        index = self._index
        if self._supply is None:
            supply = (index.capacity * index.counted).sum(axis=1)
            self._supply = (1.0 / supply) if supply.all() else np.zeros(0)
        inverse = self._supply
        if not len(inverse):
            return np.ones(hours)  # no eligible node: nothing is free
        per_hour, rest = divmod(HOUR, index.width)
        if rest or (first - index.origin) % index.width:
            return self._committed_unaligned(first, hours, inverse)
        # The usual case: an hour is a whole number of buckets (a few numpy calls: every
        # decision asks). Row by row, so an hour's figure is the same in any range asked.
        j0 = (first - index.origin) // index.width
        n = hours * per_hour
        a = min(max(j0, 0), j0 + n)  # the rows of the window inside the index: [a, b)
        b = max(min(j0 + n, index.buckets), a)
        if a < b:
            share = index.totals[a:b] * inverse  # (row-wise reductions over 3 or 4 columns are
            free = np.minimum(np.minimum(share[:, 0], share[:, 1]), share[:, 2])  # slow: columns)
        else:
            free = np.zeros(0)
        if (a, b) != (j0, j0 + n):  # (outside the index all is free)
            whole = np.ones(n)
            whole[a - j0:b - j0] = free
            free = whole
        quarters = free.reshape(hours, per_hour)
        total = quarters[:, 0].copy()
        for k in range(1, per_hour):
            total += quarters[:, k]
        hourly: np.ndarray = 1.0 - total * (1.0 / per_hour)
        return hourly

    def hourly(self, first: Millis, hours: int, derive: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`derive(committed(first, hours))` (integers, read-only), kept per clock hour of the
        index until what is held in that hour changes: every decision prices its hours, and
        most hours are unchanged since they were last asked. `derive` must be a pure function
        of each hour's value (demand pricing's multipliers); its values are kept under it."""
        kept = self._hourly.get(derive)
        if kept is not None:  # (the usual case first: a few operations)
            h0 = (first - self._first_hour()) // HOUR
            h1 = h0 + hours
            if first % HOUR == 0 and 0 <= h0 and h1 <= len(kept.values) and kept.current.find(0, h0, h1) < 0:
                return kept.values[h0:h1]
        index = self._index
        zero = self._first_hour()
        if HOUR % index.width or (first - zero) % HOUR:
            return derive(self.committed(first, hours))  # (buckets do not tile these hours)
        size = -(-(index.end - zero) // HOUR)  # (an hour the index ends inside is kept as any other)
        if kept is None or len(kept.values) < 2 * size:
            if len(self._hourly) >= 4 and kept is None:
                self._hourly.clear()  # (a handful of derivations at most: the policies in use)
            kept = self._hourly[derive] = _Kept.grown(kept, size, derive(self.committed(index.end, 1)))
        size = len(kept.values)
        h0 = (first - zero) // HOUR
        h1 = h0 + hours
        a, b = max(h0, 0), min(h1, size)  # the hours kept
        if (a, b) != (h0, h1):
            parts = []
            if h0 < a:
                parts.append(derive(self.committed(first, min(h1, a) - h0)))
            if a < b:
                parts.append(self.hourly(zero + a * HOUR, b - a, derive))
            if max(b, h0) < h1:  # (past the index every hour is alike)
                parts.append(np.repeat(kept.beyond, h1 - max(b, h0)))
            return np.concatenate(parts)
        values, current = kept.values, kept.current
        a = current.find(0, h0, h1)
        if a >= 0:
            b = current.rfind(0, h0, h1) + 1  # (only the hours from the first stale to the last)
            values[a:b] = derive(self.committed(zero + a * HOUR, b - a))
            current[a:b] = b"\x01" * (b - a)
        return values[h0:h1]

    def _first_hour(self) -> Millis:
        """The first clock hour wholly inside the index (where `hourly` counts from)."""
        return -(-self._index.origin // HOUR) * HOUR

    def _committed_unaligned(self, first: Millis, hours: int, inverse: np.ndarray) -> np.ndarray:
        """`committed` where buckets do not tile the hour: each hour averages the buckets it meets."""
        index = self._index
        starts = first + HOUR * np.arange(hours + 1, dtype=np.int64)
        lo = (starts[:-1] - index.origin) // index.width  # first and last bucket of each hour
        hi = (starts[1:] - 1 - index.origin) // index.width
        j0, j1 = int(lo[0]), int(hi[-1]) + 1
        used = np.zeros(j1 - j0)
        a, b = max(j0, 0), min(j1, index.buckets)
        if a < b:
            used[a - j0:b - j0] = 1.0 - (index.totals[a:b] * inverse).min(axis=1)
        total = np.concatenate([[0.0], np.cumsum(used)])
        averaged: np.ndarray = (total[hi - j0 + 1] - total[lo - j0]) / (hi - lo + 1)
        return averaged

    def free_at(self, node: str, t: Millis) -> Resources:
        return self._profiles[self._node(node)].free_at(t)

    def timeline(self, node: str, start: Millis, end: Millis) -> list[tuple[Millis, Resources]]:
        return self._profiles[self._node(node)].steps(start, end)

    def least_free(self, node: str, bounds: np.ndarray) -> np.ndarray:
        """The node's least free amount of each resource in each step [bounds[k], bounds[k+1])
        (3 x steps): what a reader charting a node's capacity asks for."""
        profile = self._profiles[self._node(node)]
        return least_in_steps(np.asarray(profile.times, dtype=np.int64), profile.levels(), bounds)[0]

    def within_capacity(self) -> bool:
        return all(p.is_within_capacity() for p in self._profiles)


class _Kept(NamedTuple):
    """What `hourly` keeps for one derivation: a value per clock hour, whether each is current
    (1) or must be worked out again (0), and the value of any hour past the index (nothing is
    held there, as in buckets the index grows: so the `size` hours after the index are kept
    too, current, and a window that runs past the horizon still reads one slice)."""

    values: np.ndarray
    current: bytearray
    beyond: np.ndarray

    @classmethod
    def grown(cls, kept: _Kept | None, size: int, beyond: np.ndarray) -> _Kept:
        values = np.repeat(beyond.astype(np.int64), 2 * size)
        current = bytearray(size) + b"\x01" * size
        if kept is not None:
            values[:len(kept.values)], current[:len(kept.current)] = kept.values, kept.current
        return cls(values, current, beyond)


def least_in_steps(times: np.ndarray, levels: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a step function whose level i (a column of `levels`) holds on [times[i], times[i+1])
    and increasing `bounds` from times[0] on: per step [bounds[k], bounds[k+1]) the least level
    (3 x steps), and the indices of the levels at each step's first and last instant."""
    first = np.searchsorted(times, bounds[:-1], side="right") - 1
    last = np.searchsorted(times, bounds[1:] - 1, side="right") - 1
    # reduceat covers segments first[k]..first[k+1]-1 (the last one up to the last step's last
    # level); the level at a step's last instant may be first[k+1] itself, so fold it in too.
    minima = np.minimum(np.minimum.reduceat(levels[:, : last[-1] + 1], first, axis=1), levels[:, last])
    return minima, first, last


JOURNAL_LIMIT = 200_000  # entries a follower may leave unread before it is dropped


class Journal(list[tuple["Allocation", int]]):
    """What a model took (-1) and gave back (+1) since a reader last looked (follow)."""

    lapsed = False  # dropped for being left unread too long: the reader must start afresh


class ClusterTimeline:
    """The whole cluster's free capacity as one step function, for readers who ask about many
    instants at once (pex.query, GET /OpenPEX/capacity): summing 1,000 node profiles for every
    question would cost a pass over every node, so this keeps one merged list of the instants
    the total changes at.

    It follows the model's journal (CapacityModel.follow), so bringing it up to date costs what
    changed since, not what is held. `sync` before asking, once the model has changed.
    """

    def __init__(self, model: CapacityModel) -> None:
        self.model = model
        self.capacity = Resources(0, 0, 0)  # of every node in the model
        self._start_afresh()
        self.sync()

    def _start_afresh(self) -> None:
        self._journal = self.model.follow()
        self._times = np.zeros(0, dtype=np.int64)  # instants at which the total changes
        self._deltas = np.zeros((3, 0), dtype=np.int64)  # by how much, at each
        self._steps = (np.array([NEVER], dtype=np.int64), np.zeros((3, 1), dtype=np.int64))
        self._journal.extend((allocation, -1) for allocation in self.model.holders().values())

    def sync(self) -> None:
        """Take in every allocation taken or given back, and every node added, since the last sync."""
        if self._journal.lapsed:
            self._start_afresh()
        changes: list[tuple[Millis, int, int, int]] = []
        for allocation, sign in self._journal:
            _free_changes(allocation, sign, changes)
        self._journal.clear()
        if changes:
            self._merge(np.array(changes, dtype=np.int64).T)
        model = self.model
        self.capacity = sum((model.capacity_of(n) for n in model.nodes()), Resources(0, 0, 0))
        base = np.array(self.capacity.as_tuple(), dtype=np.int64)[:, None]
        levels = np.concatenate([base, base + np.cumsum(self._deltas, axis=1)], axis=1)
        self._steps = (np.concatenate([[NEVER], self._times]), levels)

    def _merge(self, new: np.ndarray) -> None:
        """Add (instant, cpus, memory, disk) changes (4 x n), one column per instant that changes."""
        times = np.concatenate([self._times, new[0]])
        deltas = np.concatenate([self._deltas, new[1:]], axis=1)
        order = np.argsort(times, kind="stable")
        times, deltas = times[order], deltas[:, order]
        starts = np.flatnonzero(np.concatenate([[True], times[1:] != times[:-1]]))
        times, deltas = times[starts], np.add.reduceat(deltas, starts, axis=1)
        changing = deltas.any(axis=0)
        self._times, self._deltas = times[changing], deltas[:, changing]

    def least_free(self, bounds: np.ndarray) -> np.ndarray:
        """The cluster's least free total of each resource in each step [bounds[k], bounds[k+1])
        (3 x steps), as of the last sync."""
        times, levels = self._steps
        return least_in_steps(times, levels, bounds)[0]


def _free_changes(allocation: Allocation, sign: int, into: list[tuple[Millis, int, int, int]]) -> None:
    """The changes of free capacity an allocation makes: taken (sign -1) or given back (+1)."""
    c, m, d = allocation.size.as_tuple()
    for share in allocation.shares:
        k = sign * share.count
        into.append((share.start, c * k, m * k, d * k))
        into.append((share.end, -c * k, -m * k, -d * k))


def use_at(allocations: Iterable[Sequence[Any]], t: Millis) -> dict[str, Resources]:
    """Per node, what allocations in their stored form (`Allocation.to_list`) have in use at
    instant `t`: what a model holding them all would count then (a node's capacity less its
    `free_at(t)`), without building one. For a reader that asks about one instant of a big
    store (openpex replay): a pass over the stored lists, where a model's profiles and index
    cost ten times that. Nodes with nothing in use are left out."""
    used: dict[str, list[int]] = {}
    for (c, m, d), shares in allocations:
        for node, start, end, count in shares:
            if start <= t < end:
                amounts = used.get(node)
                if amounts is None:
                    used[node] = [c * count, m * count, d * count]
                else:
                    amounts[0] += c * count
                    amounts[1] += m * count
                    amounts[2] += d * count
    return {node: Resources(*amounts) for node, amounts in used.items()}


def _profile_from_changes(
    capacity: Resources, changes: Sequence[tuple[Millis, int, int, int]]
) -> AvailabilityProfile:
    """A profile from time-sorted (instant, cpu, memory, disk) deltas of free capacity."""
    profile = AvailabilityProfile(capacity)
    c, m, d = capacity.as_tuple()
    i = 0
    while i < len(changes):
        t = changes[i][0]
        while i < len(changes) and changes[i][0] == t:
            c += changes[i][1]
            m += changes[i][2]
            d += changes[i][3]
            i += 1
        if (c, m, d) != (profile.cpus[-1], profile.memory[-1], profile.disk[-1]):
            profile.times.append(t)
            profile.cpus.append(c)
            profile.memory.append(m)
            profile.disk.append(d)
    return profile
