"""The projection: OpenPEX's events in log order, the read model's rows out, in batches.

Row state comes from the aggregates, advanced by each event's own mutator (`event.mutate`), so
the read model cannot drift from the domain's rules. The aggregates live in memory (at most
`cache_size` of them, least recently changed dropped first). One that is not there, because
the process restarted or dropped it, is read from the source store at the version just before
the event (`repository.get(id, version=...)`): a restart costs one read per aggregate it
touches again, not a replay of the log.

Events are applied in memory one by one and written in batches: a batch ends after
`batch_size` events or at the end of the log as last seen, and goes to the view in one
transaction with the tracking record of its last event.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import sha256
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Tracking
from eventsourcing.projection import Projection

from pex.domain.aggregates import Instance, Node, PriceList, Reservation
from pex.domain.clock import SystemClock, from_datetime
from pex.sql_read_model.rows import (
    Row,
    booking_in_force,
    booking_rows,
    event_row,
    instance_row,
    node_row,
    price_rows,
    reservation_row,
)
from pex.sql_read_model.views import Changes, ReadModel

BATCH = 20_000  # events per transaction
CACHED = 100_000  # aggregates kept in memory (about 4 KB each)
_MODELLED = (Reservation.Event, Instance.Event, Node.Event, PriceList.Event)


def identity_of(recorder: ApplicationRecorder) -> str | None:
    """An event store's identity: a digest of its first event, which records when it was
    made (None: the store is empty). A copy of a store keeps it; another store has another."""
    first = recorder.select_notifications(None, 1)
    if not first:
        return None
    event = first[0]
    digest = sha256(f"{event.originator_id}/{event.originator_version}/{event.topic}/".encode())
    digest.update(event.state)
    return digest.hexdigest()


class ReadModelProjection(Projection[ReadModel]):
    name = "openpex_read_model"

    def __init__(self, view: ReadModel, source: Application[UUID], *, location: str,
                 batch_size: int = BATCH, cache_size: int = CACHED) -> None:
        super().__init__(view)
        self._source = source
        self._location = location  # where the source is, recorded with its identity
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._aggregates: OrderedDict[UUID, Any] = OrderedDict()
        self._booked: dict[UUID, list[Any] | None] = {}  # the booking whose rows the view holds
        self._source_recorded = view.source() is not None
        self._events: list[Row] = []
        self._changed: dict[UUID, Any] = {}  # aggregates changed by the batch
        self._cards: list[tuple[int, list[Row]]] = []  # rate cards set by the batch, in log order
        self._last: Tracking | None = None
        self._head = 0  # the source's last position, as last read
        self.position = 0  # the last event written by this run
        self.applied = 0  # events written since start
        self.loaded = 0  # aggregates read from the source to carry on from

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self._events.append(event_row(tracking.notification_id, domain_event))
        if isinstance(domain_event, _MODELLED):
            self._apply(domain_event, tracking.notification_id)
        self._last = tracking
        if len(self._events) >= self._batch_size or self._at_head(tracking.notification_id):
            self.flush()

    def _apply(self, event: Any, position: int) -> None:
        aggregate = self._aggregates.pop(event.originator_id, None)
        if aggregate is None and event.originator_version > 1:
            aggregate = self._source.repository.get(event.originator_id, version=event.originator_version - 1)
            self.loaded += 1
        aggregate = event.mutate(aggregate)
        if event.originator_version == 1 and isinstance(aggregate, Reservation):
            self._booked[aggregate.id] = None  # new: no booking rows to replace
        self._aggregates[aggregate.id] = aggregate
        if isinstance(aggregate, PriceList):  # (each card has rows of its own: a history, not one row)
            at = from_datetime(event.timestamp)
            self._cards.append((at, price_rows(position, at, aggregate)))
        else:
            self._changed[aggregate.id] = aggregate

    def _at_head(self, position: int) -> bool:
        """Whether `position` is the last event in the source (read again once reached)."""
        if position < self._head:
            return False
        self._head = self._source.recorder.max_notification_id() or 0
        return position >= self._head

    def flush(self) -> None:
        """Write the batch applied so far, with its tracking record, in one transaction."""
        if self._last is None or not self._events:
            return
        changes = Changes(events=self._events, cards=self._cards)
        booked: dict[UUID, list[Any] | None] = {}
        for aggregate_id, aggregate in self._changed.items():
            if isinstance(aggregate, Reservation):
                changes.reservations.append(reservation_row(aggregate))
                booking = booking_in_force(aggregate)
                if aggregate_id not in self._booked or self._booked[aggregate_id] != booking:
                    if self._booked.get(aggregate_id, True):  # rows there, or maybe (not known)
                        changes.rebooked.append((str(aggregate_id),))
                    changes.bookings += booking_rows(aggregate_id, booking) if booking else []
                    booked[aggregate_id] = booking
            elif isinstance(aggregate, Instance):
                changes.instances.append(instance_row(aggregate))
            else:
                changes.nodes.append(node_row(aggregate))
        if not self._source_recorded:
            identity = identity_of(self._source.recorder)
            changes.source = (identity, self._location, SystemClock().now())
        self.view.write(changes, self._last)
        self._source_recorded = True
        self._booked.update(booked)
        self.applied += len(self._events)
        self.position = self._last.notification_id
        self._events, self._changed, self._cards = [], {}, []
        while len(self._aggregates) > self._cache_size:
            dropped, _ = self._aggregates.popitem(last=False)
            self._booked.pop(dropped, None)
