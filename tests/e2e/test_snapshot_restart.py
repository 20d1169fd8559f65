"""A real `openpex serve` keeps a snapshot of its view (issue 13): a separate process writes it
once the log has grown enough; after a SIGKILL the next start reads it and the log after it,
and answers exactly what the killed one answered."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone

from pex.snapshots import FILE_NAME, position_of
from tests.support.server import ADMIN_PASSWORD, Server, rfc1123

ADMIN = ("admin", ADMIN_PASSWORD)
ALICE = ("alice", "alice-password-1")


def negotiate(server: Server, count: int) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    for i in range(count):
        status, answer = server.request("POST", "/OpenPEX/reservations", {
            "duration": 3_600_000, "startTime": rfc1123(start + timedelta(minutes=15 * i)), "numInstancesFixed": 1,
            "type": "SMALL", "template": "debian-12"}, auth=ALICE)
        assert status == 201, answer
        rid = answer["proposal"]["id"]
        if i % 3 != 2:
            assert server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=ALICE)[0] == 200
        if i % 5 == 4:
            assert server.request("DELETE", f"/OpenPEX/reservations/{rid}", auth=ALICE)[0] == 200


def seen(server: Server) -> dict[str, object]:
    found = {what: server.request("GET", f"/OpenPEX/{what}", auth=ADMIN)[1]
             for what in ("reservations", "instances", "nodes")}
    for node in found["nodes"]:
        node.pop("load", None)  # (what the host said at its last poll: not the record)
    return found


def test_a_restart_after_a_sigkill_reads_the_snapshot_and_the_tail_and_answers_alike(tmp_path):
    args = ("--simulated-nodes", "2", "--snapshot-every", "60", "--quota-proposals", "10000",
            "--quota-open-offers", "1000")
    server = Server(tmp_path, *args)
    try:
        assert server.request("POST", "/OpenPEX/users", {"username": "alice", "password": ALICE[1]})[0] == 201
        negotiate(server, 30)
        snapshot = tmp_path / FILE_NAME
        deadline = time.monotonic() + 40
        while position_of(snapshot) is None:  # (looked for every 10 s; written by its own process)
            assert time.monotonic() < deadline, f"no snapshot was written:\n{server.log.read_text()}"
            time.sleep(0.2)
        negotiate(server, 10)  # the tail: after the snapshot
        before = seen(server)
        server.kill(signal.SIGKILL)
        restarted = Server(tmp_path, *args)
        try:
            log = restarted.log.read_text()
            assert f"the view was read from the snapshot at position {position_of(snapshot)}" in log, log
            assert seen(restarted) == before
            negotiate(restarted, 2)  # and it decides on from there
        finally:
            restarted.close()
    finally:
        server.close()
