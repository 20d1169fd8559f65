"""The OpenPEX eventsourcing Application: the store, the view rebuilt from it, and group commit.

Its commands live in one module per concern, each reached through an attribute (as Mopidy's
core holds one controller per concern): `catalogue` (accounts, templates, nodes),
`negotiation`, `lifecycle` (activation, cancellation, what falls due), `hosts` (reconciling,
recovery, lost nodes), `operations` (one VM) and `read` (what a caller may see). Every command
reads like load, decide, save; takes `now` from the caller's clock; and hands back read models
(pex.domain.read_models), never aggregates. The application keeps the projections (and with
them the capacity model) in memory, rebuilt from the notification log when it opens, and
applies what it saves. It is meant to have one writer thread (the Allocator actor); the
store's optimistic concurrency refuses a save that raced another process's.

Persistence is chosen by environment, as eventsourcing does: PERSISTENCE_MODULE
(eventsourcing.sqlite or eventsourcing.postgres), SQLITE_DBNAME, POSTGRES_*.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from pex.domain.admission import AdmissionPolicy
from pex.domain.capacity import CapacityModel
from pex.domain.catalogue import Catalogue
from pex.domain.clock import DAY, MINUTE, Millis, SystemClock
from pex.domain.errors import AlreadyExists, StoreUnavailable
from pex.domain.hosts import Hosts
from pex.domain.lifecycle import Lifecycle
from pex.domain.negotiating import Negotiation
from pex.domain.negotiation import Limits
from pex.domain.operations import InstanceOperations
from pex.domain.projections import Projections
from pex.domain.pricing import DemandPricing, PricingPolicy
from pex.domain.quotas import Quota, TokenBuckets
from pex.domain.reading import Reading

log = logging.getLogger(__name__)


# Offers a view to start from (the application and a fresh capacity model for it), or None.
Opening = Callable[["OpenPEX", CapacityModel], "Projections | None"]


@dataclass(frozen=True)
class Settings:
    offer_ttl: Millis = 5 * MINUTE
    max_hold: Millis | None = None  # how long one negotiation may hold capacity in all (default 3 TTLs)
    quota: Quota = Quota()  # each user's limits unless the admin set others
    limits: Limits = Limits(max_advance=365 * DAY, max_duration=90 * DAY)
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    bucket: Millis = 15 * MINUTE  # width of the capacity index's buckets
    pricing: PricingPolicy = field(default_factory=DemandPricing)  # how demand moves the rate card's prices


class OpenPEX(Application[UUID]):
    env = {"TRANSCODER_TOPIC": "pex.domain.transcoding:MsgpackTranscoder"}

    def __init__(self, env: Mapping[str, str] | None = None, *, settings: Settings | None = None,
                 origin: Millis | None = None, opening: Opening | None = None) -> None:
        """Open the store and rebuild every projection from it. `origin` is the earliest
        instant decisions will be asked about (default: now). `opening`, if given, offers a
        view to start from (a snapshot's) each time the view is rebuilt; the log after it is
        read on."""
        super().__init__(env)
        self._opening = opening
        self.settings = settings or Settings()
        if origin is None:
            origin = SystemClock().now()
        self._origin = origin
        self._batch: dict[UUID, Any] | None = None  # aggregates changed in the open batch
        self._staged: list[Any] = []  # their events, applied to the view but not yet saved
        self._stale = True
        self.proposals = TokenBuckets()  # in memory: a refusal stores nothing
        self.refusals: Counter[str] = Counter()  # quota refusals per user since start (for operators)
        # Called with the events of each save once it is done (the portal's live pages listen);
        # a listener must be quick (it runs on the writer's thread).
        self.saved_listeners: list[Callable[[Sequence[Any]], None]] = []
        self.catalogue = Catalogue(self)
        self.negotiation = Negotiation(self)
        self.lifecycle = Lifecycle(self)
        self.hosts = Hosts(self)
        self.operations = InstanceOperations(self)
        self.read = Reading(self)
        self._rebuild()

    @property
    def capacity(self) -> CapacityModel:
        return self.view.capacity

    @property
    def negotiation_hold(self) -> Millis:
        return self.settings.max_hold if self.settings.max_hold is not None else 3 * self.settings.offer_ttl

    def _rebuild(self) -> None:
        """Replace the view with one rebuilt from the store. Until that succeeds the old view
        must not be trusted: commands are refused (StoreUnavailable) rather than decided on it."""
        self._stale = True
        view = self._opening(self, self._capacity_model()) if self._opening is not None else None
        if view is None:
            view = Projections(self._capacity_model())
        view.locate = self._reservation_of_instance
        view.catch_up(self.recorder, self.mapper)
        self.view, self._stale = view, False

    def _capacity_model(self) -> CapacityModel:
        return CapacityModel(origin=self._origin, bucket=self.settings.bucket)

    def _reservation_of_instance(self, instance_id: UUID) -> UUID | None:
        """The reservation an instance was planned for, as the store has it (None: no such
        instance): how a view finds the settled family an instance is in."""
        try:
            planned: Any = self.repository.get(instance_id, version=1)
        except AggregateNotFoundError:
            return None
        found: UUID | None = getattr(planned, "reservation_id", None)
        return found

    def follow(self) -> None:
        """Read on in the log: what another process recorded since (a standby follows its writer)."""
        self._check_view()
        def read_on() -> None:
            self.view.catch_up(self.recorder, self.mapper)

        self._apply(read_on)

    def behind(self) -> int:
        """Events in the store this view has not applied."""
        return max(0, (self.recorder.max_notification_id() or 0) - self.view.position)

    def _check_view(self) -> None:
        if self._stale:
            try:
                self._rebuild()
            except Exception as error:
                raise StoreUnavailable(f"the event store cannot be read: {error}") from None

    def commit(self, *aggregates: Any) -> None:
        """Save the aggregates' new events (or stage them, in a batch) and apply them to the view."""
        self._check_view()
        if self._batch is None:
            try:
                recordings = self.save(*aggregates)
            except BaseException:
                self._read_on_after_failure()
                raise
            self._apply(lambda: self.view.apply_recordings(recordings, self.recorder, self.mapper))
            self._tell_saved([recording.domain_event for recording in recordings])
            return
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        for event in events:  # refuse what the store could not encode now, not at the batch's end
            try:
                self.mapper.to_stored_event(event)
            except Exception:
                for aggregate in aggregates:  # changed but never staged: not to be reused
                    self._batch.pop(aggregate.id, None)
                raise
        for aggregate in aggregates:
            self._batch[aggregate.id] = aggregate
        self._apply(lambda: self.view.apply_staged(events))
        self._staged.extend(events)

    def _read_on_after_failure(self) -> None:
        """A save that raised may have stored its events all the same (PostgreSQL: a commit
        whose acknowledgement was lost with the connection, retried and refused as a
        duplicate). Read on so the view, which instances are changed from, is the store's."""
        try:
            self.view.catch_up(self.recorder, self.mapper)
        except Exception:
            self._stale = True  # (half-read, or the store is gone: rebuilt before the next command)

    def _apply(self, applying: Callable[[], None]) -> None:
        """Apply events to the view; if that fails half-way, the view is not to be trusted
        until it is rebuilt from the store (the next command does so)."""
        try:
            applying()
        except BaseException:
            self._stale = True
            raise

    def load(self, aggregate_id: UUID) -> Any:
        """An aggregate to change: the one changed earlier in the open batch; an instance, a
        copy of the view's (the view applies every save of this process, the only writer, so
        it is the store's; a boot storm records thousands of reports without reading them);
        else from the store."""
        if self._batch is not None and aggregate_id in self._batch:
            return self._batch[aggregate_id]
        if not self._stale:
            instance = self.view.instances.held(aggregate_id)
            if instance is not None:
                return instance.copied()
        return self.repository.get(aggregate_id)

    # ------------------------------------------------------------------ group commit

    def begin_batch(self) -> None:
        """Stage what the following commands record, and save it all in one transaction at
        `end_batch` (group commit: one fsync for many decisions). Each command still sees
        every decision before it, since staged events are applied to the view at once; the
        caller must not tell anyone an outcome before `end_batch` returns. Commands that rely
        on the store to refuse a taken name (register_*) must not run inside a batch."""
        self._check_view()
        if self._batch is None:
            self._batch, self._staged = {}, []

    def end_batch(self) -> None:
        staged, self._staged, self._batch = self._staged, [], None
        if staged:
            try:
                recordings = self.save(*staged)
            except BaseException:
                self._stale = True  # nothing of the batch was saved: forget it
                self._try_rebuild()
                raise
            if not self.view.confirm_staged(recordings, self.recorder):
                self._stale = True  # another writer's events came in between: take the log's order
        if self._stale:  # (or a command's events failed to apply): the store is the truth
            self._try_rebuild()
        if staged:
            self._tell_saved(staged)

    def _tell_saved(self, events: Sequence[Any]) -> None:
        for listener in self.saved_listeners:
            try:
                listener(events)
            except Exception:  # what was saved stands: a listener's failure is its own
                log.exception("a listener of saved events failed")

    def _try_rebuild(self) -> None:
        try:
            self._rebuild()
        except Exception:
            pass  # the next command tries again, and is refused while it fails

    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    def commit_new(self, aggregate: Any, taken: str) -> None:
        """Commit a named aggregate; AlreadyExists(taken) if the store holds its name already.
        Only outside a batch: inside one, the refusal would come at its end, for all its callers."""
        if self._batch is not None:
            raise RuntimeError("a registration must run alone, outside any batch (send it with alone=True)")
        try:
            self.commit(aggregate)
        except IntegrityError:
            raise AlreadyExists(taken) from None
