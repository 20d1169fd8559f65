"""Allocator: the one writer. It owns the OpenPEX application, and with it the event store and
the in-memory capacity model, so every decision that takes or frees capacity is serialized here.

Callers run the application's commands and queries on it with typed calls (`lambda allocator:
allocator.app.read.reservation(...)`); those that need the clock's `now` are its own methods.
Registrations, which rely on the store to refuse a taken name, are sent `alone` and run
outside any batch. After each batch it keeps the one timer
the lifecycle needs on the next instant something falls due (an offer lapses, a reservation
starts or ends), read off the view itself; it asks the EventQueue to send `settle` to the
ReservationManager then, and tells it only when that instant changed.
It never asks another actor for anything, so others may wait on it without deadlock.

Group commit: while calls keep arriving, their outcomes are staged (each decision sees all
before it) and saved in one transaction when the inbox runs dry or the batch is full; only then
are the callers answered, so nobody hears of an outcome that is not yet durable. Under load one
fsync serves many negotiations; alone, a call is saved and answered at once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pykka

from pex.actors.calls import Call, CallableActor, answer_all, tell
from pex.domain.application import OpenPEX
from pex.actors.event_queue import EventQueue
from pex.domain.clock import DAY, Clock, Millis
from pex.domain.billing import Statements
from pex.domain.errors import InvalidField, one_line
from pex.domain.negotiation import TermsChange
from pex.domain.orders import VMOrder
from pex.drivers.base import NodeInfo
from pex.logs import about
from pex.metrics import Metrics
from pex.domain.read_models import AccountUsage, Answer, CapacityReport, NodeView, ReservationView

if TYPE_CHECKING:
    from pex.actors.reservation_manager import ReservationManager

log = logging.getLogger(__name__)

SETTLE = "settle"  # the EventQueue key of the lifecycle timer
MAX_BATCH = 32  # calls answered per transaction at most (bounds the latency a batch adds)
# Calls per transaction at most, counting those nobody waits on (a VM's status report told by
# its host): a boot storm of 10,000 reports is then ~20 transactions, not 300, while a caller
# who waits still shares its transaction with at most MAX_BATCH - 1 others that wait.
MAX_TOLD_BATCH = 512
RETRY: Millis = 1000  # how soon an overdue settle is tried again


@dataclass(frozen=True)
class Bundle:
    """Calls from one sender routed as if sent one after another, in one message: a host's VM
    reports of a turn (a boot storm's 10,000 reports were as many puts on this actor's inbox,
    with the node workers queueing on its lock)."""

    calls: list[Call[Any, Any]]


class Allocator(CallableActor):
    def __init__(self, app: OpenPEX, clock: Clock, event_queue: pykka.ActorRef[EventQueue],
                 metrics: Metrics | None = None) -> None:
        super().__init__()
        self.app = app
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.event_queue = event_queue
        self.manager: pykka.ActorRef[ReservationManager] | None = None
        self._armed: Millis | None = None
        self._retry_at: Millis | None = None  # a settle failed: not again before this instant
        self._settling = False  # a settle ran in the open batch
        self._settled = False  # ... and carried out all it had to
        self._loads: dict[str, NodeInfo] = {}  # latest load per host (NodeMonitor), not stored
        self._waiting: list[tuple[Call[Any, Any], Any, BaseException | None]] = []  # answers held until saved
        self._awaited = 0  # how many of them someone waits on (a reply)
        self._bundled = 0  # calls of the bundle in hand still to route after this one
        self._said_unreadable: float | None = None  # when a standby last said it cannot read the log

    def on_stop(self) -> None:
        self._flush()
        self.app.close()

    def follow(self, *, quietly: bool = False) -> None:
        """A new writer's first step, and a standby's turn (`quietly`: a store that cannot be
        read now is said once a minute, not raised ten times a second): apply what was
        recorded since."""
        if not quietly:
            self.app.follow()
            return
        try:
            self.app.follow()
        except Exception as error:
            if self._said_unreadable is None or time.monotonic() - self._said_unreadable >= 60:
                self._said_unreadable = time.monotonic()
                log.warning("standby: cannot read on in the log (reads answer from what was read): %s",
                            one_line(error))
        else:
            self._said_unreadable = None

    def behind(self) -> int:
        """How many events the log holds that this view has not applied yet."""
        return self.app.behind()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Bundle):
            for self._bundled, call in zip(range(len(message.calls) - 1, -1, -1), message.calls):
                self.route(call)
            return None
        return super().on_receive(message)

    def route(self, call: Call[Any, Any]) -> None:
        if call.alone:
            self._flush()
            self.run(call)
            self._rearm()
            return
        try:
            self.app.begin_batch()
            result, error = call.run(self), None
        except Exception as failure:
            result, error = None, failure
        self._waiting.append((call, result, error))
        self._awaited += call.reply is not None
        # A command that failed may have left an aggregate half-changed in the batch: saving
        # now (what was staged is sound) drops the batch and anything it held.
        if (error is not None or self._awaited >= MAX_BATCH or len(self._waiting) >= MAX_TOLD_BATCH
                or (not self._bundled and self.actor_inbox.empty())):
            self._flush()

    def _flush(self) -> None:
        waiting, self._waiting, self._awaited = self._waiting, [], 0
        saved = True
        if waiting:
            self.metrics.batch_calls.observe(len(waiting))
        try:
            with self.metrics.commit_seconds.time():
                self.app.end_batch()
        except Exception as failure:  # nothing of the batch was saved: every caller hears so
            saved = False
            answer_all([(call, None, error or failure) for call, _, error in waiting])
            self._armed = None
        else:
            answer_all(waiting)
        if self._settling:
            self._settling = False
            # Fixed once, when it fails: re-armed after every batch, `now + RETRY` would keep
            # moving away under steady traffic and the retry would never come.
            self._retry_at = None if self._settled and saved else self.clock.now() + RETRY
        self._rearm()  # what falls due next, from the view itself (cheap: three sorted heads)

    def attach(self, manager: pykka.ActorRef[ReservationManager]) -> None:
        """The actor that `settle` timers go to (started after this one)."""
        self.manager = manager
        self._armed = None
        self._rearm()

    def _rearm(self) -> None:
        if self.manager is None:
            return
        try:
            due = self.app.lifecycle.next_due()
        except Exception:  # the view is being rebuilt: try again shortly
            due = self.clock.now() + RETRY
        if due is not None and self._retry_at is not None and due < self._retry_at:
            due = self._retry_at  # overdue because settling failed: retry, not spin
        if due == self._armed:
            return
        self._armed = due
        if due is None:
            tell(self.event_queue, lambda queue: queue.disarm(SETTLE))
        else:
            manager = self.manager
            tell(self.event_queue, lambda queue: queue.arm(SETTLE, due, manager, Call(lambda m: m.settle())))

    # ------------------------------------------------------------------ commands with `now`

    def propose(self, userid: str, proposal: TermsChange) -> Answer:
        with self.metrics.decision_seconds.time():
            answer = self.app.negotiation.propose(userid, proposal, self.clock.now())
        self.metrics.negotiations.labels(reply=answer.reply.value).inc()
        return answer

    def respond(self, reservation_id: Any, userid: str, reply: Any, proposal: TermsChange | None = None, *,
                is_admin: bool = False) -> Answer:
        with self.metrics.decision_seconds.time():
            answer = self.app.negotiation.respond(reservation_id, userid, reply, self.clock.now(), proposal,
                                                  is_admin=is_admin)
        self.metrics.negotiations.labels(reply=answer.reply.value).inc()
        return answer

    def metrics_text(self) -> bytes:
        """The metrics, with instances and nodes counted by status off the view now."""
        view = self.app.view
        instances = view.instance_statuses()
        nodes = Counter(str(node.status) for node in view.nodes.values())
        return self.metrics.exposition(instances, nodes, view.position)

    def activate(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> ReservationView:
        return self.app.lifecycle.activate(reservation_id, userid, is_admin=is_admin)

    def cancel(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> tuple[ReservationView, list[VMOrder]]:
        """Cancel and hand back the orders for its VMs (computed before they are discarded)."""
        orders = self.app.lifecycle.cancel_orders(reservation_id, userid, is_admin=is_admin)
        return self.app.lifecycle.cancel(reservation_id, userid, is_admin=is_admin, now=self.clock.now()), orders

    def settle(self) -> list[VMOrder]:
        """Timer (through the ReservationManager): what has fallen due. The timer that sent it
        is spent, whatever happens; a settle that fails, or whose batch is not saved, is
        retried after RETRY rather than at once."""
        now = self.clock.now()
        if self._armed is not None and self._armed <= now:
            self.metrics.timer_lag_seconds.observe((now - self._armed) / 1000)
        self._armed = None
        self._settling, self._settled = True, False
        orders = self.app.lifecycle.settle(now)
        self._settled = True
        self._log_orders(orders)
        return orders

    def _log_orders(self, orders: list[VMOrder]) -> None:
        """One line per reservation and operation: what its start or end sends to the hosts."""
        grouped: dict[tuple[UUID | None, str], list[VMOrder]] = {}
        for order in orders:
            instance = self.app.view.instances.get(UUID(order.vm_id))
            reservation = instance.reservation_id if instance is not None else None
            grouped.setdefault((reservation, order.operation.value), []).append(order)
        for (reservation, operation), some in grouped.items():
            nodes = sorted({order.node for order in some})
            log.info("reservation %s: %s %d VMs on %s", reservation, operation, len(some), ", ".join(nodes),
                     extra=about(reservation=reservation, node=nodes[0] if len(nodes) == 1 else None,
                                 vm=some[0].vm_id if len(some) == 1 else None))

    def accounts(self) -> list[AccountUsage]:
        return self.app.catalogue.accounts(self.clock.now())

    def account_usage(self, username: str) -> AccountUsage:
        return self.app.catalogue.account_usage(username, self.clock.now())

    def set_quota(self, username: Any, limits: Any) -> AccountUsage:
        return self.app.catalogue.set_quota(username, limits, self.clock.now())

    def usage(self, userid: str, start: Millis | None, end: Millis | None, *, is_admin: bool = False) -> Statements:
        """Statements from `start` (default: the first of this month, UTC) to `end` (default: now)."""
        return self.app.read.usage(userid, start, end, self.clock.now(), is_admin=is_admin)

    def capacity(self, start: Millis | None, end: Millis | None, step: Millis, *, nodes: Collection[str] = (),
                 most: int) -> CapacityReport:
        """Capacity per step from `start` (default: now) to `end` (default: a day after it)."""
        start = self.clock.now() if start is None else start
        end = start + DAY if end is None else end
        if end <= start:  # (only with `from` left out: the API checks them given together)
            raise InvalidField("to", "must be after from, which is now if left out", as_given=True)
        return self.app.read.capacity_report(start, end, step, nodes=nodes, most=most)

    def note_loads(self, loads: dict[str, NodeInfo]) -> None:
        """The hosts' latest loads (the NodeMonitor's, in bunches: one message a tick, not one a host)."""
        self._loads.update(loads)

    def node(self, name: str) -> NodeView:
        return self._with_load(self.app.catalogue.node(name))

    def nodes(self) -> list[NodeView]:
        return [self._with_load(node) for node in self.app.catalogue.nodes()]

    def _with_load(self, node: NodeView) -> NodeView:
        load = self._loads.get(node.name)
        return replace(node, load=load) if load is not None else node

    def lose_node(self, name: str) -> list[VMOrder]:
        return self.app.hosts.lose_node(name, self.clock.now())

    def recover_node(self, node: str, observed: dict[str, str]) -> list[VMOrder]:
        return self.app.hosts.recover_node(node, observed, self.clock.now())
