"""Read models: what the domain tells its readers, as frozen dataclasses in the domain's words.

Commands and queries of the application, and `pex.query`, return these, never aggregates or
wire shapes: times are epoch milliseconds, statuses are enums, terms are `Terms`. The paper's
JSON (camelCase names, RFC 1123 times) is made from them in `pex/http/presenters.py`. An
account's password hash is not here: only the authenticator reads it (`Catalogue.password_hash`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from pex.domain.aggregates import Account, Instance, Node, Reservation, Template
from pex.domain.clock import Millis
from pex.domain.negotiation import OfferState, Reply, Status, Terms
from pex.domain.pricing import Quote
from pex.domain.quotas import Quota
from pex.domain.sizes import Resources
from pex.domain.statuses import InstanceStatus, NodeStatus


@dataclass(frozen=True, slots=True)
class OfferView:
    """An open offer: the terms OpenPEX holds capacity for until `hold_until`."""

    state: OfferState
    terms: Terms
    hold_until: Millis
    alternatives: tuple[Terms, ...] = ()
    price: Quote | None = None  # what the terms cost (None: offered before prices were kept)
    alternative_prices: tuple[Quote | None, ...] = ()  # one per alternative


@dataclass(frozen=True, slots=True)
class ReservationView:
    id: UUID
    userid: str
    status: Status
    terms: Terms  # those in force: agreed, else offered, else asked for
    instances: tuple[UUID, ...]  # not deleted, in the order they were planned
    reason: str | None = None
    offer: OfferView | None = None
    activated: bool = False  # its VMs are to boot at its start
    launched: bool = False  # its start was carried out
    requested: Terms | None = None  # the latest terms its user proposed (what an offer answers)
    price: Quote | None = None  # the price agreed: bound at the last confirmation


@dataclass(frozen=True, slots=True)
class Summary:
    """A user's things counted: reservations by status, those with an offer waiting for their
    answer, and their instances by status."""

    reservations: Mapping[str, int]
    offers_waiting: int
    instances: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Booking:
    """What one reservation holds on one node over [start, end): agreed terms' capacity, or
    an open offer's hold (`held`). A bar of the admin's capacity chart."""

    reservation_id: UUID
    userid: str
    status: Status
    held: bool
    node: str
    start: Millis
    end: Millis
    count: int  # instances of `terms.instance_type`
    terms: Terms


@dataclass(frozen=True, slots=True)
class Answer:
    """OpenPEX's answer to one message of a negotiation."""

    reply: Reply
    reservation_id: UUID
    userid: str
    terms: Terms  # those the answer is about
    reason: str | None = None  # why, for a REJECT
    hold_until: Millis | None = None  # for an offer
    alternatives: tuple[Terms, ...] = ()
    price: Quote | None = None  # an offer's; after a CONFIRM, the price bound
    alternative_prices: tuple[Quote | None, ...] = ()


@dataclass(frozen=True, slots=True)
class InstanceView:
    id: UUID
    name: str
    status: InstanceStatus
    reservation_id: UUID
    userid: str
    node: str  # "" when no node has room for it
    instance_type: str
    template: str
    start: Millis
    end: Millis
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    uri: str
    status: NodeStatus
    capacity: Resources
    load: object | None = None  # what the host last said of its own load (the driver's; not stored)


@dataclass(frozen=True, slots=True)
class TemplateView:
    name: str
    description: str
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountView:
    username: str
    fullname: str
    email: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class AccountUsage:
    """What an operator sees of an account: its quota, what it holds now, and how many of its
    requests were refused over quota since the service started."""

    account: AccountView
    quota: Quota
    open_offers: int
    held_instance_ms: int
    proposals_available: int
    refused_over_quota: int


