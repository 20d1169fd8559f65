"""VMMonitor: has every NodeActor reconcile its host once an interval, the hosts spread over
it (`pex.actors.rounds`: a few at each tick, not all at once). A host whose VM events reach its
actor (the Dispatcher knows which) is reconciled only every LISTED_EVERY rounds: any change on
it, ours or behind our back, already has it reconciled within moments (`NodeActor._changed`),
so the round is only the safety net for an event lost. A sweep by hand reconciles every host.

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
import zlib

import pykka

from pex.actors.calls import Call, CallableActor, ask_sync, tell
from pex.actors.dispatcher import Dispatcher
from pex.actors.node import NodeActor
from pex.actors.rounds import TICKS, Rounds
from pex.actors.ticker import Ticker

log = logging.getLogger(__name__)

# With a 5 s interval, a host that reports events is listed every 30 s: at ten thousand hosts
# a listing and its judgement for each host every round was a third of the idle service's CPU.
LISTED_EVERY = 6


class VMMonitor(CallableActor):
    def __init__(self, dispatcher: pykka.ActorRef[Dispatcher], *, interval: float = 5.0) -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.interval = interval
        self._rounds: Rounds[pykka.ActorRef[NodeActor]] = Rounds(interval)
        self._round = 0  # rounds begun
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Call(lambda monitor: monitor.tick()), self.interval / TICKS,
                              "VMMonitor-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def tick(self) -> None:
        """Ask the nodes whose turn has come to reconcile."""
        self._reconcile(self._rounds.due(time.monotonic(), self._next_round))

    def sweep(self) -> int:
        """Ask every node to reconcile at once (for sweeps driven by hand); returns how many were asked."""
        return self._reconcile(list(ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_refs()).values()))

    def _next_round(self) -> list[pykka.ActorRef[NodeActor]]:
        """The nodes this round reconciles: every node whose events do not reach its actor, and
        a LISTED_EVERY-th of the others (each in its turn, by a hash of its name, so the
        listings are spread over the rounds)."""
        refs, watching = ask_sync(self.dispatcher, lambda dispatcher: dispatcher.watched_refs())
        self._round += 1
        return [ref for name, ref in refs.items()
                if name not in watching or (zlib.crc32(name.encode()) + self._round) % LISTED_EVERY == 0]

    @staticmethod
    def _reconcile(refs: list[pykka.ActorRef[NodeActor]]) -> int:
        for ref in refs:
            try:
                tell(ref, lambda host: host.reconcile())
            except pykka.ActorDeadError:
                pass  # the node was removed
        return len(refs)
