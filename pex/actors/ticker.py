"""A thread that tells an actor the same call at a fixed interval, for the monitors' polls."""

from __future__ import annotations

import logging
import threading

import pykka

from pex.actors.calls import A, Call

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, target: pykka.ActorRef[A], call: Call[A, object], interval: float, name: str) -> None:
        self.target, self.call, self.interval = target, call, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.target.tell(self.call)
            except pykka.ActorDeadError:
                return
