"""Dispatcher: sends each VM order to the NodeActor of the order's node, and starts and stops
the NodeActors (one per registered host) and the pool of workers they run on.

The pool is bounded (WORKERS threads, whatever the number of hosts): a host's actor holds a
worker only while it handles a message, so ten thousand idle hosts cost no thread, and up to
WORKERS hosts work at once. A host stuck in a hypervisor call holds one worker until libvirt
gives up on it; the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pykka

from pex.actors.calls import CallableActor, Reply, tell
from pex.actors.event_queue import EventQueue
from pex.actors.node import NodeActor
from pex.actors.pool import Workers
from pex.domain.clock import Clock, Millis
from pex.domain.errors import NotFound
from pex.domain.orders import VMOrder
from pex.drivers.base import Driver
from pex.logs import about

if TYPE_CHECKING:
    from pex.actors.allocator import Allocator

log = logging.getLogger(__name__)

WORKERS = 32  # hosts handled at once (a test:// call takes microseconds, a real host's milliseconds)
STOP_TIMEOUT = 30.0  # seconds the node actors have to stop, all together


class Dispatcher(CallableActor):
    def __init__(self, *, connect: Callable[[str], Driver], recorder: pykka.ActorRef[Allocator],
                 event_queue: pykka.ActorRef[EventQueue], clock: Clock, grace: Millis, workers: int = WORKERS) -> None:
        super().__init__()
        self.workers = Workers(workers, "NodeWorker")
        self._node_args = {"connect": connect, "recorder": recorder, "event_queue": event_queue,
                           "clock": clock, "grace": grace, "workers": self.workers}
        self.nodes: dict[str, pykka.ActorRef[NodeActor]] = {}
        self.watching: set[str] = set()  # hosts whose VM events reach their actor (each says so)

    def on_stop(self) -> None:
        """Stop every node actor (all asked at once: each finishes the message in hand), then the
        workers."""
        stopping = []
        for ref in reversed(list(self.nodes.values())):
            try:
                stopping.append(ref.stop(block=False))
            except pykka.ActorDeadError:
                pass
        try:
            pykka.get_all(stopping, timeout=STOP_TIMEOUT)
        except pykka.Timeout:
            log.error("node actors did not stop within %.0f s", STOP_TIMEOUT)
        log.debug("stopped %d node actors", len(stopping))
        self.nodes.clear()
        self.workers.shutdown()

    def add_node(self, name: str, uri: str) -> bool:
        """Start the node's actor (it connects to the host, on a worker); False if it already runs."""
        if name in self.nodes:
            return False
        self.nodes[name] = NodeActor.start(name, uri, **self._node_args, dispatcher=self.actor_ref)
        return True

    def add_nodes(self, nodes: list[tuple[str, str]]) -> int:
        """Start the actors of many nodes (name, URI) in one message; they connect in parallel.
        Returns how many were started."""
        return sum(self.add_node(name, uri) for name, uri in nodes)

    def remove_node(self, name: str) -> None:
        ref = self.nodes.pop(name, None)
        self.watching.discard(name)
        if ref is not None:
            ref.stop()

    def dispatch(self, orders: list[VMOrder], reply: Reply | None = None) -> None:
        """Send the orders on, in order per node. `reply` (only with a single order) goes with
        the order and gets the recorded outcome."""
        for order in orders:
            node = self.nodes.get(order.node)
            try:
                if node is None:
                    raise NotFound(f"node {order.node!r} has no actor")
                _send(node, order, reply)
            except (NotFound, pykka.ActorDeadError) as error:  # one node's trouble stops no other order
                if reply is not None:
                    reply(None, NotFound(f"node {order.node} cannot take orders: {error}"))
                else:
                    log.error("cannot %s %s on %s: %s", order.operation.value, order.domain, order.node, error,
                              extra=about(vm=order.vm_id, node=order.node))

    def node_refs(self) -> dict[str, pykka.ActorRef[NodeActor]]:
        return dict(self.nodes)

    def note_watching(self, name: str, watching: bool) -> None:
        """A node's actor says whether its host's VM events reach it."""
        if watching and name in self.nodes:
            self.watching.add(name)
        else:
            self.watching.discard(name)

    def watched_refs(self) -> tuple[dict[str, pykka.ActorRef[NodeActor]], set[str]]:
        """Every node's actor, and the nodes whose VM events reach it (the VM monitor's round)."""
        return dict(self.nodes), set(self.watching)

    def node_ref(self, name: str) -> pykka.ActorRef[NodeActor]:
        if name not in self.nodes:
            raise NotFound(f"no node {name!r}")
        return self.nodes[name]


def _send(node: pykka.ActorRef[NodeActor], order: VMOrder, reply: Reply | None) -> None:
    tell(node, lambda host: host.carry_out(order, reply))  # (a function of its own: each order bound)
