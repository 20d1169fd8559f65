"""Hosts at scale, over the real service and libvirt test-driver hosts: the node actors share a
bounded pool of workers, yet a host's orders keep their order, hosts work in parallel, a stuck
host holds up no other, the monitors' polls are spread over their interval, and a lost host is
judged and re-planned within two intervals. A simulated host whose file is taken away answers
nothing until it is back."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import pykka
import pytest

from pex.actors.calls import ask_sync, tell
from pex.actors.rounds import Rounds
from pex.domain.clock import HOUR, MINUTE
from pex.actors.pool import LAG
from pex.drivers.base import NodeInfo, NodeUnreachable, VMSpec, VMState
from pex.drivers.libvirt import LibvirtDriver
from pex.drivers.simulated import write_host
from pex.domain.sizes import Resources
from tests.support.service import T0, Service, book, eventually


class Watched(LibvirtDriver):
    """A real test-driver host whose boots and polls are timed, and that a test can hold stuck
    in a call (a hung hypervisor)."""

    calls: list[tuple[str, str, float, float]]  # (host, what, began, ended), shared by every host
    stuck: dict[str, threading.Event]  # host -> released when set
    boot_seconds = 0.0

    def _host(self) -> str:
        return Path(self.uri).stem

    def boot(self, spec: VMSpec) -> VMState:
        began = time.monotonic()
        time.sleep(self.boot_seconds)
        state = super().boot(spec)
        self.calls.append((self._host(), f"boot {spec.name}", began, time.monotonic()))
        return state

    def node_info(self) -> NodeInfo:
        held = self.stuck.get(self._host())
        if held is not None:
            held.wait(10)
        self.calls.append((self._host(), "info", time.monotonic(), time.monotonic()))
        return super().node_info()


@pytest.fixture
def watched():
    class Hosts(Watched):
        calls = []
        stuck = {}

    return Hosts


def node_refs(service: Service) -> dict[str, pykka.ActorRef]:
    return ask_sync(service.system.dispatcher, lambda dispatcher: dispatcher.node_refs())


def test_a_hosts_messages_keep_their_order_and_different_hosts_run_them_at_once(tmp_path, clock, watched):
    service = Service(tmp_path, clock, nodes=6, connect=watched)
    try:
        seen: dict[str, list[int]] = defaultdict(list)
        threads: dict[str, set[str]] = defaultdict(set)
        refs = node_refs(service)
        for i in range(200):  # interleaved: host after host, message after message
            for name, ref in refs.items():
                def note(host, i=i, name=name):
                    seen[name].append(i)
                    threads[name].add(threading.current_thread().name)
                    if i == 0:  # a host that waits on its hypervisor: the other hosts go on on other workers
                        time.sleep(4 * LAG)
                tell(ref, note)
        eventually(lambda: all(len(seen[name]) == 200 for name in refs), what="every message handled")
        assert all(seen[name] == list(range(200)) for name in refs), "each host's messages in the order sent"
        workers = set().union(*threads.values())
        assert all(name.startswith("NodeWorker") for name in workers)
        assert 1 < len(workers) <= service.system.dispatcher.proxy().workers.get().size, "a bounded pool, shared"
    finally:
        service.stop()


def test_a_boot_storm_boots_one_hosts_vms_in_turn_and_many_hosts_at_once(tmp_path, clock, watched):
    watched.boot_seconds = 0.05
    service = Service(tmp_path, clock, nodes=4, node_spec=Resources(4, 8192, 100), connect=watched)
    try:
        book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=16)  # four VMs on each host
        began = time.monotonic()
        service.advance_to(T0 + MINUTE)
        eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"] * 16,
                   what="all 16 RUNNING")
        took = time.monotonic() - began
        boots = [c for c in watched.calls if c[1].startswith("boot")]
        assert len(boots) == 16
        for host in {c[0] for c in boots}:
            mine = sorted((b, e) for h, _, b, e in boots if h == host)
            assert all(e <= b2 for (_, e), (b2, _) in zip(mine, mine[1:])), f"{host} boots one VM at a time"
        at_once = max(sum(b <= t < e for _, _, b, e in boots) for t in (b for _, _, b, _ in boots))
        assert at_once >= 2, "different hosts boot at the same time"
        assert took < 16 * watched.boot_seconds, "faster than one boot after another"
    finally:
        service.stop()


def test_a_stuck_host_holds_up_no_other(tmp_path, clock, watched):
    service = Service(tmp_path, clock, nodes=3, connect=watched)
    try:
        refs = node_refs(service)
        book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=12)  # four VMs on each host
        watched.stuck["sim01"] = threading.Event()
        tell(refs["sim01"], lambda host: host.info())  # hangs in the hypervisor, its boots behind it
        for name in ("sim02", "sim03"):
            began = time.monotonic()
            assert ask_sync(refs[name], lambda host: host.info(), timeout=5).cpus == 4
            assert time.monotonic() - began < 1
        service.advance_to(T0 + MINUTE)

        def running() -> dict[str, int]:
            found: dict[str, int] = defaultdict(int)
            for instance in service.instances("alice"):
                found[instance.node] += instance.status == "RUNNING"
            return dict(found)

        eventually(lambda: running() == {"sim01": 0, "sim02": 4, "sim03": 4}, what="the other hosts' VMs RUNNING")
        assert not [c for c in watched.calls if c[0] == "sim01" and c[1] != "info"], "sim01 is still stuck"
        watched.stuck["sim01"].set()
        eventually(lambda: running() == {"sim01": 4, "sim02": 4, "sim03": 4}, what="sim01's VMs once it answers")
    finally:
        for event in watched.stuck.values():
            event.set()
        service.stop()


def test_polls_are_spread_over_the_interval_and_each_host_polled_once_in_it(tmp_path, clock, watched):
    interval = 1.0
    service = Service(tmp_path, clock, nodes=20, connect=watched, monitor_interval=interval)
    try:
        began = time.monotonic()
        time.sleep(3 * interval)
        polls = sorted(((h, b - began) for h, what, b, _ in watched.calls if what == "info"), key=lambda p: p[1])
        firsts: dict[str, float] = {}
        for h, t in polls:
            firsts.setdefault(h, t)
        assert sorted(firsts) == [f"sim{i:02d}" for i in range(1, 21)]
        per_fifth: dict[int, int] = defaultdict(int)  # a round's first polls by fifth of the interval
        for t in firsts.values():
            per_fifth[int((t - min(firsts.values())) / interval * 5)] += 1
        assert len(per_fifth) >= 4 and max(per_fifth.values()) <= 8, f"spread, not a burst: {dict(per_fifth)}"
        gaps = defaultdict(list)  # host -> seconds between its polls
        last: dict[str, float] = {}
        for h, t in sorted(polls, key=lambda p: p[1]):
            if h in last:
                gaps[h].append(t - last[h])
            last[h] = t
        assert all(gaps[h] for h in firsts) and all(abs(g - interval) < 0.3 for gs in gaps.values() for g in gs), \
            f"each host once an interval: {dict(gaps)}"
    finally:
        service.stop()


def test_a_lost_host_is_down_and_its_bookings_replanned_within_two_intervals(tmp_path, clock, hosts):
    interval = 1.0
    service = Service(tmp_path, clock, nodes=3, connect=hosts.connect, monitor_interval=interval)
    try:
        rid = book(service, "alice", start=T0 + MINUTE, duration=HOUR, count=2)
        service.advance_to(T0 + MINUTE)
        eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"] * 2)
        lost = service.instances("alice")[0].node
        time.sleep(interval)  # every host answered a poll meanwhile
        hosts.unreachable.add(lost)
        pulled = time.monotonic()
        eventually(lambda: service.ask(lambda a: a.node(lost)).status == "DOWN"
                   and all(i.node not in ("", lost) for i in service.instances("alice")),
                   timeout=5 * interval, what="DOWN and re-planned", interval=0.005)
        took = time.monotonic() - pulled
        assert took <= 2 * interval, f"judged and re-planned after {took:.2f} s"
        eventually(lambda: [i.status for i in service.instances("alice")] == ["RUNNING"] * 2,
                   what="running on another host")
        assert service.ask(lambda a: a.app.read.reservation(rid, "alice")).status == "ACTIVATED"
        hosts.unreachable.clear()
        eventually(lambda: service.ask(lambda a: a.node(lost)).status == "UP", timeout=3 * interval,
                   what="UP once it answers")
    finally:
        service.stop()


def test_stopping_leaves_no_node_actor_and_no_worker(tmp_path, clock):
    service = Service(tmp_path, clock, nodes=5)
    assert len(node_refs(service)) == 5
    service.stop()
    assert not [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_class.__name__ == "NodeActor"]
    assert not [t for t in threading.enumerate() if t.name.startswith("NodeWorker")]


def test_a_simulated_host_whose_file_is_gone_answers_nothing_until_it_is_back(tmp_path):
    path = tmp_path / "hosts" / "h.xml"
    uri = write_host(path, "h", cpus=2, memory_mb=2048)
    driver = LibvirtDriver(uri)
    try:
        driver.define(VMSpec("vm1", 1, 512, 1))
        driver.start("vm1")
        path.rename(path.with_suffix(".lost"))
        with pytest.raises(NodeUnreachable):
            driver.node_info()
        with pytest.raises(NodeUnreachable):
            driver.state("vm1")
        path.with_suffix(".lost").rename(path)
        assert driver.state("vm1") is VMState.RUNNING, "the same host, with its VMs"
    finally:
        driver.close()


def test_rounds_hand_out_each_host_once_an_interval_a_share_at_each_tick():
    rounds: Rounds[int] = Rounds(1.0)
    begun = []

    def everyone() -> list[int]:
        begun.append(True)
        return list(range(10))

    handed = [rounds.due(t / 10, everyone) for t in range(0, 31)]  # ticks of a tenth, three intervals
    flat = [x for xs in handed for x in xs]
    assert flat[:30] == list(range(10)) * 3, "each host once a round, in its place"
    assert max(len(xs) for xs in handed) == 1, "a share at each tick"
    assert len(begun) == 3, "the list is asked for once a round"
