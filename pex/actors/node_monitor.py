"""NodeMonitor: polls every host (is it reachable, how loaded is it) at a fixed interval.

A host that fails two polls in a row (or leaves one unanswered until the next) is reported
DOWN to the ReservationManager, which records it and has the Allocator re-plan its bookings;
one that answers again is reported back UP. The latest load of each host is kept here for
operators (`loads`); it is not recorded as events, which would swamp the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from pex.actors.calls import Call, CallableActor, ask_sync
from pex.actors.ticker import Ticker

log = logging.getLogger(__name__)

FAILURES_FOR_DOWN = 2


class NodeMonitor(CallableActor):
    def __init__(self, allocator: pykka.ActorRef[Any], dispatcher: pykka.ActorRef[Any],
                 manager: pykka.ActorRef[Any], *, interval: float = 5.0) -> None:
        super().__init__()
        self.allocator, self.dispatcher, self.manager = allocator, dispatcher, manager
        self.interval = interval
        self._failures: dict[str, int] = {}
        self._waiting: set[str] = set()  # polled, not answered yet
        self._loads: dict[str, dict[str, Any]] = {}
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Call("poll"), self.interval, "NodeMonitor-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def poll(self) -> None:
        """Ask every host how it is; the answers come back as `probed`."""
        me = self.actor_ref
        for name in list(self._waiting):  # no answer since the last poll counts as a failure
            self._failed(name, "did not answer within one poll interval")
        for node in ask_sync(self.allocator, "nodes"):
            name = node["name"]
            try:
                ref = ask_sync(self.dispatcher, "node_ref", name)
            except Exception:
                continue  # not started yet
            self._waiting.add(name)

            def answered(result: Any, error: BaseException | None, name: str = name) -> None:
                me.tell(Call("probed", (name, result, None if error is None else str(error))))

            ref.tell(Call("info", reply=answered))

    def probed(self, name: str, info: dict[str, Any] | None, error: str | None) -> None:
        if name not in self._waiting:
            return  # counted as a failure already
        self._waiting.discard(name)
        if error is not None:
            self._failed(name, error)
            return
        self._loads[name] = info or {}
        if self._failures.pop(name, 0) >= FAILURES_FOR_DOWN or self._status(name) == "DOWN":
            log.info("node %s answers again", name)
            self.manager.tell(Call("node_up", (name,)))

    def _failed(self, name: str, why: str) -> None:
        self._waiting.discard(name)
        self._failures[name] = self._failures.get(name, 0) + 1
        if self._failures[name] == FAILURES_FOR_DOWN and self._status(name) != "DOWN":
            log.warning("node %s is down: %s", name, why)
            self.manager.tell(Call("node_down", (name, why)))

    def _status(self, name: str) -> str | None:
        try:
            return ask_sync(self.allocator, "node", name)["status"]
        except Exception:
            return None

    def loads(self) -> dict[str, dict[str, Any]]:
        return dict(self._loads)
