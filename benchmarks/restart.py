"""How long a start takes at a million reservations: the whole log, or a snapshot and its tail.

    python -m benchmarks.restart --reservations 1000000 [--store var/bench-restart-1000000.db] [--skip-whole]

1. The store (kept for reuse the same day): 1,000 nodes, and a cluster's history of
   `--reservations` reservations: `--open` of them (default 10 %) confirmed and still to come
   in the 30 days from tomorrow, placed by the real capacity model at 60 % utilisation
   (benchmarks/admission.py's filler, moved to start tomorrow); the rest over, in the year before:
   a third refused offers, a third lapsed or withdrawn offers, a third carried out (confirmed,
   activated, launched, one or two VMs run and halted, expired) or cancelled.
2. Each measurement in a fresh process (its own resident memory): opening the application
   on the whole log; writing a snapshot (python -m pex.snapshots, as the service has it done);
   opening from the snapshot; and opening from it with a tail of 20,000 events recorded after it.

Target (issue 13): a start at 1,000,000 reservations <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import admission
from pex import snapshots
from pex.domain.aggregates import Instance, Reservation
from pex.domain.application import OpenPEX, Settings
from pex.domain.capacity import Allocation
from pex.domain.clock import DAY, HOUR
from pex.domain.negotiation import Reply, Terms
from pex.domain.quotas import Quota
from pex.stores import writer_env

NODES = 1_000  # at most: a store of fewer than 1,000,000 has one node per 1,000 reservations


def tomorrow() -> int:
    """The next midnight (UTC): the open reservations are to come, as a service's are (its
    capacity model starts now and spans what is booked)."""
    return (int(time.time() * 1000) // DAY + 1) * DAY


def build(path: Path, reservations: int, open_share: float, seed: int = 1) -> dict[str, Any]:
    started = time.perf_counter()
    admission.ORIGIN = tomorrow()  # (the filler places from its ORIGIN: from tomorrow here)
    app = OpenPEX(writer_env(str(path)), settings=Settings(quota=Quota(10**9, 10**9, 10**9)))
    rng = random.Random(seed)
    nodes = max(4, min(NODES, reservations // 1000))
    try:
        for i in range(nodes):
            app.catalogue.register_node(f"node{i:04d}", f"test:///bench/node{i:04d}.xml", admission.NODE)
        app.catalogue.register_template(admission.TEMPLATE)
        past = reservations - int(reservations * open_share)
        _history(app, rng, past, nodes)
        admission.fill(app, rng, reservations - past, 0.6)
        return {"events": app.recorder.max_notification_id() or 0, "build_s": round(time.perf_counter() - started, 1)}
    finally:
        app.close()


def _history(app: OpenPEX, rng: random.Random, count: int, nodes: int) -> None:
    """Reservations that are over, in the year before the filler's: saved 1,000 at a time."""
    batch: list[Any] = []
    first = tomorrow() - 366 * DAY
    for n in range(count):
        size = rng.choice(admission.SIZES)
        vms = rng.randint(1, 2)
        start = first + rng.randrange(0, 360 * DAY)
        terms = Terms(size.name, admission.TEMPLATE, vms, 0, start, HOUR * rng.randint(1, 8))
        node = f"node{rng.randrange(nodes):04d}"
        allocation = Allocation.uniform(size.resources, [(node, vms)], start, terms.end)
        asked = start - rng.randint(1, 72) * HOUR
        reservation = Reservation(f"user{rng.randrange(5000)}", terms.to_dict())
        kind = n % 3
        if kind == 0:
            reservation.answer(Reply.REJECT, reason="no room: the cluster is full then")
        else:
            reservation.answer(Reply.ACCEPT, terms=terms, allocation=allocation, hold_until=asked + 300_000)
            if kind == 1:
                reservation.withdraw() if rng.random() < 0.5 else reservation.lapse(asked + 300_000)
            else:
                reservation.confirm(asked + 60_000)
                instances = [Instance(reservation.id, reservation.userid, f"vm{i}", node, size.name,
                                      admission.TEMPLATE, start, terms.end) for i in range(vms)]
                if rng.random() < 0.1:
                    reservation.cancel(start - HOUR)
                    for instance in instances:
                        instance.discard()
                else:
                    reservation.activate()
                    reservation.launch(start)
                    for instance in instances:
                        instance.record_status("RUNNING")
                        instance.record_status("HALTED")
                    reservation.expire(terms.end)
                batch.extend(instances)
        batch.append(reservation)
        if len(batch) >= 1000:
            app.save(*batch)
            batch.clear()
    if batch:
        app.save(*batch)


