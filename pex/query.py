"""Read-only questions to any OpenPEX event store, for developers and operators.

    with Query.open("var/openpex/events.db") as query:
        query.reservations(status="CONFIRMED", node="node0001")
        query.capacity(start=monday, end=monday + timedelta(days=7), step=timedelta(hours=1))

A Query rebuilds the service's own projections (pex.domain.projections) from the store's
notification log, as `openpex serve` does when it starts, and answers in the read models of
pex.domain.read_models. It never writes: a SQLite file is opened read-only and no table is ever
created, so it can be opened beside a running service. `refresh()` applies what was recorded
since. Opened `as_of` an instant or at a `position` of the log, it shows the store as it was
then. Reservations carry their prices (the agreed one, an open offer's); `prices()` is the rate
card in force and `usage()` the billing statements of a period (pex.domain.billing), the
numbers the service's GET /OpenPEX/usage gives. See docs/querying.md.

Instants are aware datetimes or epoch milliseconds; durations timedeltas or milliseconds.
Input that cannot be used raises QueryError (a ValueError) naming it; a store that cannot be
opened or read raises pex.stores.StoreError. A Query is for one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Notification, PersistenceError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from pex.domain.aggregates import Instance, Reservation
from pex.domain.billing import Statements, statements
from pex.domain.capacity import Allocation, CapacityModel, ClusterTimeline
from pex.domain.clock import DAY, HOUR, Millis
from pex.domain.event_log import KINDS as KINDS, CheckedMapper, UndecodableEvent, event_record  # (KINDS: pex.audit.events reads it here)
from pex.domain.listing import Listing
from pex.domain.negotiation import LATEST_INSTANT, Status
from pex.domain.pricing import RateCard
from pex.domain.projections import Projections, collector_paused
from pex.domain.read_models import (
    CapacityStep,
    EventRecord,
    InstanceView,
    NodeView,
    ReservationView,
    instance_view,
    node_view,
    reservation_view,
)
from pex.domain.sizes import Resources
from pex.domain.statuses import InstanceStatus
from pex.domain.usage import MOST_STEPS, capacity_steps, step_bounds, step_count
from pex.domain.errors import one_line
from pex.stores import EventLog, StoreError, reader_env

Instant = datetime | int  # an aware datetime, or milliseconds since the Unix epoch
Duration = timedelta | int  # milliseconds, if an int

PAGE = 5_000  # notifications read per query of the log
# The capacity model's bucket index serves admission only; a reader asks it nothing, so one
# bucket a year keeps it a few rows long however far the store's bookings reach.
READER_BUCKET = 366 * DAY

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_Enum = TypeVar("_Enum", bound=StrEnum)


class QueryError(ValueError):
    """A question that cannot be asked as put: the message names the argument and why."""


class NotFoundError(QueryError, LookupError):
    """An id or a name the store does not know (at the query's position)."""


_Row = tuple[int, Any, int, str, bytes]  # a notification: position, originator id, version, topic, state


class _Log:
    """The store's log as a Query reads it (projections.Log): rows selected with plain SQL from a
    SQLite store (eventsourcing's Notification objects cost as much as the rest of reading a
    row), through the recorder from any other; decoded as the CheckedMapper decodes them; and
    noting where each aggregate's events are in the log, so that one aggregate's events are
    read without scanning the log."""

    def __init__(self, recorder: ApplicationRecorder, mapper: CheckedMapper) -> None:
        self.recorder = recorder
        self.positions: dict[Any, list[int]] = {}  # originator id -> its positions, in log order
        self.noted = 0
        self._originators: dict[Any, tuple[Any, list[int]]] = {}  # as stored -> (id, its positions)
        self._decoding = _Decoding(mapper)
        self._sqlite = recorder if isinstance(recorder, SQLiteApplicationRecorder) else None

    def page(self, start: int, limit: int, stop: int | None) -> Sequence[_Row]:
        if self._sqlite is None:
            return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                    for n in self.recorder.select_notifications(start, limit, stop)]
        statement = (f"SELECT rowid, originator_id, originator_version, topic, state "
                     f"FROM {self._sqlite.events_table_name} WHERE rowid >= ? ")
        params = [start]
        if stop is not None:
            statement += "AND rowid <= ? "
            params.append(stop)
        params.append(limit)
        with self._sqlite.datastore.transaction(commit=False) as cursor:  # (errors as eventsourcing's)
            raw = cursor.sqlite_cursor
            raw.row_factory = None  # plain tuples
            raw.execute(statement + "ORDER BY rowid LIMIT ?", params)
            page: list[_Row] = raw.fetchall()
            return page

    def entry(self, row: _Row) -> tuple[int, Any]:
        position, stored_id, version, topic, state = row
        known = self._originators.get(stored_id)
        if known is None:  # (once an aggregate: its id as eventsourcing makes it of what is stored)
            originator = stored_id
            if self._sqlite is not None:
                originator = self._sqlite.convert_originator_id(stored_id)
            known = self._originators[stored_id] = (originator, self.positions.setdefault(originator, []))
        originator, positions = known
        if position > self.noted:  # (a past query re-reads the first one beyond it)
            positions.append(position)
            self.noted = position
        return position, self._decoding.event(position, originator, version, topic, state)


