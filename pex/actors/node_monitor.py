"""NodeMonitor: polls every host (is it reachable, how loaded is it) at a fixed interval.

A host that fails two polls in a row (an error, or no answer for three intervals: its actor may
be busy with VM operations, so silence alone is judged slowly) is reported DOWN to the
ReservationManager, which records it and has the Allocator re-plan its bookings;
one that answers again is reported back UP. The latest load of each host is kept here for
operators (`loads`, and in GET /nodes through the Allocator); it is not recorded as events,
which would swamp the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykka

from pex.actors.allocator import Allocator
from pex.actors.calls import Call, CallableActor, ask_sync, tell
from pex.actors.dispatcher import Dispatcher
from pex.actors.reservation_manager import ReservationManager
from pex.actors.ticker import Ticker
from pex.drivers.base import NodeInfo
from pex.logs import about

log = logging.getLogger(__name__)

FAILURES_FOR_DOWN = 2
PATIENCE = 3  # poll intervals a host's actor may take to answer (it may be busy booting VMs)


class NodeMonitor(CallableActor):
    def __init__(self, allocator: pykka.ActorRef[Allocator], dispatcher: pykka.ActorRef[Dispatcher],
                 manager: pykka.ActorRef[ReservationManager], *, interval: float = 5.0) -> None:
        super().__init__()
        self.allocator, self.dispatcher, self.manager = allocator, dispatcher, manager
        self.interval = interval
        self._failures: dict[str, int] = {}
        self._round = 0  # which poll an answer belongs to: a late answer must not count for a later poll
        self._waiting: dict[str, tuple[int, float]] = {}  # polled, not answered: name -> (round, sent at)
        self._last_poll = float("-inf")
        self._loads: dict[str, NodeInfo] = {}
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Call(lambda monitor: monitor.poll()), self.interval,
                              "NodeMonitor-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def poll(self) -> None:
        """Ask every host how it is; the answers come back as `probed`. A host still busy with
        the last probe is not asked again; one silent for PATIENCE intervals has failed."""
        me = self.actor_ref
        now = time.monotonic()
        if now - self._last_poll < self.interval / 2:
            return  # ticks that queued up while this actor waited: one poll is enough
        self._last_poll = now
        for name, (_, sent) in list(self._waiting.items()):
            if now - sent > PATIENCE * self.interval:
                self._failed(name, f"did not answer within {PATIENCE * self.interval:.0f} s")
        self._round += 1
        for node in ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.nodes()):
            name = node.name
            if name in self._waiting:
                continue  # its actor is busy (a long VM operation): the answer will come
            try:
                ref = ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_ref(name))
            except Exception:
                continue  # not started yet
            self._waiting[name] = (self._round, now)

            def answered(result: Any, error: BaseException | None, name: str = name, round: int = self._round) -> None:
                try:
                    tell(me, lambda monitor: monitor.probed(name, round, result, None if error is None else str(error)))
                except pykka.ActorDeadError:
                    pass  # the monitor has stopped

            ref.tell(Call(lambda host: host.info(), answered))

    def probed(self, name: str, round: int, info: NodeInfo | None, error: str | None) -> None:
        if self._waiting.get(name, (None, 0))[0] != round:
            return  # an answer to a probe already counted as failed
        del self._waiting[name]
        if error is not None or info is None:
            self._failed(name, error or "no answer")
            return
        self._loads[name] = info
        tell(self.allocator, lambda allocator: allocator.note_load(name, info))
        if self._failures.pop(name, 0) >= FAILURES_FOR_DOWN or self._status(name) == "DOWN":
            log.info("node %s answers again", name, extra=about(node=name))
            tell(self.manager, lambda manager: manager.node_up(name))

    def unanswered(self) -> list[str]:
        return sorted(self._waiting)

    def forget_last_poll(self) -> None:
        """Let the next poll run even if one just did (for polls driven by hand)."""
        self._last_poll = float("-inf")

    def _failed(self, name: str, why: str) -> None:
        self._waiting.pop(name, None)
        self._failures[name] = self._failures.get(name, 0) + 1
        # (>=: if reporting it failed, the next failure reports it again)
        if self._failures[name] >= FAILURES_FOR_DOWN and self._status(name) != "DOWN":
            log.warning("node %s is down: %s", name, why, extra=about(node=name))
            tell(self.manager, lambda manager: manager.node_down(name, why))

    def _status(self, name: str) -> str | None:
        try:
            return ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.node(name).status)
        except Exception:
            return None

    def loads(self) -> dict[str, NodeInfo]:
        return dict(self._loads)