@dataclass(frozen=True, slots=True)
class CapacityStep:
    """Capacity over [start, end): the least free and the most used at any instant in it."""

    start: Millis
    end: Millis
    free: Resources
    used: Resources


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """Capacity over [start, end) in steps: the cluster's (and, where asked, each node's),
    with the size each is out of."""

    start: Millis
    end: Millis
    step: Millis
    size: Resources  # of the whole cluster
    steps: tuple[CapacityStep, ...]
    nodes: Mapping[str, tuple[Resources, tuple[CapacityStep, ...]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PricesView:
    """The rate card (per instance-hour of each size) and how demand moves it."""

    currency: str
    rates: Mapping[str, Decimal]
    policy: Mapping[str, Any]  # the policy's own description of itself


# What every stored event carries besides its own fields, and the fields no listing shows.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
SECRET_FIELDS = frozenset({"password_hash"})


def event_fields(event: Any) -> dict[str, Any]:
    """An event's own fields, as stored (its envelope left out)."""
    return {name: value for name, value in vars(event).items() if name not in ENVELOPE}


# ---------------------------------------------------------------------- from the aggregates

def offer_view(offer: Mapping[str, Any]) -> OfferView:
    alternatives = offer.get("alternatives") or ()
    return OfferView(OfferState(offer["state"]), Terms.from_dict(offer["terms"]), offer["hold_until"],
                     tuple(_alternative(alt) for alt in alternatives), stored_price(offer.get("price")),
                     tuple(stored_price(alt.get("price")) for alt in alternatives))


def stored_price(stored: Mapping[str, Any] | None) -> Quote | None:
    return Quote.from_dict(stored) if stored else None


def _alternative(stored: Mapping[str, Any]) -> Terms:
    """An alternative as recorded: in the domain's names (with its price, since 2026-11-26), or
    (before 2026-11) in the paper's."""
    if "type" in stored:
        return Terms(stored["type"], stored["template"], stored["numInstancesFixed"], stored["numInstancesOption"],
                     stored["startTime"], stored["duration"])
    return Terms.from_dict({name: value for name, value in stored.items() if name != "price"})


def reservation_view(reservation: Reservation, instances: tuple[UUID, ...]) -> ReservationView:
    return ReservationView(
        id=reservation.id, userid=reservation.userid, status=reservation.status,
        terms=reservation.terms_in_force, instances=instances, reason=reservation.reason,
        offer=offer_view(reservation.offer) if reservation.offer else None,
        activated=bool(getattr(reservation, "activated", False)), launched=bool(reservation.launched),
        requested=Terms.from_dict(reservation.requested), price=stored_price(getattr(reservation, "price", None)))


def instance_view(instance: Instance) -> InstanceView:
    return InstanceView(instance.id, instance.name, InstanceStatus(instance.status), instance.reservation_id,
                        instance.userid, instance.node, instance.instance_type, instance.template,
                        instance.start, instance.end, instance.reason)


def node_view(node: Node, load: Mapping[str, Any] | None = None) -> NodeView:
    return NodeView(node.name, node.uri, NodeStatus(node.status), Resources(node.cpus, node.memory_mb, node.disk_gb),
                    load)


def template_view(template: Template) -> TemplateView:
    return TemplateView(template.name, template.description, dict(template.spec))


def account_view(account: Account) -> AccountView:
    return AccountView(account.username, account.fullname, account.email, account.is_admin)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored event as `pex.query` and the service's pages of the log show it: where it is
    in the log, whose it is, and what it recorded, in the stored names (an audit shows what was
    written, not a reading of it)."""

    position: int  # its notification id: its place in the log
    originator_id: UUID
    version: int  # its place in its aggregate's own sequence
    kind: str  # its class, e.g. "Reservation.Offered"
    timestamp: Millis  # when it was recorded
    fields: Mapping[str, Any]  # its own fields, as stored


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of the log as the service shows it (`Reading.events`, `Reading.history`): its
    events, secret fields left out; the names of the aggregates they are about, where the
    events do not carry them (an instance's, a node's); and the position the next page starts
    after, if there may be more (None: this is the last)."""

    records: tuple[EventRecord, ...]
    names: Mapping[UUID, str] = field(default_factory=dict)
    following: int | None = None