class _Decoding:
    """Stored events made domain events exactly as the CheckedMapper makes them, without its cost
    per row: once the mapper has made a topic's first event (and so checked the topic is one of
    OpenPEX's), that topic's rows are decoded by the transcoder and made events directly. A row
    that does not decode so goes to the mapper, which makes it or names what is wrong with it."""

    def __init__(self, mapper: CheckedMapper) -> None:
        self._mapper = mapper
        self._decode = mapper.transcoder.decode
        self._plain = mapper.cipher is None and mapper.compressor is None
        self._classes: dict[object, type] = {}  # topic -> its event class, once the mapper made one

    def event(self, position: int, originator: Any, version: int, topic: str, state: bytes) -> Any:
        kind = self._classes.get(topic)
        if kind is not None and isinstance(originator, UUID):
            try:
                fields = self._decode(state)
            except Exception:  # noqa: BLE001 (the mapper names what is wrong)
                fields = None
            if type(fields) is dict and "class_version" not in fields:  # (else the mapper upcasts)
                fields["originator_id"] = originator
                fields["originator_version"] = version
                event: Any = object.__new__(kind)
                object.__setattr__(event, "__dict__", fields)  # (as the mapper does)
                return event
        made: Any = self._mapper.to_domain_event(Notification(id=position, originator_id=originator,
                                                              originator_version=version, topic=topic, state=state))
        if self._plain and getattr(type(made), "class_version", 1) == 1:
            self._classes[topic] = type(made)
        return made


