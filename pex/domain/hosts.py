"""Hosts as they really are: reconciling the record with what a host reports, recovering each
host after a restart, removing VMs that must not be there, and re-planning the bookings of a
host that was lost. What a report means is pex.domain.reconciling's rule; how a lost host's
shares move is pex.domain.bookings'; this module applies them to the record."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING
from uuid import UUID

from pex.domain.aggregates import Instance, Reservation
from pex.domain.bookings import replan_lost
from pex.domain.capacity import Allocation, Share
from pex.domain.clock import Millis
from pex.domain.errors import NotFound, ProtocolViolation
from pex.domain.negotiation import AGREED, Reply
from pex.domain.orders import Operation, VMOrder, domain_name, vm_id_of
from pex.domain.reconciling import MISSING, WHY, Recovery, changed_behind_our_back, recovery_step
from pex.domain.statuses import LIVE, InstanceStatus, NodeStatus

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX

# Which instances of a lost host take the room found elsewhere first.
_MOVE_FIRST = {status: rank for rank, status in enumerate(
    [InstanceStatus.RUNNING, InstanceStatus.PAUSED, InstanceStatus.SUSPENDED, InstanceStatus.PENDING])}

StatusChange = tuple[UUID, str, "str | None"]


class Hosts:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app

    # ------------------------------------------------------------------ what a host reports

    def reconcile(self, node: str, observed: Mapping[str, str], busy: Collection[str] = ()) -> list[VMOrder]:
        """Bring the record in line with what a host reports (domain name -> state, as the
        driver names states): VMs that powered off or died behind OpenPEX's back are recorded
        so, VMs that vanished are recorded CRASHED, and VMs that must not run are to be removed
        (returned as orders). VMs in `busy` (a stop under way) are left to their node."""
        changed: list[StatusChange] = []
        seen = set()
        for instance in self._instances_on(observed):
            if instance.node != node:
                continue
            seen.add(instance.id)
            if domain_name(str(instance.id)) in busy:
                continue
            state = observed[domain_name(str(instance.id))]
            if not self._should_run(instance) or state == MISSING:
                continue
            if changed_behind_our_back(instance.status, state):
                changed.append((instance.id, state, WHY.get(state)))
        for instance in self._placed_on(node):
            if instance.id not in seen and instance.status in LIVE and self._should_run(instance):
                changed.append((instance.id, InstanceStatus.CRASHED, "its VM vanished from the host"))
        changed += self._gone_after_end(node, observed, busy)
        self._record_statuses(changed)
        return [order for order in self.stray_orders(node, observed) if order.domain not in busy]

    def recover_node(self, node: str, observed: Mapping[str, str], now: Millis) -> list[VMOrder]:
        """After a restart, for one host and what it runs now (domain name -> state): a VM
        that should run and is gone from the host (the host restarted, or is simulated and
        lost it with the process) boots again; one that is there but stopped while OpenPEX was
        down is recorded so, not restarted; VMs that must not be there are removed. Reservations
        that ended meanwhile are left to `settle`."""
        orders: list[VMOrder] = []
        changed: list[StatusChange] = []
        read = self.app.read
        for instance in self._placed_on(node):
            if not self._should_run(instance):
                continue
            agreed = self.app.view.reservations[instance.reservation_id].agreed_terms
            if agreed is None or agreed.end <= now:
                continue
            state = observed.get(domain_name(str(instance.id)), MISSING)
            step = recovery_step(instance.status, instance.reason, state)
            if step is Recovery.BOOT:
                orders.append(read.order(instance, Operation.BOOT))
            elif step is Recovery.STOP:
                orders.append(read.order(instance, Operation.STOP))
            elif step is Recovery.RECORD_HALTED:
                changed.append((instance.id, InstanceStatus.HALTED, None))
            elif step is Recovery.RECORD_OBSERVED:
                changed.append((instance.id, state, WHY.get(state)))
        self._record_statuses(changed + self._gone_after_end(node, observed))
        return orders + self.stray_orders(node, observed)

    def _gone_after_end(self, node: str, observed: Mapping[str, str], busy: Collection[str] = ()) -> list[StatusChange]:
        """VMs recorded live whose reservation is over and which the host no longer has: their
        end's stop was carried out (or the host lost them) but never recorded, as when the
        writer died between recording the end and hearing from the host. Recorded HALTED, as
        the stop would have been; nothing else would ever say so."""
        return [(instance.id, InstanceStatus.HALTED, None) for instance in self._placed_on(node)
                if instance.status in LIVE and not self._should_run(instance)
                and domain_name(str(instance.id)) not in observed and domain_name(str(instance.id)) not in busy]

    def stray_orders(self, node: str, observed: Mapping[str, str]) -> list[VMOrder]:
        """Orders to remove the VMs a host has (domain name -> state) that must not be there:
        their instance was deleted or their reservation is over (a stop that failed, or a
        process that died before carrying it out)."""
        orders = []
        for instance in self._instances_on(observed):
            if instance.node != node or not self._should_run(instance):  # (moved away: a stale copy)
                orders.append(replace(self.app.read.order(instance, Operation.END), node=node,
                                      report=instance.node == node))
        return orders

    def _record_statuses(self, changed: list[StatusChange]) -> None:
        loaded: list[Instance] = []
        for iid, state, reason in changed:
            instance: Instance = self.app.load(iid)
            instance.record_status(state, reason)
            loaded.append(instance)
        if loaded:
            self.app.commit(*loaded)

    def _instances_on(self, observed: Mapping[str, str]) -> list[Instance]:
        """The instances whose VMs a host reports (not ours, or unknown: left out)."""
        instances = self.app.view.instances
        ids = (vm_id_of(domain) for domain in observed)
        return [instances[i] for i in ids if i is not None and i in instances]

    def _placed_on(self, node: str) -> list[Instance]:
        return [self.app.view.instances[i] for i in self.app.view.instances_on.get(node, ())]

    def _should_run(self, instance: Instance) -> bool:
        reservation = self.app.view.reservations[instance.reservation_id]
        return (instance.status != InstanceStatus.DELETED and bool(instance.node) and reservation.launched
                and reservation.status in AGREED)

    # ------------------------------------------------------------------ lost hosts

    def lose_node(self, name: str, now: Millis) -> list[VMOrder]:
        """The node stopped answering: record it DOWN (no new bookings) and re-plan."""
        node = self.app.catalogue.load_node(name)
        node.go_down()
        if node.pending_events:
            self.app.commit(node)
        return self.replan_node(name, now)

    def replan_node(self, name: str, now: Millis) -> list[VMOrder]:
        """The node is DOWN: move what it was to run from `now` on to other nodes where there
        is room (placement as for a new booking), keep its past as it was, and degrade the
        reservations whose instances found no room, with the reason. Returns the BOOT orders
        for moved instances whose reservation has started (they restart elsewhere)."""
        view = self.app.view
        if name not in view.nodes:
            raise NotFound(f"no node {name!r}")
        if view.nodes[name].status != NodeStatus.DOWN:
            raise ProtocolViolation(f"node {name} is {view.nodes[name].status}: only a node that is down is re-planned")
        orders: list[VMOrder] = []
        self._withdraw_offers_on(name, now)
        for rid in [r.id for r in view.open_reservations() if r.status in AGREED and r.booking]:
            booking = Allocation.from_list(view.reservations[rid].booking or [])
            lost = [s for s in booking.shares if s.node == name and s.end > now]
            if lost:
                orders += self._replan(rid, booking, lost, name, now)
        return orders

    def _withdraw_offers_on(self, name: str, now: Millis) -> None:
        """Open offers that hold capacity on the lost node are withdrawn (a REJECT with the
        reason): an offer promises placement, and that placement is gone."""
        changed: list[Reservation] = []
        for r in list(self.app.view.open_reservations()):
            rid = r.id
            if r.offer and any(s.node == name and s.end > now
                               for s in Allocation.from_list(r.offer["allocation"]).shares):
                reservation: Reservation = self.app.load(rid)
                reservation.answer(Reply.REJECT, reason=f"node {name} was lost after this offer was made; "
                                                        "send the proposal again")
                changed.append(reservation)
        if changed:
            self.app.commit(*changed)

    def _replan(self, rid: UUID, booking: Allocation, lost: list[Share], name: str, now: Millis) -> list[VMOrder]:
        app = self.app
        allocation, moved, unplaced = replan_lost(rid, booking, lost, now, app.capacity,
                                                  app.settings.admission.placement)
        reservation: Reservation = app.load(rid)
        reservation.replan(allocation, unplaced, name)
        # Instances on the lost node follow the moved shares, as many as found room: running
        # ones first, then those still to boot; stopped ones keep their status on the new node.
        # Those that found none are left without a node, so nothing can ever boot them there.
        targets = [node for share in moved for node in [share.node] * share.count]
        view = app.view
        instances: list[Instance] = sorted(
            (app.load(i) for i in view.instances_of.get(rid, ())
             if view.instances[i].node == name and view.instances[i].status != InstanceStatus.DELETED),
            key=lambda i: _MOVE_FIRST.get(i.status, len(_MOVE_FIRST)))
        boot = []
        for instance, node in zip(instances, targets):
            if reservation.launched and instance.status in LIVE | {InstanceStatus.PENDING}:
                boot.append(instance)
            instance.relocate(node)
        for instance in instances[len(targets):]:
            instance.strand(f"node {name} was lost and no other node has room for it")
        app.commit(reservation, *instances)
        return [app.read.order(view.instances[i.id], Operation.BOOT) for i in boot]
