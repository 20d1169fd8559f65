"""`openpex replay`: the store as it was at an instant (`--until T`) or at a position of its log
(`--position N`), or what changed from one instant to another (`--diff T1 T2`), as a table or as
JSON lines (docs/querying.md, "Replaying the log").

It reads the store through pex.query only (a SQLite file opened read-only, nothing created), so
the state shown is the service's own projections rebuilt from the log up to that point: what
the service would have answered then. A diff compares the state at T1 with the state at T2: a
change undone in between (a VM started and stopped again) is not one; `openpex events` lists
every event.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, TextIO

from eventsourcing.domain import EventSourcingError

from pex.audit.arguments import (UsageError, answered, instant, one_line_errors, position, progress, store_of,
                                  store_options, style_of)
from pex.domain.clock import DAY, Millis
from pex.domain.errors import one_line
from pex.domain.negotiation import LATEST_INSTANT, Terms
from pex.domain.pricing import Quote
from pex.domain.projections import collector_paused
from pex.domain.read_models import InstanceView, NodeView, OfferView, ReservationView
from pex.domain.sizes import Resources
from pex.domain.statuses import LIVE, InstanceStatus, NodeStatus
from pex.query import Query
from pex.stores import location

PROGRAM = "openpex replay"
Line = dict[str, Any]


class ReadFailure(Exception):
    """The store failed while being read in a way its driver does not name (a stored event that
    cannot be decoded): one line for the user, exit 1."""


# ---------------------------------------------------------------------- the command line

def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of `openpex replay`; its errors are one line and exit 2."""
    store_options(parser)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--until", type=instant, metavar="TIME",
                      help="the state once every event recorded up to TIME was applied "
                           "(RFC 1123, ISO 8601 or epoch ms)")
    when.add_argument("--position", type=position, metavar="N", help="the state after notification N of the log")
    when.add_argument("--diff", type=instant, nargs=2, metavar=("T1", "T2"),
                      help="what changed from the state at T1 to the state at T2")
    parser.add_argument("--format", choices=("table", "json"),
                        help="table (default on a terminal) or json (one object a line; default otherwise)")
    one_line_errors(parser, PROGRAM)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`openpex replay` with parsed arguments: 0 when done; 2 with one line on stderr for input
    or a store that cannot be used; 1 with one line if the store fails while being read."""
    out = sys.stdout if out is None else out

    def showing() -> int:
        # The state is millions of long-lived objects and no cycles: a collector scanning them
        # again and again would take a third of the time. (The command exits when done.)
        with collector_paused():
            _show(args, out)
        return 0

    return answered(PROGRAM, showing, failed=(ReadFailure,), interrupted=130)


def _show(args: argparse.Namespace, out: TextIO) -> None:
    store = store_of(args)
    style = style_of(args, out)
    if args.diff is not None:
        first, second = args.diff
        if second < first:
            raise UsageError(f"--diff: T2 ({iso_time(second)}) is before T1 ({iso_time(first)})")
        before = replay(store, as_of=first, label="replaying to T1")
        after = replay(store, as_of=second, label="replaying to T2")
        changes = diff(before, after)
        lines = [*map(change_json, changes), diff_summary(before, after, changes)]
        if style == "json":
            write_json_lines(out, lines)
        else:
            out.write(diff_table(location(store), before, after, changes))
    else:
        state = replay(store, as_of=args.until, position=args.position)
        if style == "json":
            write_json_lines(out, state_lines(state))
        else:
            out.write(state_table(location(store), state))
    out.flush()


# ---------------------------------------------------------------------- the state at a point

@dataclass(frozen=True)
class State:
    """The store's state at a point of its log, as `openpex replay` shows it."""

    at: Millis | None  # the instant shown: the TIME asked, or when notification N was recorded (None: no event)
    position: int  # the last notification applied
    reservations: list[ReservationView]  # in the order they were made
    offers: list[ReservationView]  # those with an offer still held at `at`, the first to lapse first
    instances: list[InstanceView]  # in the order they were planned, deleted ones too
    nodes: list[NodeView]  # in the order they were registered
    node_use: dict[str, Resources]  # what each node has in use at `at` (bookings and holds)
    size: Resources  # of the cluster: every registered node, whatever its status
    used: Resources  # in the cluster at `at`


def replay(store: str, *, as_of: Millis | None = None, position: int | None = None,
           label: str = "replaying") -> State:
    """The state of `store` after every event recorded up to `as_of`, or after notification
    `position` (neither: now); a progress bar on a terminal if it takes over a second."""
    try:
        return _replay(store, as_of, position, label)
    except EventSourcingError as error:  # (a stored event that cannot be decoded, say)
        raise ReadFailure(f"the event store cannot be read: {type(error).__name__}: {one_line(error)}") from error