class Query:
    """The store's state at a position of its log, asked in the domain's words."""

    def __init__(self, log: Application[UUID], until: int | None, as_of: datetime | None) -> None:
        """Use Query.open."""
        self._log = log
        self._mapper = CheckedMapper.of(log.mapper)  # a tampered row is a StoreError naming it, never an import
        self._until = until
        self._as_of = as_of
        self._reading = _Log(log.recorder, self._mapper)
        # The capacity model holds the reservations only once a capacity question needs it, and
        # the cluster's timeline is made on the first question about the cluster.
        self._view = Projections(CapacityModel(origin=0, bucket=READER_BUCKET), reader=True)
        self._timeline: ClusterTimeline | None = None
        self._timeline_behind = False  # holds changed since it was synced
        self._closed = False

    @classmethod
    def open(cls, store: str | os.PathLike[str], as_of: Instant | None = None, position: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> Query:
        """The state of `store` (a SQLite file's path or a postgresql:// URL) now, or as it was
        at `as_of` (every event recorded by then, to the millisecond) or at `position` (every
        notification up to that id); given both, the earlier. StoreError if the store is not
        there or cannot be reached: nothing is ever created. `progress`, if given, is told as
        the log is read (notifications applied so far, the most there are: up to `position`
        or the store's last)."""
        cutoff = None if as_of is None else _EPOCH + (_instant(as_of, "as_of") + 1) * _MILLISECOND - timedelta(microseconds=1)
        if position is not None and (not isinstance(position, int) or isinstance(position, bool) or position < 0):
            raise QueryError(f"position: expected a notification id (an int >= 0), got {position!r}")
        log = _open_log(store)
        try:
            query = cls(log, position, cutoff)
            query._catch_up(progress)
        except BaseException:
            log.close()
            raise
        return query

    # ------------------------------------------------------------------ the log

    @property
    def position(self) -> int:
        """The id of the last notification applied."""
        return self._view.position

    def refresh(self) -> int:
        """Apply what was recorded since the last look; returns how many notifications. A query
        of the past stays where it was opened."""
        self._check_open()
        return self._catch_up()

    def _catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        with _reading_store():
            most = 0
            if progress is not None:
                last = self._log.recorder.max_notification_id() or 0
                most = last if self._until is None else min(last, self._until)

            def told(applied: int) -> None:
                if progress is not None:
                    progress(applied, most)

            applied = self._view.read(self._reading, until=self._until, as_of=self._as_of,
                                      progress=told if progress is not None else None)
        self._timeline_behind = self._timeline_behind or applied > 0  # synced when next asked
        return applied

    def events(self, *, after: int = 0, limit: int | None = None, originator: UUID | str | None = None,
               kind: str | Iterable[str] | None = None) -> list[EventRecord]:
        """The stored events up to the query's position, in log order: after a position, of one
        aggregate (`originator`), of some kinds ("Reservation.Offered", or "Reservation" for all
        of an aggregate's), at most `limit` of them."""
        self._check_open()
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise QueryError(f"after: expected a position (an int >= 0), got {after!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise QueryError(f"limit: expected a positive int, got {limit!r}")
        topics = _topics(kind)
        with _reading_store():
            if originator is not None:
                found = self._events_of(_uuid(originator, "originator"), after, topics)
            else:
                found = self._events_after(after, limit, topics)
            return [self._record(position, stored) for position, stored in found[:limit]]

    def _events_of(self, originator: UUID, after: int, topics: Collection[str]) -> list[tuple[int, StoredEvent]]:
        """One aggregate's events in one read: its positions were noted while catching up, and
        its versions follow the log's order."""
        positions = [p for p in self._reading.positions.get(originator, ()) if p <= self.position]
        if not positions:
            return []
        stored = self._log.recorder.select_events(originator, limit=len(positions))
        return [(p, event) for p, event in zip(positions, stored) if p > after and (not topics or event.topic in topics)]

    def _events_after(self, after: int, limit: int | None, topics: Sequence[str]) -> list[tuple[int, StoredEvent]]:
        found: list[tuple[int, StoredEvent]] = []
        start = after + 1
        while start <= self.position and (limit is None or len(found) < limit):
            wanted = PAGE if limit is None else min(PAGE, limit - len(found))
            page = self._log.recorder.select_notifications(start, wanted, stop=self.position, topics=topics)
            found.extend((n.id, n) for n in page)
            if len(page) < wanted:
                break
            start = page[-1].id + 1
        return found

    def _record(self, position: int, stored: StoredEvent) -> EventRecord:
        return event_record(self._mapper, position, stored)

    # ------------------------------------------------------------------ reservations and instances

    def reservations(self, *, user: str | None = None, status: Status | str | Iterable[Status | str] | None = None,
                     start: Instant | None = None, end: Instant | None = None,
                     node: str | None = None) -> list[ReservationView]:
        """Reservations in the order they were made: a user's, in some statuses, whose terms in
        force meet [start, end), with a booking share on a node."""
        self._check_open()
        statuses = _statuses(status, Status)
        lo, hi = _period(start, end)
        listing = Listing(statuses=statuses, start=lo, end=hi)
        if node is not None:
            self._known_node(node)
        table = self._view.reservations
        candidates: Iterable[Reservation] = table.values()  # (no lookups: hashing a UUID is slow)
        if user is not None:
            candidates = [table[rid] for rid in self._view.reservations_of.get(self._username(user), ())]
        timed = lo is not None or hi is not None
        chosen = []
        for reservation in candidates:
            if statuses and reservation.status not in statuses:
                continue  # (asked first: a status is at hand, terms are built)
            if timed:
                terms = reservation.terms_in_force
                if not listing.keeps(reservation.status, terms.start, terms.end):
                    continue
            if node is None or _books_on(reservation, node):
                chosen.append(self._reservation_view(reservation))
        return chosen

    def reservation(self, reservation_id: UUID | str) -> ReservationView:
        """One reservation; NotFoundError if the store has none with this id (at the position)."""
        self._check_open()
        return self._reservation_view(self._known_reservation(reservation_id))

    def offers_open(self, at: Instant | None = None) -> list[ReservationView]:
        """The reservations with an open offer (its `offer`), the first to lapse first; with `at`,
        only those still held then (one past its hold lapses as soon as anyone acts on it)."""
        self._check_open()
        moment = None if at is None else _instant(at, "at")
        view = self._view
        held = [self._reservation_view(view.reservations[rid]) for rid in view.offers_due.due(LATEST_INSTANT)]
        return [r for r in held if moment is None or (r.offer is not None and r.offer.hold_until > moment)]

    def instances(self, *, user: str | None = None, reservation: UUID | str | None = None, node: str | None = None,
                  status: InstanceStatus | str | Iterable[InstanceStatus | str] | None = None) -> list[InstanceView]:
        """Instances in the order they were planned: a user's, a reservation's, on a node ("" for
        those no node had room for), in some statuses."""
        self._check_open()
        statuses = _statuses(status, InstanceStatus)
        if node:
            self._known_node(node)
        view = self._view
        name = None if user is None else self._username(user)
        candidates: Iterable[Instance] = view.instances.values()
        if reservation is not None:
            candidates = [view.instances[i] for i in view.instances_of.get(self._known_reservation(reservation).id, ())]
        return [instance_view(instance) for instance in candidates
                if (name is None or instance.userid == name) and (node is None or instance.node == node)
                and (not statuses or instance.status in statuses)]

    def _reservation_view(self, reservation: Reservation) -> ReservationView:
        view = self._view
        planned = view.instances_of.get(reservation.id)
        alive = () if not planned else tuple(i for i in planned if view.instances[i].status != InstanceStatus.DELETED)
        return reservation_view(reservation, alive)

    def _known_reservation(self, reservation_id: UUID | str) -> Reservation:
        rid = _uuid(reservation_id, "reservation")
        found = self._view.reservations.get(rid)
        if found is None:
            raise NotFoundError(f"no reservation {rid} in the store (at position {self.position})")
        return found

    def _username(self, user: str, name: str = "user") -> str:
        """The user's name as recorded: accounts are one whatever the case of their name."""
        if not isinstance(user, str):
            raise QueryError(f"{name}: expected a username, got {user!r}")
        account = self._view.account(user)
        return account.username if account is not None else user

    # ------------------------------------------------------------------ prices and statements

    def prices(self) -> RateCard:
        """The rate card in force at the query's position: the admin's last (PriceList events),
        or the default card the service starts with if the store has none yet."""
        self._check_open()
        return self._view.rate_card

    def usage(self, start: Instant, end: Instant, *, userid: str | None = None,
              now: Instant | None = None) -> Statements:
        """The billing statements of [start, end) as of `now` (pex.domain.billing, as GET
        /OpenPEX/usage gives them): one user's (`userid`, whatever its case: one statement,
        even with no line), or every user's with a charge in the period (None, as the admin
        sees them). `now` bounds what is charged of reservations still running; by default
        the instant the query shows: its `as_of`, or when its last notification was recorded
        if opened at a `position`, else the current time."""
        self._check_open()
        if start is None or end is None:
            raise QueryError(f"{'start' if start is None else 'end'}: required")
        lo, hi = _period(start, end)
        assert lo is not None and hi is not None
        moment = self._now() if now is None else _instant(now, "now")
        view = self._view
        return statements(view.reservations, view.reservations_of,
                          None if userid is None else [self._username(userid, "userid")], view.rate_card.currency,
                          lo, hi, moment)

    def _now(self) -> Millis:
        """The instant the query shows (see usage)."""
        if self._until is None and self._as_of is None:
            return (datetime.now(timezone.utc) - _EPOCH) // _MILLISECOND
        if self._as_of is not None and (self._until is None or self.position < self._until):
            return (self._as_of - _EPOCH) // _MILLISECOND  # (as_of is the last microsecond of its millisecond)
        if self.position == 0:
            return 0
        last = self.events(after=self.position - 1, limit=1)
        return last[0].timestamp if last else 0

    # ------------------------------------------------------------------ nodes and capacity

    def nodes(self) -> list[NodeView]:
        """Every node, in the order they were registered."""
        self._check_open()
        return [node_view(node) for node in self._view.nodes.values()]

    def capacity(self, node: str | None = None, *, start: Instant, end: Instant, step: Duration = HOUR) -> list[CapacityStep]:
        """Per step of [start, end) (the last one shorter if `step` does not divide it), the least
        free and the most used CPUs, memory and disk at any instant in it: of one node, or of the
        whole cluster (every registered node, whatever its status). Counts everything held:
        bookings, and the holds of open offers. The first question builds the capacity model
        (seconds on a store of a million events: used_at asks one instant without it), the
        first about the cluster its timeline; later ones take milliseconds."""
        self._check_open()
        if start is None or end is None:
            raise QueryError(f"{'start' if start is None else 'end'}: required")
        lo, hi = _period(start, end)
        assert lo is not None and hi is not None
        width = _duration(step, "step")
        steps = step_count(lo, hi, width)
        if steps > MOST_STEPS:
            raise QueryError(f"step: {steps} steps from start to end; at most {MOST_STEPS} may be asked at once")
        if node is not None:
            self._known_node(node)
        self._view.keep_capacity()  # (the first question builds the model: seconds on a big store)
        cluster = self._cluster_timeline() if node is None else None
        return capacity_steps(self._view.capacity, cluster, node, step_bounds(lo, hi, width))

    def used_at(self, at: Instant) -> dict[str, Resources]:
        """What each node (every registered one, in the order they were registered) has in use
        at one instant: bookings and the holds of open offers, as capacity() counts them. From
        the reservations alone, without the capacity model capacity() builds on its first
        question: one instant of a big store costs a pass over its reservations."""
        self._check_open()
        return self._view.used_at(_instant(at, "at"))

    def _cluster_timeline(self) -> ClusterTimeline:
        if self._timeline is None:
            with collector_paused():
                self._timeline = ClusterTimeline(self._view.capacity)  # (takes in what is held)
        elif self._timeline_behind:
            self._timeline.sync()
        self._timeline_behind = False
        return self._timeline

    def _known_node(self, node: str) -> None:
        if not isinstance(node, str):
            raise QueryError(f"node: expected a node's name, got {node!r}")
        if node not in self._view.nodes:
            raise NotFoundError(f"no node {node!r} in the store (at position {self.position})")

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._log.close()

    def __enter__(self) -> Query:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise QueryError("the query is closed")



# ---------------------------------------------------------------------- opening a store

def _open_log(store: object) -> EventLog:
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    env = reader_env(store)
    with _reading_store():
        return EventLog(env=env)


@contextmanager
def _reading_store() -> Iterator[None]:
    """A store that fails while being read is one StoreError, not a driver's traceback."""
    try:
        yield
    except (PersistenceError, psycopg.Error) as error:
        raise StoreError(f"the event store cannot be read: {one_line(error)}") from None
    except UndecodableEvent as error:
        raise StoreError(f"the event store holds what OpenPEX did not write: {error}") from None
    except QueryError:
        raise
    except (ValueError, TypeError) as error:  # eventsourcing's own reading of a row no writer stored
        raise StoreError(f"the event store holds a row that is not an event ({type(error).__name__}: "
                         f"{one_line(error)}); `openpex verify` names its position") from None


# ---------------------------------------------------------------------- reading arguments

def _instant(value: object, name: str) -> Millis:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise QueryError(f"{name}: {value.isoformat()} has no time zone; give an aware datetime")
        millis: Millis = (value - _EPOCH) // _MILLISECOND
    elif isinstance(value, int) and not isinstance(value, bool):
        millis = value
    else:
        raise QueryError(f"{name}: expected an aware datetime or epoch milliseconds (an int), got {value!r}")
    if not 0 <= millis <= LATEST_INSTANT:
        raise QueryError(f"{name}: {value!r} is not between 1970 and 9999")
    return millis


def _period(start: Instant | None, end: Instant | None) -> tuple[Millis | None, Millis | None]:
    lo = None if start is None else _instant(start, "start")
    hi = None if end is None else _instant(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise QueryError(f"end: must be after start ({start!r} to {end!r})")
    return lo, hi


def _duration(value: object, name: str) -> Millis:
    if isinstance(value, timedelta):
        millis: Millis = value // _MILLISECOND
    elif isinstance(value, int) and not isinstance(value, bool):
        millis = value
    else:
        raise QueryError(f"{name}: expected a timedelta or milliseconds (an int), got {value!r}")
    if millis <= 0:
        raise QueryError(f"{name}: must be at least a millisecond, got {value!r}")
    return millis


def _statuses(value: object, kind: type[_Enum]) -> frozenset[str]:
    """One status or several, as members or names; empty for any."""
    if value is None:
        return frozenset()
    given = [value] if isinstance(value, str) else value
    if not isinstance(given, Iterable):
        raise QueryError(f"status: expected one of {', '.join(kind)}, or several, got {value!r}")
    names = []
    for status in given:
        if not isinstance(status, str) or status not in kind.__members__.values():
            raise QueryError(f"status: {status!r} is not one of {', '.join(kind)}")
        names.append(str(status))
    return frozenset(names)


def _topics(kind: str | Iterable[str] | None) -> tuple[str, ...]:
    if kind is None:
        return ()
    kinds = [kind] if isinstance(kind, str) else list(kind)
    unknown = [k for k in kinds if not isinstance(k, str) or k not in KINDS]
    if unknown or not kinds:
        raise QueryError(f"kind: {unknown[0] if unknown else kind!r} is not a kind of event; "
                         f"one of {', '.join(sorted(KINDS))}")
    return tuple(topic for k in kinds for topic in KINDS[k])


def _uuid(value: object, name: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise QueryError(f"{name}: {str(value)[:64]!r} is not an id") from None


def _books_on(reservation: Reservation, node: str) -> bool:
    """Whether the reservation's booking has a share on the node."""
    return reservation.booking is not None and any(
        share.node == node for share in Allocation.from_list(reservation.booking).shares)
