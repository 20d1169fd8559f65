"""Rows of the read model, read off the aggregates (and events) themselves.

Nothing here decides anything: the state is what the aggregates' own event mutators made of
the events, and the properties read (`terms_in_force`, `is_agreed`, `Allocation.from_list`)
are the domain's. Each builder returns a tuple in its table's column order (tables.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from pex.domain.aggregates import Instance, Node, PriceList, Reservation
from pex.domain.capacity import Allocation
from pex.domain.clock import Millis, from_datetime
from pex.domain.read_models import SECRET_FIELDS, event_fields

Row = tuple[Any, ...]

# Kept out of `events.fields`: the envelope has columns of its own, and a password hash is
# nobody's business outside the authenticator.


def _recorded(aggregate: Aggregate) -> tuple[int, Millis, Millis]:
    return aggregate.version, from_datetime(aggregate.created_on), from_datetime(aggregate.modified_on)


def reservation_row(reservation: Reservation) -> Row:
    terms = reservation.terms_in_force
    offer = reservation.offer
    return (str(reservation.id), reservation.userid, str(reservation.status),
            terms.instance_type, terms.template, terms.fixed, terms.optional,
            terms.start, terms.end, terms.duration,
            reservation.reason, offer["state"] if offer else None, offer["hold_until"] if offer else None,
            bool(reservation.activated), bool(reservation.launched),
            *_prices(reservation.price, offer.get("price") if offer else None),
            getattr(reservation, "cancelled_at", None), *_recorded(reservation))


def _prices(agreed: dict[str, Any] | None, offered: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """The agreed price, the currency (the agreed price's, else the offer's), the open offer's
    price: totals as decimal strings, as the events hold them (None: not priced)."""
    currency = agreed["currency"] if agreed else offered["currency"] if offered else None
    return _amount(agreed), currency, _amount(offered)


def _amount(price: dict[str, Any] | None) -> str | None:
    return None if not price else _decimal(price["total"])


def _decimal(amount: Any) -> str:
    """An exact amount as a decimal string, never in exponent form ("12.50", "0.05")."""
    return f"{Decimal(amount):f}"


def price_rows(position: int, at: Millis, price_list: PriceList) -> list[Row]:
    """The card a PriceList event left in force, one row per size, from `at` on."""
    return [(position, size, _decimal(rate), price_list.currency, at, None) for size, rate in price_list.rates.items()]


def booking_in_force(reservation: Reservation) -> list[Any] | None:
    """The stored booking of the agreed terms; a closed reservation books nothing."""
    return reservation.booking if reservation.is_agreed else None


def booking_rows(reservation_id: UUID, booking: list[Any]) -> list[Row]:
    allocation = Allocation.from_list(booking)
    rid, size = str(reservation_id), allocation.size
    return [(rid, number, share.node, share.start, share.end, share.count, size.cpus, size.memory_mb, size.disk_gb)
            for number, share in enumerate(allocation.shares)]


def instance_row(instance: Instance) -> Row:
    return (str(instance.id), str(instance.reservation_id), instance.userid, instance.name, instance.node or None,
            str(instance.status), instance.instance_type, instance.template,
            instance.start, instance.end, instance.reason,
            *_recorded(instance))


def node_row(node: Node) -> Row:
    return (node.name, str(node.id), node.uri, str(node.status), node.cpus, node.memory_mb, node.disk_gb,
            bool(getattr(node, "drained", False)), node.version)


def event_row(position: int, event: Any) -> Row:
    fields = {name: value for name, value in event_fields(event).items() if name not in SECRET_FIELDS}
    return (position, str(event.originator_id), event.originator_version, type(event).__qualname__,
            from_datetime(event.timestamp), _json(fields))


def _plain(value: Any) -> Any:
    """JSON for what the msgpack transcoder also stores as extension types."""
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


_json = json.JSONEncoder(default=_plain, separators=(",", ":")).encode