def _open(store: str, snapshot: str | None) -> None:
    """(In a child process.) Open the application and print what it took, as JSON."""
    started = time.perf_counter()
    opening = snapshots.opening(Path(snapshot), store) if snapshot else None
    app = OpenPEX(writer_env(store), opening=opening)  # (origin now, as the service's)
    took = time.perf_counter() - started
    view = app.view
    print(json.dumps({"s": round(took, 2), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "position": view.position, "reservations": len(view.reservations), "open": len(view.open),
                      "from_snapshot": view.families is not None}))
    app.close()


def _child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.restart", *args], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    found["wall_s"] = round(time.perf_counter() - started, 2)
    return found


def _tail(store: str, events: int) -> None:
    """(In a child process.) Record about `events` more events: reservations as the history's."""
    app = OpenPEX(writer_env(store), settings=Settings(quota=Quota(10**9, 10**9, 10**9)),
                  opening=snapshots.opening(Path(store + ".snapshot"), store))
    try:
        _history(app, random.Random(99), events // 5, len(app.view.nodes))
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=1_000_000)
    parser.add_argument("--open", type=float, default=0.1, help="share of the reservations still to come")
    parser.add_argument("--store", default=None)
    parser.add_argument("--skip-whole", action="store_true", help="do not time the start on the whole log")
    parser.add_argument("--child-open", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--child-tail", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_open:
        _open(args.child_open[0], args.child_open[1] if len(args.child_open) > 1 else None)
        return
    if args.child_tail:
        _tail(args.child_tail[0], int(args.child_tail[1]))
        return
    day = time.strftime("%Y%m%d", time.gmtime(tomorrow() / 1000 - 86400))
    store = Path(args.store or f"var/bench-restart-{args.reservations}-{day}.db")
    store.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"reservations": args.reservations, "open_share": args.open}
    if not store.exists():
        print(f"building {store} ...", flush=True)
        result["build"] = build(store, args.reservations, args.open)
    snapshot = Path(str(store) + ".snapshot")
    snapshot.unlink(missing_ok=True)
    if not args.skip_whole:
        result["whole_log"] = _child("--child-open", str(store))
    env = {**os.environ, snapshots.STORE_VARIABLE: str(store)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pex.snapshots", str(snapshot)], env=env, check=True)
    result["first_snapshot_s"] = round(time.perf_counter() - started, 2)  # (this one reads the whole log)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pex.snapshots", str(snapshot)], env=env, check=True)
    result["next_snapshot_s"] = round(time.perf_counter() - started, 2)  # (from the last one, as the service's are)
    result["snapshot_mb"] = round(snapshot.stat().st_size / 1e6, 1)
    result["from_snapshot"] = _child("--child-open", str(store), str(snapshot))
    _child("--child-tail", str(store), "20000")
    result["from_snapshot_and_tail"] = _child("--child-open", str(store), str(snapshot))
    rows = [("whole log", result.get("whole_log")), ("snapshot", result["from_snapshot"]),
            ("snapshot + tail", result["from_snapshot_and_tail"])]
    print(f"\n{'start from':<18}{'seconds':>9}{'RSS MB':>9}{'events':>12}{'open':>9}")
    for name, row in rows:
        if row:
            print(f"{name:<18}{row['s']:>9}{row['rss_mb']:>9}{row['position']:>12,}{row['open']:>9,}")
    print(f"snapshot: {result['snapshot_mb']} MB, written in {result['next_snapshot_s']} s "
          f"(the first, from the whole log: {result['first_snapshot_s']} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
