"""`openpex events`: the event log, filtered, as a table or as JSON lines (docs/querying.md,
"Listing the log").

It reads the store through pex.query only: a SQLite file is opened read-only and nothing is
ever created, so it runs beside `openpex serve`. Which events belong to a reservation, a user
or a node is decided from the query's projections (a reservation's instances, a user's
reservations and instances) and, for nodes, from the instances' own events: an instance event
belongs to a node if the instance was placed on that node before or after it.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, TextIO
from uuid import UUID

from pex.audit.arguments import (UsageError, answered, instant, one_line_errors, position, store_of, store_options,
                                  style_of)
from pex.domain.aggregates import Account, Node
from pex.domain.read_models import SECRET_FIELDS, EventRecord
from pex.query import KINDS, NotFoundError, Query

PROGRAM = "openpex events"
POLL = 0.2  # seconds between two looks at the store with --follow
PAGE = 1_000  # events read at once while scanning the log
HIDDEN = "<hidden>"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# ---------------------------------------------------------------------- the command line

def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of `openpex events`; its errors are one line and exit 2."""
    store_options(parser)
    parser.add_argument("--after", type=position, default=0, metavar="POSITION",
                        help="only events after this position of the log")
    parser.add_argument("--since", type=instant, metavar="TIME",
                        help="only events recorded at or after TIME (RFC 1123, ISO 8601 or epoch ms)")
    parser.add_argument("--until", type=instant, metavar="TIME", help="only events recorded before TIME")
    parser.add_argument("--reservation", type=_uuid, metavar="ID", help="a reservation's events and its instances'")
    parser.add_argument("--user", metavar="NAME", help="a user's account, reservations and instances")
    parser.add_argument("--node", metavar="NAME", help="a node's events and those of instances placed on it")
    parser.add_argument("--type", action="append", default=[], metavar="NAME", dest="types",
                        help="an event type, e.g. Confirmed or Reservation.Confirmed (repeatable)")
    parser.add_argument("--limit", type=_positive, metavar="N", help="print at most N events")
    parser.add_argument("--follow", action="store_true",
                        help="keep printing new events as they are recorded, until SIGINT or SIGTERM")
    parser.add_argument("--format", choices=("table", "json"),
                        help="table (default on a terminal) or json (one object a line; default otherwise)")
    one_line_errors(parser, PROGRAM)


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} is not a whole number >= 1")
    return int(text)


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} is not a reservation id") from None


