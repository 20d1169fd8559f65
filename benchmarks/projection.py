"""How fast `openpex project` fills the SQL read model, and what carrying on after a restart costs.

    python -m benchmarks.projection --build var/bench-store.db            # 1,000 nodes, 100,000 reservations
    python -m benchmarks.projection --store var/bench-store.db [--postgres URL | --postgres private]

1. The store: benchmarks/admission.py's filler (confirmed reservations placed by the real
   capacity model, saved as Requested/Offered/Confirmed) on 1,000 nodes, kept for reuse.
2. `project` into a fresh SQLite file (and a fresh PostgreSQL schema if a server is given; "private"
   starts one as the tests do): events per second, end to end (opening, catching up, closing).
3. Carrying on: a second run on the finished read model (nothing to do: the start-up cost), and
   the cost of the two ways to get aggregate state back after a restart: reading one aggregate
   at a version from the source (what the projection does, per aggregate touched again) and
   replaying the whole log without writing (what rebuilding all state up front would cost).

Target (one core): >= 20,000 events/s into SQLite.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

from benchmarks import admission
from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import DAY
from pex.domain.quotas import Quota
from pex.sql_read_model import Outcome, project
from pex.sql_read_model.sources import source_env
from pex.stores import EventLog
from pex.stores import writer_env


def build(path: str, nodes: int = 1000, reservations: int = 100_000, seed: int = 1) -> int:
    """A store of `reservations` confirmed reservations on `nodes` nodes (admission's filler);
    returns its number of events."""
    app = OpenPEX(writer_env(path), origin=admission.ORIGIN - DAY,
                  settings=Settings(quota=Quota(10**9, 10**9, 10**9)))
    try:
        for i in range(nodes):
            app.catalogue.register_node(f"node{i:04d}", f"test:///bench/node{i:04d}.xml", admission.NODE)
        app.catalogue.register_template(admission.TEMPLATE)
        admission.fill(app, random.Random(seed), reservations, 0.6)
        return app.recorder.max_notification_id() or 0
    finally:
        app.close()


def measure(store: str, postgres: str | None = None) -> dict[str, Any]:
    """Events/s of `project` from `store` into a fresh SQLite file (and into a fresh schema of
    the PostgreSQL database `postgres`, if given), plus the costs of carrying on."""
    with tempfile.TemporaryDirectory(prefix="openpex-projection-") as folder:
        target = os.path.join(folder, "read-model.db")
        first, first_s = _timed(project, store, target)
        _, again_s = _timed(project, store, target)
        with sqlite3.connect(target) as db:
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("events", "reservations", "instances", "nodes", "bookings")}
            sample = [(uuid.UUID(rid), version) for rid, version in
                      db.execute("SELECT id, version FROM reservations ORDER BY random() LIMIT 2000")]
        db.close()
    result: dict[str, Any] = {
        "events": first.position, "rows": counts,
        "sqlite_s": round(first_s, 3), "sqlite_events_per_s": round(first.applied / first_s),
        "resume_noop_s": round(again_s, 3),
        **_restoring(store, sample),
    }
    if postgres:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            into_pg, pg_s = _timed(project, store, postgres, schema=schema)
        finally:
            _drop_schema(postgres, schema)
        result |= {"postgres_s": round(pg_s, 3), "postgres_events_per_s": round(into_pg.applied / pg_s)}
    return result


def _timed(call: Callable[..., Outcome], *args: Any, **kwargs: Any) -> tuple[Outcome, float]:
    """The outcome and the wall time of a whole run: opening, checks, catching up, closing."""
    started = time.perf_counter()
    outcome = call(*args, **kwargs)
    return outcome, time.perf_counter() - started


def _restoring(store: str, sample: list[tuple[uuid.UUID, int]]) -> dict[str, Any]:
    """Reading aggregates back at a version, against replaying the whole log."""
    log = EventLog(source_env(store))
    try:
        started = time.perf_counter()
        for reservation_id, version in sample:
            log.repository.get(reservation_id, version=version - 1)
        per_aggregate = (time.perf_counter() - started) / max(1, len(sample))
        started = time.perf_counter()
        position, replayed = 0, 0
        while page := log.recorder.select_notifications(position + 1, 5000):
            for notification in page:
                log.mapper.to_domain_event(notification)
            position, replayed = page[-1].id, replayed + len(page)
        replay = time.perf_counter() - started
    finally:
        log.close()
    return {"read_back_ms_per_aggregate": round(per_aggregate * 1000, 3),
            "replay_all_s": round(replay, 3), "replay_events_per_s": round(replayed / replay) if replay else None}


def _drop_schema(url: str, schema: str) -> None:
    env = writer_env(url)
    with psycopg.connect(host=env["POSTGRES_HOST"], port=int(env["POSTGRES_PORT"]), dbname=env["POSTGRES_DBNAME"],
                         user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def _postgres(choice: str | None) -> Iterator[str | None]:
    """The server to measure on: a URL, a private one started for the run, or none."""
    if choice != "private":
        yield choice
        return
    from tests.support.postgres import private_server_url

    with private_server_url() as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", help="an existing OpenPEX store (SQLite file or postgresql:// URL)")
    parser.add_argument("--build", metavar="PATH", help="build the store into this SQLite file first (kept)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--reservations", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="URL", help="also measure into a schema of this database ('private': start one)")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the target is for one core
    store = args.store or args.build
    if not store:
        parser.error("give --store, or --build PATH to make one")
    if args.build and not Path(args.build).exists():
        started = time.perf_counter()
        events = build(args.build, args.nodes, args.reservations)
        print(f"built {args.build}: {events} events in {time.perf_counter() - started:.1f} s")
    with _postgres(args.postgres) as postgres:
        result = measure(store, postgres)
    where = urlparse(store).path if "://" in store else store
    print(f"store {where}: {result['events']} events; rows {result['rows']}")
    print(f"{'into':<12}{'seconds':>10}{'events/s':>12}")
    print(f"{'SQLite':<12}{result['sqlite_s']:>10.2f}{result['sqlite_events_per_s']:>12,}")
    if "postgres_s" in result:
        print(f"{'PostgreSQL':<12}{result['postgres_s']:>10.2f}{result['postgres_events_per_s']:>12,}")
    print(f"resume with nothing to do: {result['resume_noop_s']:.3f} s; reading one aggregate back: "
          f"{result['read_back_ms_per_aggregate']:.3f} ms; replaying the whole log instead: {result['replay_all_s']:.1f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
