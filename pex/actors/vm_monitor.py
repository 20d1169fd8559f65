"""VMMonitor: has every NodeActor reconcile its host once an interval, the hosts spread over
it (`pex.actors.rounds`: a few at each tick, not all at once).

The NodeActor lists its host's VMs and hands the list to the Allocator in the same breath, so
every report it sent before the listing is recorded before the listing is judged: a VM seen
missing because it had not booted yet is never taken for one that vanished. The Allocator
records what changed behind OpenPEX's back (powered off from inside: HALTED; destroyed or
crashed: CRASHED; gone: CRASHED) and answers with orders for VMs that must not run, which go
to the Dispatcher.
"""

from __future__ import annotations

import logging
import time

import pykka

from pex.actors.calls import Call, CallableActor, ask_sync, tell
from pex.actors.dispatcher import Dispatcher
from pex.actors.node import NodeActor
from pex.actors.rounds import TICKS, Rounds
from pex.actors.ticker import Ticker

log = logging.getLogger(__name__)


class VMMonitor(CallableActor):
    def __init__(self, dispatcher: pykka.ActorRef[Dispatcher], *, interval: float = 5.0) -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.interval = interval
        self._rounds: Rounds[pykka.ActorRef[NodeActor]] = Rounds(interval)
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Call(lambda monitor: monitor.tick()), self.interval / TICKS,
                              "VMMonitor-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def tick(self) -> None:
        """Ask the nodes whose turn has come to reconcile."""
        self._reconcile(self._rounds.due(time.monotonic(), self._nodes))

    def sweep(self) -> int:
        """Ask every node to reconcile at once (for sweeps driven by hand); returns how many were asked."""
        return self._reconcile(self._nodes())

    def _nodes(self) -> list[pykka.ActorRef[NodeActor]]:
        return list(ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_refs()).values())

    @staticmethod
    def _reconcile(refs: list[pykka.ActorRef[NodeActor]]) -> int:
        for ref in refs:
            try:
                tell(ref, lambda host: host.reconcile())
            except pykka.ActorDeadError:
                pass  # the node was removed
        return len(refs)