def _replay(store: str, as_of: Millis | None, position: int | None, label: str) -> State:
    with progress(label) as told, Query.open(store, as_of=as_of, position=position, progress=told) as query:
        at = as_of if as_of is not None else _recorded_at(query)
        nodes = query.nodes()
        moment = min(at if at is not None else 0, LATEST_INSTANT - 1)
        node_use = query.used_at(moment)  # (one instant: no capacity model needs building)
        size = sum((node.capacity for node in nodes), Resources(0, 0, 0))
        used = sum(node_use.values(), Resources(0, 0, 0))
        return State(at, query.position, query.reservations(), query.offers_open(at=moment), query.instances(),
                     nodes, node_use, size, used)


def _recorded_at(query: Query) -> Millis | None:
    """When the last notification applied was recorded (None: none was)."""
    if query.position == 0:
        return None
    last = query.events(after=query.position - 1, limit=1)
    return last[0].timestamp if last else None


# ---------------------------------------------------------------------- what changed

@dataclass(frozen=True)
class Change:
    """One reservation, node or instance whose state differs from T1 to T2."""

    kind: str  # "reservation", "node" or "instance"
    change: str  # what happened, e.g. "created", "confirmed", "lost", "started" (see docs)
    id: str  # a reservation's or an instance's id, a node's name
    userid: str | None
    before: str | None  # the status at T1 (None: it did not exist yet)
    after: str  # the status at T2
    details: Line  # the kind's own fields: terms, nodes


def diff(before: State, after: State) -> list[Change]:
    """The reservations, then the nodes, then the instances whose state at `after` differs from
    their state at `before`, each in the order they were made."""
    return [*_reservation_changes(before, after), *_node_changes(before, after), *_instance_changes(before, after)]


def _reservation_changes(before: State, after: State) -> Iterator[Change]:
    then = {r.id: r for r in before.reservations}
    for now in after.reservations:
        old = then.get(now.id)
        if old is None:
            change = "created"
        elif old.status != now.status:
            change = now.status.value.lower()
        elif old.terms != now.terms:
            change = "terms"
        else:
            continue
        yield Change("reservation", change, str(now.id), now.userid, None if old is None else old.status.value,
                     now.status.value, {"terms": terms_json(now.terms),
                                        "termsBefore": None if old is None or old.terms == now.terms
                                        else terms_json(old.terms),
                                        **price_json(now.price),
                                        "priceBefore": None if old is None or old.price == now.price
                                        else _amount(old.price)})


def _node_changes(before: State, after: State) -> Iterator[Change]:
    then = {n.name: n for n in before.nodes}
    for now in after.nodes:
        old = then.get(now.name)
        if old is not None and old.status == now.status:
            continue
        if old is None:
            change = "registered"
        elif now.status == NodeStatus.DOWN:
            change = "lost"
        elif old.status == NodeStatus.DOWN:
            change = "back"
        elif now.status == NodeStatus.DRAINED:
            change = "drained"
        else:
            change = "undrained"
        yield Change("node", change, now.name, None, None if old is None else old.status.value, now.status.value,
                     {"uri": now.uri})


def _instance_changes(before: State, after: State) -> Iterator[Change]:
    then = {i.id: i for i in before.instances}
    for now in after.instances:
        old = then.get(now.id)
        change = _instance_change(old, now)
        if change is None:
            continue
        yield Change("instance", change, str(now.id), now.userid, None if old is None else old.status.value,
                     now.status.value, {"name": now.name, "reservationId": str(now.reservation_id), "node": now.node,
                                        "nodeBefore": None if old is None else old.node})


def _instance_change(old: InstanceView | None, now: InstanceView) -> str | None:
    was = None if old is None else old.status
    if now.status == InstanceStatus.RUNNING and was != InstanceStatus.RUNNING:
        return "started"
    if was in LIVE and now.status not in LIVE:
        return "stopped"
    if old is None:
        return "planned" if now.status == InstanceStatus.PENDING else now.status.value.lower()
    if was != now.status:
        return now.status.value.lower()
    if old.node != now.node:
        return "moved"
    return None


# ---------------------------------------------------------------------- JSON lines

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # (one, not one a line as json.dumps makes)
CHUNK = 10_000  # lines written at once


def write_json_lines(out: TextIO, lines: Iterable[Line]) -> None:
    """The lines to `out`, a chunk at a time (a state may be a hundred megabytes of them)."""
    encode = _ENCODER.encode
    chunk: list[str] = []
    for line in lines:
        chunk.append(encode(line))
        if len(chunk) == CHUNK:
            out.write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        out.write("\n".join(chunk) + "\n")


