"""The paper's JSON (Figs. 7-9, Table 2) made from the domain's read models: camelCase names,
RFC 1123 times, statuses as their names. The only place the wire shapes of answers are made;
the OpenAPI document (pex/http/openapi.py) describes exactly these."""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from enum import Enum
from typing import Any
from uuid import UUID

from pex.domain.billing import Statement, Statements
from pex.domain.capacity import Allocation
from pex.domain.clock import DAY, HOUR, MINUTE, SECOND
from pex.domain.errors import DomainError, InvalidField
from pex.domain.negotiation import Reply, Terms
from pex.domain.pricing import PER, RATE_PLACES, Quote, run_amount
from pex.domain.read_models import (
    AccountUsage,
    AccountView,
    Answer,
    CapacityReport,
    CapacityStep,
    EventPage,
    EventRecord,
    InstanceView,
    NodeView,
    PricesView,
    ReservationView,
    SECRET_FIELDS,
    TemplateView,
)
from pex.domain.quotas import Quota, QuotaExceeded
from pex.domain.sizes import InstanceType, Resources
from pex.domain.statuses import InstanceStatus
from pex.drivers.base import NodeInfo
from pex.fencing import Standby
from pex.http.auth import TooManyAttempts
from pex.http.wire import WIRE_NAMES, format_time

Body = dict[str, Any]



def proposal(terms: Terms) -> Body:
    """Terms in the paper's names (Fig. 7), and the user's maxPrice if they gave one."""
    body = {"duration": terms.duration, "numInstancesFixed": terms.fixed, "numInstancesOption": terms.optional,
            "startTime": format_time(terms.start), "template": terms.template, "type": terms.instance_type}
    if terms.max_price is not None:
        body["maxPrice"] = amount(terms.max_price)
    return body


def amount(value: Decimal) -> str:
    """An exact amount as a decimal string ("12.50", "0.05"), never in exponent form."""
    return f"{value:f}"


