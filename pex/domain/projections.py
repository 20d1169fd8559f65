"""Read models rebuilt from the notification log: reservations, instances, nodes, templates,
accounts, the capacity timeline, and the due times the timers are derived from.

Each read model holds the aggregates themselves, advanced by applying the stored events in
log order (`event.mutate`), so the read side reuses the aggregates' own recording code and
cannot drift from it. The capacity model follows each reservation's `held_allocation()`.

The writer's projections keep everything. A reader's (`reader=True`, pex.query) keep what
readers ask about: the aggregates, their indexes and the open offers; no timers nor quotas, and
nothing held in the capacity model until the first question that needs it (`keep_capacity`).

Projections thawed from a snapshot (pex.snapshots) hold the settled part of history (closed
reservations whose VMs all stopped: a family nothing will change unless a new event says so)
as where each family lies in the snapshot, and bring a family in, whole, the first time
anything asks for it. A start then costs what is still open, not the log's length.
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from sortedcontainers import SortedList

from pex.domain.aggregates import Account, Instance, Node, PriceList, Reservation, Template
from pex.domain.capacity import Allocation, CapacityModel, use_at
from pex.domain.clock import Millis
from pex.domain.negotiation import Status
from pex.domain.pricing import RateCard
from pex.domain.quotas import HeldOffers
from pex.domain.sizes import Resources
from pex.domain.statuses import InstanceStatus, NodeStatus

PAGE = 5_000  # notifications read per query while catching up


class DueTimes:
    """Instants at which something falls due, one per reservation, soonest first."""

    def __init__(self) -> None:
        self._by_key: dict[UUID, Millis] = {}
        self._queue: SortedList[tuple[Millis, Any]] = SortedList()

    def set(self, key: UUID, when: Millis | None) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            self._queue.remove((old, key))
        if when is not None:
            self._by_key[key] = when
            self._queue.add((when, key))

    def load(self, pairs: list[tuple[UUID, Millis]]) -> None:
        """Set many at once, into none (sorted once rather than inserted one by one)."""
        if self._by_key:
            raise ValueError("due times are loaded only into none")
        self._by_key = dict(pairs)
        self._queue = SortedList((when, key) for key, when in self._by_key.items())

    def due(self, now: Millis) -> list[UUID]:
        return [key for _, key in self._queue.irange(maximum=(now, _LAST))]

    def next(self) -> Millis | None:
        if not self._queue:
            return None
        soonest: Millis = self._queue[0][0]
        return soonest

    def __len__(self) -> int:
        return len(self._by_key)


class _Last:
    """Sorts after every key, so (t, _LAST) bounds all entries at instant t."""

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True


_LAST: Any = _Last()


class Log(Protocol):
    """The notification log as projections read it: pages of rows, each row made a (position,
    domain event) only when its turn comes (a reader of the past stops at the first event
    recorded after its instant, and must not decode, let alone fail on, what follows)."""

    def page(self, start: int, limit: int, stop: int | None) -> Sequence[Any]:
        """At most `limit` rows from position `start` on, none after `stop`, in log order."""
        ...

    def entry(self, row: Any) -> tuple[int, Any]:
        """A row's position and its domain event."""
        ...


