"""NodeActor: one per hypervisor host. It owns the host's driver (one connection for the life of
the process), carries out VM orders on it one at a time, and reports what each VM did to the
Allocator, which records it. It has no thread of its own: the Dispatcher's pool of workers runs
it (`pex.actors.pool`), so a host's orders keep their order and different hosts' run in parallel.

Stopping is graceful first: a shutdown is sent, the VM is checked every second, and after the
grace period it is forced off. A VM whose reservation has ended and that is still shutting down
is forced off at once when the node boots the next reservation's VMs: the capacity is theirs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pykka

from pex.actors.allocator import Bundle
from pex.actors.calls import Call, CallServing, Reply, tell
from pex.actors.event_queue import EventQueue
from pex.actors.pool import PooledActor, Workers
from pex.domain.clock import SECOND, Clock, Millis
from pex.domain.errors import ProtocolViolation
from pex.domain.orders import Operation, VMOrder
from pex.domain.reconciling import SHUTTING_DOWN
from pex.drivers.base import Driver, DriverError, NodeInfo, NodeUnreachable, NoSuchVM, VMSpec, VMState
from pex.logs import about

if TYPE_CHECKING:
    from pex.actors.allocator import Allocator
    from pex.actors.dispatcher import Dispatcher

log = logging.getLogger(__name__)

CHECK_EVERY: Millis = SECOND  # how often a shutting-down VM is looked at


class NodeActor(CallServing, PooledActor):
    def __init__(self, name: str, uri: str, *, connect: Callable[[str], Driver], recorder: pykka.ActorRef[Allocator],
                 event_queue: pykka.ActorRef[EventQueue], clock: Clock, grace: Millis, workers: Workers,
                 dispatcher: pykka.ActorRef[Dispatcher] | None = None) -> None:
        super().__init__(workers)
        self.name, self.uri = name, uri
        self.connect = connect
        self.recorder = recorder  # the Allocator
        self.event_queue = event_queue
        self.clock = clock
        self.grace = grace
        self.driver: Driver | None = None
        self.problem: str | None = None  # why the host cannot be used, if it cannot
        self._stopping: dict[str, tuple[VMOrder, Millis]] = {}  # domain -> (order, forced off at)
        self._reconcile_asked = False  # set from libvirt's event thread, cleared here
        # VMs libvirt said changed, and to what if it said, not yet looked at (its thread appends)
        self._changes: deque[tuple[str, VMState | None]] = deque()
        self._reported: dict[str, str] = {}  # the status this actor last reported of each VM
        self.dispatcher = dispatcher  # told whether the host reports VM events (the VM monitor asks it)
        self._unsent: list[Call[Allocator, Any]] = []  # reports nobody waits on, sent together (`send_reports`)

    def on_start(self) -> None:
        try:
            self._connect()
        except DriverError:
            pass  # recorded in `problem`; every order retries the connection and reports failure

    def on_stop(self) -> None:
        self.send_reports()
        if self.driver is not None:
            self.driver.close()

    def _connect(self) -> Driver:
        if self.driver is None:
            try:
                self.driver = self.connect(self.uri)
                self.problem = None
            except DriverError as error:
                self.problem = str(error)
                raise
            if "events" in self.driver.capabilities:
                self.driver.watch(self._changed)
                self._say_watching(True)
        return self.driver

    def _drop_if_lost(self, error: BaseException) -> None:
        """A connection to a real host that broke (libvirtd restarted, the host rebooted) is
        opened afresh next time. A test:// host is never reopened: a new connection would be
        a fresh, empty copy of it."""
        if isinstance(error, NodeUnreachable) and self.driver is not None and not self.uri.startswith("test:"):
            self.driver.close()
            self.driver = None
            self._say_watching(False)

    def _say_watching(self, watching: bool) -> None:
        """Tell the Dispatcher whether this host's VM events reach us (from a new connection
        on, or no longer: its connection was dropped)."""
        if self.dispatcher is not None:
            name = self.name
            try:
                tell(self.dispatcher, lambda dispatcher: dispatcher.note_watching(name, watching))
            except pykka.ActorDeadError:
                pass  # stopping

    def _changed(self, domain: str, state: VMState | None = None) -> None:
        """A VM on the host changed (libvirt's event thread): look soon, once for a burst."""
        self._changes.append((domain, state))
        if not self._reconcile_asked:
            self._reconcile_asked = True
            try:
                tell(self.actor_ref, lambda host: host.look_at_changes())
            except Exception:  # stopping
                pass

    def look_at_changes(self) -> None:
        """Reconcile if a VM libvirt said changed is not as this actor last reported it. Most
        events are of our own orders (a boot is a "defined" and a "started" event), already
        reported: a boot storm's 20,000 events were as many reconciliations, each a listing and
        a judgement by the Allocator, for nothing. A VM's last event, when it says what the VM
        now is (it started: RUNNING), is taken at its word rather than asked again."""
        self._reconcile_asked = False
        latest: dict[str, VMState | None] = {}
        while self._changes:
            domain, state = self._changes.popleft()
            latest[domain] = state
        if self.driver is None:
            self.reconcile()
            return
        try:
            for domain, state in latest.items():
                if domain in self._stopping:
                    continue
                now = _as_status(state) if state is not None else self._status(self.driver, domain)
                if self._reported.get(domain) != now:
                    self.reconcile()
                    return
        except DriverError:
            self.reconcile()  # (it says what became of the host)

    # ------------------------------------------------------------------ orders

    def carry_out(self, order: VMOrder, reply: Reply | None = None) -> None:
        """Carry out one order and report the VM's state; `reply` gets the recorded instance
        (or the error, if the hypervisor refused)."""
        try:
            driver = self._connect()
            status, reason = self._perform(driver, order)
        except (DriverError, ProtocolViolation) as error:
            self._drop_if_lost(error)
            if order.operation is Operation.BOOT:  # nobody waits: the failure is the record
                log.warning("could not boot %s on %s: %s", order.domain, self.name, error,
                            extra=about(vm=order.vm_id, node=self.name))
                self._report(order, "CRASHED", f"could not boot on {self.name}: {error}", reply)
            elif reply is not None:
                reply(None, error)
            else:
                log.warning("%s of %s on %s failed: %s", order.operation.value, order.domain, self.name, error,
                            extra=about(vm=order.vm_id, node=self.name))
            return
        if status is None or not order.report:  # deleted, or a stray copy: only the record to show
            self.send_reports()
            vm_id = order.vm_id
            self.recorder.tell(Call(lambda allocator: allocator.app.read.instance(vm_id, "", is_admin=True), reply))
        else:
            self._report(order, status, reason, reply)

    def _perform(self, driver: Driver, order: VMOrder) -> tuple[str | None, str | None]:
        domain, operation = order.domain, order.operation
        if operation is Operation.BOOT:
            self._make_room(driver)
            state = driver.boot(VMSpec(domain, order.resources.cpus, order.resources.memory_mb,
                                       order.resources.disk_gb, self._template_for(domain, order.template)))
            return _as_status(state), None
        if operation is Operation.START:
            self._stopping.pop(domain, None)
            state = driver.state(domain)
            if state is VMState.MISSING:
                raise NoSuchVM(f"the VM {domain} is not on {self.name}")
            if state is VMState.PAUSED:
                driver.resume(domain)
            elif state is not VMState.RUNNING:
                driver.start(domain)
            return self._status(driver, domain), None
        if operation is Operation.REBOOT:
            if driver.state(domain) is not VMState.RUNNING:
                raise ProtocolViolation("the VM is not running")
            driver.reboot(domain)
            return self._status(driver, domain), None
        if operation in (Operation.STOP, Operation.END):
            return self._begin_stop(driver, order)
        assert operation is Operation.DELETE
        self._stopping.pop(domain, None)
        driver.undefine(domain)
        self._reported.pop(domain, None)
        return None, None

    @staticmethod
    def _template_for(domain: str, template: dict[str, Any]) -> dict[str, Any]:
        """The template as this VM boots it: its files must exist, and a console directory
        becomes this VM's console log."""
        for key in ("kernel", "initrd"):
            if template.get(key) and not Path(template[key]).is_file():
                raise DriverError(f"the template's {key} file {template[key]} does not exist")
        if template.get("console_dir"):
            Path(template["console_dir"]).mkdir(parents=True, exist_ok=True)
            return {**template, "console_log": str(Path(template["console_dir"]) / f"{domain}.log")}
        return template

    def _begin_stop(self, driver: Driver, order: VMOrder) -> tuple[str | None, str | None]:
        domain = order.domain
        state = driver.state(domain)
        if state in (VMState.RUNNING, VMState.PAUSED, VMState.SUSPENDED):
            driver.shutdown(domain)
            if driver.state(domain) in (VMState.RUNNING, VMState.PAUSED, VMState.SUSPENDED):
                deadline = self._stopping[domain][1] if domain in self._stopping else self.clock.now() + self.grace
                self._stopping[domain] = (order, deadline)  # asked again: the grace period still counts from the first
                self._check_later()
                return self._status(driver, domain), SHUTTING_DOWN
        return self._finish_stop(driver, order, None)

    def _finish_stop(self, driver: Driver, order: VMOrder, reason: str | None) -> tuple[str, str | None]:
        self._stopping.pop(order.domain, None)
        if order.operation is Operation.END and driver.state(order.domain) is not VMState.MISSING:
            driver.undefine(order.domain)
        return "HALTED", reason  # stopped by us, whatever the host calls a forced stop

    def check_stopping(self) -> None:
        """Timer: record VMs that have shut down, force off those past their grace period."""
        if self.driver is None:
            return
        now = self.clock.now()
        for domain, (order, deadline) in list(self._stopping.items()):
            try:
                state = self.driver.state(domain)
                if state in (VMState.RUNNING, VMState.PAUSED, VMState.SUSPENDED):
                    if now < deadline:
                        self.driver.shutdown(domain)  # again: a guest still booting ignores the first
                        continue
                    self.driver.destroy(domain)
                    status, reason = self._finish_stop(self.driver, order, "forced off after the grace period")
                else:
                    status, reason = self._finish_stop(self.driver, order, None)
            except DriverError as error:
                log.warning("stopping %s on %s: %s", domain, self.name, error, extra=about(vm=order.vm_id, node=self.name))
                continue
            self._report(order, status, reason, None)
        if self._stopping:
            self._check_later()

    def _make_room(self, driver: Driver) -> None:
        """Force off VMs of ended reservations that are still shutting down."""
        for domain, (order, _) in list(self._stopping.items()):
            if order.operation is Operation.END:
                driver.destroy(domain)
                status, reason = self._finish_stop(driver, order, "forced off: the next reservation starts")
                self._report(order, status, reason, None)

    def _check_later(self) -> None:
        key, due, me = ("stopping", self.name), self.clock.now() + CHECK_EVERY, self.actor_ref
        tell(self.event_queue, lambda queue: queue.arm(key, due, me, Call(lambda host: host.check_stopping())))

    # ------------------------------------------------------------------ reporting

    def _status(self, driver: Driver, domain: str) -> str:
        return _as_status(driver.state(domain))

    def _report(self, order: VMOrder, status: str, reason: str | None, reply: Reply | None) -> None:
        self._reported[order.domain] = status
        if not order.report:
            if reply is not None:
                reply(None, None)
            return
        vm_id, node = order.vm_id, self.name
        call: Call[Allocator, Any] = Call(
            lambda allocator: allocator.app.operations.record_status(vm_id, status, reason, node=node), reply)
        if reply is not None:  # (someone waits: at once, after the reports before it)
            self.send_reports()
            self.recorder.tell(call)
            return
        # Nobody waits: sent with the other reports of this host's queued orders, in one
        # message once they are carried out (`send_reports`, queued behind them).
        self._unsent.append(call)
        if len(self._unsent) == 1:
            try:
                tell(self.actor_ref, lambda host: host.send_reports())
            except pykka.ActorDeadError:
                self.send_reports()  # stopping

    def send_reports(self) -> None:
        """Hand the reports not yet sent to the Allocator, in order, in one message."""
        if self._unsent:
            calls, self._unsent = self._unsent, []
            self.recorder.tell(Bundle(calls))

    def reconcile(self) -> None:
        """List the host's VMs and have the Allocator judge the list against the record (sent
        from this thread, so every earlier report of ours is recorded first). VMs that must
        not run are removed here, unless already on their way out."""
        self._reconcile_asked = False
        self.send_reports()  # (recorded before the listing is judged)
        try:
            observed = self.domains()
        except DriverError:
            return  # an unreachable host is the node monitor's business
        # Once judged, the record says what the host does (a change made behind our back is
        # recorded): a later event is compared with that, not with our last report.
        self._reported = {domain: observed[domain] for domain in self._reported if domain in observed}
        busy = sorted(self._stopping)  # ours to settle: their stop is under way
        me = self.actor_ref

        def judged(orders: Any, error: BaseException | None) -> None:
            if error is not None:
                log.warning("reconciling %s failed: %s", self.name, error, extra=about(node=self.name))
            elif orders:
                try:
                    tell(me, lambda host: host.carry_out_all(orders))
                except pykka.ActorDeadError:
                    pass  # stopped meanwhile; the next start recovers the host

        name = self.name
        self.recorder.tell(Call(lambda allocator: allocator.app.hosts.reconcile(name, observed, busy), judged))

    def carry_out_all(self, orders: list[VMOrder]) -> None:
        for order in orders:
            if order.domain not in self._stopping:
                self.carry_out(order)

    def domains(self) -> dict[str, str]:
        """Every VM on the host and its state, as the host says (for reconciling and tests)."""
        try:
            return {name: state.value for name, state in self._connect().domains().items()}
        except DriverError as error:
            self._drop_if_lost(error)
            raise

    def info(self) -> NodeInfo:
        """What the host says of itself (for operators and the node monitor)."""
        try:
            return self._connect().node_info()
        except DriverError as error:
            self._drop_if_lost(error)
            raise


def _as_status(state: VMState) -> str:
    """The status recorded for a VM in `state` (one the host no longer has is HALTED)."""
    return "HALTED" if state is VMState.MISSING else state.value