_EPOCH_DAY = date(1970, 1, 1)


@lru_cache(maxsize=1 << 16)
def _day(days: int) -> str:
    return (_EPOCH_DAY + timedelta(days=days)).isoformat()


def iso_time(millis: Millis) -> str:
    """An instant as pex.audit.events.iso_time writes it (ISO 8601 in UTC, to the millisecond),
    in a third of the time: a state has two or three for each reservation."""
    days, rest = divmod(millis, DAY)
    seconds, milli = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_day(days)}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def state_lines(state: State) -> Iterator[Line]:
    """The state as --format json prints it: a line per reservation, open offer, instance and
    node, then the cluster's capacity, then a summary."""
    yield from (reservation_json(r) for r in state.reservations)
    yield from (offer_json(r) for r in state.offers)
    yield from (instance_json(i) for i in state.instances)
    yield from (node_json(n, state.node_use[n.name]) for n in state.nodes)
    yield {"kind": "capacity", "at": _time_or_none(state.at), "size": resources_json(state.size),
           "used": resources_json(state.used), "free": resources_json(state.size - state.used)}
    yield {"kind": "summary", "at": _time_or_none(state.at), "position": state.position,
           "reservations": _counts(r.status.value for r in state.reservations), "offers": len(state.offers),
           "instances": _counts(i.status.value for i in state.instances),
           "nodes": _counts(n.status.value for n in state.nodes)}


def terms_json(terms: Terms) -> Line:
    """Terms in the API's names (times in ISO 8601, UTC, to the millisecond)."""
    return {"type": terms.instance_type, "template": terms.template, "numInstancesFixed": terms.fixed,
            "numInstancesOption": terms.optional, "startTime": iso_time(terms.start), "endTime": iso_time(terms.end),
            "duration": terms.duration}


def price_json(price: Quote | None) -> Line:
    """A price as the API writes it: the total as a decimal string and its currency (both null
    without one)."""
    return {"price": _amount(price), "currency": None if price is None else price.currency}


def _amount(price: Quote | None) -> str | None:
    return None if price is None else f"{price.total:f}"


def reservation_json(found: ReservationView) -> Line:
    return {"kind": "reservation", "id": str(found.id), "userid": found.userid, "status": found.status.value,
            **terms_json(found.terms), "instances": [str(i) for i in found.instances], "reason": found.reason,
            "offer": None if found.offer is None else _offer_fields(found.offer), "activated": found.activated,
            "launched": found.launched, **price_json(found.price)}


def offer_json(found: ReservationView) -> Line:
    assert found.offer is not None
    return {"kind": "offer", "reservationId": str(found.id), "userid": found.userid, "status": found.status.value,
            **_offer_fields(found.offer)}


def _offer_fields(offer: OfferView) -> Line:
    prices = offer.alternative_prices or (None,) * len(offer.alternatives)
    return {"state": offer.state.value, "holdUntil": iso_time(offer.hold_until), "proposal": terms_json(offer.terms),
            **price_json(offer.price),
            "alternatives": [{**terms_json(terms), "price": _amount(price)}
                             for terms, price in zip(offer.alternatives, prices)]}


def instance_json(found: InstanceView) -> Line:
    return {"kind": "instance", "vmID": str(found.id), "name": found.name, "status": found.status.value,
            "reservationId": str(found.reservation_id), "userid": found.userid, "node": found.node,
            "type": found.instance_type, "template": found.template, "startTime": iso_time(found.start),
            "endTime": iso_time(found.end), "reason": found.reason}


def node_json(found: NodeView, used: Resources) -> Line:
    return {"kind": "node", "name": found.name, "uri": found.uri, "status": found.status.value,
            **resources_json(found.capacity), "used": resources_json(used)}


def resources_json(amount: Resources) -> Line:
    return {"cpus": amount.cpus, "memoryMB": amount.memory_mb, "diskGB": amount.disk_gb}


def change_json(change: Change) -> Line:
    return {"kind": change.kind, "change": change.change, "id": change.id, "userid": change.userid,
            "from": change.before, "to": change.after, **change.details}


def diff_summary(before: State, after: State, changes: Sequence[Change]) -> Line:
    counted: dict[str, dict[str, int]] = {}
    for change in changes:
        kind = counted.setdefault(change.kind, {})
        kind[change.change] = kind.get(change.change, 0) + 1
    return {"kind": "summary", "from": _time_or_none(before.at), "to": _time_or_none(after.at),
            "fromPosition": before.position, "toPosition": after.position, "changes": counted}


def _counts(values: Iterable[str]) -> dict[str, int]:
    return dict(Counter(values))


