"""A reservation's life in time once it is negotiated: activation, cancellation, and what falls
due (offers lapse, reservations end, activated ones start). Timers are derived from the view's
due times, never kept anywhere else, so a restart loses none."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pex.domain.aggregates import Instance, Reservation
from pex.domain.clock import Millis
from pex.domain.orders import Operation, VMOrder
from pex.domain.projections import DueTimes
from pex.domain.read_models import ReservationView
from pex.domain.statuses import LIVE, InstanceStatus

if TYPE_CHECKING:
    from pex.domain.application import OpenPEX

# Instances whose VMs are, or are about to be, on a host.
ON_HOST = LIVE | {InstanceStatus.PENDING}
# Instances whose VMs a cancellation removes.
REMOVABLE = ON_HOST | {InstanceStatus.HALTED, InstanceStatus.CRASHED}


class Lifecycle:
    def __init__(self, app: OpenPEX) -> None:
        self.app = app

    def activate(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> ReservationView:
        reservation = self._load(reservation_id, userid, is_admin)
        reservation.activate()
        self.app.commit(reservation)
        return self.app.read.view_of(self.app.view.reservations[reservation.id])

    def cancel_orders(self, reservation_id: Any, userid: str, *, is_admin: bool = False) -> list[VMOrder]:
        """What cancelling this reservation must do to its VMs (ask before `cancel`)."""
        reservation = self.app.read.visible_reservation(reservation_id, userid, is_admin)
        if not reservation.launched:
            return []
        return self.app.read.orders(reservation.id, Operation.DELETE, REMOVABLE)

    def cancel(self, reservation_id: Any, userid: str, *, now: Millis, is_admin: bool = False) -> ReservationView:
        """DELETE of a reservation, at `now` (what it used by then is charged)."""
        reservation = self._load(reservation_id, userid, is_admin)
        reservation.cancel(now)
        instances: list[Instance] = [self.app.load(i) for i in self.app.view.instances_of.get(reservation.id, ())]
        for instance in instances:
            instance.discard()
        self.app.commit(reservation, *instances)
        return self.app.read.view_of(self.app.view.reservations[reservation.id])

    def _load(self, reservation_id: Any, userid: str, is_admin: bool) -> Reservation:
        reservation: Reservation = self.app.load(self.app.read.visible_reservation(reservation_id, userid, is_admin).id)
        return reservation

    # ------------------------------------------------------------------ what falls due

    def lapse_due(self, now: Millis) -> list[UUID]:
        """Let every offer whose hold has run out lapse, freeing its capacity."""
        return [r.id for r in self._due(self.app.view.offers_due, lambda r: r.lapse(now), now)]

    def expire_due(self, now: Millis) -> list[UUID]:
        """End every agreed reservation whose end has passed, freeing its capacity."""
        return [r.id for r in self._due(self.app.view.ends_due, lambda r: r.expire(now), now)]

    def launch_due(self, now: Millis) -> list[VMOrder]:
        """Launch every activated reservation whose start has come: its instances boot."""
        launched = self._due(self.app.view.starts_due, lambda r: r.launch(now), now)
        return [order for r in launched for order in self.app.read.orders(r.id, Operation.BOOT, ON_HOST)]

    def _due(self, due_times: DueTimes, step: Callable[[Reservation], None], now: Millis) -> list[Reservation]:
        """Take `step` on every reservation due by `now` in `due_times`, recorded together."""
        reservations: list[Reservation] = [self.app.load(i) for i in due_times.due(now)]
        for reservation in reservations:
            step(reservation)
        if reservations:
            self.app.commit(*reservations)
        return reservations

    def settle(self, now: Millis) -> list[VMOrder]:
        """Carry out all that has fallen due by `now`, in order: offers lapse, ended
        reservations expire (their VMs are stopped), started ones launch (their VMs boot).
        Returns the orders for the hypervisors; ends come before starts, so a node's VMs
        leave before the next reservation's arrive."""
        self.lapse_due(now)
        stops = [order for rid in self.expire_due(now) for order in self.app.read.orders(rid, Operation.END, ON_HOST)]
        return stops + self.launch_due(now)

    def next_due(self) -> Millis | None:
        """When the next offer lapses, reservation starts or ends (what a timer waits for)."""
        view = self.app.view
        times = [t for t in (view.offers_due.next(), view.ends_due.next(), view.starts_due.next()) if t is not None]
        return min(times, default=None)
