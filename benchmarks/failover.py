"""Takeover time of the hot standby: how long after the writer's SIGKILL writes are accepted again.

    python -m benchmarks.failover [--kills 10] [--database postgresql://...] [--nodes 4]

Starts a private PostgreSQL server (or uses --database), a writer and a standby (`openpex
serve`, each with its own data dir). Each round: a write every 20 ms goes to the writer; at a
random moment the writer is SIGKILLed; the clock runs from the kill until the standby answers a
write with 201 (the lease's timeout, the takeover's catch-up, the timers, the hosts and their
reconciliation included); the killed process is restarted and waits as the new standby.
Prints a table of the rounds and p50/max, then one JSON line.

Target (issue 13): writes accepted again <= 5 s after the writer's death.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ADMIN_PASSWORD = "bench-admin-password"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """One `openpex serve` on the shared database."""

    def __init__(self, data_dir: Path, database: str, nodes: int) -> None:
        self.data_dir, self.database, self.nodes = data_dir, database, nodes
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        with open(self.data_dir / "serve.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                 "--database", self.database, "--simulated-nodes", str(self.nodes)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OPENPEX_ADMIN_PASSWORD": ADMIN_PASSWORD})
        deadline = time.monotonic() + 60
        while self.role() is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"openpex serve did not come up: see {self.data_dir / 'serve.log'}")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def role(self) -> str | None:
        try:
            status, health = self.request("GET", "/OpenPEX/health")
        except OSError:
            return None
        return health.get("role") if status == 200 else None

    def write(self, name: str) -> bool:
        try:
            return self.request("POST", "/OpenPEX/users", {"username": name, "password": "bench-password-1"})[0] == 201
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextlib.contextmanager
def database(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.support.postgres import private_server_url

    with private_server_url() as url:
        yield url


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=4, help="simulated hosts (connected and reconciled at takeover)")
    parser.add_argument("--database", help="postgresql://... (default: a private server for the run)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="openpex-failover-"))
    with database(args.database) as url:
        pair = [Process(folder / "a", url, args.nodes), Process(folder / "b", url, args.nodes)]
        try:
            pair[0].start()
            pair[1].start()
            rounds: list[dict[str, Any]] = []
            written = 0
            for number in range(args.kills):
                writer = next(i for i in (0, 1) if pair[i].role() == "writer")
                standby = pair[1 - writer]
                until = time.monotonic() + rng.uniform(0.5, 2.0)
                while time.monotonic() < until:  # writes under way when the kill comes
                    written += pair[writer].write(f"w{written}")
                    time.sleep(0.02)
                pair[writer].kill()
                killed = time.monotonic()
                while not standby.write(f"probe{number}"):
                    if time.monotonic() - killed > 60:
                        raise SystemExit("the standby did not take over within 60 s")
                    time.sleep(0.02)
                took = time.monotonic() - killed
                rounds.append({"round": number, "killed": "ab"[writer], "takeover_s": round(took, 3)})
                pair[writer].start()  # back as the standby
                print(f"{number:<6} killed {'ab'[writer]}: writes accepted again after {took:6.2f} s "
                      f"(the restarted one: {pair[writer].role()})", flush=True)
        finally:
            for process in pair:
                process.stop()
    times = [r["takeover_s"] for r in rounds]
    print()
    print(f"{'kills':<8}{'p50 s':>8}{'max s':>8}{'min s':>8}")
    print(f"{len(times):<8}{percentile(times, 50):>8.2f}{max(times):>8.2f}{min(times):>8.2f}")
    print(json.dumps({"kills": len(times), "takeover_p50_s": percentile(times, 50), "takeover_max_s": max(times),
                      "takeover_min_s": min(times), "target_s": 5.0, "rounds": rounds}))


if __name__ == "__main__":
    main()