def _time_or_none(millis: Millis | None) -> str | None:
    return None if millis is None else iso_time(millis)


# ---------------------------------------------------------------------- tables

def state_table(store: str, state: State) -> str:
    at = "before its first event" if state.at is None else f"at {_when(state.at)}"
    parts = [f"{store} {at} (position {state.position})\n"]
    parts.append(_section("RESERVATIONS", ["ID", "USER", "STATUS", "TYPE", "TEMPLATE", "COUNT", "START", "END", "VMS",
                                           "PRICE"],
                          [[str(r.id), r.userid, r.status.value, r.terms.instance_type, r.terms.template,
                            _count(r.terms), _when(r.terms.start), _when(r.terms.end), str(len(r.instances)),
                            _price_text(r.price)]
                           for r in state.reservations]))
    parts.append(_section("OPEN OFFERS", ["RESERVATION", "USER", "STATE", "HOLD UNTIL", "TYPE", "COUNT", "START",
                                          "END", "PRICE"],
                          [[str(r.id), r.userid, r.offer.state.value, _when(r.offer.hold_until),
                            r.offer.terms.instance_type, _count(r.offer.terms), _when(r.offer.terms.start),
                            _when(r.offer.terms.end), _price_text(r.offer.price)]
                           for r in state.offers if r.offer is not None]))
    parts.append(_section("INSTANCES", ["ID", "NAME", "USER", "STATUS", "NODE", "RESERVATION"],
                          [[str(i.id), i.name, i.userid, i.status.value, i.node or "(none)", str(i.reservation_id)]
                           for i in state.instances]))
    parts.append(_section("NODES", ["NAME", "STATUS", "CPUS", "MEMORY MB", "DISK GB", "URI"],
                          [[n.name, n.status.value, *_use(state.node_use[n.name], n.capacity), n.uri]
                           for n in state.nodes], note=f"used/size {at}"))
    cpus, memory, disk = _use(state.used, state.size)
    parts.append(f"CLUSTER, used/size {at}: {cpus} CPUs, {memory} MB memory, {disk} GB disk\n")
    return "\n".join(parts)


def diff_table(store: str, before: State, after: State, changes: Sequence[Change]) -> str:
    head = (f"{store}: changes from {_when(before.at)} (position {before.position}) "
            f"to {_when(after.at)} (position {after.position})\n")
    rows = [[c.kind, c.change, c.id, c.userid or "", c.before or "-", c.after, _detail(c)] for c in changes]
    return "\n".join([head, _section("CHANGES", ["KIND", "CHANGE", "ID", "USER", "FROM", "TO", "DETAIL"], rows)])


def _detail(change: Change) -> str:
    details = change.details
    if change.kind == "reservation":
        now = _terms_text(details["terms"])
        text = now if details["termsBefore"] is None else f"{_terms_text(details['termsBefore'])} -> {now}"
        if details["price"] is not None:
            was = f"{details['priceBefore']} -> " if details["priceBefore"] is not None else ""
            text += f" at {was}{details['price']} {details['currency']}"
        return text
    if change.kind == "instance":
        node, was = details["node"], details["nodeBefore"]
        moved = f" (was on {was or '(none)'})" if was is not None and was != node else ""
        return f"{details['name']} on {node or '(none)'}{moved}"
    return str(details.get("uri", ""))


def _when(millis: Millis | None) -> str:
    """An instant in a table: ISO 8601, its milliseconds only if it has some."""
    return "-" if millis is None else iso_time(millis).replace(".000Z", "Z")


def _terms_text(terms: Line) -> str:
    count = str(terms["numInstancesFixed"]) + (f"+{terms['numInstancesOption']}" if terms["numInstancesOption"] else "")
    times = (terms["startTime"].replace(".000Z", "Z"), terms["endTime"].replace(".000Z", "Z"))
    return f"{count} {terms['type']} {terms['template']} {times[0]} to {times[1]}"


def _price_text(price: Quote | None) -> str:
    return "-" if price is None else f"{price.total:f} {price.currency}"


def _count(terms: Terms) -> str:
    return str(terms.fixed) + (f"+{terms.optional}" if terms.optional else "")


def _use(used: Resources, total: Resources) -> list[str]:
    return [f"{used.cpus}/{total.cpus}", f"{used.memory_mb}/{total.memory_mb}", f"{used.disk_gb}/{total.disk_gb}"]


def _section(title: str, header: list[str], rows: list[list[str]], note: str = "") -> str:
    """A titled table, its columns as wide as their widest cell (the last one left ragged)."""
    lines = [f"{title} ({len(rows)})" + (f", {note}" if note else "")]
    if rows:
        widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    else:
        lines.append("(none)")
    return "\n".join(lines) + "\n"
