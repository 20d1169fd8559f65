"""Snapshots of the writer's projections, so that a start reads one file and the log after it
rather than the whole log (issue 13).

A snapshot is one file, written beside the store (`<data dir>/projections.snapshot`) to a
temporary name, synced, then renamed over the last one: a reader sees the old file or the new
one, never half of either. It holds the view at a log position:

- the open part whole: nodes, templates, accounts, the price list, every reservation that is
  not settled and its instances (each an aggregate's attributes, msgpack as the store encodes
  events);
- the settled part (closed reservations whose VMs all stopped) as one record per family,
  brought in only when something asks for it (pex.domain.projections);
- every reservation's id in the order made, each user's reservations, and the statuses of the
  settled instances.

It is trusted only for the store it was taken of, and only if the log still holds, at its
position, the very event it was taken after (a log restored from an older backup, or another
database, makes it worthless); and only if its checksum holds. Otherwise the start reads the
whole log, as without one. The capacity model, due times and quota counts are not in the file:
they are derived from the open reservations when it is read, which keeps the file to one
source of truth.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np

from pex.domain.aggregates import Account, Instance, Node, PriceList, Reservation, Template
from pex.domain.application import OpenPEX, Opening
from pex.domain.capacity import CapacityModel
from pex.domain.projections import Projections, collector_paused, frozen, kept_out_of_collections, thawed
from pex.domain.reconciling import SHUTTING_DOWN
from pex.domain.statuses import LIVE
from pex.domain.transcoding import MsgpackTranscoder
from pex.stores import StoreError, location, reader_env

log = logging.getLogger(__name__)

FILE_NAME = "projections.snapshot"
MAGIC = b"OPENPEX SNAPSHOT 1\n"
_LENGTH = struct.Struct("<Q")
_RECORD = struct.Struct("<I")
_CODEC = MsgpackTranscoder()
_KINDS: dict[str, Any] = {"nodes": Node, "templates": Template, "accounts": Account}


class SnapshotRefused(Exception):
    """The snapshot cannot stand for the log (another store, a log that changed, damage)."""


@dataclass(frozen=True)
class Mark:
    """The event a snapshot was taken after: its position and what the log holds there."""

    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    digest: bytes  # of the event's stored state (which holds when it was recorded)

    def to_list(self) -> list[Any]:
        return [self.position, self.originator_id, self.originator_version, self.topic, self.digest]


def mark_at(recorder: Any, position: int) -> Mark | None:
    """What the log holds at `position` (None: nothing there)."""
    found = recorder.select_notifications(position, 1, stop=position)
    if not found or found[0].id != position:
        return None
    row = found[0]
    return Mark(row.id, row.originator_id, row.originator_version, row.topic,
                hashlib.blake2b(row.state, digest_size=16).digest())


class MappedFamilies:
    """The settled families of a snapshot file, read where they lie (the file stays mapped
    for the life of the view, even once a newer snapshot has replaced its name)."""

    def __init__(self, mapped: mmap.mmap) -> None:
        self._mapped = mapped

    def states(self, where: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        (length,) = _RECORD.unpack_from(self._mapped, where)
        start = where + _RECORD.size
        reservation, instances = _CODEC.decode(self._mapped[start:start + length])
        return reservation, instances

    def record(self, where: int) -> bytes:
        """A family's record as stored (a new snapshot copies it unread)."""
        (length,) = _RECORD.unpack_from(self._mapped, where)
        return self._mapped[where:where + _RECORD.size + length]


# ------------------------------------------------------------------ writing


