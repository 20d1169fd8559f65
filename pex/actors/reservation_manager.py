"""ReservationManager: the service's front door for reservations and instances, and the driver
of their life in time.

Negotiation and queries pass straight on to the Allocator (the one writer) with the caller's
answer address, so nothing waits here. What needs hypervisors goes through here: when the
lifecycle timer fires, it has the Allocator settle what fell due and sends the resulting orders
to the Dispatcher; a cancel stops the reservation's VMs; a user's stop, start, reboot or delete
of an instance is checked by the Allocator and carried out by the instance's NodeActor, which
answers the caller once the outcome is recorded. It waits only on the Allocator, which never
calls back.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from pex.actors.calls import Call, CallableActor, ask_sync
from pex.domain.errors import InvalidField
from pex.domain.orders import Operation
from pex.domain.sizes import DEFAULT_NODE, Resources
from pex.drivers.base import DriverError
from pex.drivers.local_files import LocalFiles

log = logging.getLogger(__name__)

# Template fields that name places the service or libvirt write to: never from the API.
SERVICE_KEYS = ("console_dir", "console_log")

# Served by the Allocator as they are.
_PASSED_ON = frozenset({
    "propose", "respond", "activate", "reservation", "reservations", "instances", "instance",
    "register_account", "account", "password_hash", "check_username_free", "accounts", "account_usage", "set_quota", "templates", "template",
    "types", "nodes", "node", "capacity_timeline",
})


class ReservationManager(CallableActor):
    def __init__(self, allocator: pykka.ActorRef[Any], dispatcher: pykka.ActorRef[Any], *,
                 files: LocalFiles, default_node: Resources = DEFAULT_NODE) -> None:
        super().__init__()
        self.allocator = allocator
        self.dispatcher = dispatcher
        self.files = files  # the only local files an admin may name
        # The size of a host that does not say (libvirt never reports disk; an unreachable
        # host reports nothing).
        self.default_node = default_node

    def route(self, call: Call) -> None:
        if call.method in _PASSED_ON:
            self.allocator.tell(call)
        elif call.method == "operate":
            self._operate(call)
        else:
            self.run(call)

    def settle(self) -> int:
        """Timer: carry out whatever has fallen due; returns how many VM orders it sent."""
        orders = ask_sync(self.allocator, "settle")
        if orders:
            self.dispatcher.tell(Call("dispatch", (orders,)))
        return len(orders)

    def recover(self) -> int:
        """At start-up: put each host back in line with the store (boot what should run and
        is gone, record what stopped while down, remove what must not be there), then carry
        out what fell due while down. A host that cannot be listed is left to the NodeMonitor.
        Returns how many orders it sent."""
        orders = []
        for node in ask_sync(self.allocator, "nodes"):
            try:
                observed = ask_sync(ask_sync(self.dispatcher, "node_ref", node.name), "domains")
            except Exception as error:
                log.warning("cannot list the VMs on %s: %s", node.name, error)
                continue
            orders += ask_sync(self.allocator, "recover_node", node.name, observed)
        if orders:
            self.dispatcher.tell(Call("dispatch", (orders,)))
        return len(orders) + self.settle()

    def add_template(self, name: Any, description: Any, spec: Any) -> dict[str, Any]:
        """Register a template (admin). A kernel template's files must be in the image
        directory, where the hypervisor will read them (this machine: the service runs beside
        libvirtd); what a template may hold is the domain's rule (`OpenPEX.register_template`)."""
        for key in SERVICE_KEYS:
            if isinstance(spec, dict) and key in spec:  # where the service writes consoles is its own business
                raise InvalidField(key, "is set by the service, not in a template")
        if isinstance(spec, dict) and spec.get("kind") == "kernel":  # (the rest is the domain's to judge)
            spec = dict(spec)
            for key in ("kernel", "initrd"):
                path = spec.get(key)
                if isinstance(path, str) and path:
                    spec[key] = self.files.image(key, path)
        return ask_sync(self.allocator, "register_template", name, description, spec)

    def node_down(self, name: str, why: str = "") -> int:
        """A host stopped answering (NodeMonitor): record it DOWN, re-plan what it was to run,
        and restart its running VMs where they were moved. Returns the orders sent."""
        orders = ask_sync(self.allocator, "lose_node", name)
        if orders:
            self.dispatcher.tell(Call("dispatch", (orders,)))
        log.warning("node %s is down (%s): %d VMs restarted elsewhere", name, why, len(orders))
        return len(orders)

    def node_up(self, name: str) -> None:
        ask_sync(self.allocator, "mark_node", name, "UP")

    def drain(self, name: str) -> dict[str, Any]:
        return ask_sync(self.allocator, "mark_node", name, "DRAINED")

    def undrain(self, name: str) -> dict[str, Any]:
        return ask_sync(self.allocator, "mark_node", name, "UNDRAINED")

    def cancel(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> dict[str, Any]:
        body, orders = ask_sync(self.allocator, "cancel", reservation_id, userid, is_admin=is_admin)
        if orders:
            self.dispatcher.tell(Call("dispatch", (orders,)))
        return body

    def _operate(self, call: Call) -> None:
        """operate(vm_id, userid, operation, is_admin=...): answered by the NodeActor."""
        vm_id, userid, operation = call.args
        try:
            order = ask_sync(self.allocator, "instance_order", vm_id, userid, Operation(operation), **call.kwargs)
        except Exception as error:
            call.answer(error=error)
            return
        self.dispatcher.tell(Call("dispatch", ([order],), {"reply": call.reply}))

    def add_node(self, name: Any, uri: Any, size: dict[str, Any]) -> dict[str, Any]:
        """Register a host (admin): its size is what the caller says, or what the host says
        of itself (CPUs and memory); what neither says comes from `default_node`. The name and
        URI are checked before anything connects. The host is asked at once: one that does not
        answer is registered all the same, DOWN, and comes UP when a poll gets an answer."""
        ask_sync(self.allocator, "check_new_node", name, uri, size)
        uri = self.files.host_uri(uri)
        ask_sync(self.allocator, "check_new_node", name, uri)  # its real file is not taken either
        started = ask_sync(self.dispatcher, "add_node", name, uri)
        try:
            try:
                info = ask_sync(ask_sync(self.dispatcher, "node_ref", name), "info")
            except DriverError as error:
                info = None  # accepted, recorded DOWN, and UP once a poll gets an answer
                log.warning("node %s cannot be reached (%s): registered DOWN", name, _one_line(error))
            if info is not None:
                size = {"cpus": info["cpus"], "memoryMB": info["memoryMB"], **size}
            default = self.default_node
            capacity = Resources(size.get("cpus", default.cpus), size.get("memoryMB", default.memory_mb),
                                 size.get("diskGB", default.disk_gb))
            return ask_sync(self.allocator, "register_node", name, uri, capacity, reachable=info is not None)
        except BaseException:
            if started:
                ask_sync(self.dispatcher, "remove_node", name)
            raise

def _one_line(error: BaseException) -> str:
    """A hypervisor's message as one line of the log (it may quote what it was given)."""
    return " ".join(str(error).split())[:300]
