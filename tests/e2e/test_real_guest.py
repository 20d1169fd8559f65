"""A reservation on a real hypervisor: `openpex serve --simulated-nodes 0 --node local=qemu:///system`
boots the tiny guest at the start time (its console says so), the user stops, starts and reboots
it, and at the end it gets an ACPI shutdown, the reservation is EXPIRED and libvirt has no domain
left for it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from pex.domain.orders import domain_name
from pex.drivers.libvirt import LibvirtDriver
from tests.support.server import rfc1123
from tests.support.service import eventually


def wait_for(check, timeout: float, what: str):
    return eventually(check, timeout, what, interval=0.2)


def test_a_reservation_boots_a_real_guest_at_its_start_and_shuts_it_down_at_its_end(servers, libvirtd, tmp_path):
    server = servers("--simulated-nodes", "0", "--node", "local=qemu:///system", "--grace", "20",
                     "--monitor-interval", "2")
    alice = ("alice", "correct-horse-battery-9")
    assert server.request("POST", "/OpenPEX/users", {"username": "alice", "password": "correct-horse-battery-9"})[0] == 201
    templates = {t["name"]: t for t in server.request("GET", "/OpenPEX/templates", auth=alice)[1]}
    assert templates["tiny-linux"]["kind"] == "kernel"
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=6)
    status, answer = server.request("POST", "/OpenPEX/reservations", {
        "duration": 75_000, "numInstancesFixed": 1, "startTime": rfc1123(start), "template": "tiny-linux",
        "type": "SMALL"}, auth=alice)
    assert answer["reply"] == "ACCEPT", answer
    rid = answer["proposal"]["id"]
    server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=alice)
    server.request("PUT", f"/OpenPEX/reservations/{rid}/activate", auth=alice)

    def instance():
        return server.request("GET", "/OpenPEX/instances", auth=alice)[1][0]

    vm = instance()
    assert vm["status"] == "PENDING" and vm["node"] == "local"
    wait_for(lambda: instance()["status"] == "RUNNING", 20, "the boot at the start time")
    assert datetime.now(timezone.utc) >= start
    domain = domain_name(vm["vmID"])
    console = Path(server.log.parent) / "consoles" / f"{domain}.log"
    wait_for(lambda: console.is_file() and "openpex-guest: up" in console.read_text(errors="replace"), 60,
             "the guest's userspace on its console")

    stopped = server.request("PUT", f"/OpenPEX/instances/{vm['vmID']}/stop", auth=alice)[1]
    assert stopped["status"] in ("RUNNING", "HALTED")  # an ACPI shutdown takes a moment
    wait_for(lambda: instance()["status"] == "HALTED", 30, "the stop")
    assert server.request("PUT", f"/OpenPEX/instances/{vm['vmID']}/start", auth=alice)[1]["status"] == "RUNNING"
    wait_for(lambda: "openpex-guest: up" in console.read_text(errors="replace"), 60, "the guest up again")
    assert server.request("PUT", f"/OpenPEX/instances/{vm['vmID']}/reboot", auth=alice)[1]["status"] == "RUNNING"

    end = start + timedelta(seconds=75)
    wait_for(lambda: server.request("GET", f"/OpenPEX/reservations/{rid}", auth=alice)[1]["status"] == "EXPIRED",
             (end - datetime.now(timezone.utc)).total_seconds() + 5, "the end")
    wait_for(lambda: instance()["status"] == "HALTED", 30, "the shutdown at the end")
    assert instance().get("reason") in (None, "forced off after the grace period")
    with LibvirtDriver("qemu:///system") as host:  # as an operator would look with virsh
        assert domain not in host.domains(), "libvirt still has the domain"
