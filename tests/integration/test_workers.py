"""The node actors' pool (`pex.actors.pool.Workers`): a thread is woken only when the awake
ones will not get to a queued turn soon, so short turns do not wake all 32 threads (the idle
cost at ten thousand hosts), and a turn queued behind a stuck one still runs at once."""

from __future__ import annotations

import threading
import time

from pex.actors.pool import LAG, STALL, Workers


def test_a_turn_queued_behind_a_stuck_one_runs_within_moments_even_if_nothing_else_comes():
    workers = Workers(4, "Test")
    stuck, ran = threading.Event(), threading.Event()
    try:
        workers.run(lambda: stuck.wait(10))
        time.sleep(2 * STALL)  # (the one awake thread is now stuck in its turn)
        began = time.monotonic()
        workers.run(ran.set)
        assert ran.wait(1), "the second turn never ran"
        assert time.monotonic() - began < 20 * LAG
    finally:
        stuck.set()
        workers.shutdown()


def test_short_turns_are_run_by_one_thread_not_all():
    workers = Workers(32, "Test")
    threads: set[str] = set()
    done = threading.Event()
    try:
        for tick in range(20):  # ticks of 40 turns of a few microseconds, as polls come
            for _ in range(40):
                workers.run(lambda: threads.add(threading.current_thread().name))
            time.sleep(0.01)
        workers.run(done.set)
        assert done.wait(1)
        assert len(threads) <= 2, threads
    finally:
        workers.shutdown()


def test_shutdown_runs_what_was_queued_and_ends_every_thread():
    workers = Workers(8, "Test")
    ran: list[int] = []
    for i in range(100):
        workers.run(lambda i=i: ran.append(i))
    workers.shutdown()
    assert sorted(ran) == list(range(100))
    assert not [t for t in threading.enumerate() if t.name.startswith("Test")]
    workers.run(lambda: ran.append(-1))  # (after the shutdown: dropped)
    assert -1 not in ran
