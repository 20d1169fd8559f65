"""Read models rebuilt from the notification log: reservations, instances, nodes, templates,
accounts, the capacity timeline, and the due times the timers are derived from.

Each read model holds the aggregates themselves, advanced by applying the stored events in
log order (`event.mutate`), so the read side reuses the aggregates' own recording code and
cannot drift from it. The capacity model follows each reservation's `held_allocation()`.

The writer's projections keep everything. A reader's (`reader=True`, pex.query) keep what
readers ask about: the aggregates, their indexes and the open offers; no timers nor quotas, and
nothing held in the capacity model until the first question that needs it (`keep_capacity`).
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from sortedcontainers import SortedList

from pex.domain.aggregates import Account, Instance, Node, PriceList, Reservation, Template
from pex.domain.capacity import Allocation, CapacityModel, use_at
from pex.domain.clock import Millis
from pex.domain.pricing import RateCard
from pex.domain.quotas import HeldOffers
from pex.domain.sizes import Resources

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


class Projections:
    def __init__(self, capacity: CapacityModel, *, reader: bool = False) -> None:
        """The writer's projections (the capacity model kept in step from the start, due times,
        quota counts), or a reader's (see the module's docstring)."""
        self.position = 0  # id of the last notification applied
        self.capacity = capacity
        self.reservations: dict[UUID, Reservation] = {}
        self.reservations_of: dict[str, list[UUID]] = defaultdict(list)
        self.instances: dict[UUID, Instance] = {}
        self.instances_of: dict[UUID, list[UUID]] = defaultdict(list)
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
                return self._read_log(log, until, as_of, progress)
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
            self._finish_rebuild()
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
            known = self.instances.get(event.originator_id)
            was_on = known.node if known is not None else None  # mutate changes it in place
            instance = _advanced(event, known)
            if known is None:
                self.instances_of[instance.reservation_id].append(instance.id)
            if instance.node != was_on:
                self.instances_on[was_on].discard(instance.id)
                self.instances_on[instance.node].add(instance.id)
            self.instances[instance.id] = instance
        elif isinstance(event, Node.Event):
            node = _advanced(event, self.nodes.get(self._names.get(event.originator_id, "")))
            if node.name not in self.nodes:
                self.capacity.add_node(node.name, Resources(node.cpus, node.memory_mb, node.disk_gb))
            self.nodes[node.name] = node
            self._names[node.id] = node.name
            self.capacity.set_eligible(node.name, node.status == "UP")
        elif isinstance(event, Template.Event):
            template = _advanced(event, self.templates.get(self._names.get(event.originator_id, "")))
            self.templates[template.name] = template
            self._names[template.id] = template.name
        elif isinstance(event, Account.Event):
            account = _advanced(event, self.accounts.get(self._names.get(event.originator_id, "")))
            self.accounts[account.username] = account
            self.account_names.setdefault(account.username.casefold(), account.username)
            self._names[account.id] = account.username
        elif isinstance(event, PriceList.Event):
            self.price_list = _advanced(event, self.price_list)
            self.rate_card = RateCard.stored(self.price_list.currency, self.price_list.rates)

    def _apply_reservation(self, event: Any) -> None:
        known = self.reservations.get(event.originator_id)
        reservation = event.mutate(known)  # (a later event changes the aggregate in place)
        if known is None:
            self.reservations[reservation.id] = reservation
            self.reservations_of[reservation.userid].append(reservation.id)
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

    def _finish_rebuild(self) -> None:
        reservations = self.reservations.values()
        if self._reader:  # (only open offers are due; a rebuild starts from none)
            for reservation in reservations:
                if reservation.offer:
                    self.offers_due.set(reservation.id, reservation.offer["hold_until"])
        else:
            for reservation in reservations:
                self._sync_due_times(reservation)
        if self._holding:
            self.capacity.load(self._held())

    def _held(self) -> dict[UUID, Allocation]:
        held = {}
        for rid, reservation in self.reservations.items():
            allocation = reservation.held_allocation()
            if allocation is not None:
                held[rid] = allocation
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
        for reservation in self.reservations.values():
            offer, booking = reservation.offer, reservation.booking
            if not (offer or booking) or reservation.is_closed:
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


def _advanced(event: Any, known: Advanced | None) -> Advanced:
    """The aggregate `event` makes of `known` (None: the event creates it). OpenPEX's events
    never discard an aggregate, so there always is one."""
    advanced: Advanced | None = event.mutate(known)
    if advanced is None:
        raise ValueError(f"{type(event).__qualname__} left no aggregate")
    return advanced
