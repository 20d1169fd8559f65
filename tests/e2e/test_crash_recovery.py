"""Crash recovery under load: `openpex serve` is killed with SIGKILL at random moments, ten times,
while clients negotiate, confirm and activate short reservations. After every restart: no
confirmed reservation is lost, every start and end that fell due has happened, and (checked on
the store at the end) no node was ever over capacity."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pex.domain.application import OpenPEX
from pex.domain.capacity import CapacityModel
from pex.domain.projections import Projections
from pex.domain.clock import SystemClock
from pex.domain.sizes import Resources
from tests.support.server import ADMIN_PASSWORD, Server, rfc1123
from tests.unit.reference import BruteForceCluster

KILLS = 10
NODE = Resources(4, 8192, 100)
ADMIN = ("admin", ADMIN_PASSWORD)
DUE_SLACK = 2.5  # seconds for a restarted server to carry out what fell due (timers fire within 1 s)


class Clients:
    """Threads that negotiate as fast as the server lets them, and remember what they were told."""

    def __init__(self, server: Server, users: list[tuple[str, str]]) -> None:
        self.server = server
        self.users = users
        self.confirmed: dict[str, tuple[str, tuple[str, str]]] = {}  # id -> (userid, auth)
        self.activated: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.work, args=(i,), daemon=True) for i in range(len(users))]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def work(self, number: int) -> None:
        rng = random.Random(number)
        auth = self.users[number]
        while not self.stopping.is_set():
            try:
                self.one(rng, auth)
            except OSError:
                time.sleep(0.05)  # the server is down: wait for it to come back

    def one(self, rng: random.Random, auth: tuple[str, str]) -> None:
        start = datetime.now(timezone.utc) + timedelta(seconds=rng.uniform(1, 6))
        status, answer = self.server.request("POST", "/OpenPEX/reservations", {
            "duration": rng.randint(2, 6) * 1000, "numInstancesFixed": rng.randint(1, 3),
            "startTime": rfc1123(start), "template": "debian-12", "type": rng.choice(["SMALL", "MEDIUM"])}, auth=auth)
        if status != 201 or answer["reply"] != "ACCEPT":
            return
        rid = answer["proposal"]["id"]
        status, answer = self.server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=auth)
        if status == 200 and answer["reply"] == "REQUEST_SUCCESS":
            with self.lock:
                self.confirmed[rid] = (auth[0], auth)
            status, _ = self.server.request("PUT", f"/OpenPEX/reservations/{rid}/activate", auth=auth)
            if status == 200:
                with self.lock:
                    self.activated.add(rid)


def check_after_restart(server: Server, clients: Clients) -> tuple[int, int]:
    """Everything the clients were told survived; what fell due has happened. Returns how many
    reservations were checked and how many of them had started."""
    with clients.lock:
        confirmed, activated = dict(clients.confirmed), set(clients.activated)
    time.sleep(DUE_SLACK)
    checked_at = datetime.now(timezone.utc) - timedelta(seconds=DUE_SLACK)
    everything = {r["id"]: r for r in server.request("GET", "/OpenPEX/reservations", auth=ADMIN)[1]}
    instances = {i["vmID"]: i for i in server.request("GET", "/OpenPEX/instances", auth=ADMIN)[1]}
    started = 0
    for rid, (userid, _) in confirmed.items():
        assert rid in everything, f"confirmed reservation {rid} was lost"
        reservation = everything[rid]
        assert reservation["userid"] == userid
        assert reservation["status"] in ("CONFIRMED", "ACTIVATED", "EXPIRED"), reservation
        end = datetime.strptime(reservation["endTime"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=timezone.utc)
        begin = datetime.strptime(reservation["startTime"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=timezone.utc)
        if end + timedelta(seconds=1) <= checked_at:  # (RFC 1123 drops the milliseconds)
            assert reservation["status"] == "EXPIRED", f"{rid} ended at {end} but is {reservation['status']}"
        elif rid in activated and begin <= checked_at:
            started += 1
            states = {instances[i]["status"] for i in reservation["instances"]}
            assert "PENDING" not in states, f"{rid} started at {begin} but its VMs are {states}"
    return len(confirmed), started


def test_sigkill_at_random_moments_under_load_loses_nothing_and_keeps_every_guarantee(tmp_path):
    flags = ("--simulated-nodes", "2", "--node-spec", "cpus=4,memory=8192,disk=100", "--offer-ttl", "3",
             "--monitor-interval", "1")
    server = Server(tmp_path, *flags)
    users = [(f"user{i}", "correct-horse-battery-9") for i in range(6)]
    for name, password in users:
        assert server.request("POST", "/OpenPEX/users", {"username": name, "password": password})[0] == 201
    clients = Clients(server, users)
    clients.start()
    rng = random.Random(7)
    port = server.port
    summary = []
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.5))
            assert server.kill(signal.SIGKILL) == -signal.SIGKILL
            server = Server(tmp_path, *flags, port=port)
            clients.server = server
            summary.append(check_after_restart(server, clients))
    finally:
        clients.stop()
        server.kill(signal.SIGTERM)
    assert sum(started for _, started in summary) > 0, f"no reservation started during the test: {summary}"
    assert summary[-1][0] >= 20, f"too little was confirmed to prove anything: {summary}"

    # The whole history, from the store, event by event: no node over capacity at any instant.
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(Path(tmp_path) / "events.db")}
    app = OpenPEX(env, origin=SystemClock().now() - 3_600_000)
    try:
        replay = Projections(CapacityModel(origin=app.capacity.origin, bucket=app.capacity.bucket))
        position = 0
        while page := app.recorder.select_notifications(position + 1, 1000):
            for notification in page:  # each hold is checked against every node's capacity
                replay.apply_staged([app.mapper.to_domain_event(notification)])
            position = page[-1].id
        nodes = {node.name: NODE for node in app.catalogue.nodes()}
        held = {rid: r.held_allocation() for rid, r in app.view.reservations.items() if r.held_allocation()}
        assert BruteForceCluster(nodes, held).over_capacity() == []
        assert len([r for r in app.view.reservations.values() if r.booking]) >= summary[-1][0]
        print(json.dumps({"kills": KILLS, "confirmed": summary[-1][0], "started": [s for _, s in summary]}))
    finally:
        app.close()