def write(view: Projections, path: Path, mark: Mark, store: str) -> dict[str, int]:
    """Write the view (which has applied the log up to `mark`) as the snapshot at `path`;
    returns what it holds (open and settled reservations, bytes)."""
    if view.position != mark.position:
        raise ValueError(f"the view is at {view.position}, the mark at {mark.position}")
    sections: dict[str, bytes] = {}
    families = bytearray()
    order = bytearray()
    where = np.empty(len(view.reservations), dtype=np.int64)
    live_reservations: list[dict[str, Any]] = []
    live_instances: list[dict[str, Any]] = []
    settled_statuses: Counter[str] = Counter()
    old = view.families if isinstance(view.families, MappedFamilies) else None
    held: Any
    for i, (rid, held) in enumerate(dict.items(view.reservations)):
        order += rid.bytes
        if type(held) is int:  # settled, never asked for since the last snapshot: copied as it lies
            assert old is not None
            where[i] = len(families)
            families += old.record(held)
            continue
        reservation: Reservation = held
        instances = [view.instances[iid] for iid in dict.get(view.instances_of, rid, ())]
        if _settled(reservation, instances):
            where[i] = len(families)
            record = _CODEC.encode([frozen(reservation), [frozen(instance) for instance in instances]])
            families += _RECORD.pack(len(record)) + record
            settled_statuses.update(str(instance.status) for instance in instances)
        else:
            where[i] = -1
            live_reservations.append(frozen(reservation))
            live_instances.extend(frozen(instance) for instance in instances)
    settled_statuses.update(view.settled_statuses)  # (those not brought in are in the copied records)
    position_of = {rid: i for i, rid in enumerate(dict.keys(view.reservations))}
    sections["live"] = _CODEC.encode({
        "reservations": live_reservations, "instances": live_instances,
        "nodes": [frozen(node) for node in view.nodes.values()],
        "templates": [frozen(template) for template in view.templates.values()],
        "accounts": [frozen(account) for account in view.accounts.values()],
        "price_list": frozen(view.price_list) if view.price_list is not None else None,
        "users": {user: np.array([position_of[rid] for rid in rids], dtype=np.int32).tobytes()
                  for user, rids in view.reservations_of.items() if rids},
        "settled_statuses": dict(settled_statuses),
    })
    sections["order"] = bytes(order)
    sections["where"] = where.tobytes()
    header_fields: dict[str, Any] = {"mark": mark.to_list(), "store": store, "reservations": len(view.reservations),
                     "open": len(live_reservations), "settled": int((where >= 0).sum())}
    body = b"".join(sections.values())
    offsets: dict[str, list[int]] = {}
    at = 0
    for name, data in sections.items():
        offsets[name] = [at, len(data)]
        at += len(data)
    offsets["families"] = [at, len(families)]
    checksum = zlib.crc32(families, zlib.crc32(body))
    header = _CODEC.encode({**header_fields, "sections": offsets, "crc32": checksum})
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as out:
            out.write(MAGIC + _LENGTH.pack(len(header)) + header)
            out.write(body)
            out.write(families)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return {"open": len(live_reservations), "settled": header_fields["settled"], "bytes": path.stat().st_size}


def _settled(reservation: Reservation, instances: list[Instance]) -> bool:
    """Closed, and none of its VMs running or on its way down: nothing is left to happen to it
    but what a new event would say."""
    return reservation.is_closed and not any(
        instance.status in LIVE or instance.reason == SHUTTING_DOWN for instance in instances)


def _sync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ------------------------------------------------------------------ reading


def read(path: Path, capacity: CapacityModel, *, store: str, recorder: Any) -> Projections:
    """The view a snapshot holds, to be read on from its position; SnapshotRefused if it cannot
    stand for this store's log (see the module's docstring)."""
    try:
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as error:
        raise SnapshotRefused(f"cannot read {path}: {error}") from None
    refused: SnapshotRefused | None = None
    try:
        with collector_paused():  # (a million long-lived objects, no cycles: see collector_paused)
            view = _read(mapped, capacity, store, recorder)
            kept_out_of_collections(len(view.reservations) + len(view.instances))
            return view
    except SnapshotRefused as error:
        refused = error
    except _StoreFailed as failed:  # (the store's trouble, not the file's: the start fails as without one)
        _close(mapped)
        raise failed.__cause__ from None  # type: ignore[misc]
    except Exception as error:  # a damaged file is refused, never half-used
        refused = SnapshotRefused(f"{path} is damaged: {error}")
    _close(mapped)  # (outside the handlers: a traceback there would keep the map's buffer exported)
    raise refused


class _StoreFailed(Exception):
    """The store could not be read to check a snapshot against (its cause says why)."""


