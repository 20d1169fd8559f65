"""The application's read side: reservations and instances as their callers may see them, pages
of the log (an auditor's, and a reservation's history for its owner), and the VM orders that
carry an instance's decisions to its host.

A user sees only their own; the admin sees all. Someone else's reservation or instance is
reported as missing, not forbidden: ids reveal nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification

from pex.domain.aggregates import Account, Instance, Node, Reservation, Template
from pex.domain.clock import Millis
from pex.domain.billing import Statements, period, statements
from pex.domain.capacity import Allocation, ClusterTimeline
from pex.domain.errors import InvalidField, NotFound
from pex.domain.event_log import SCANNED, EventListing, event_record, notifications_of, topics_of
from pex.domain.orders import Operation, VMOrder, domain_name
from pex.domain.listing import Listing
from pex.domain.read_models import (
    Booking,
    Summary,
    CapacityReport,
    CapacityStep,
    EventPage,
    EventRecord,
    InstanceView,
    ReservationView,
    instance_view,
    reservation_view,
)
from pex.domain.sizes import InstanceType, Resources
from pex.domain.statuses import InstanceStatus
from pex.domain.usage import MOST_STEPS, capacity_steps, step_bounds, step_count

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX

Visible = TypeVar("Visible", Reservation, Instance)


class Reading:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app
        self._timeline: ClusterTimeline | None = None

    def reservation(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> ReservationView:
        return self.view_of(self.visible_reservation(reservation_id, userid, is_admin))

    def reservations(self, userid: str, *, is_admin: bool = False, listing: Listing = Listing()) -> list[ReservationView]:
        """The caller's reservations (all, for the admin) in the order they were made, as
        `listing` selects them: after a cursor, of some statuses, meeting a period, at most so many."""
        view = self.app.view
        ids = view.reservations.keys() if is_admin else view.reservations_of.get(userid, ())
        chosen = listing.select(ids, view.reservations, "reservation",
                                lambda r: listing.keeps(r.status, r.terms_in_force.start, r.terms_in_force.end))
        return [self.view_of(reservation) for reservation in chosen]

    def instance(self, vm_id: Any, userid: str, *, is_admin: bool = False) -> InstanceView:
        return instance_view(self.visible_instance(vm_id, userid, is_admin))

    def instances(self, userid: str, *, is_admin: bool = False, listing: Listing = Listing()) -> list[InstanceView]:
        """The caller's instances (all, for the admin), those of each reservation together in
        the order the reservations were made, as `listing` selects them. A cursor must be one
        of the caller's own: someone else's is refused exactly as a missing one."""
        view = self.app.view
        reservations = view.reservations.keys() if is_admin else view.reservations_of.get(userid, ())
        ids: Iterable[UUID] = (i for rid in reservations for i in view.instances_of.get(rid, ()))
        chosen = listing.select(ids, view.instances, "instance", lambda i: listing.keeps(i.status, i.start, i.end))
        return [instance_view(instance) for instance in chosen]

    def usage(self, userid: str, start: Millis | None, end: Millis | None, now: Millis, *,
              is_admin: bool = False) -> Statements:
        """Statements of [start, end) as of `now` (bounds left out: billing.period): the
        caller's own; for the admin, one per user with a charge in it."""
        start, end = period(start, end, now)
        view = self.app.view
        return statements(view.reservations, view.reservations_of, None if is_admin else [userid],
                          view.rate_card.currency, start, end, now)

    def capacity(self, start: Millis, end: Millis, step: Millis, node: str | None = None) -> list[CapacityStep]:
        """Capacity per step of [start, end), of the cluster or of one node (usage.capacity_steps)."""
        if not (start < end and step > 0 and step_count(start, end, step) <= MOST_STEPS):
            raise InvalidField("step", f"must divide the period into 1 to {MOST_STEPS} steps")
        if node is not None and node not in self.app.view.nodes:
            raise NotFound(f"no node {node!r}")
        return capacity_steps(self.app.capacity, self._cluster() if node is None else None, node,
                              step_bounds(start, end, step))

    def capacity_report(self, start: Millis, end: Millis, step: Millis, *, nodes: Collection[str] = (),
                        most: int = MOST_STEPS) -> CapacityReport:
        """The cluster's capacity per step, and each of `nodes`'s; at most `most` steps in all."""
        if end <= start:
            raise InvalidField("end", "must be after the start")
        if step > 0 and step_count(start, end, step) * (1 + len(nodes)) > most:
            raise InvalidField("step", f"asks for more than {most} steps in all: ask for a longer step, a shorter "
                                       "period or fewer nodes")
        cluster = self.capacity(start, end, step)  # (brings the cluster's timeline up to date)
        model = self.app.capacity
        assert self._timeline is not None
        return CapacityReport(start, end, step, self._timeline.capacity, tuple(cluster),
                              {name: (model.capacity_of(name), tuple(self.capacity(start, end, step, name)))
                               for name in nodes})

    def _cluster(self) -> ClusterTimeline:
        """The cluster's timeline, kept in step with the capacity model as it is asked (and made
        afresh for a model rebuilt from the store)."""
        if self._timeline is None or self._timeline.model is not self.app.capacity:
            self._timeline = ClusterTimeline(self.app.capacity)
        else:
            self._timeline.sync()
        return self._timeline

    def capacity_timeline(self, node: str, start: Millis, end: Millis) -> list[tuple[Millis, Resources]]:
        """A node's free capacity from `start` to `end`: (instant, free from then on) steps."""
        return self.app.capacity.timeline(node, start, end)

    def summary(self, userid: str) -> Summary:
        """What a user's welcome page counts."""
        view = self.app.view
        reservations: Counter[str] = Counter()
        instances: Counter[str] = Counter()
        waiting = 0
        for rid in view.reservations_of.get(userid, ()):
            reservation = view.reservations[rid]
            reservations[reservation.status.value] += 1
            waiting += reservation.offer is not None
            for vm in view.instances_of.get(rid, ()):
                instances[str(view.instances[vm].status)] += 1
        return Summary(dict(reservations), waiting, dict(instances))

    def bookings(self, start: Millis, end: Millis) -> list[Booking]:
        """What every open reservation holds on each node at some instant of [start, end): its
        booking's shares, and its open offer's as holds, by node and start."""
        found = []
        for reservation in self.app.view.open_reservations():
            held = [(False, reservation.booking, reservation.agreed_terms)]
            if reservation.offer:
                held.append((True, reservation.offer["allocation"], reservation.offered_terms))
            for is_hold, stored, terms in held:
                if not stored or terms is None:
                    continue
                for share in Allocation.from_list(stored).shares:
                    if share.start < end and start < share.end:
                        found.append(Booking(reservation.id, reservation.userid, reservation.status, is_hold,
                                             share.node, share.start, share.end, share.count, terms))
        found.sort(key=lambda booking: (booking.node, booking.start, booking.held))
        return found

    def view_of(self, reservation: Reservation) -> ReservationView:
        view = self.app.view
        alive = tuple(i for i in view.instances_of.get(reservation.id, ())
                      if view.instances[i].status != InstanceStatus.DELETED)
        return reservation_view(reservation, alive)

    def visible_reservation(self, reservation_id: Any, userid: str, is_admin: bool) -> Reservation:
        return _visible(self.app.view.reservations, "reservation", reservation_id, userid, is_admin)

    def visible_instance(self, vm_id: Any, userid: str, is_admin: bool) -> Instance:
        return _visible(self.app.view.instances, "instance", vm_id, userid, is_admin)

    # ------------------------------------------------------------------ the log

    def events(self, listing: EventListing = EventListing()) -> EventPage:
        """A page of the log for an auditor (the caller decides who may read it): after a
        position, of some kinds, of one reservation and its instances (NotFound if there is no
        such reservation), in log order; secret fields left out.

        Each page is bounded work for the thread that owns the store: a reservation's events are
        found through the store's key, but a page of some kinds of the whole log looks through
        at most SCANNED positions (the store has no index of kinds) and says where it stopped:
        such a page may be short, even empty, and still be followed by another."""
        topics = topics_of(listing.kinds)
        if listing.reservation is not None:
            reservation = self.visible_reservation(listing.reservation, "", True)
            family = [reservation.id, *self.app.view.instances_of.get(reservation.id, ())]
            return self._page(notifications_of(self.app.recorder, family, listing.after, listing.limit, topics),
                              listing.limit)
        last = self.app.view.position
        stop = min(listing.after + SCANNED, last) if topics else None
        page = self._page(self.app.recorder.select_notifications(listing.after + 1, listing.limit, stop=stop,
                                                                 topics=topics), listing.limit)
        if page.following is None and stop is not None and stop < last:
            page = replace(page, following=stop)
        return page

    def history(self, listing: EventListing, userid: str, *, is_admin: bool = False) -> EventPage:
        """A page of everything recorded of the caller's reservation `listing.reservation` (any,
        for the admin) and of its instances, in log order; someone else's is not found."""
        if listing.reservation is None:
            raise InvalidField("reservation", "is required")
        self.visible_reservation(listing.reservation, userid, is_admin)
        return self.events(listing)

    def _page(self, found: Sequence[Notification], limit: int) -> EventPage:
        records = tuple(event_record(self.app.mapper, notification.id, notification, secrets=False)
                        for notification in found)
        return EventPage(records, self._names(records), records[-1].position if len(records) == limit else None)

    def _names(self, records: Iterable[EventRecord]) -> dict[UUID, str]:
        """The names of the instances, nodes, templates and accounts the records are about
        (their later events do not carry them)."""
        view = self.app.view
        tables: dict[str, tuple[Any, Mapping[str, Any]]] = {
            "Node": (Node, view.nodes), "Template": (Template, view.templates), "Account": (Account, view.accounts)}
        by_id: dict[str, dict[UUID, str]] = {}  # (made once a page names such an aggregate)
        names: dict[UUID, str] = {}
        for record in records:
            aggregate = record.kind.partition(".")[0]
            if aggregate == "Instance":
                instance = view.instances.get(record.originator_id)
                if instance is not None:
                    names[record.originator_id] = instance.name
            elif aggregate in tables:
                if aggregate not in by_id:
                    kind, table = tables[aggregate]
                    by_id[aggregate] = {kind.create_id(name): name for name in table}
                name = by_id[aggregate].get(record.originator_id)
                if name is not None:
                    names[record.originator_id] = name
        return names

    # ------------------------------------------------------------------ orders for hosts

    def order(self, instance: Instance, operation: Operation) -> VMOrder:
        """What `operation` on the instance's VM needs: its node, size and template."""
        template = self.app.view.templates.get(instance.template)
        return VMOrder(operation, str(instance.id), domain_name(str(instance.id)), instance.node,
                       InstanceType[instance.instance_type].resources, dict(template.spec) if template else {})

    def orders(self, reservation_id: UUID, operation: Operation, statuses: Collection[str]) -> list[VMOrder]:
        """`operation` for each of the reservation's instances in `statuses` that has a node."""
        view = self.app.view
        return [self.order(view.instances[i], operation) for i in view.instances_of.get(reservation_id, ())
                if view.instances[i].status in statuses and view.instances[i].node]


def _visible(table: Mapping[UUID, Visible], what: str, key: Any, userid: str, is_admin: bool) -> Visible:
    try:
        found = table.get(key if isinstance(key, UUID) else UUID(str(key)))
    except ValueError:
        found = None
    if found is None or not (is_admin or found.userid == userid):
        raise NotFound(f"no {what} {str(key)[:64]!r}")
    return found
