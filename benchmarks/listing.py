"""Listing many instances through the real REST API, idle and during a boot storm.

    python -m benchmarks.listing [--instances 8000] [--nodes 100]

1. Starts `openpex serve` (SQLite, N simulated 128-CPU hosts) and has one user book the given
   number of SMALL instances in reservations of 80, all activated to start together a little
   later.
2. Idle: times one page (GET /OpenPEX/instances?limit=1000), every page (following the Link
   headers) and a filtered page (?status=PENDING&limit=100), each a few times.
3. At the start every VM boots at once (a boot storm: every host's actor defines and starts its
   VMs, every boot is recorded). Times the same reads while the storm lasts.
The last line is JSON. Issue 9 measured 4.7 s to list 8,000 instances during a boot storm in
one answer, before lists came in pages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.api import answer, every_page, free_port, request, start, stop, wait_up

PASSWORD = "bench-password-1"
PER_RESERVATION = 80
LEAD = 60  # seconds between booking and the start: room to book and to measure idle


def timed(read: Any, times: int = 3) -> list[float]:
    took = []
    for _ in range(times):
        began = time.perf_counter()
        read()
        took.append((time.perf_counter() - began) * 1000)
    return took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=8000)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="openpex-listing-"))
    port = free_port()
    os.environ.setdefault("OPENPEX_ADMIN_PASSWORD", "bench-admin-password")
    server = start([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(folder), "--port", str(port),
                    "--simulated-nodes", str(args.nodes), "--node-spec", "cpus=128,memory=131072,disk=2048",
                    "--monitor-interval", "5"], None, folder / "serve.log")
    user = ("bench", PASSWORD)
    try:
        wait_up(port, server)
        request(port, "POST", "/OpenPEX/users", {"username": "bench", "password": PASSWORD})
        unlimited = {"openOffers": 10**9, "heldInstanceHours": 10**9, "proposalsPerMinute": 10**9}
        request(port, "PUT", "/OpenPEX/users/bench/quota", unlimited, auth=("admin", os.environ["OPENPEX_ADMIN_PASSWORD"]))
        begin = (int(time.time()) + LEAD) * 1000
        for _ in range(args.instances // PER_RESERVATION):
            offer = request(port, "POST", "/OpenPEX/reservations", {
                "type": "SMALL", "template": "debian-12", "numInstancesFixed": PER_RESERVATION,
                "startTime": begin, "duration": 3_600_000}, auth=user)
            rid = offer["proposal"]["id"]
            request(port, "PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=user)
            request(port, "PUT", f"/OpenPEX/reservations/{rid}/activate", auth=user)
        booked = len(every_page(port, "/OpenPEX/instances", user))

        def reads() -> dict[str, list[float]]:
            return {
                "one page of 1000": timed(lambda: answer(port, "GET", "/OpenPEX/instances?limit=1000", auth=user)),
                "every page": timed(lambda: every_page(port, "/OpenPEX/instances", user)),
                "status=PENDING, 100": timed(lambda: answer(port, "GET", "/OpenPEX/instances?status=PENDING&limit=100",
                                                            auth=user)),
            }

        idle = reads()
        if time.time() * 1000 > begin:
            raise SystemExit(f"booking took longer than {LEAD} s: use fewer instances")
        time.sleep(max(0.0, begin / 1000 - time.time()))
        storm = reads()
        running = sum(1 for i in every_page(port, "/OpenPEX/instances", user) if i["status"] == "RUNNING")
    finally:
        stop(server)

    print(f"{booked} instances on {args.nodes} simulated hosts; {running} RUNNING after the storm's reads")
    print()
    print(f"{'read':<24}{'idle median ms':>16}{'storm median ms':>17}{'storm max ms':>14}")
    for name in idle:
        print(f"{name:<24}{statistics.median(idle[name]):>16.0f}{statistics.median(storm[name]):>17.0f}"
              f"{max(storm[name]):>14.0f}")
    print(json.dumps({"instances": booked, "nodes": args.nodes, "running_after": running,
                      "idle_ms": {k: [round(t) for t in v] for k, v in idle.items()},
                      "storm_ms": {k: [round(t) for t in v] for k, v in storm.items()}}))


if __name__ == "__main__":
    main()