def quantity(value: Fraction) -> str:
    """A count of instance-hours as a decimal string: exact where six places hold it."""
    return decimal_text((value.numerator * 2 * 10**6 + value.denominator) // (2 * value.denominator), 6)


def decimal_text(units: int, places: int) -> str:
    """units / 10**places as a decimal string, exact, without trailing zeros ("0.125", "2")."""
    sign, digits = ("-", str(-units)) if units < 0 else ("", str(units))
    digits = digits.rjust(places + 1, "0")
    whole, fraction = digits[:-places], digits[-places:].rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def priced(found: Quote | None) -> Body:
    """A price as answers and reservations carry it: `price` (the total, a decimal string),
    `currency`, and `priceDetail` (instance-hours, and each run of hours at its rate). In
    integers, the repeating parts cached: every answer carries one."""
    if found is None:
        return {}
    hours = []
    instance_ms = 0
    for run in sorted(found.runs):  # (kept in the order added; shown in time order)
        start, end, count, rate, factor = run
        instance_ms += count * (end - start)
        hours.append({"from": format_time(start), "to": format_time(end), "instances": count,
                      "instanceHours": hours_text(count * (end - start)), "rate": _rate_text(rate, factor),
                      "multiplier": _rate_text(BASIS_RATE, factor), "amount": cents_text(run_amount(run))})
    detail: Body = {"instanceHours": hours_text(instance_ms), "hours": hours}
    if found.agreed is not None:  # a change of agreed terms: priced as the change
        detail["agreedPrice"] = amount(found.agreed)
        detail["credit"] = amount(found.credit if found.credit is not None else Decimal("0.00"))
    return {"price": amount(found.total), "currency": found.currency, "priceDetail": detail}


BASIS_RATE = 10**RATE_PLACES  # a rate of 1 in millionths: _rate_text(BASIS_RATE, factor) is the multiplier


@functools.lru_cache(maxsize=4096)
def _rate_text(rate: int, factor: int) -> str:
    """A rate in millionths times a multiplier in ten-thousandths, exactly, as a decimal string."""
    return decimal_text(rate * factor, RATE_PLACES + 4)


def cents_text(amount_units: int) -> str:
    """An exact amount in 1/PER of the currency, rounded half up to cents ("1.05")."""
    cents = (200 * amount_units + PER) // (2 * PER)
    sign, cents = ("-", -cents) if cents < 0 else ("", cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


@functools.lru_cache(maxsize=4096)
def hours_text(instance_ms: int) -> str:
    """Instance-milliseconds as instance-hours, a decimal string exact to six places."""
    return decimal_text((instance_ms * 2 * 10**6 + HOUR) // (2 * HOUR), 6)


def answer(found: Answer) -> Body:
    """A reply to a proposal or to a message about an offer (Figs. 8, 9), with its price."""
    body: Body = {"reply": found.reply.value,
                  "proposal": {**proposal(found.terms), "id": str(found.reservation_id), "userid": found.userid}}
    if found.reply is Reply.REJECT:
        body["reason"] = found.reason
    body.update(priced(found.price))
    if found.hold_until is not None:
        body["holdUntil"] = format_time(found.hold_until)
        if found.alternatives:
            prices = found.alternative_prices or (None,) * len(found.alternatives)
            body["alternatives"] = [{**proposal(terms), **priced(price)}
                                    for terms, price in zip(found.alternatives, prices)]
    return body


def reservation(found: ReservationView, *, detail: bool = True) -> Body:
    """A reservation; in a list (`detail` False) its prices without how they are made up (a
    long reservation's schedule has a run for every hour of changing demand)."""
    terms = found.terms
    body: Body = {
        "id": str(found.id),
        "userid": found.userid,
        "status": found.status.value,
        "template": terms.template,
        "type": terms.instance_type,
        "numInstancesFixed": terms.fixed,
        "numInstancesOption": terms.optional,
        "startTime": format_time(terms.start),
        "endTime": format_time(terms.end),
        "duration": terms.duration,
        "instances": [str(i) for i in found.instances],
    }
    if found.reason:
        body["reason"] = found.reason
    body.update(_shown(priced(found.price), detail))  # the price agreed, bound at confirmation
    if found.offer:
        body["offer"] = {"state": found.offer.state.value, "holdUntil": format_time(found.offer.hold_until),
                         "proposal": proposal(found.offer.terms), **_shown(priced(found.offer.price), detail)}
    return body


def _shown(price: Body, detail: bool) -> Body:
    return price if detail else {key: value for key, value in price.items() if key != "priceDetail"}


def instance(found: InstanceView) -> Body:
    body: Body = {"vmID": str(found.id), "name": found.name, "status": found.status.value,
                  "reservationId": str(found.reservation_id), "node": found.node,
                  "startTime": format_time(found.start), "endTime": format_time(found.end), "ipAddress": None}
    if found.reason:
        body["reason"] = found.reason
    return body


def node(found: NodeView) -> Body:
    body: Body = {"name": found.name, "uri": found.uri, "status": found.status.value, **resources(found.capacity)}
    if isinstance(found.load, NodeInfo):
        body["load"] = host_load(found.load)
    return body


def host_load(load: NodeInfo) -> Body:
    return {"cpus": load.cpus, "memoryMB": load.memory_mb, "model": load.model, "runningVMs": load.running,
            "usedCpus": load.used_cpus, "usedMemoryMB": load.used_memory_mb, "freeMemoryMB": load.free_memory_mb,
            "cpuBusy": load.cpu_busy}


def resources(amount: Resources) -> Body:
    return {"cpus": amount.cpus, "memoryMB": amount.memory_mb, "diskGB": amount.disk_gb}


def instance_type(kind: InstanceType) -> Body:
    return {"type": kind.name, **resources(kind.resources)}


def template(found: TemplateView) -> Body:
    return {"name": found.name, "description": found.description, **found.spec}


def account(found: AccountView) -> Body:
    return {"username": found.username, "fullname": found.fullname, "email": found.email, "isAdmin": found.is_admin}


def quota(limits: Quota) -> Body:
    return {WIRE_NAMES[f.name]: getattr(limits, f.name) for f in fields(limits)}


def account_usage(found: AccountUsage) -> Body:
    return {**account(found.account), "quota": quota(found.quota),
            "usage": {"openOffers": found.open_offers,
                      "heldInstanceHours": round(found.held_instance_ms / HOUR, 3),
                      "proposalsAvailable": found.proposals_available},
            "refusedOverQuota": found.refused_over_quota}


def prices(found: PricesView) -> Body:
    """The rate card and the policy that moves it (GET /OpenPEX/prices)."""
    return {"currency": found.currency, "unit": "instance-hour",
            "rates": {size: amount(rate) for size, rate in found.rates.items()}, "policy": dict(found.policy),
            "utilisation": "the cluster's committed share in each clock hour: per quarter-hour the most committed "
                           "of CPUs, memory and disk on the nodes in service, averaged over the hour"}


def statement(found: Statement) -> Body:
    """One user's statement of a period (GET /OpenPEX/usage)."""
    return {"userid": found.userid, "from": format_time(found.start), "to": format_time(found.end),
            "currency": found.currency,
            "reservations": [{"id": str(line.reservation_id), "status": line.status.value, "price": amount(line.price),
                              "instanceHours": quantity(line.instance_hours), "charged": amount(line.charged),
                              "refunded": amount(line.refunded)} for line in found.lines],
            "instanceHours": quantity(found.instance_hours), "charges": amount(found.charges),
            "refunds": amount(found.refunds), "total": amount(found.total)}


def statements(found: Statements) -> Body:
    """Every user's statement of a period, and their total (the admin's GET /OpenPEX/usage)."""
    return {"from": format_time(found.start), "to": format_time(found.end), "currency": found.currency,
            "users": [statement(one) for one in found.users], "total": amount(found.total)}


def capacity_step(step: CapacityStep) -> Body:
    return {"from": format_time(step.start), "to": format_time(step.end),
            "free": resources(step.free), "used": resources(step.used)}


def capacity_report(report: CapacityReport) -> Body:
    """The cluster's capacity over time (and each node's, where asked): per step the least
    free and the most used at any instant in it."""
    body: Body = {"from": format_time(report.start), "to": format_time(report.end), "step": report.step,
                  "cluster": {"size": resources(report.size), "steps": [capacity_step(s) for s in report.steps]}}
    if report.nodes:
        body["nodes"] = {name: {"size": resources(size), "steps": [capacity_step(s) for s in steps]}
                         for name, (size, steps) in report.nodes.items()}
    return body


# ---------------------------------------------------------------------- the log

# Stored fields that hold an instant (in the domain's names, and in the paper's where older
# events used them), written as the API writes times.
_INSTANTS = frozenset({"start", "end", "hold_until", "opened", "startTime", "endTime"})


def event(record: EventRecord, text: str) -> Body:
    """One event of the log: where it is, when it was recorded, whose it is (`kind`: its
    aggregate, `id`), its type, a line saying what it means, and what it recorded (`data`)."""
    kind, _, name = record.kind.partition(".")
    return {"position": record.position, "time": format_time(record.timestamp), "kind": kind,
            "id": str(record.originator_id), "version": record.version, "type": name, "text": text,
            "data": event_data(record.fields)}


def events(page: EventPage) -> list[Body]:
    return [event(record, text) for record, text in zip(page.records, event_texts(page))]


def history(reservation_id: UUID, page: EventPage) -> Body:
    """A reservation's history: its events and its instances', in the order they were recorded."""
    return {"reservationId": str(reservation_id), "events": events(page)}


def event_data(value: Any, name: str = "") -> Any:
    """What an event recorded, in the domain's words: field names as the API writes them
    (WIRE_NAMES), instants in RFC 1123, an allocation as its size and shares; secret fields left
    out (the domain leaves them out already)."""
    if isinstance(value, Mapping):
        return {WIRE_NAMES.get(str(key), str(key)): event_data(item, str(key)) for key, item in value.items()
                if key not in SECRET_FIELDS}
    if name == "allocation" and isinstance(value, (list, tuple)):
        try:
            held = Allocation.from_list(value)
        except (TypeError, ValueError):
            pass
        else:
            return {"size": resources(held.size), "shares": [
                {"node": share.node, "startTime": format_time(share.start), "endTime": format_time(share.end),
                 "count": share.count} for share in held.shares]}
    if isinstance(value, (list, tuple)):
        return [event_data(item) for item in value]
    if isinstance(value, Enum):
        return event_data(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
        return value
    if isinstance(value, int):
        return format_time(value) if name in _INSTANTS else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # (a UUID, a Decimal)


def event_texts(page: EventPage) -> list[str]:
    """A line for each event of the page saying what it means, in the domain's words. What an
    event does not carry (what a counter changed, the node a VM started on) is taken from the
    events before it in the page; where those are not in it, the line says less."""
    story = _Story(page.names)
    return [story.tell(record) for record in page.records]


class _Story:
    def __init__(self, names: Mapping[UUID, str]) -> None:
        self.names = names
        self.asked: dict[UUID, Mapping[str, Any]] = {}  # a reservation's latest terms asked for
        self.nodes: dict[UUID, str] = {}  # an instance's node, as last recorded

    def tell(self, record: EventRecord) -> str:
        try:
            text = EVENT_WORDS[record.kind](self, record, record.fields)
        except (KeyError, TypeError, ValueError, AttributeError):  # (a field an older event lacks)
            text = f"{record.kind.partition('.')[2]} recorded"
        recorded = record.fields
        if record.kind in ("Reservation.Requested", "Reservation.Proposed") and isinstance(recorded.get("terms"), Mapping):
            self.asked[record.originator_id] = recorded["terms"]
        elif record.kind in ("Instance.Planned", "Instance.Rescheduled", "Instance.Relocated"):
            self.nodes[record.originator_id] = str(recorded.get("node", ""))
        elif record.kind == "Instance.Stranded":
            self.nodes[record.originator_id] = ""
        return text

    def name(self, record: EventRecord) -> str:
        return self.names.get(record.originator_id) or str(record.originator_id)

    def vm(self, record: EventRecord) -> str:
        return f"VM {self.name(record)}"

    def offered(self, record: EventRecord, fields: Mapping[str, Any]) -> str:
        held = f"held until {format_time(fields['hold_until'])}"
        price = fields.get("price")
        at = f" at {price['total']} {price['currency']}" if price else ""
        if fields["reply"] == Reply.ACCEPT.value:
            return f"offered as asked{at}, {held}"
        asked = self.asked.get(record.originator_id)
        changes = _changes(asked, fields["terms"]) if asked is not None else []
        if not changes and price and fields["terms"].get("max_price"):
            return f"countered on price: {price['total']} {price['currency']}, more than the " \
                   f"{fields['terms']['max_price']} asked, {held}"
        if not changes:
            return f"countered with {_terms(fields['terms'])}{at}, {held}"
        return f"countered ({'; '.join(changes)}){at}, {held}"

    def status_changed(self, record: EventRecord, fields: Mapping[str, Any]) -> str:
        status = fields["status"]
        node = self.nodes.get(record.originator_id)
        said = _STATUS_WORDS.get(status, f"is {status}")
        if status == InstanceStatus.RUNNING and node:
            said += f" on {node}"
        return f"{self.vm(record)} {said}" + (f" ({fields['reason']})" if fields.get("reason") else "")


_STATUS_WORDS = {InstanceStatus.RUNNING: "started", InstanceStatus.HALTED: "stopped",
                 InstanceStatus.CRASHED: "crashed or was forced off", InstanceStatus.PAUSED: "paused",
                 InstanceStatus.SUSPENDED: "suspended"}


def span_words(millis: int) -> str:
    """A duration in the largest unit that divides it: '2 h', '90 min', '1500 ms'."""
    for unit, size in (("d", DAY), ("h", HOUR), ("min", MINUTE), ("s", SECOND)):
        if millis >= size and millis % size == 0:
            return f"{millis // size} {unit}"
    return f"{millis} ms"


def _terms(terms: Mapping[str, Any]) -> str:
    """Terms in a few words: '2 SMALL (+1 optional) of debian-12 from <time> for 1 h'."""
    optional = f" (+{terms['optional']} optional)" if terms["optional"] else ""
    return (f"{terms['fixed']} {terms['instance_type']}{optional} of {terms['template']} "
            f"from {format_time(terms['start'])} for {span_words(terms['duration'])}")


def _changes(asked: Mapping[str, Any], offered: Mapping[str, Any]) -> list[str]:
    """What an offer changed of the terms asked for, in words."""
    said: dict[str, Callable[[], str]] = {
        "start": lambda: f"start moved to {format_time(offered['start'])}",
        "duration": lambda: f"for {span_words(offered['duration'])} instead of {span_words(asked['duration'])}",
        "optional": lambda: f"{offered['optional']} of {asked['optional']} optional instances",
        "fixed": lambda: f"{offered['fixed']} instances instead of {asked['fixed']}",
        "instance_type": lambda: f"{offered['instance_type']} instead of {asked['instance_type']}",
        "template": lambda: f"{offered['template']} instead of {asked['template']}"}
    return [words() for name, words in said.items() if asked.get(name) != offered.get(name)]


def _node_added(fields: Mapping[str, Any]) -> str:
    return (f"node {fields['name']} added: {fields['uri']}, {fields['cpus']} CPUs, {fields['memory_mb']} MB, "
            f"{fields['disk_gb']} GB")


def _quota_set(story: _Story, record: EventRecord, fields: Mapping[str, Any]) -> str:
    limits = ", ".join(f"{WIRE_NAMES.get(name, name)} {value}" for name, value in fields["limits"].items())
    return f"quota of {story.name(record)} set: {limits}"


Words = Callable[[_Story, EventRecord, Mapping[str, Any]], str]
# A line for every kind of event there is (tests/integration/test_http_history.py checks that
# none is missing: a new event needs its words here).
def _rates(rates: Mapping[str, Any]) -> str:
    return ", ".join(f"{size} {rate}" for size, rate in rates.items())


EVENT_WORDS: dict[str, Words] = {
    "Reservation.Requested": lambda s, r, f: f"requested by {f['userid']}: {_terms(f['terms'])}",
    "Reservation.Proposed": lambda s, r, f: f"new terms proposed: {_terms(f['terms'])}",
    "Reservation.Offered": lambda s, r, f: s.offered(r, f),
    "Reservation.Declined": lambda s, r, f: f"refused by OpenPEX: {f['reason']}",
    "Reservation.CounterAccepted": lambda s, r, f: f"counter offer accepted, held until {format_time(f['hold_until'])}",
    "Reservation.Confirmed": lambda s, r, f: "confirmed" + (
        f" at {f['price']['total']} {f['price']['currency']}" if f.get("price") else ""),
    "Reservation.Withdrawn": lambda s, r, f: "withdrawn by its user",
    "Reservation.OfferLapsed": lambda s, r, f: "offer lapsed unconfirmed",
    "Reservation.Activated": lambda s, r, f: "activated: its VMs start at its start time",
    "Reservation.Launched": lambda s, r, f: "launched: its VMs were sent to boot",
    "Reservation.Replanned": lambda s, r, f: "re-planned after a node was lost" + (
        f"; degraded: {f['reason']}" if f.get("reason") else ""),
    "Reservation.Cancelled": lambda s, r, f: "cancelled" + (f" at {format_time(f['at'])}" if f.get("at") else ""),
    "Reservation.Expired": lambda s, r, f: "expired: its time is over",
    "Instance.Planned": lambda s, r, f: f"VM {f['name']} planned on {f['node']}, from {format_time(f['start'])} to "
                                        f"{format_time(f['end'])}" if f["node"] else f"VM {f['name']} planned, with no node",
    "Instance.Rescheduled": lambda s, r, f: f"{s.vm(r)} rescheduled on {f['node']}, from {format_time(f['start'])} "
                                            f"to {format_time(f['end'])}",
    "Instance.Relocated": lambda s, r, f: f"{s.vm(r)} moved to {f['node']} (its node was lost)",
    "Instance.Stranded": lambda s, r, f: f"{s.vm(r)} left without a node: {f['reason']}",
    "Instance.StatusChanged": lambda s, r, f: s.status_changed(r, f),
    "Instance.Discarded": lambda s, r, f: f"{s.vm(r)} deleted",
    "Node.Registered": lambda s, r, f: _node_added(f),
    "Node.NodeWentDown": lambda s, r, f: f"node {s.name(r)} went down",
    "Node.NodeCameBack": lambda s, r, f: f"node {s.name(r)} came back",
    "Node.Drained": lambda s, r, f: f"node {s.name(r)} drained: it takes no new bookings",
    "Node.Undrained": lambda s, r, f: f"node {s.name(r)} back in service",
    "Template.Registered": lambda s, r, f: f"template {f['name']} added",
    "Account.Registered": lambda s, r, f: f"account {f['username']} registered" + (
        " (the administrator)" if f["is_admin"] else ""),
    "Account.QuotaSet": _quota_set,
    "PriceList.Registered": lambda s, r, f: f"rate card set ({f['currency']} per instance-hour): {_rates(f['rates'])}",
    "PriceList.Changed": lambda s, r, f: f"rate card changed (per instance-hour): {_rates(f['rates'])}",
}


def error(refused: DomainError) -> tuple[Body, int | None]:
    """The error body (`error`, `message`, and `field` or `retryAfter` where they apply) and
    the seconds to send as Retry-After, if waiting helps."""
    body: Body = {"error": refused.code, "message": refused.message}
    if isinstance(refused, InvalidField):
        field = refused.field if refused.as_given else WIRE_NAMES.get(refused.field, refused.field)
        body.update(field=field, message=f"{field}: {refused.reason}")
    retry_after = None
    if isinstance(refused, QuotaExceeded) and refused.retry_after is not None:
        retry_after = math.ceil(refused.retry_after / SECOND)
    elif isinstance(refused, (TooManyAttempts, Standby)):
        retry_after = refused.retry_after
    if retry_after is not None:
        body["retryAfter"] = retry_after
    return body, retry_after
