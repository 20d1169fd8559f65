"""Event-sourced aggregates: Reservation, PriceList, Instance, Node, Template, Account.

Aggregates decide, then record: a public method checks the protocol and takes the decision
(admission itself is computed by the application from the capacity model and handed in), then
calls a private `@event` method whose body only records the outcome. Replaying the events
therefore never re-runs a rule. Event fields are plain values (str, int, lists, dicts, UUIDs)
so that the msgpack transcoder can store them and auditors can read them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from pex.domain.capacity import Allocation
from pex.domain.clock import Millis
from pex.domain.errors import OfferExpired, ProtocolViolation
from pex.domain.negotiation import (
    AGREED,
    CLOSED,
    OFFER_STATUS,
    Action,
    Message,
    OfferState,
    Reply,
    Status,
    Terms,
    next_action,
)
from pex.domain.statuses import LIVE, REPORTED, InstanceStatus, NodeStatus

# Names are unique per kind: their ids are derived from them, so the store refuses a second
# aggregate with a taken name (a version conflict) even under concurrent writers.
_NAMESPACE = UUID("6f0d9b4e-4d1c-4b8e-9a51-0c8f1f0e7a10")


def named_id(kind: str, name: str) -> UUID:
    return uuid5(_NAMESPACE, f"{kind}:{name}")


class Reservation(Aggregate):
    """One user's reservation: its negotiation, its agreed terms and its life."""

    @event("Requested")
    def __init__(self, userid: str, terms: dict[str, Any]) -> None:
        self.userid = userid
        self.requested = terms  # the latest proposal the user sent
        self.status = Status.INITIATED
        self.agreed: dict[str, Any] | None = None  # terms in force
        self.booking: list[Any] | None = None  # allocation of the terms in force
        self.offer: dict[str, Any] | None = None  # the open offer, if any
        self.reason: str | None = None  # why the last proposal was rejected
        self.launched = False  # its start has been carried out: its instances were sent to boot
        self.activated = False  # the user asked for its VMs to start at its start time
        self.price: dict[str, Any] | None = None  # the price bound at the last confirmation (Quote.to_dict)
        self.cancelled_at: Millis | None = None  # when an agreed reservation was cancelled

    # ---------------------------------------------------------------- reading

    @property
    def agreed_terms(self) -> Terms | None:
        return Terms.from_dict(self.agreed) if self.agreed else None

    @property
    def offer_state(self) -> OfferState | None:
        return OfferState(self.offer["state"]) if self.offer else None

    @property
    def offered_terms(self) -> Terms | None:
        return Terms.from_dict(self.offer["terms"]) if self.offer else None

    @property
    def latest_terms(self) -> Terms:
        """The terms last on the table: the open offer's, else those agreed, else those asked
        for (what a reply echoes, and what a counter changes)."""
        return self.offered_terms or self.agreed_terms or Terms.from_dict(self.requested)

    @property
    def terms_in_force(self) -> Terms:
        """The terms the reservation stands on: those agreed, else the open offer's, else those
        asked for (what the reservation shows)."""
        return self.agreed_terms or self.offered_terms or Terms.from_dict(self.requested)

    @property
    def negotiation_opened(self) -> Millis | None:
        """When the open offer's negotiation began (None: no offer is open, or it was recorded
        before this was kept)."""
        return self.offer.get("opened") if self.offer else None

    @property
    def open_offer(self) -> dict[str, Any]:
        """The open offer, where the protocol has already required one."""
        if self.offer is None:
            raise ProtocolViolation("no offer is open")
        return self.offer

    @property
    def is_agreed(self) -> bool:
        return self.status in AGREED

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED

    def held_allocation(self) -> Allocation | None:
        """The capacity this reservation holds now: its open offer, its booking, or while a
        renegotiation is open both at once (the old terms stay in force until confirmed)."""
        if self.is_closed:
            return None
        offer = Allocation.from_list(self.offer["allocation"]) if self.offer else None
        booking = Allocation.from_list(self.booking) if self.booking else None
        if offer and booking:
            return booking.envelope(offer)
        return offer or booking

    def action_for(self, message: Message) -> Action:
        return next_action(self.status, self.offer_state, message)

    # ---------------------------------------------------------------- deciding

    def propose(self, terms: Terms) -> None:
        """The user sends new terms: a COUNTER to a counter offer, or a renegotiation."""
        self.action_for(Message.COUNTER)
        self._proposed(terms=terms.to_dict())

    def answer(self, reply: Reply, *, terms: Terms | None = None, allocation: Allocation | None = None,
               hold_until: Millis | None = None, reason: str | None = None,
               alternatives: list[dict[str, Any]] | None = None, opened: Millis | None = None,
               price: dict[str, Any] | None = None) -> None:
        """Record OpenPEX's answer to the latest proposal (computed by admission). `opened` is
        when this negotiation's first offer was made: its holds are bounded from then; `price`
        is the offer's (Quote.to_dict), held with its capacity."""
        if reply is Reply.REJECT:
            self._declined(reason=reason or "rejected")
        elif reply in (Reply.ACCEPT, Reply.COUNTER):
            assert terms is not None and allocation is not None and hold_until is not None
            self._offered(
                reply=reply.value,
                terms=terms.to_dict(),
                allocation=allocation.to_list(),
                hold_until=hold_until,
                alternatives=alternatives or [],
                opened=opened if opened is not None else self.negotiation_opened,
                price=price,
            )
        else:
            raise ValueError(f"{reply} is not an answer to a proposal")

    def accept_counter(self, now: Millis, hold_until: Millis) -> None:
        self.action_for(Message.ACCEPT)
        self._check_offer_open(now)
        self._counter_accepted(hold_until=hold_until)

    def confirm(self, now: Millis, price: dict[str, Any] | None = None) -> None:
        """The offer's terms become the agreed terms, at the offer's price (or at `price`, for
        an offer made before offers carried one)."""
        self.action_for(Message.CONFIRM)
        self._check_offer_open(now)
        self._confirmed(price=self.open_offer.get("price") or price)

    def withdraw(self) -> None:
        """The user REJECTs the open offer."""
        self.action_for(Message.REJECT)
        self._withdrawn()

    def lapse(self, now: Millis) -> None:
        self.action_for(Message.LAPSE)
        if now < self.open_offer["hold_until"]:
            raise ProtocolViolation("the offer is still held")
        self._offer_lapsed()

    def activate(self) -> None:
        self.action_for(Message.ACTIVATE)
        if self.activated:
            raise ProtocolViolation("the reservation is already activated")
        self._activated()

    def launch(self, now: Millis) -> None:
        """The start has come for an activated reservation: its instances are to boot now."""
        if not self.activated or self.status not in AGREED or self.launched:
            raise ProtocolViolation(f"a {self.status.value} reservation cannot be launched")
        if now < self.agreed_terms.start:  # type: ignore[union-attr]
            raise ProtocolViolation("the reservation has not started yet")
        self._launched()

    def cancel(self, now: Millis) -> None:
        """DELETE: an open offer is withdrawn, agreed terms are cancelled (at `now`: what was
        used by then is charged)."""
        if self.action_for(Message.CANCEL) is Action.WITHDRAW:
            self._withdrawn()
        else:
            self._cancelled(at=now)

    def expire(self, now: Millis) -> None:
        self.action_for(Message.EXPIRE)
        if now < self.agreed_terms.end:  # type: ignore[union-attr]
            raise ProtocolViolation("the reservation has not ended yet")
        self._expired()

    def _check_offer_open(self, now: Millis) -> None:
        if now >= self.open_offer["hold_until"]:
            raise OfferExpired("the offer has expired; send a new proposal")

    # ---------------------------------------------------------------- recording

    @event("Proposed")
    def _proposed(self, terms: dict[str, Any]) -> None:
        self.requested = terms

    @event("Offered")
    def _offered(self, reply: str, terms: dict[str, Any], allocation: list[Any], hold_until: Millis,
                 alternatives: list[dict[str, Any]], opened: Millis | None = None,
                 price: dict[str, Any] | None = None) -> None:
        state = OfferState.ACCEPTED if reply == Reply.ACCEPT.value else OfferState.COUNTERED
        self.offer = {"state": state.value, "terms": terms, "allocation": allocation,
                      "hold_until": hold_until, "alternatives": alternatives, "opened": opened, "price": price}
        self.reason = None
        if not self.is_agreed:
            self.status = OFFER_STATUS[state]

    @event("Declined")
    def _declined(self, reason: str) -> None:
        self.offer = None
        self.reason = reason
        if not self.is_agreed:
            self.status = Status.REJECTED

    @event("CounterAccepted")
    def _counter_accepted(self, hold_until: Millis) -> None:
        self.offer = {**self.open_offer, "state": OfferState.ACCEPTED.value, "hold_until": hold_until}
        if not self.is_agreed:
            self.status = Status.ACCEPTED

    @event("Confirmed")
    def _confirmed(self, price: dict[str, Any] | None = None) -> None:
        self.price = price  # bound: no later rate or demand changes it
        self.agreed = self.open_offer["terms"]
        self.booking = self.open_offer["allocation"]
        self.offer = None
        if not self.is_agreed:
            self.status = Status.CONFIRMED
        elif self.status is Status.DEGRADED:  # the new booking places every instance again
            self.status = Status.ACTIVATED if getattr(self, "activated", False) else Status.CONFIRMED
            self.reason = None

    @event("Withdrawn")
    def _withdrawn(self) -> None:
        self.offer = None
        if not self.is_agreed:
            self.status = Status.WITHDRAWN

    @event("OfferLapsed")
    def _offer_lapsed(self) -> None:
        self.offer = None
        if not self.is_agreed:
            self.status = Status.OFFER_EXPIRED

    @event("Activated")
    def _activated(self) -> None:
        if self.status is not Status.DEGRADED:  # degraded stays visible until a booking covers all
            self.status = Status.ACTIVATED
        self.activated = True

    def replan(self, allocation: Allocation, unplaced: int, lost_node: str) -> None:
        """A node was lost: the booking moves to `allocation`; `unplaced` instances found no
        room elsewhere, which degrades the reservation (visibly, with the reason)."""
        if self.status not in AGREED:
            raise ProtocolViolation(f"a {self.status.value} reservation has no booking to re-plan")
        reason = None
        if unplaced:
            reason = (f"node {lost_node} was lost and {unplaced} instance{'s' if unplaced > 1 else ''} "
                      "could not be placed on another node")
        self._replanned(allocation=allocation.to_list(), reason=reason)

    @event("Launched")
    def _launched(self) -> None:
        self.launched = True

    @event("Replanned")
    def _replanned(self, allocation: list[Any], reason: str | None) -> None:
        self.booking = allocation
        if reason:
            self.status = Status.DEGRADED
            self.reason = reason

    @event("Cancelled")
    def _cancelled(self, at: Millis | None = None) -> None:
        self.offer = None
        self.status = Status.CANCELLED
        self.cancelled_at = at

    @event("Expired")
    def _expired(self) -> None:
        self.offer = None
        self.status = Status.EXPIRED