def _close(mapped: mmap.mmap) -> None:
    try:
        mapped.close()
    except BufferError:  # (a view of it still held somewhere: the collector closes it)
        pass


def _read(mapped: mmap.mmap, capacity: CapacityModel, store: str, recorder: Any) -> Projections:
    if mapped[:len(MAGIC)] != MAGIC:
        raise SnapshotRefused("not an OpenPEX snapshot of this version")
    (length,) = _LENGTH.unpack_from(mapped, len(MAGIC))
    base = len(MAGIC) + _LENGTH.size + length
    header = _CODEC.decode(mapped[len(MAGIC) + _LENGTH.size:base])
    if header["store"] != store:
        raise SnapshotRefused(f"it was taken of another store ({header['store']})")
    mark = Mark(*header["mark"])
    try:
        there = mark_at(recorder, mark.position)
    except Exception as error:
        raise _StoreFailed() from error
    if there != mark:
        raise SnapshotRefused(f"the log no longer holds, at position {mark.position}, the event it was taken after")
    if zlib.crc32(memoryview(mapped)[base:]) != header["crc32"]:
        raise SnapshotRefused("its checksum does not hold")

    def section(name: str) -> memoryview:
        start, size = header["sections"][name]
        return memoryview(mapped)[base + start:base + start + size]

    families_at = base + header["sections"]["families"][0]
    live = _CODEC.decode(bytes(section("live")))
    view = Projections(capacity)
    view.position = mark.position
    for kind in ("nodes", "templates", "accounts"):
        for state in live[kind]:
            view.take_in(thawed(_KINDS[kind], state))
    if live["price_list"] is not None:
        view.take_in(thawed(PriceList, live["price_list"]))
    ids = _ids(bytes(section("order")))
    where = np.frombuffer(section("where"), dtype=np.int64)
    whole: list[Reservation] = [thawed(Reservation, state) for state in live["reservations"]]
    held: list[Any] = (where + families_at).tolist()  # a settled family: where it lies in the file
    for at, reservation in zip(np.flatnonzero(where < 0).tolist(), whole):
        held[at] = reservation
    dict.update(view.reservations, zip(ids, held))
    view.open.update((reservation.id, None) for reservation in whole if not reservation.is_closed)
    for user, indices in live["users"].items():
        view.reservations_of[user] = list(map(ids.__getitem__, np.frombuffer(indices, dtype=np.int32).tolist()))
    for state in live["instances"]:
        instance: Instance = thawed(Instance, state)
        dict.__setitem__(view.instances, instance.id, instance)
        view.instances_of[instance.reservation_id].append(instance.id)
        view.instances_on[instance.node].add(instance.id)
    view.settled_statuses = Counter(live["settled_statuses"])
    view.families = MappedFamilies(mapped)
    view.derive()
    return view


def _ids(packed: bytes) -> list[UUID]:
    """UUIDs from 16 bytes each, made without UUID.__init__'s checks (the bytes are ours): a
    million in well under a second, where UUID(bytes=...) takes more than one."""
    make, kind, unknown, number = object.__new__, uuid.UUID, uuid.SafeUUID.unknown, int.from_bytes
    set_int, set_safe = _SLOTS
    ids = []
    for at in range(0, len(packed), 16):
        made = make(kind)
        set_int(made, number(packed[at:at + 16], "big"))
        set_safe(made, unknown)
        ids.append(made)
    return ids


# UUID's slots, set as pickle would (UUID.__setattr__ refuses: a UUID is immutable).
_SLOTS = (uuid.UUID.__dict__["int"].__set__, uuid.UUID.__dict__["is_safe"].__set__)


# ------------------------------------------------------------------ a service's snapshots


def opening(path: Path, store: str) -> Opening:
    """An application's `opening`: the view of the snapshot at `path` if it stands for
    `store`'s log, else None (with the reason logged): the whole log is read instead."""

    def open_from(app: OpenPEX, capacity: CapacityModel) -> Projections | None:
        if not path.exists():
            return None
        started = time.perf_counter()
        try:
            view = read(path, capacity, store=location(store), recorder=app.recorder)
        except SnapshotRefused as error:
            log.warning("the snapshot %s is not used (%s): the whole log is read", path, error)
            return None
        log.info("the view was read from the snapshot at position %d (%d reservations, %d open) in %.2f s",
                 view.position, len(view.reservations), len(view.open), time.perf_counter() - started)
        return view

    return open_from


