"""How fast `pex.query` answers on a busy store, and how far behind a writer it falls.

    python -m benchmarks.query --nodes 1000 --reservations 100000 [--store PATH]

1. The store: benchmarks/admission.py's filler (confirmed reservations placed by the real
   capacity model over 30 days, saved as Requested/Offered/Confirmed) on N nodes, in a
   temporary SQLite file, or in PATH (built there if missing, and kept for the next run).
2. `Query.open` on it: replaying the log into the projections and the cluster timeline.
3. `capacity()` over the 30 days in 1-hour steps (720 steps), for the whole cluster and for one
   node (a random one per run); `reservations(status=...)` of every reservation (CONFIRMED, the
   whole store) and of none (ACTIVATED: the scan alone); one aggregate's `events`.
   The views of every reservation are timed twice: as they come, and with the heap frozen
   (gc.freeze, as docs/querying.md advises), since full collections rescan the projections.
4. A writer (the filler's application, still open) records about 1,000 events; `refresh()`
   applies them, and the next cluster-wide `capacity()` takes the changed holds in.
5. If benchmarks/projection.py is there, its `measure(store)` on the same store.

Target (one core, N=1000, M=100000): cluster-wide `capacity()` p99 <= 20 ms.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import gc
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import admission
from pex.domain.application import OpenPEX
from pex.domain.clock import DAY, HOUR
from pex.query import Query
from pex.stores import writer_env

WRITTEN = 1_000  # events the writer records for the refresh


def writer(store: str, nodes: int) -> OpenPEX:
    """The application on `store`, with the cluster's nodes and admission's template registered."""
    app = OpenPEX(writer_env(store), origin=admission.ORIGIN - DAY)
    if not app.view.nodes:
        for i in range(nodes):
            app.catalogue.register_node(f"node{i:04d}", f"test:///bench/node{i:04d}.xml", admission.NODE)
        app.catalogue.register_template(admission.TEMPLATE)
    return app


def timed(runs: int, ask: Callable[[], object]) -> list[float]:
    """Milliseconds per call, one call per run."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        ask()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def figures(samples: list[float]) -> dict[str, float | None]:
    return {"p50_ms": _round(admission.percentile(samples, 50)), "p99_ms": _round(admission.percentile(samples, 99)),
            "max_ms": _round(max(samples, default=None))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--reservations", type=int, default=100_000)
    parser.add_argument("--store", metavar="PATH", help="a SQLite file to build the store in, or reuse if it is there")
    parser.add_argument("--runs", type=int, default=50, help="timed calls of each kind (default 50)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the target is for one core
    rng = random.Random(args.seed)
    store = args.store or os.path.join(tempfile.mkdtemp(prefix="openpex-query-bench-"), "events.db")

    built = not Path(store).exists()
    started = time.perf_counter()
    app = writer(store, args.nodes)
    if built:
        admission.fill(app, rng, args.reservations, 0.6)
        print(f"built {store} in {time.perf_counter() - started:.1f} s")
    gc.collect()

    started = time.perf_counter()
    query = Query.open(store)
    open_s = time.perf_counter() - started
    try:
        nodes = [node.name for node in query.nodes()]
        reservations = len(query.reservations())
        month = {"start": admission.ORIGIN, "end": admission.ORIGIN + 30 * DAY, "step": HOUR}
        assert len(query.capacity(**month)) == 720
        cluster = timed(args.runs, lambda: query.capacity(**month))
        node = timed(args.runs, lambda: query.capacity(rng.choice(nodes), **month))
        activated = timed(args.runs, lambda: query.reservations(status="ACTIVATED"))
        some = [r.id for r in query.reservations()[:: max(1, reservations // args.runs)]]
        events = timed(len(some), lambda: query.events(originator=some.pop()))
        heavy_runs = max(1, args.runs // 5)  # each builds a view of every reservation
        confirmed = timed(heavy_runs, lambda: query.reservations(status="CONFIRMED"))
        gc.collect()
        gc.freeze()  # as docs/querying.md advises for long-lived programs
        confirmed_frozen = timed(heavy_runs, lambda: query.reservations(status="CONFIRMED"))

        before = query.position
        new = -(-WRITTEN // 3)  # three events a reservation, as long as those stored on average
        admission.fill(app, rng, new, 0.6 * new / reservations)
        started = time.perf_counter()
        applied = query.refresh()
        refresh_s = time.perf_counter() - started
        after_refresh = timed(1, lambda: query.capacity(**month))[0]
        assert query.position > before and applied >= WRITTEN
    finally:
        query.close()
        app.close()

    result: dict[str, Any] = {
        "nodes": len(nodes), "reservations": reservations, "events": before, "open_s": round(open_s, 3),
        "capacity_cluster": figures(cluster), "capacity_node": figures(node),
        "reservations_confirmed": figures(confirmed), "reservations_confirmed_frozen": figures(confirmed_frozen),
        "reservations_activated": figures(activated),
        "events_of_one": figures(events),
        "refresh": {"applied": applied, "seconds": round(refresh_s, 3),
                    "first_cluster_capacity_ms": round(after_refresh, 3)},
    }
    print(f"store {store}: {len(nodes)} nodes, {reservations} reservations, {before} events; "
          f"Query.open {open_s:.2f} s")
    print()
    print(f"{'question':<44}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    rows = (("capacity(), cluster, 720 h steps", cluster), ("capacity(node), 720 h steps", node),
            (f"reservations(status=CONFIRMED) ({reservations})", confirmed),
            ("  the same, heap frozen (gc.freeze)", confirmed_frozen),
            ("reservations(status=ACTIVATED) (none)", activated), ("events(originator=one reservation)", events))
    for label, samples in rows:
        numbers = figures(samples)
        print(f"{label:<44}{len(samples):>5}{numbers['p50_ms']:>10.3f}{numbers['p99_ms']:>10.3f}{numbers['max_ms']:>10.3f}")
    print(f"refresh() after {applied} new events: {refresh_s * 1000:.1f} ms; "
          f"the next cluster capacity(): {after_refresh:.1f} ms")

    try:
        from benchmarks import projection
    except ImportError:  # (benchmarks/projection.py is not there)
        projection = None
    if projection is not None:
        measured = projection.measure(store)
        result["projection"] = measured
        print()
        print("benchmarks.projection.measure on the same store:")
        for name, value in measured.items():
            print(f"  {name:<32}{value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