def type_topics(types: Iterable[str]) -> list[str]:
    """The kinds (pex.query.KINDS) the --type names stand for: "Reservation.Confirmed", or
    "Confirmed" for the events of that name of every aggregate."""
    kinds: list[str] = []
    for name in types:
        found = [name] if name in KINDS else [kind for kind in KINDS if kind.endswith(f".{name}")]
        if not found:
            known = sorted({kind.partition(".")[2] for kind in KINDS if "." in kind}) + \
                sorted(kind for kind in KINDS if "." in kind)
            raise UsageError(f"--type {name[:64]!r} is not an event type; one of {', '.join(known)}")
        kinds.extend(found)
    return kinds


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`openpex events` with parsed arguments: 0 when done (or stopped), 2 with one line on
    stderr for input or a store that cannot be used."""
    out = sys.stdout if out is None else out
    stop = threading.Event()
    if args.follow:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop.set())
    store = store_of(args)
    style = style_of(args, out)

    def listing() -> int:
        kinds = type_topics(args.types)
        if args.since is not None and args.until is not None and args.until <= args.since:
            raise UsageError("--until must be after --since")
        with Query.open(store) as query:
            selection = Selection(query, after=args.after, since=args.since, until=args.until, kinds=kinds,
                                  reservation=args.reservation, user=args.user, node=args.node)
            printer = Printer(out, style, args.limit)
            printer.print(selection.first())
            while args.follow and not printer.full and not stop.wait(POLL):
                if query.refresh():
                    printer.print(selection.new())
        return 0

    return answered(PROGRAM, listing)


# ---------------------------------------------------------------------- which events

@dataclass
class Selection:
    """The events a set of filters keeps, first those recorded, then those recorded since."""

    query: Query
    after: int = 0
    since: int | None = None
    until: int | None = None
    kinds: list[str] = field(default_factory=list)
    reservation: UUID | None = None
    user: str | None = None
    node: str | None = None
    seen: int = 0  # the last position looked at
    placed: dict[UUID, str] = field(default_factory=dict)  # instance -> its node, as last seen

    def __post_init__(self) -> None:
        if self.reservation is not None:
            self.query.reservation(self.reservation)  # NotFoundError (one line) if unknown
        self._types = {kind for kind in self.kinds if "." in kind}
        self._aggregates = {kind for kind in self.kinds if "." not in kind}
        self._node_id = None if self.node is None else Node.create_id(self.node)

    def first(self) -> Iterator[EventRecord]:
        """The events recorded up to the query's position."""
        self.seen = self.query.position
        owners = self._owners()
        if owners is not None:  # each aggregate's whole history: one read each
            found = sorted((r for o in owners for r in self.query.events(originator=o)), key=lambda r: r.position)
            records: Iterable[EventRecord] = found
        elif self.node is not None:  # the instances' placements are needed from the start
            records = self._scan(0, ["Instance", "Node"])
        else:
            records = self._scan(self.after, self.kinds or None)
        yield from self._kept(records, owners)

    def new(self) -> Iterator[EventRecord]:
        """The events recorded since the last look (after query.refresh())."""
        start = self.seen
        self.seen = self.query.position
        owners = self._owners()
        wanted = None if self.node is not None else (self.kinds or None)
        yield from self._kept(self._scan(start, wanted), owners)

    def _scan(self, after: int, kinds: list[str] | None) -> Iterator[EventRecord]:
        while True:
            page = self.query.events(after=after, limit=PAGE, kind=kinds)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].position

    def _owners(self) -> set[UUID] | None:
        """The aggregates whose events a reservation or a user filter keeps (None: any)."""
        chosen: set[UUID] | None = None
        if self.reservation is not None:
            chosen = {self.reservation} | {vm.id for vm in self.query.instances(reservation=self.reservation)}
        if self.user is not None:
            mine = {Account.create_id(self.user)} | {r.id for r in self.query.reservations(user=self.user)} | \
                {vm.id for vm in self.query.instances(user=self.user)}
            chosen = mine if chosen is None else chosen & mine
        return chosen

    def _kept(self, records: Iterable[EventRecord], owners: set[UUID] | None) -> Iterator[EventRecord]:
        for record in records:
            on_node = self._on_node(record)
            if record.position <= self.after or (owners is not None and record.originator_id not in owners):
                continue
            if self.since is not None and record.timestamp < self.since:
                continue
            if self.until is not None and record.timestamp >= self.until:
                continue
            if self.kinds and record.kind not in self._types and record.kind.partition(".")[0] not in self._aggregates:
                continue
            if on_node:
                yield record

    def _on_node(self, record: EventRecord) -> bool:
        """Whether the record belongs to the --node (True without one); follows placements."""
        if self.node is None:
            return True
        if record.kind.startswith("Instance."):
            before = self.placed.get(record.originator_id)
            now = "" if record.kind == "Instance.Stranded" else record.fields.get("node", before)
            if isinstance(now, str):
                self.placed[record.originator_id] = now
            return self.node in (before, now)
        return record.originator_id == self._node_id


# ---------------------------------------------------------------------- how they are printed

def as_json(record: EventRecord) -> dict[str, Any]:
    """One event as printed with --format json (and summarised in the table)."""
    kind, _, name = record.kind.partition(".")
    return {"position": record.position, "time": iso_time(record.timestamp), "kind": kind,
            "id": str(record.originator_id), "version": record.version, "type": name,
            "data": {key: HIDDEN if key in SECRET_FIELDS else json_safe(value) for key, value in record.fields.items()}}


def iso_time(millis: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_safe(value: Any) -> Any:
    """A stored value in JSON's types: ids as strings, bytes as base64, enums as their value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): HIDDEN if key in SECRET_FIELDS else json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    return str(value)


class Printer:
    TABLE = "{:>8}  {:<24}  {:<26}  {:<36}  {:>3}  {}"

    def __init__(self, out: TextIO, style: str, limit: int | None) -> None:
        self.out, self.style, self.limit = out, style, limit
        self.printed = 0
        self._headed = style != "table"
        self._write: Callable[[dict[str, Any]], str] = self._json if style == "json" else self._row

    @property
    def full(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def print(self, records: Iterable[EventRecord]) -> None:
        if not self._headed:
            self.out.write(self.TABLE.format("POSITION", "TIME", "TYPE", "ID", "VER", "DATA") + "\n")
            self._headed = True
        for record in records:
            if self.full:
                break
            self.out.write(self._write(as_json(record)) + "\n")
            self.printed += 1
        self.out.flush()

    @staticmethod
    def _json(event: dict[str, Any]) -> str:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)

    def _row(self, event: dict[str, Any]) -> str:
        data = json.dumps(event["data"], separators=(",", ":"), ensure_ascii=False)
        return self.TABLE.format(event["position"], event["time"], f"{event['kind']}.{event['type']}", event["id"],
                                 event["version"], data if len(data) <= 120 else data[:119] + "…")


__all__ = ["configure", "run", "Selection", "as_json", "json_safe", "NotFoundError"]
