"""The event log as its readers ask for it: event kinds by name, stored events as EventRecords,
and a page of the log after a position, of some kinds, of some aggregates.

Shared by the service's read side (`Reading.events`, `Reading.history`) and `pex.query`.

eventsourcing selects notifications by position and topic, not by aggregate. A page of some
aggregates' events (a reservation's and its instances') is therefore one query of the store's
table on the two stores OpenPEX runs on, where positions are SQLite's rowid and PostgreSQL's
notification_id and the primary key (originator_id, originator_version) finds each
aggregate's rows; any other recorder (the in-memory one of tests) is scanned.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic

from pex.domain.aggregates import Account, Instance, Node, PriceList, Reservation, Template
from pex.domain.errors import InvalidField
from pex.domain.listing import LONGEST_PAGE
from pex.domain.read_models import SECRET_FIELDS, EventRecord, event_fields

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
LAST_POSITION = 10**15 - 1  # (a position a reader may name: far beyond any log)
SCANNED = 100_000  # positions one page of some kinds looks through at most (see Reading.events)


def _event_kinds() -> dict[str, tuple[str, ...]]:
    """Stored topics by kind: an event's class ("Reservation.Offered") or its aggregate's
    name ("Reservation", every event of reservations)."""
    kinds: dict[str, tuple[str, ...]] = {}
    for aggregate in (Reservation, Instance, Node, Template, Account, PriceList):
        own = [kind for kind in vars(aggregate).values()
               if isinstance(kind, type) and issubclass(kind, Aggregate.Event)
               and kind not in (aggregate.Event, aggregate.Created)]
        kinds.update((kind.__qualname__, (get_topic(kind),)) for kind in own)
        kinds[aggregate.__name__] = tuple(get_topic(kind) for kind in own)
    return kinds


KINDS = _event_kinds()
EVENT_KINDS = tuple(kind for kind in KINDS if "." in kind)  # every stored event's class, "Reservation.Offered"
# What a reader may name: a class, an event's own name (that name of every aggregate), an aggregate.
KIND_NAMES = tuple(sorted({kind.partition(".")[2] for kind in EVENT_KINDS})) + EVENT_KINDS + \
    tuple(kind for kind in KINDS if "." not in kind)


def kinds_named(names: Iterable[str], field: str = "type") -> tuple[str, ...]:
    """The kinds (KINDS' keys) that event types as a reader names them stand for:
    "Reservation.Confirmed", "Confirmed" (that event of every aggregate that has one) or
    "Reservation" (all of its events); InvalidField naming `field` for any other name."""
    kinds: list[str] = []
    for name in names:
        found = [name] if name in KINDS else [kind for kind in EVENT_KINDS if kind.partition(".")[2] == name]
        if not found:
            raise InvalidField(field, f"{name[:64]!r} is not an event type; one of {', '.join(KIND_NAMES)}",
                               as_given=True)
        kinds.extend(kind for kind in found if kind not in kinds)
    return tuple(kinds)


def topics_of(kinds: Iterable[str]) -> tuple[str, ...]:
    return tuple(topic for kind in kinds for topic in KINDS[kind])


TOPICS = frozenset(topic for topics in KINDS.values() for topic in topics)  # every event OpenPEX stores


class UndecodableEvent(ValueError):
    """A stored event OpenPEX did not write: a topic that is none of its events, or bytes that
    do not decode."""


class CheckedMapper(Mapper[UUID]):
    """The store's mapper for readers of a store they do not trust: a topic must be one of
    OpenPEX's events before it is resolved (eventsourcing imports whatever module a topic
    names), and whatever a row makes the decoder raise is one UndecodableEvent naming it."""

    @classmethod
    def of(cls, mapper: Mapper[UUID]) -> CheckedMapper:
        return cls(transcoder=mapper.transcoder, compressor=mapper.compressor, cipher=mapper.cipher)

    def to_domain_event(self, stored: StoredEvent) -> Aggregate.Event:
        where = f"the event at position {stored.id}" if isinstance(stored, Notification) else \
            f"the event {stored.originator_id} v{stored.originator_version}"
        if stored.topic not in TOPICS:
            raise UndecodableEvent(f"{where} is not an OpenPEX event (its topic is {str(stored.topic)[:80]!r})")
        try:
            event = super().to_domain_event(stored)
        except Exception as error:  # noqa: BLE001 (any failure of a foreign row's bytes means the same)
            raise UndecodableEvent(f"{where} does not decode ({type(error).__name__}: "
                                   f"{' '.join(str(error).split())[:120]})") from None
        return cast(Aggregate.Event, event)


def event_record(mapper: Mapper[UUID], position: int, stored: StoredEvent, *, secrets: bool = True) -> EventRecord:
    """The stored event at `position` of the log as a reader sees it; without `secrets`, its
    secret fields (a password hash) left out."""
    event = cast(Aggregate.Event, mapper.to_domain_event(stored))
    fields = event_fields(event)
    if not secrets:
        fields = {name: value for name, value in fields.items() if name not in SECRET_FIELDS}
    return EventRecord(position, event.originator_id, event.originator_version, type(event).__qualname__,
                       (event.timestamp - _EPOCH) // _MILLISECOND, fields)


@dataclass(frozen=True)
class EventListing:
    """Which page of the log a reader asks for: after a position, of some kinds (KINDS' keys,
    any if empty), of one reservation and its instances, at most `limit` events."""

    after: int = 0
    limit: int = LONGEST_PAGE
    kinds: tuple[str, ...] = ()
    reservation: UUID | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.after <= LAST_POSITION:
            raise InvalidField("after", "must be a position of the log: a whole number, 0 or more", as_given=True)
        if not 1 <= self.limit <= LONGEST_PAGE:
            raise InvalidField("limit", f"must be from 1 to {LONGEST_PAGE}", as_given=True)
        kinds_named(self.kinds)


def notifications_of(recorder: ApplicationRecorder, originators: Collection[UUID], after: int, limit: int,
                     topics: Sequence[str] = ()) -> list[Notification]:
    """The notifications of these aggregates after position `after`, of `topics` (any, if
    empty), in log order, at most `limit`: one query per page on SQLite and PostgreSQL (the
    store's own positions, its primary key per aggregate), a scan of the log on any other."""
    if not originators:
        return []
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _sqlite_notifications_of(recorder, originators, after, limit, topics)
    postgres = sys.modules.get("eventsourcing.postgres")  # (loaded if the store is PostgreSQL)
    if postgres is not None and isinstance(recorder, postgres.PostgresApplicationRecorder):
        return _postgres_notifications_of(recorder, originators, after, limit, topics)
    wanted, start = set(originators), after + 1
    found: list[Notification] = []
    while len(found) < limit:
        page = recorder.select_notifications(start, 1000, topics=topics)
        found.extend(n for n in page if _uuid(n.originator_id) in wanted)
        if len(page) < 1000:
            break
        start = page[-1].id + 1
    return found[:limit]


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _sqlite_notifications_of(recorder: SQLiteApplicationRecorder, originators: Collection[UUID], after: int,
                             limit: int, topics: Sequence[str]) -> list[Notification]:
    # The ids as the recorder stores them (hex), in one parameter however many there are.
    statement = (f"SELECT rowid, * FROM {recorder.events_table_name} "
                 "WHERE originator_id IN (SELECT value FROM json_each(?)) AND rowid > ? ")
    params: list[Any] = [json.dumps([originator.hex for originator in originators]), after]
    if topics:
        statement += f"AND topic IN ({','.join('?' * len(topics))}) "
        params.extend(topics)
    statement += "ORDER BY rowid LIMIT ?"
    params.append(limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, params)
        return [Notification(id=row["rowid"], originator_id=recorder.convert_originator_id(row["originator_id"]),
                             originator_version=row["originator_version"], topic=row["topic"], state=row["state"])
                for row in cursor.fetchall()]


def _postgres_notifications_of(recorder: Any, originators: Collection[UUID], after: int, limit: int,
                               topics: Sequence[str]) -> list[Notification]:
    from psycopg.sql import SQL, Identifier

    statement = SQL("SELECT * FROM {schema}.{table} WHERE originator_id = ANY(%s) AND notification_id > %s").format(
        schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
    params: list[Any] = [list(originators), after]
    if topics:
        statement += SQL(" AND topic = ANY(%s)")
        params.append(list(topics))
    statement += SQL(" ORDER BY notification_id LIMIT %s")
    params.append(limit)
    with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
        cursor.execute(statement, params)
        return [Notification(id=row["notification_id"], originator_id=row["originator_id"],
                             originator_version=row["originator_version"], topic=row["topic"],
                             state=bytes(row["state"]))
                for row in cursor.fetchall()]
