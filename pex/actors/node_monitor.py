"""NodeMonitor: polls every host (is it reachable, how loaded is it) once an interval.

The polls are spread over the interval (`pex.actors.rounds`): each tick asks the hosts whose
turn has come, so ten thousand hosts are ten thousand small asks spread over five seconds, not
a burst. A host that fails two polls in a row (an error, or no answer for three intervals: its
actor may be busy with VM operations, so silence alone is judged slowly) is reported DOWN to
the ReservationManager, which records it and has the Allocator re-plan its bookings; after a
first failure the host is asked again half an interval later, not a whole one, so a lost host
is judged within one and a half intervals. One that answers again is reported back UP. The
latest load of each host is kept here for operators (`loads`, and in GET /nodes through the
Allocator, which is told them in bunches); it is not recorded as events, which would swamp
the log.

The hosts' answers are not sent to the monitor one message each (two thousand wake-ups a
second at ten thousand hosts): they are left in a queue the monitor empties at its next tick
(a fiftieth of an interval later), or when asked what is unanswered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import pykka

from pex.actors.allocator import Allocator
from pex.actors.calls import Call, CallableActor, ask_sync, tell
from pex.actors.dispatcher import Dispatcher
from pex.actors.node import NodeActor
from pex.actors.reservation_manager import ReservationManager
from pex.actors.rounds import TICKS, Rounds
from pex.actors.ticker import Ticker
from pex.drivers.base import NodeInfo
from pex.logs import about

log = logging.getLogger(__name__)

FAILURES_FOR_DOWN = 2
PATIENCE = 3  # poll intervals a host's actor may take to answer (it may be busy booting VMs)
RETRY_AFTER = 0.5  # of an interval: when a host that failed a poll is asked again


class NodeMonitor(CallableActor):
    def __init__(self, allocator: pykka.ActorRef[Allocator], dispatcher: pykka.ActorRef[Dispatcher],
                 manager: pykka.ActorRef[ReservationManager], *, interval: float = 5.0) -> None:
        super().__init__()
        self.allocator, self.dispatcher, self.manager = allocator, dispatcher, manager
        self.interval = interval
        self._failures: dict[str, int] = {}
        self._probes = 0  # numbers each probe: a late answer must not count for a later probe
        self._waiting: dict[str, tuple[int, float]] = {}  # probed, not answered: name -> (probe, sent at)
        self._retry: dict[str, float] = {}  # failed once: name -> when to ask again
        self._last_poll = float("-inf")
        self._rounds: Rounds[str] = Rounds(interval)
        self._hosts: dict[str, pykka.ActorRef[NodeActor]] = {}  # as of the last round's start
        self._statuses: dict[str, str] = {}  # recorded status, as of the last round's start and since told
        self._loads: dict[str, NodeInfo] = {}
        self._fresh: dict[str, NodeInfo] = {}  # loads not yet told to the Allocator
        # Answers to probes, put here by the workers that ran them: (name, probe, info, error).
        self._answers: deque[tuple[str, int, NodeInfo | None, str | None]] = deque()
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(self.actor_ref, Call(lambda monitor: monitor.tick()), self.interval / TICKS,
                              "NodeMonitor-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def tick(self) -> None:
        """Ask the hosts whose turn has come, and those that failed once and are due again."""
        self._take_answers()
        now = time.monotonic()
        self._judge_silence(now)
        for name in self._rounds.due(now, self._begin_round):
            self._probe(name, now)
        for name, due in list(self._retry.items()):
            if due <= now:
                del self._retry[name]
                self._probe(name, now)
        self._tell_loads()

    def poll(self) -> None:
        """Ask every host at once (for polls driven by hand). A host still busy with the last
        probe is not asked again; one silent for PATIENCE intervals has failed."""
        now = time.monotonic()
        if now - self._last_poll < self.interval / 2:
            return  # polls that queued up while this actor waited: one is enough
        self._last_poll = now
        self._take_answers()
        self._judge_silence(now)
        for name in self._begin_round():
            self._probe(name, now)

    def _begin_round(self) -> list[str]:
        """The hosts to poll, their actors and their recorded status (two asks a round, not two
        a host)."""
        self._statuses = ask_sync(self.allocator, lambda allocator: allocator.app.catalogue.node_statuses())
        self._hosts = ask_sync(self.dispatcher, lambda dispatcher: dispatcher.node_refs())
        return list(self._statuses)

    def _judge_silence(self, now: float) -> None:
        for name, (_, sent) in list(self._waiting.items()):
            if now - sent > PATIENCE * self.interval:
                self._failed(name, f"did not answer within {PATIENCE * self.interval:.0f} s")

    def _probe(self, name: str, now: float) -> None:
        ref = self._hosts.get(name)
        if ref is None or name in self._waiting:
            return  # not started yet; or its actor is busy (a long VM operation): the answer will come
        self._probes += 1
        probe, answers = self._probes, self._answers

        def answered(result: Any, error: BaseException | None) -> None:
            answers.append((name, probe, result, None if error is None else str(error)))  # (deque: thread-safe)

        try:
            ref.tell(Call(lambda host: host.info(), answered))
        except pykka.ActorDeadError:
            return  # the node was removed
        self._waiting[name] = (probe, now)

    def _take_answers(self) -> None:
        answers = self._answers
        while answers:
            self.probed(*answers.popleft())

    def probed(self, name: str, probe: int, info: NodeInfo | None, error: str | None) -> None:
        if self._waiting.get(name, (None, 0))[0] != probe:
            return  # an answer to a probe already counted as failed
        del self._waiting[name]
        if error is not None or info is None:
            self._failed(name, error or "no answer")
            return
        self._retry.pop(name, None)
        self._loads[name] = self._fresh[name] = info
        if self._failures.pop(name, 0) >= FAILURES_FOR_DOWN or self._statuses.get(name) == "DOWN":
            log.info("node %s answers again", name, extra=about(node=name))
            self._statuses[name] = "UP"
            tell(self.manager, lambda manager: manager.node_up(name))
        if not self._waiting:
            self._tell_loads()  # (a poll by hand is answered in full: its loads go at once)

    def _tell_loads(self) -> None:
        if self._fresh:
            loads, self._fresh = self._fresh, {}
            tell(self.allocator, lambda allocator: allocator.note_loads(loads))

    def unanswered(self) -> list[str]:
        self._take_answers()
        return sorted(self._waiting)

    def forget_last_poll(self) -> None:
        """Let the next poll run even if one just did (for polls driven by hand)."""
        self._last_poll = float("-inf")

    def _failed(self, name: str, why: str) -> None:
        self._waiting.pop(name, None)
        self._failures[name] = self._failures.get(name, 0) + 1
        # (>=: if reporting it failed, the next round's statuses say so and the next failure
        # reports it again)
        if self._failures[name] >= FAILURES_FOR_DOWN and self._statuses.get(name) != "DOWN":
            log.warning("node %s is down: %s", name, why, extra=about(node=name))
            self._statuses[name] = "DOWN"
            tell(self.manager, lambda manager: manager.node_down(name, why))
        elif self._failures[name] < FAILURES_FOR_DOWN:
            self._retry[name] = time.monotonic() + RETRY_AFTER * self.interval

    def loads(self) -> dict[str, NodeInfo]:
        self._take_answers()
        return dict(self._loads)
