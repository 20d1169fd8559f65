"""Dispatcher: sends each VM order to the NodeActor of the order's node, and starts and stops
the NodeActors (one per registered host)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from pex.actors.calls import Call, CallableActor, Reply
from pex.actors.node import NodeActor
from pex.domain.clock import Clock, Millis
from pex.domain.errors import NotFound
from pex.domain.orders import VMOrder
from pex.drivers.base import Driver

log = logging.getLogger(__name__)


class Dispatcher(CallableActor):
    def __init__(self, *, connect: Callable[[str], Driver], recorder: pykka.ActorRef[Any],
                 event_queue: pykka.ActorRef[Any], clock: Clock, grace: Millis) -> None:
        super().__init__()
        self._node_args = {"connect": connect, "recorder": recorder, "event_queue": event_queue,
                           "clock": clock, "grace": grace}
        self.nodes: dict[str, pykka.ActorRef[Any]] = {}

    def on_stop(self) -> None:
        for name, ref in reversed(list(self.nodes.items())):
            ref.stop()
            log.debug("stopped node actor %s", name)
        self.nodes.clear()

    def add_node(self, name: str, uri: str) -> bool:
        """Start the node's actor (it connects to the host); False if it already runs."""
        if name in self.nodes:
            return False
        self.nodes[name] = NodeActor.start(name, uri, **self._node_args)
        return True

    def remove_node(self, name: str) -> None:
        ref = self.nodes.pop(name, None)
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
                node.tell(Call("carry_out", (order,), {"reply": reply}))
            except (NotFound, pykka.ActorDeadError) as error:  # one node's trouble stops no other order
                if reply is not None:
                    reply(None, NotFound(f"node {order.node} cannot take orders: {error}"))
                else:
                    log.error("cannot %s %s on %s: %s", order.operation.value, order.domain, order.node, error)

    def node_refs(self) -> dict[str, pykka.ActorRef[Any]]:
        return dict(self.nodes)

    def node_ref(self, name: str) -> pykka.ActorRef[Any]:
        if name not in self.nodes:
            raise NotFound(f"no node {name!r}")
        return self.nodes[name]