def take(app: OpenPEX, path: Path, store: str) -> dict[str, int] | None:
    """Write the application's view as the snapshot at `path` (on the thread that owns the
    view); None if the log is empty."""
    mark = mark_at(app.recorder, app.view.position)
    if mark is None:
        return None
    with collector_paused():  # (what it allocates is short-lived and acyclic: no heap to rescan)
        return write(app.view, path, mark, location(store))


def position_of(path: Path) -> int | None:
    """The log position the snapshot at `path` was taken at (None: none there, or unreadable)."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(MAGIC) + _LENGTH.size)
            if head[:len(MAGIC)] != MAGIC:
                return None
            (length,) = _LENGTH.unpack_from(head, len(MAGIC))
            header = _CODEC.decode(file.read(length))
        return int(header["mark"][0])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


class Snapshotter:
    """Keeps a service's snapshot recent: every `check` seconds, once its view is `every`
    events past the last snapshot, a separate process (python -m pex.snapshots, at the least CPU
    priority) reads that snapshot and the log after it and writes the next one. The service
    itself never pauses to write one, and a crash loses at most the reading of `every` events at
    the next start."""

    def __init__(self, position: Callable[[], int], path: Path, store: str, *,
                 every: int = 20_000, check: float = 10.0) -> None:
        self.position, self.path, self.store = position, path, store
        self.every, self.check = every, check
        self._child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="Snapshotter", daemon=True)

    def start(self) -> Snapshotter:
        for left in self.path.parent.glob(f"{self.path.name}.*.tmp"):  # (a writer killed mid-write)
            left.unlink(missing_ok=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.check):
            try:
                self.consider()
            except Exception:  # (the next check tries again; the service goes on regardless)
                log.exception("could not start the snapshot process")

    def consider(self) -> bool:
        """Start the snapshot process if one is due and none is under way."""
        if self._child is not None:
            if self._child.poll() is None:
                return False
            if self._child.returncode != 0:
                log.warning("the snapshot process exited %d", self._child.returncode)
            self._child = None
        last = position_of(self.path) or 0
        if self.position() - last < self.every:
            return False
        env = {**os.environ, STORE_VARIABLE: self.store}  # (not in argv: a PostgreSQL URL may hold a password)
        self._child = subprocess.Popen([sys.executable, "-m", "pex.snapshots", str(self.path)], env=env,
                                       stdin=subprocess.DEVNULL)
        return True

    def stop(self, wait: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        child = self._child
        if child is not None and child.poll() is None:
            try:
                child.wait(wait)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                Path(f"{self.path}.{child.pid}.tmp").unlink(missing_ok=True)


STORE_VARIABLE = "OPENPEX_SNAPSHOT_STORE"


def main(argv: list[str] | None = None) -> int:
    """python -m pex.snapshots PATH, the store in $OPENPEX_SNAPSHOT_STORE: read the snapshot
    at PATH (if it stands) and the log after it, and write the next snapshot there."""
    logging.basicConfig(level=logging.INFO, format="snapshot: %(message)s")
    os.nice(19)  # the least CPU priority: a snapshot can wait, the service's answers cannot
    args = sys.argv[1:] if argv is None else argv
    store = os.environ.get(STORE_VARIABLE, "")
    if len(args) != 1 or not store:
        print(f"usage: {STORE_VARIABLE}=STORE python -m pex.snapshots PATH", file=sys.stderr)
        return 2
    path = Path(args[0])
    started = time.perf_counter()
    try:
        app = OpenPEX(reader_env(store), opening=opening(path, store))
    except StoreError as error:
        print(f"snapshot: {error}", file=sys.stderr)
        return 1
    try:
        written = take(app, path, store)
    finally:
        app.close()
    if written is not None:
        log.info("wrote %s at position %d: %d open, %d settled, %d bytes, in %.2f s", path, app.view.position,
                 written["open"], written["settled"], written["bytes"], time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