class PriceList(Aggregate):
    """The admin's rate card: what an instance-hour of each size costs (decimal strings), in
    one currency. One per store."""

    @event("Registered")
    def __init__(self, currency: str, rates: dict[str, str]) -> None:
        self.currency = currency
        self.rates = rates

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return named_id("prices", "rate card")

    def change(self, rates: dict[str, str]) -> None:
        if rates != self.rates:
            self._changed(rates=rates)

    @event("Changed")
    def _changed(self, rates: dict[str, str]) -> None:
        self.rates = rates


class Instance(Aggregate):
    """One VM of a reservation, planned on a node. Its status is what the hypervisor last
    reported (PENDING until it first boots); DELETED is final."""

    @event("Planned")
    def __init__(self, reservation_id: UUID, userid: str, name: str, node: str, instance_type: str,
                 template: str, start: Millis, end: Millis) -> None:
        self.reservation_id = reservation_id
        self.userid = userid
        self.name = name
        self.node = node
        self.instance_type = instance_type
        self.template = template
        self.start = start
        self.end = end
        self.status = InstanceStatus.PENDING
        self.reason: str | None = None  # why it is in its status, when that needs saying

    def record_status(self, status: str, reason: str | None = None) -> None:
        """The hypervisor reported `status` (or an operation on the VM failed: `reason`)."""
        if status not in REPORTED:
            raise ValueError(f"{status!r} is not a status a VM can report")
        if self.status == InstanceStatus.DELETED or (status, reason) == (self.status, self.reason):
            return
        self._status_changed(status=str(status), reason=reason)

    def copied(self) -> Instance:
        """A copy to change, of one kept current elsewhere (a view's): as the store would give
        it, without reading the store. Its state is flat values, which the copy may share;
        its new events are its own."""
        copy = object.__new__(Instance)
        copy.__dict__.update(self.__dict__)
        copy._pending_events = []
        return copy

    def relocate(self, node: str) -> None:
        """Its node was lost and another has room: a live one will boot there again; a
        stopped one keeps its status."""
        self._relocated(node=node)

    def strand(self, reason: str) -> None:
        """Its node was lost and no other has room: it has no node, and is never booted."""
        self._stranded(reason=reason)

    def reschedule(self, node: str, start: Millis, end: Millis) -> None:
        if (node, start, end) != (self.node, self.start, self.end):
            self._rescheduled(node=node, start=start, end=end)

    def discard(self) -> None:
        if self.status != InstanceStatus.DELETED:
            self._discarded()

    @event("Rescheduled")
    def _rescheduled(self, node: str, start: Millis, end: Millis) -> None:
        self.node, self.start, self.end = node, start, end

    @event("Relocated")
    def _relocated(self, node: str) -> None:
        self.node = node
        if self.status in LIVE:
            self.status, self.reason = InstanceStatus.PENDING, None

    @event("Stranded")
    def _stranded(self, reason: str) -> None:
        self.node = ""
        if self.status != InstanceStatus.DELETED:
            self.status, self.reason = InstanceStatus.CRASHED if self.status in LIVE else self.status, reason

    @event("StatusChanged")
    def _status_changed(self, status: str, reason: str | None) -> None:
        self.status, self.reason = InstanceStatus(status), reason

    @event("Discarded")
    def _discarded(self) -> None:
        self.status = InstanceStatus.DELETED