class NotificationLog:
    """eventsourcing's notifications, mapped to domain events by the application's mapper."""

    def __init__(self, recorder: Any, mapper: Any) -> None:
        self.recorder = recorder
        self.mapper = mapper

    def page(self, start: int, limit: int, stop: int | None) -> Sequence[Any]:
        page: Sequence[Any] = self.recorder.select_notifications(start, limit, stop=stop)
        return page

    def entry(self, row: Any) -> tuple[int, Any]:
        return row.id, self.mapper.to_domain_event(row)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a while. Building projections allocates hundreds of
    thousands of long-lived objects and no cycles; the collector would rescan the growing heap
    again and again (a third of a rebuild's time)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


KEEP_FROM = 200_000  # aggregates in a view from which building it ends with `kept_out_of_collections`


def kept_out_of_collections(aggregates: int) -> None:
    """After building a large view: what exists now is kept out of later collections
    (gc.freeze), or the first one after would scan it all (0.7 s at a million reservations).
    Refcounting still frees whatever of it is dropped; the service's heap keeper does the same
    every second anyway."""
    if aggregates >= KEEP_FROM:
        gc.freeze()


class Families(Protocol):
    """The settled families of a snapshot: where one lies -> the states of its reservation and
    of its instances (each an aggregate's attributes, as `frozen` gives them)."""

    def states(self, where: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        ...


class Reservations(dict[UUID, Any]):
    """Every reservation by id, in the order made. A settled one from a snapshot is held as
    where its family lies (an int) until asked for; then its family is brought in, whole."""

    def __init__(self, bring_in: Callable[[UUID, int], Reservation]) -> None:
        super().__init__()
        self._bring_in = bring_in

    def __getitem__(self, rid: UUID) -> Reservation:
        found = dict.__getitem__(self, rid)
        return self._bring_in(rid, found) if type(found) is int else found

    def get(self, rid: UUID, default: Any = None) -> Any:
        if not dict.__contains__(self, rid):
            return default
        found = dict.__getitem__(self, rid)
        return self._bring_in(rid, found) if type(found) is int else found

    def values(self) -> Iterator[Reservation]:  # type: ignore[override]
        return (reservation for _, reservation in self.items())

    def items(self) -> Iterator[tuple[UUID, Reservation]]:  # type: ignore[override]
        # (no look-up per item: hashing a UUID is slow; bringing one in changes a value, never the size)
        for rid, found in dict.items(self):
            yield rid, self._bring_in(rid, found) if type(found) is int else found


class Instances(dict[UUID, Instance]):
    """Every instance by id. One of a settled family is not here until its family is brought
    in: `find` does that, given the instance's id, if a settled family holds it."""

    def __init__(self, find: Callable[[UUID], bool]) -> None:
        super().__init__()
        self._find = find

    def __missing__(self, iid: UUID) -> Instance:
        if self._find(iid):
            return dict.__getitem__(self, iid)
        raise KeyError(iid)

    def get(self, iid: UUID, default: Any = None) -> Any:
        found = dict.get(self, iid)
        if found is None and self._find(iid):
            return dict.get(self, iid)
        return default if found is None else found

    def __contains__(self, iid: object) -> bool:
        return dict.__contains__(self, iid) or (isinstance(iid, UUID) and self._find(iid))

    def held(self, iid: UUID) -> Instance | None:
        """The instance if it is here now (a settled family's is not brought in)."""
        return dict.get(self, iid)


class InstancesOf(defaultdict[UUID, list[UUID]]):
    """A reservation's instances, in the order planned; a settled family's once it is asked for."""

    def __init__(self, settled: Callable[[UUID], bool]) -> None:
        super().__init__(list)
        self._settled = settled

    def get(self, rid: UUID, default: Any = None) -> Any:
        if not dict.__contains__(self, rid):
            self._settled(rid)
        return dict.get(self, rid, default)

    def __missing__(self, rid: UUID) -> list[UUID]:
        if self._settled(rid):  # (brought in: its instances are there now, in order)
            return dict.__getitem__(self, rid)
        planned: list[UUID] = []
        dict.__setitem__(self, rid, planned)
        return planned


class Projections:
    def __init__(self, capacity: CapacityModel, *, reader: bool = False) -> None:
        """The writer's projections (the capacity model kept in step from the start, due times,
        quota counts), or a reader's (see the module's docstring)."""
        self.position = 0  # id of the last notification applied
        self.capacity = capacity
        me = weakref.ref(self)  # (not bound methods: the view and its tables must not make a cycle,
        # or a view replaced after being kept out of collections would linger until a full one)
        self.reservations: dict[UUID, Reservation] = Reservations(lambda rid, where: _alive(me)._bring_in(rid, where))
        self.open: dict[UUID, None] = {}  # the reservations not closed, in the order made
        self.reservations_of: dict[str, list[UUID]] = defaultdict(list)
        self.instances: Instances = Instances(lambda iid: _alive(me)._find(iid))
        self.instances_of: dict[UUID, list[UUID]] = InstancesOf(lambda rid: _alive(me)._bring_in_settled(rid))
        self.instances_on: dict[str | None, set[UUID]] = defaultdict(set)  # by node ("": none)
        self.nodes: dict[str, Node] = {}
        self.templates: dict[str, Template] = {}
        self.accounts: dict[str, Account] = {}
        self.price_list: PriceList | None = None
        self.rate_card = RateCard.default()  # the admin's, once there is one
        self.account_names: dict[str, str] = {}  # casefolded username -> the username (the first)
        self.offers_held: dict[str, HeldOffers] = defaultdict(HeldOffers)  # per user, for quotas (writer)
        self.offers_of: dict[str, dict[UUID, int]] = defaultdict(dict)  # user -> open offer -> instance-ms (writer)
        self.offers_due = DueTimes()  # open offers by hold expiry
        self.ends_due = DueTimes()  # agreed reservations by end (writer)
        self.starts_due = DueTimes()  # activated reservations not yet launched, by start (writer)
        self._reader = reader
        self._holding = not reader  # whether the capacity model holds the reservations' allocations
        self._rebuilding = False  # the first catch-up: everything is synced once, at its end
        self._names: dict[UUID, str] = {}  # id -> name of nodes, templates and accounts
        # What a snapshot left settled (see the module's docstring): where each family lies,
        # how to find an instance's reservation (the store's answer), and the statuses of the
        # instances not brought in.
        self.families: Families | None = None
        self.locate: Callable[[UUID], UUID | None] = lambda iid: None
        self.settled_statuses: Counter[str] = Counter()

    # ------------------------------------------------------------------ following the log

    def catch_up(self, recorder: Any, mapper: Any, *, until: int | None = None,
                 as_of: datetime | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Apply every notification after `position` (eventsourcing's recorder and mapper)."""
        return self.read(NotificationLog(recorder, mapper), until=until, as_of=as_of, progress=progress)

    def read(self, log: Log, *, until: int | None = None, as_of: datetime | None = None,
             progress: Callable[[int], None] | None = None) -> int:
        """Apply every notification of `log` after `position`; the first call rebuilds
        everything, with the due times and the capacity model synced in bulk at the end rather
        than one change at a time.

        A reader of the past (pex.query) bounds the log: no notification after `until`, and
        none from the first event recorded after `as_of` on (a prefix of the log, so the state
        is one the writer really had). `progress`, if given, is told after each page read how
        many notifications this call has applied so far."""
        self._rebuilding = self.position == 0
        try:
            with collector_paused():
                applied = self._read_log(log, until, as_of, progress)
                if self._rebuilding:
                    kept_out_of_collections(len(self.reservations) + len(self.instances))
                return applied
        finally:
            self._rebuilding = False

    def _read_log(self, log: Log, until: int | None, as_of: datetime | None,
                  progress: Callable[[int], None] | None) -> int:
        applied = 0
        reading = True
        entry, apply = log.entry, self._apply
        while reading:
            page = log.page(self.position + 1, PAGE, until)
            for row in page:
                position, event = entry(row)
                if as_of is not None and event.timestamp > as_of:
                    reading = False
                    break
                apply(event)
                self.position = position
                applied += 1
            if progress is not None:
                progress(applied)
            reading = reading and len(page) == PAGE
        if self._rebuilding:
            self.derive()
        return applied

    def apply_recordings(self, recordings: Iterable[Any], recorder: Any, mapper: Any) -> None:
        """Apply what this process just saved; if another writer's events came in between,
        read them from the log instead so the order stays the log's order."""
        recordings = list(recordings)
        if recordings and recordings[0].notification.id != self.position + 1:
            self.catch_up(recorder, mapper)
            return
        for recording in recordings:
            self._apply(recording.domain_event)
            self.position = recording.notification.id

    def apply_staged(self, events: Iterable[Any]) -> None:
        """Apply events before they are saved (group commit); `confirm_staged` follows."""
        for event in events:
            self._apply(event)

    def confirm_staged(self, recordings: Iterable[Any], recorder: Any) -> bool:
        """Move past the notifications of events applied before saving. False if another
        writer's events came in between: the view must then be rebuilt. (Ids may have gaps
        without that: PostgreSQL's sequence skips the ids of rolled-back inserts.)"""
        ids = [recording.notification.id for recording in recordings]
        if not ids:
            return True
        if ids != list(range(self.position + 1, self.position + 1 + len(ids))):
            between = recorder.select_notifications(self.position + 1, len(ids) + 1, stop=ids[-1])
            if [n.id for n in between] != ids:
                return False
        self.position = ids[-1]
        return True

    # ------------------------------------------------------------------ applying

    def _apply(self, event: Any) -> None:
        if isinstance(event, Reservation.Event):
            self._apply_reservation(event)
        elif isinstance(event, Instance.Event):
            # (a new one is nobody's settled instance: no need to ask where it lies)
            known = self.instances.get(event.originator_id) if event.originator_version > 1 else None
            was_on = known.node if known is not None else None  # mutate changes it in place
            instance = _advanced(event, known)
            if known is None:  # (its reservation's others first, should that one be settled)
                self.instances_of.get(instance.reservation_id)
                self.instances_of[instance.reservation_id].append(instance.id)
            if instance.node != was_on:
                self.instances_on[was_on].discard(instance.id)
                self.instances_on[instance.node].add(instance.id)
            self.instances[instance.id] = instance
        elif isinstance(event, Node.Event):
            self.take_in(_advanced(event, self.nodes.get(self._names.get(event.originator_id, ""))))
        elif isinstance(event, Template.Event):
            self.take_in(_advanced(event, self.templates.get(self._names.get(event.originator_id, ""))))
        elif isinstance(event, Account.Event):
            self.take_in(_advanced(event, self.accounts.get(self._names.get(event.originator_id, ""))))
        elif isinstance(event, PriceList.Event):
            self.take_in(_advanced(event, self.price_list))

    def take_in(self, aggregate: Node | Template | Account | PriceList) -> None:
        """Keep a node, template, account or price list as it now is (from an event, or a snapshot)."""
        if isinstance(aggregate, Node):
            node = aggregate
            if node.name not in self.nodes:
                self.capacity.add_node(node.name, Resources(node.cpus, node.memory_mb, node.disk_gb))
            self.nodes[node.name] = node
            self._names[node.id] = node.name
            self.capacity.set_eligible(node.name, node.status == "UP")
        elif isinstance(aggregate, Template):
            self.templates[aggregate.name] = aggregate
            self._names[aggregate.id] = aggregate.name
        elif isinstance(aggregate, Account):
            account = aggregate
            self.accounts[account.username] = account
            self.account_names.setdefault(account.username.casefold(), account.username)
            self._names[account.id] = account.username
        else:
            self.price_list = aggregate
            self.rate_card = RateCard.stored(aggregate.currency, aggregate.rates)

    def _apply_reservation(self, event: Any) -> None:
        known = self.reservations.get(event.originator_id)
        reservation = event.mutate(known)  # (a later event changes the aggregate in place)
        if known is None:
            self.reservations[reservation.id] = reservation
            self.reservations_of[reservation.userid].append(reservation.id)
        if reservation.is_closed:  # (for good: nothing leaves a closed status)
            self.open.pop(reservation.id, None)
        elif known is None:
            self.open[reservation.id] = None
        if not self._rebuilding:  # (a rebuild syncs every reservation once, at its end)
            self._sync(reservation)

    def _sync(self, reservation: Reservation) -> None:
        """Make the capacity model and the due times agree with the reservation's state."""
        if self._holding:
            allocation = reservation.held_allocation()
            if allocation != self.capacity.held(reservation.id):
                if allocation is None:
                    self.capacity.release(reservation.id)
                else:
                    self.capacity.hold(reservation.id, allocation)
        self._sync_due_times(reservation)

    def _sync_due_times(self, reservation: Reservation) -> None:
        self.offers_due.set(reservation.id, reservation.offer["hold_until"] if reservation.offer else None)
        if self._reader:
            return
        self._sync_offers_held(reservation)
        agreed = reservation.agreed_terms if reservation.is_agreed else None
        self.ends_due.set(reservation.id, agreed.end if agreed else None)
        activated = agreed if reservation.activated and not reservation.launched else None
        self.starts_due.set(reservation.id, activated.start if activated else None)

    def _sync_offers_held(self, reservation: Reservation) -> None:
        mine = self.offers_of[reservation.userid]
        held = self.offers_held[reservation.userid]
        before = mine.pop(reservation.id, None)
        if before is not None:
            held.count -= 1
            held.instance_ms -= before
        if reservation.offer:
            terms = reservation.offer["terms"]
            weight = (terms["fixed"] + terms["optional"]) * terms["duration"]
            mine[reservation.id] = weight
            held.count += 1
            held.instance_ms += weight

    def account(self, username: str) -> Account | None:
        """The account called `username`, whatever its case."""
        found = self.accounts.get(username)
        if found is None:
            name = self.account_names.get(username.casefold())
            found = self.accounts.get(name) if name is not None else None
        return found

    def open_reservations(self) -> Iterator[Reservation]:
        """The reservations not closed (the only ones that hold capacity or fall due), in the
        order made."""
        reservations = self.reservations
        return (reservations[rid] for rid in self.open)

    def instance_statuses(self) -> Counter[str]:
        """How many instances are in each status, settled ones included."""
        counts = Counter(str(instance.status) for instance in dict.values(self.instances))
        counts.update(self.settled_statuses)
        return counts

    # ------------------------------------------------------------------ settled families

    def _bring_in(self, rid: UUID, where: int) -> Reservation:
        """A settled family, asked for: its reservation and instances become aggregates here."""
        assert self.families is not None
        reservation_state, instance_states = self.families.states(where)
        reservation: Reservation = thawed(Reservation, reservation_state)
        dict.__setitem__(self.reservations, rid, reservation)
        planned = self.instances_of[rid]
        for state in instance_states:
            instance: Instance = thawed(Instance, state)
            dict.__setitem__(self.instances, instance.id, instance)
            planned.append(instance.id)
            self.instances_on[instance.node].add(instance.id)
            self.settled_statuses[str(instance.status)] -= 1
        self.settled_statuses += Counter()  # (drops the statuses none is left in)
        return reservation

    def _bring_in_settled(self, rid: UUID) -> bool:
        where: Any = dict.get(self.reservations, rid)
        if type(where) is int:
            self._bring_in(rid, where)
            return True
        return False

    def _find(self, iid: UUID) -> bool:
        """Bring in the settled family that holds instance `iid`, if one does."""
        if self.families is None:
            return False
        rid = self.locate(iid)
        return rid is not None and self._bring_in_settled(rid) and dict.__contains__(self.instances, iid)

    def derive(self) -> None:
        """Derive from the open reservations, in bulk, what follows from them: due times, quota
        counts, and what the capacity model holds (the end of a rebuild, or of a snapshot read)."""
        offers: list[tuple[UUID, Millis]] = []  # (as `_sync_due_times` would set them, one at a time)
        ends: list[tuple[UUID, Millis]] = []
        starts: list[tuple[UUID, Millis]] = []
        for reservation in self.open_reservations():
            if reservation.offer:
                offers.append((reservation.id, reservation.offer["hold_until"]))
            if self._reader:  # (only open offers are due for readers)
                continue
            self._sync_offers_held(reservation)
            agreed = reservation.agreed_terms if reservation.is_agreed else None
            if agreed is not None:
                ends.append((reservation.id, agreed.end))
                if reservation.activated and not reservation.launched:
                    starts.append((reservation.id, agreed.start))
        self.offers_due.load(offers)
        self.ends_due.load(ends)
        self.starts_due.load(starts)
        if self._holding:
            self.capacity.load(self._held())

    def _held(self) -> dict[UUID, Allocation]:
        held = {}
        for reservation in self.open_reservations():
            allocation = reservation.held_allocation()
            if allocation is not None:
                held[reservation.id] = allocation
        return held

    # ------------------------------------------------------------------ capacity, for readers

    def keep_capacity(self) -> None:
        """Make the capacity model hold every reservation's allocation, and keep it in step from
        now on (a reader's model holds nothing until a question needs it)."""
        if not self._holding:
            with collector_paused():
                self.capacity.load(self._held())
            self._holding = True

    def used_at(self, at: Millis) -> dict[str, Resources]:
        """What each node (every registered one, in the order registered) has in use at instant
        `at`: what every reservation holds then (its booking, its open offer's hold), as the
        capacity model counts it, but from the reservations alone: asking one instant needs no
        model. The choice is `Reservation.held_allocation`'s, without making allocations of
        the stored lists (a third of the cost) unless a renegotiation holds two at once."""
        stored: list[list[Any]] = []
        for reservation in self.open_reservations():
            offer, booking = reservation.offer, reservation.booking
            if not (offer or booking):
                continue
            if offer and booking:  # the old terms and the new ones: their envelope
                held = reservation.held_allocation()
                if held is not None:
                    stored.append(held.to_list())
            elif offer:
                stored.append(offer["allocation"])
            elif booking:
                stored.append(booking)
        used = use_at(stored, at)
        nothing = Resources(0, 0, 0)
        return {name: used.get(name, nothing) for name in self.nodes}


Advanced = TypeVar("Advanced", bound=Aggregate)


def _alive(view: weakref.ref[Projections]) -> Projections:
    found = view()
    if found is None:
        raise RuntimeError("the view these tables belong to is gone")
    return found


def frozen(aggregate: Aggregate) -> dict[str, Any]:
    """An aggregate's state to keep in a snapshot: its attributes, without unsaved events."""
    state = dict(aggregate.__dict__)
    del state["_pending_events"]
    return state


def thawed(kind: type[Advanced], state: dict[str, Any]) -> Advanced:
    """The aggregate `frozen` gave `state` of (as eventsourcing's snapshots rebuild one). A
    snapshot's encoding keeps a status as its plain string: it is made its member again."""
    aggregate: Advanced = object.__new__(kind)
    aggregate.__dict__.update(state)
    aggregate.__dict__["_pending_events"] = []
    status = _STATUSES.get(kind)
    if status is not None and "status" in state:
        aggregate.__dict__["status"] = status(state["status"])
    return aggregate


_STATUSES: dict[type, type[StrEnum]] = {Reservation: Status, Instance: InstanceStatus, Node: NodeStatus}


def _advanced(event: Any, known: Advanced | None) -> Advanced:
    """The aggregate `event` makes of `known` (None: the event creates it). OpenPEX's events
    never discard an aggregate, so there always is one."""
    advanced: Advanced | None = event.mutate(known)
    if advanced is None:
        raise ValueError(f"{type(event).__qualname__} left no aggregate")
    return advanced
