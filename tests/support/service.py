"""Running the real service in a test: actors, store, simulated libvirt hosts, manual clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pex.http.wire import proposal_in
from pex.actors.allocator import Allocator
from pex.actors.calls import ask_sync
from pex.actors.reservation_manager import ReservationManager
from pex.domain.clock import ManualClock, from_datetime
from pex.domain.orders import Operation
from pex.domain.read_models import InstanceView
from pex.domain.sizes import Resources
from pex.service import WRITER, Config, build

T = TypeVar("T")

T0 = from_datetime(datetime(2030, 1, 1, tzinfo=timezone.utc))
ADMIN_PASSWORD = "admin-password-1"


def eventually(check: Callable[[], T], timeout: float = 5.0, what: str = "the condition", interval: float = 0.01) -> T:
    """Poll `check` until it returns something truthy (actors answer asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s (last: {result!r})")
        time.sleep(interval)


class Service:
    """One running OpenPEX (actors + store) on a manual clock."""

    def __init__(self, data_dir: Path, clock: ManualClock, *, nodes: int = 2, node_spec: Resources = Resources(4, 8192, 100),
                 grace: float = 5.0, offer_ttl: float = 300.0, connect: Any = None, database: str | None = None,
                 monitor_interval: float = 3600.0) -> None:
        self.clock = clock
        # Monitors run, but tests poll them by hand (`poll_nodes`, `sweep_vms`) rather than wait.
        self.config = Config(data_dir=data_dir, simulated_nodes=nodes, node_spec=node_spec, grace=grace,
                             offer_ttl=offer_ttl, database=database, monitor_interval=monitor_interval)
        extra = {"connect": connect} if connect else {}
        self.lost: list[str] = []  # (a lost lease is recorded, not a SIGTERM to the test run)
        self.http, self.system, _ = build(self.config, clock=clock, on_lost=self.lost.append, **extra)

    @property
    def app(self):
        return self.system.app

    def ask(self, run: Callable[[Allocator], T]) -> T:
        """Run `run` on the Allocator and wait for its answer (as the HTTP layer does)."""
        return ask_sync(self.system.allocator, run)

    def manage(self, run: Callable[[ReservationManager], T]) -> T:
        """Run `run` on the ReservationManager and wait for its answer."""
        return ask_sync(self.system.manager, run)

    def operate(self, vm_id: Any, userid: str, operation: str, *, is_admin: bool = False) -> InstanceView:
        """A user's operation on one VM, answered by its NodeActor once the outcome is recorded."""
        done: Any = ask_sync(self.system.manager, lambda manager: manager.operate(
            vm_id, userid, Operation(operation), is_admin=is_admin))
        return done  # type: ignore[no-any-return]

    def fire(self) -> None:
        """Deliver the timers that are due on the manual clock now (without waiting for the ticker)."""
        ask_sync(self.system.event_queue, lambda queue: queue.fire_due())

    def advance_to(self, instant: int) -> None:
        self.clock.set(instant)
        self.fire()

    def poll_nodes(self) -> None:
        """One poll of every host, its answers in (a real interval gives them seconds)."""
        ask_sync(self.system.node_monitor, lambda monitor: monitor.forget_last_poll())
        ask_sync(self.system.node_monitor, lambda monitor: monitor.poll())
        eventually(lambda: not ask_sync(self.system.node_monitor, lambda monitor: monitor.unanswered()),
                   what="the hosts' answers")

    def sweep_vms(self) -> None:
        """One sweep of every host, judged: each node lists its host and hands the list to the
        Allocator in one message, so once a round trip through every node and then the Allocator
        is back, what the sweep found is recorded (the orders it gave may still be under way)."""
        ask_sync(self.system.vm_monitor, lambda monitor: monitor.sweep())
        for ref in ask_sync(self.system.dispatcher, lambda dispatcher: dispatcher.node_refs()).values():
            ask_sync(ref, lambda host: None)
        self.ask(lambda allocator: None)

    def domains(self, node: str) -> dict[str, str]:
        host = ask_sync(self.system.dispatcher, lambda dispatcher: dispatcher.node_ref(node))
        return ask_sync(host, lambda actor: actor.domains())

    def all_domains(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for node in self.ask(lambda a: a.nodes()):
            found.update(self.domains(node.name))
        return found

    def instances(self, userid: str) -> list[InstanceView]:
        return self.ask(lambda a: a.app.read.instances(userid))

    def events(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def stop(self) -> None:
        """As the service stops: the actors, then the store's lock (or lease) is let go."""
        self.system.stop()
        self.http[WRITER].release()


def book(service: Service, userid: str, *, start: int, duration: int, count: int = 1, size: str = "SMALL",
         activate: bool = True) -> str:
    """Propose, confirm (and activate) a reservation; returns its id."""
    answer = service.ask(lambda a: a.propose(userid, proposal_in({"type": size, "template": "debian-12", "numInstancesFixed": count,
                                         "startTime": start, "duration": duration})))
    assert answer.reply == "ACCEPT", answer
    rid = answer.reservation_id
    assert service.ask(lambda a: a.respond(rid, userid, "CONFIRM")).reply == "REQUEST_SUCCESS"
    if activate:
        assert service.ask(lambda a: a.app.lifecycle.activate(rid, userid)).status == "ACTIVATED"
    return rid
