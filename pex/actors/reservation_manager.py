"""ReservationManager: what needs both the record and the hypervisors, and the driver of
reservations' life in time.

Negotiation and queries go straight to the Allocator (the one writer), so nothing waits here.
What needs hypervisors goes through here: when the
lifecycle timer fires, it has the Allocator settle what fell due and sends the resulting orders
to the Dispatcher; a cancel stops the reservation's VMs; a user's stop, start, reboot or delete
of an instance is checked by the Allocator and carried out by the instance's NodeActor, which
answers the caller once the outcome is recorded. It waits only on the Allocator, which never
calls back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka

from pex.actors.allocator import Allocator
from pex.actors.calls import LATER, CallableActor, Later, Reply, ask_future, ask_sync, tell
from pex.actors.dispatcher import Dispatcher
from pex.actors.node import NodeActor
from pex.domain.catalogue import node_size
from pex.domain.errors import InvalidField, NotFound, one_line
from pex.domain.orders import Operation, VMOrder
from pex.domain.read_models import InstanceView, NodeView, ReservationView, TemplateView
from pex.domain.sizes import DEFAULT_NODE, Resources
from pex.drivers.base import DriverError, NodeInfo
from pex.drivers.local_files import LocalFiles
from pex.logs import about

log = logging.getLogger(__name__)

# Template fields that name places the service or libvirt write to: never from the API.
SERVICE_KEYS = ("console_dir", "console_log")

LIST_TIMEOUT = 30.0  # seconds the hosts have, all together, to list their VMs at a start


class ReservationManager(CallableActor):
    def __init__(self, allocator: pykka.ActorRef[Allocator], dispatcher: pykka.ActorRef[Dispatcher], *,
                 files: LocalFiles, default_node: Resources = DEFAULT_NODE) -> None:
        super().__init__()
        self.allocator = allocator
        self.dispatcher = dispatcher
        self.files = files  # the only local files an admin may name
        # The size of a host that does not say (libvirt never reports disk; an unreachable
        # host reports nothing).
        self.default_node = default_node

    def settle(self) -> int:
        """Timer: carry out whatever has fallen due; returns how many VM orders it sent."""
        orders = ask_sync(self.allocator, lambda allocator: allocator.settle())
        self._dispatch(orders)
        return len(orders)

    def recover(self) -> int:
        """At start-up: put each host back in line with the store (boot what should run and
        is gone, record what stopped while down, remove what must not be there), then carry
        out what fell due while down. A host that cannot be listed is left to the NodeMonitor.
        Returns how many orders it sent."""
        # Fan out, then gather: every host lists its VMs at once (on the node workers), and the
        # Allocator judges the lists as they come, group-committing them.
        names = [node.name for node in ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.nodes())]
        refs = ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_refs())
        listings = {name: ask_future(refs[name], lambda host: host.domains()) if name in refs else None for name in names}
        judged: list[pykka.Future[list[VMOrder]]] = []
        deadline = time.monotonic() + LIST_TIMEOUT
        for name, listing in listings.items():
            try:
                if listing is None:
                    raise NotFound(f"no node {name!r}")
                observed = listing.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as error:
                log.warning("cannot list the VMs on %s: %s", name, error, extra=about(node=name))
                continue
            judged.append(ask_future(self.allocator, _recovering(name, observed)))
        orders = [order for some in pykka.get_all(judged, timeout=LIST_TIMEOUT) for order in some]
        self._dispatch(orders)
        return len(orders) + self.settle()

    def _dispatch(self, orders: list[VMOrder], reply: Reply | None = None) -> None:
        if orders:
            tell(self.dispatcher, lambda dispatcher: dispatcher.dispatch(orders, reply))

    def _node_ref(self, name: str) -> pykka.ActorRef[NodeActor]:
        return ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_ref(name))

    def add_template(self, name: Any, description: Any, spec: Any) -> TemplateView:
        """Register a template (admin). A kernel template's files must be in the image
        directory, where the hypervisor will read them (this machine: the service runs beside
        libvirtd); what a template may hold is the domain's rule (`Catalogue.register_template`)."""
        for key in SERVICE_KEYS:
            if isinstance(spec, dict) and key in spec:  # where the service writes consoles is its own business
                raise InvalidField(key, "is set by the service, not in a template")
        if isinstance(spec, dict) and spec.get("kind") == "kernel":  # (the rest is the domain's to judge)
            spec = dict(spec)
            for key in ("kernel", "initrd"):
                path = spec.get(key)
                if isinstance(path, str) and path:
                    spec[key] = self.files.image(key, path)
        return ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.register_template(name, description, spec),
                        alone=True)

    def node_down(self, name: str, why: str = "") -> int:
        """A host stopped answering (NodeMonitor): record it DOWN, re-plan what it was to run,
        and restart its running VMs where they were moved. Returns the orders sent."""
        orders = ask_sync(self.allocator, lambda allocator: allocator.lose_node(name))
        self._dispatch(orders)
        log.warning("node %s is down (%s): %d VMs restarted elsewhere", name, why, len(orders), extra=about(node=name))
        return len(orders)

    def node_up(self, name: str) -> None:
        ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.mark_node(name, "UP"))

    def cancel(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> ReservationView:
        cancelled, orders = ask_sync(self.allocator,
                                     lambda allocator: allocator.cancel(reservation_id, userid, is_admin=is_admin))
        self._dispatch(orders)
        log.info("reservation %s cancelled by %s: %d VMs to stop", cancelled.id, userid, len(orders),
                 extra=about(reservation=cancelled.id, user=userid))
        return cancelled

    def operate(self, vm_id: Any, userid: str, operation: Operation, *,
                is_admin: bool = False) -> InstanceView | Later[InstanceView]:
        """A user's operation on one VM, checked by the Allocator and answered by its
        NodeActor once the outcome is recorded (LATER)."""
        assert self.answering is not None
        reply = self.answering.reply
        order = ask_sync(self.allocator, lambda allocator: allocator.app.operations.order(
            vm_id, userid, operation, is_admin=is_admin))
        if not order.node:  # a deleted instance that no node had room for: no VM to remove
            return ask_sync(self.allocator, lambda allocator: allocator.app.read.instance(vm_id, userid,
                                                                                         is_admin=is_admin))
        self._dispatch([order], reply)
        return LATER

    def add_node(self, name: Any, uri: Any, size: dict[str, Any]) -> NodeView:
        """Register a host (admin): its size is what the caller says, or what the host says
        of itself (CPUs and memory); what neither says comes from `default_node`. The name and
        URI are checked before anything connects. The host is asked at once: one that does not
        answer is registered all the same, DOWN, and comes UP when a poll gets an answer."""
        ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.check_new_node(name, uri, size))
        uri = self.files.host_uri(uri)
        # (its real file is not taken either)
        ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.check_new_node(name, uri))
        started = ask_sync(self.dispatcher, lambda dispatcher: dispatcher.add_node(name, uri))
        try:
            try:
                info: NodeInfo | None = ask_sync(self._node_ref(name), lambda host: host.info())
            except DriverError as error:
                info = None  # accepted, recorded DOWN, and UP once a poll gets an answer
                log.warning("node %s cannot be reached (%s): registered DOWN", name, one_line(error),
                            extra=about(node=name))
            reported = Resources(info.cpus, info.memory_mb, 0) if info is not None else None
            capacity = node_size(size, reported, self.default_node)
            reachable = info is not None
            return ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.register_node(
                name, uri, capacity, reachable=reachable), alone=True)
        except BaseException:
            if started:
                ask_sync(self.dispatcher, lambda dispatcher: dispatcher.remove_node(name))
            raise


def _recovering(name: str, observed: dict[str, str]) -> Callable[[Allocator], list[VMOrder]]:
    return lambda allocator: allocator.recover_node(name, observed)  # (a function of its own: each host bound)