class Node(Aggregate):
    """A hypervisor host and its capacity."""

    @event("Registered")
    def __init__(self, name: str, uri: str, cpus: int, memory_mb: int, disk_gb: int) -> None:
        self.name = name
        self.uri = uri
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.disk_gb = disk_gb
        self.status = NodeStatus.UP

    @staticmethod
    def create_id(name: str, **_: Any) -> UUID:
        return named_id("node", name)

    def go_down(self) -> None:
        if self.status != NodeStatus.DOWN:
            self._went_down()

    def come_back(self) -> None:
        if self.status == NodeStatus.DOWN:
            self._came_back()

    def drain(self) -> None:
        if not getattr(self, "drained", False):
            self._drained()

    def undrain(self) -> None:
        """Back in service: it takes new bookings again (if it is not down)."""
        if getattr(self, "drained", False):
            self._undrained()

    @event("NodeWentDown")
    def _went_down(self) -> None:
        self.status = NodeStatus.DOWN

    @event("NodeCameBack")
    def _came_back(self) -> None:
        # A drained node that failed and came back is still drained.
        self.status = NodeStatus.DRAINED if getattr(self, "drained", False) else NodeStatus.UP

    @event("Drained")
    def _drained(self) -> None:
        self.drained = True
        if self.status == NodeStatus.UP:
            self.status = NodeStatus.DRAINED

    @event("Undrained")
    def _undrained(self) -> None:
        self.drained = False
        if self.status == NodeStatus.DRAINED:
            self.status = NodeStatus.UP


class Template(Aggregate):
    """An operating environment instances boot from."""

    @event("Registered")
    def __init__(self, name: str, description: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.description = description
        self.spec = spec

    @staticmethod
    def create_id(name: str, **_: Any) -> UUID:
        return named_id("template", name)


class Account(Aggregate):
    """A user of OpenPEX; the password is stored only as a hash."""

    @event("Registered")
    def __init__(self, username: str, password_hash: str, fullname: str, email: str, is_admin: bool) -> None:
        self.username = username
        self.password_hash = password_hash
        self.fullname = fullname
        self.email = email
        self.is_admin = is_admin
        self.quota: dict[str, int] | None = None  # limits the admin set (others: the defaults)

    @staticmethod
    def create_id(username: str, **_: Any) -> UUID:
        # Usernames are unique whatever their case: 'Alice' takes the id of 'alice'.
        return named_id("account", username.casefold())

    def set_quota(self, limits: dict[str, int]) -> None:
        """The admin sets this user's limits (in the domain's names, see pex.domain.quotas)."""
        if limits != getattr(self, "quota", None):
            self._quota_set(limits=limits)

    @event("QuotaSet")
    def _quota_set(self, limits: dict[str, int]) -> None:
        self.quota = limits
