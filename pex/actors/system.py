"""Starting and stopping the actors, in one place: started in dependency order, stopped in
reverse, and anything left running afterwards is logged as the bug it is."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import pykka

from pex.actors.allocator import Allocator
from pex.actors.calls import A, Call, ask_sync
from pex.actors.dispatcher import Dispatcher
from pex.actors.event_queue import EventQueue
from pex.actors.node import NodeActor
from pex.actors.node_monitor import NodeMonitor
from pex.actors.notary import Notarising, Notary, keeper
from pex.actors.reservation_manager import ReservationManager
from pex.actors.ticker import Ticker
from pex.actors.vm_monitor import VMMonitor
from pex.domain.application import OpenPEX
from pex.domain.clock import SECOND, Clock, Millis
from pex.domain.sizes import DEFAULT_NODE, Resources
from pex.drivers.base import Driver
from pex.drivers.local_files import LocalFiles
from pex.metrics import Metrics

log = logging.getLogger(__name__)


class Following(Protocol):
    """What keeps a standby's view reading on (a Ticker, or pex.following's LogListener)."""

    def stop(self) -> None:
        ...


class System:
    """The running actors of one OpenPEX process."""

    def __init__(self, app: OpenPEX, clock: Clock, connect: Callable[[str], Driver], *,
                 grace: Millis = 30 * SECOND, poll: float = 0.5, monitor_interval: float | None = 5.0,
                 default_node: Resources = DEFAULT_NODE, files: LocalFiles,
                 notarising: Notarising | None = None) -> None:
        self.app = app
        self.metrics = Metrics()  # what GET /metrics shows
        self.files = files
        self.clock = clock
        self.connect = connect
        self.grace = grace
        self.poll = poll
        self.default_node = default_node
        self.monitor_interval = monitor_interval  # None: no monitors (tests drive them by hand)
        self.notarising = notarising  # None: no tree heads (a store in memory)
        self.notary: pykka.ActorRef[Notary] | None = None
        self.event_queue: pykka.ActorRef[EventQueue]
        self.allocator: pykka.ActorRef[Allocator]
        self.dispatcher: pykka.ActorRef[Dispatcher]
        self.manager: pykka.ActorRef[ReservationManager] | None = None  # None while a standby
        self.node_monitor: pykka.ActorRef[NodeMonitor]
        self.vm_monitor: pykka.ActorRef[VMMonitor]
        self.writing = False  # the writer (all actors), or a standby (reads, following the log)
        self._started: list[pykka.ActorRef[Any]] = []
        self._follower: Following | None = None

    def start(self) -> System:
        """Start every actor, connect every registered node, and bring the hypervisors in line
        with the store (what should run boots, what fell due while down is carried out)."""
        self.start_reading()
        return self.take_over()

    def start_reading(self, follow: float | None = None,
                      listen: Callable[[Callable[[], None]], Following] | None = None) -> System:
        """Start what answers reads: the Allocator (and the EventQueue it arms). A standby
        reads on in the log what the writer recorded meanwhile: `listen`, given how to read
        on, starts what calls it when the writer appends (pex.following); else it is read on
        every `follow` seconds."""
        try:
            self.event_queue = self._keep(EventQueue.start(self.clock, poll=self.poll))
            self.allocator = self._keep(Allocator.start(self.app, self.clock, self.event_queue, self.metrics))
            if listen is not None:
                allocator = self.allocator
                self._follower = listen(lambda: ask_sync(allocator, lambda a: a.follow(quietly=True)))
            elif follow is not None:
                self._follower = Ticker(self.allocator, Call(lambda allocator: allocator.follow(quietly=True)), follow,
                                        "Allocator-follower").start()
        except BaseException:
            self.stop()
            raise
        return self

    def catch_up(self) -> None:
        """A standby that holds the lease now: stop following and read the log to its end (no
        other process can append any more)."""
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        ask_sync(self.allocator, lambda allocator: allocator.follow())

    def take_over(self) -> System:
        """Become the writer (the store's lock or lease is this process's now): read the log to
        its end, then start the rest, connect the nodes and bring them in line with the store."""
        try:
            if self._follower is not None:  # a standby: what its writer recorded last, before deciding
                self.catch_up()
            if self.notarising is not None:
                self.notary = self._keep(Notary.start(keeper(self.notarising), self.notarising, self.clock,
                                                      self.metrics))
            self.dispatcher = self._keep(Dispatcher.start(
                connect=self.connect, recorder=self.allocator, event_queue=self.event_queue,
                clock=self.clock, grace=self.grace))
            self.manager = self._keep(ReservationManager.start(self.allocator, self.dispatcher, files=self.files,
                                                               default_node=self.default_node))
            # (one message for all: the node actors connect to their hosts in parallel, on the workers)
            hosts = [(node.name, node.uri) for node in ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.nodes())]
            ask_sync(self.dispatcher, lambda dispatcher: dispatcher.add_nodes(hosts))
            manager = self.manager
            ask_sync(self.allocator, lambda allocator: allocator.attach(manager))
            ask_sync(self.manager, lambda reservations: reservations.recover())
            if self.monitor_interval is not None:
                self.node_monitor = self._keep(NodeMonitor.start(
                    self.allocator, self.dispatcher, self.manager, interval=self.monitor_interval))
                self.vm_monitor = self._keep(VMMonitor.start(self.dispatcher, interval=self.monitor_interval))
        except BaseException:
            self.stop()
            raise
        self.writing = True
        return self

    def add_node(self, name: str, uri: str) -> None:
        ask_sync(self.dispatcher, lambda dispatcher: dispatcher.add_node(name, uri))

    def stop(self) -> None:
        """Stop the actors in reverse order; the Allocator closes the store as it stops."""
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        while self._started:
            ref = self._started.pop()
            try:
                ref.stop(timeout=30)
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                log.error("actor %s did not stop within 30 s", ref)
        for ref in pykka.ActorRegistry.get_all():
            if ref.actor_class in (EventQueue, Allocator, Notary, Dispatcher, NodeActor, ReservationManager, NodeMonitor,
                                   VMMonitor):
                log.error("actor %s was left running after stop", ref)

    def _keep(self, ref: pykka.ActorRef[A]) -> pykka.ActorRef[A]:
        self._started.append(ref)
        return ref

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
