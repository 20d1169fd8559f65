"""A user's operations on one VM (start, stop, reboot, delete) and what its hypervisor reports
of it. The order is checked here and carried out by the instance's node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pex.domain.aggregates import Instance
from pex.domain.errors import ProtocolViolation
from pex.domain.negotiation import AGREED
from pex.domain.orders import Operation, VMOrder
from pex.domain.read_models import InstanceView, instance_view
from pex.domain.statuses import InstanceStatus

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX


class InstanceOperations:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app

    def order(self, vm_id: Any, userid: str, operation: Operation, *, is_admin: bool = False) -> VMOrder:
        """A user's start, stop, reboot or delete of one VM; delete is recorded at once."""
        instance = self.app.read.visible_instance(vm_id, userid, is_admin)
        if instance.status == InstanceStatus.DELETED:
            raise ProtocolViolation("the instance was deleted")
        if not instance.node and operation is not Operation.DELETE:
            raise ProtocolViolation(instance.reason or "the instance has no node to run on")
        reservation = self.app.view.reservations[instance.reservation_id]
        if operation is not Operation.DELETE and not (reservation.launched and reservation.status in AGREED):
            raise ProtocolViolation(
                f"an instance can be started, stopped or rebooted only while its reservation runs "
                f"(the reservation is {reservation.status.value}{'' if reservation.launched else ', not started'})")
        if operation is Operation.DELETE:
            loaded: Instance = self.app.load(instance.id)
            loaded.discard()
            self.app.commit(loaded)
        return self.app.read.order(instance, operation)

    def record_status(self, vm_id: Any, status: str, reason: str | None = None, *,
                      node: str | None = None) -> InstanceView:
        """What the hypervisor reported for a VM. A report from a node the instance has left
        (an order that was already under way when its node was lost) is ignored."""
        instance = self.app.read.visible_instance(vm_id, "", True)
        if node is not None and node != instance.node:
            return instance_view(instance)
        loaded: Instance = self.app.load(instance.id)
        loaded.record_status(status, reason)
        if loaded.pending_events:
            self.app.commit(loaded)
        return instance_view(self.app.view.instances[instance.id])
