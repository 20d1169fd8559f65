"""`openpex serve` as a real process: killed with SIGKILL while an activated reservation's start
is still ahead, restarted, and the VMs start on time; stopped cleanly with SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from tests.support.server import ADMIN_PASSWORD, rfc1123


def test_after_a_sigkill_and_a_restart_an_activated_reservation_starts_on_time(servers):
    alice = ("alice", "correct-horse-battery-9")
    first = servers("--simulated-nodes", "2")
    assert first.request("POST", "/OpenPEX/users", {"username": "alice", "password": "correct-horse-battery-9"})[0] == 201
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=8)
    status, answer = first.request("POST", "/OpenPEX/reservations", {
        "duration": 60_000, "numInstancesFixed": 2, "numInstancesOption": 0, "startTime": rfc1123(start),
        "template": "debian-12", "type": "SMALL"}, auth=alice)
    assert status == 201 and answer["reply"] == "ACCEPT", answer
    rid = answer["proposal"]["id"]
    assert first.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=alice)[1]["reply"] == "REQUEST_SUCCESS"
    assert first.request("PUT", f"/OpenPEX/reservations/{rid}/activate", auth=alice)[1]["status"] == "ACTIVATED"

    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    assert datetime.now(timezone.utc) < start - timedelta(seconds=2), "the kill came well before the start"

    second = servers("--simulated-nodes", "2")
    reservation = second.request("GET", f"/OpenPEX/reservations/{rid}", auth=alice)[1]
    assert reservation["status"] == "ACTIVATED" and len(reservation["instances"]) == 2
    while True:
        instances = second.request("GET", "/OpenPEX/instances", auth=alice)[1]
        now = datetime.now(timezone.utc)
        if all(i["status"] == "RUNNING" for i in instances):
            break
        assert now < start + timedelta(seconds=3), f"not running 3 s after the start: {instances}"
        assert {i["status"] for i in instances} <= {"PENDING", "RUNNING"}, instances  # (one may boot first)
        time.sleep(0.05)
    late = (now - start).total_seconds()
    assert -0.1 <= late <= 1.2, f"seen running {late:.2f} s after the start (timers fire within 1 s)"


def test_sigterm_stops_the_service_cleanly_and_a_restart_finds_everything(servers):
    alice = ("alice", "correct-horse-battery-9")
    first = servers("--simulated-nodes", "1", "--node-spec", "cpus=2,memory=4096,disk=50")
    first.request("POST", "/OpenPEX/users", {"username": "alice", "password": "correct-horse-battery-9"})
    start = datetime.now(timezone.utc) + timedelta(hours=1)
    status, answer = first.request("POST", "/OpenPEX/reservations", {
        "duration": 3_600_000, "numInstancesFixed": 2, "startTime": rfc1123(start), "template": "debian-12",
        "type": "SMALL"}, auth=alice)
    assert answer["reply"] == "ACCEPT"
    rid = answer["proposal"]["id"]
    first.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=alice)

    assert first.kill(signal.SIGTERM) == 0
    assert "stopped" in first.log.read_text()
    assert "Traceback" not in first.log.read_text()

    second = servers("--simulated-nodes", "1", "--node-spec", "cpus=2,memory=4096,disk=50")
    assert second.request("GET", f"/OpenPEX/reservations/{rid}", auth=alice)[1]["status"] == "CONFIRMED"
    # The node is still full in that hour: the booking came back with the store.
    _, again = second.request("POST", "/OpenPEX/reservations", {
        "duration": 3_600_000, "numInstancesFixed": 1, "startTime": rfc1123(start), "template": "debian-12",
        "type": "SMALL"}, auth=alice)
    assert again["reply"] == "COUNTER"
    nodes = second.request("GET", "/OpenPEX/nodes", auth=("admin", ADMIN_PASSWORD))[1]
    assert [(n["name"], n["cpus"], n["memoryMB"], n["diskGB"]) for n in nodes] == [("sim01", 2, 4096, 50)]


def test_serve_refuses_bad_flags_with_a_one_line_message(tmp_path):
    for flags, needle in ((["--node", "nouri"], "NAME=URI"), (["--node-spec", "cpus=zero"], "--node-spec"),
                          (["--simulated-nodes", "-1"], "whole number")):
        result = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path), *flags],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and needle in result.stderr, result.stderr


def test_a_configured_host_that_cannot_be_reached_is_registered_down(servers):
    server = servers("--simulated-nodes", "1", "--node", "far=qemu+ssh://nowhere.invalid/system")
    nodes = {n["name"]: n for n in server.request("GET", "/OpenPEX/nodes", auth=("admin", ADMIN_PASSWORD))[1]}
    assert nodes["far"]["status"] == "DOWN" and nodes["sim01"]["status"] == "UP"
