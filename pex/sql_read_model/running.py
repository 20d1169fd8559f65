"""Running the projection: open the source read-only and the target, check that the target is
this source's read model (or new), and run eventsourcing's projection runner until the view
has caught up with the log, or, when following, until told to stop."""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass

from eventsourcing.projection import BaseProjectionRunner

from pex.sql_read_model.projection import BATCH, CACHED, ReadModelProjection
from pex.sql_read_model.sources import source_env
from pex.stores import EventLog, location
from pex.sql_read_model.targets import check_belongs, open_target

FREEZE_EVERY = 1.0  # seconds between collect-and-freeze steps of the heap
FULL_COLLECTION_EVERY = 600.0  # seconds between collections of the whole heap


@dataclass(frozen=True)
class Outcome:
    position: int  # the last event the view holds
    head: int  # the last event in the source, at the end of the run
    caught_up: bool  # the view reached the end of the log as it was when the run began
    applied: int  # events written by this run
    loaded: int  # aggregates read back from the source to carry on from (restart, eviction)
    seconds: float


def project(store: str, into: str, *, schema: str | None = None, follow: bool = False,
            stop: threading.Event | None = None, batch_size: int = BATCH, cache_size: int = CACHED) -> Outcome:
    """Bring the read model at `into` up to the end of the event store `store` (and with
    `follow`, keep it there until `stop` is set). ProjectionError or pex.stores.StoreError
    if either cannot be used; neither creates nor changes the source."""
    env = source_env(store)
    source = EventLog(env)
    try:
        factory, view, where = open_target(into, schema)
        try:
            check_belongs(view, source, where)
            projection = ReadModelProjection(view, source, location=location(store),
                                             batch_size=batch_size, cache_size=cache_size)
            started = time.perf_counter()
            head = source.recorder.max_notification_id() or 0
            if follow or head > (view.max_tracking_id(EventLog.name) or 0):
                _run(projection, env, None if follow else head, stop or threading.Event())
            position = view.max_tracking_id(EventLog.name) or 0
            return Outcome(position, source.recorder.max_notification_id() or 0, position >= head,
                           projection.applied, projection.loaded, time.perf_counter() - started)
        finally:
            factory.close()
    finally:
        source.close()


def _run(projection: ReadModelProjection, env: dict[str, str], until: int | None, stop: threading.Event) -> None:
    runner = BaseProjectionRunner[EventLog](projection=projection, application_class=EventLog,
                                            tracking_recorder=projection.view, topics=(), env=env)
    heap = _HeapKeeper()
    try:
        with runner:
            while not stop.is_set() and not runner.is_interrupted.is_set():
                if until is not None and projection.position >= until:
                    break
                runner.run_forever(timeout=0.25 if until is None else 0.01)  # raises what the runner raised
                heap.tend()
        projection.flush()  # what was applied before a stop
    finally:
        gc.unfreeze()


class _HeapKeeper:
    """Keeps the cyclic garbage collector off the aggregates (as `openpex serve` does): they are
    many, long-lived and acyclic, and every full collection would rescan them all (13 % of a
    catch-up's time, measured). So every second what survived a collection is frozen; a full
    collection every ten minutes reclaims cycles that died after they were frozen."""

    def __init__(self) -> None:
        self._next = self._full = time.monotonic()

    def tend(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        if now >= self._full:
            gc.unfreeze()
            self._full = now + FULL_COLLECTION_EVERY
        gc.collect()
        gc.freeze()
        self._next = now + FREEZE_EVERY


