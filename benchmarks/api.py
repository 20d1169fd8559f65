"""Negotiations per second through the real REST API, beside a bare aiohttp JSON POST handler.

    python -m benchmarks.api [--seconds 10] [--connections 32] [--nodes 100]

1. Starts `openpex serve` (SQLite, N simulated 32-CPU hosts, offers held 1 h) pinned to one core,
   registers a user, and drives POST /OpenPEX/reservations from `wrk` (pinned to the other core)
   with 32 connections for the given time. Every request is a real negotiation: a proposal of
   1-4 instances of a random size, 1-24 h, starting at a random time in the next 30 days, answered
   ACCEPT, COUNTER or REJECT with the hold appended to the store before the reply.
2. Starts a bare aiohttp server with one JSON POST handler (parse, answer) on the same core and
   drives it the same way: the ceiling of the HTTP stack on this machine.
3. Prints both (req/s, p50, p99, non-2xx), their ratio and how the negotiations were answered;
   the last line is JSON.

Target (issue 3): >= 1,000 negotiations/s with p99 <= 50 ms on one core.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PASSWORD = "bench-password-1"

BARE_SERVER = textwrap.dedent("""
    import sys
    from aiohttp import web

    async def echo(request):
        body = await request.json()
        return web.json_response({"reply": "ACCEPT", "proposal": body}, status=201)

    app = web.Application()
    app.router.add_post("/OpenPEX/reservations", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")

WRK_SCRIPT = textwrap.dedent("""
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Basic %(token)s"
    local sizes = {"SMALL", "MEDIUM", "LARGE", "XLARGE"}
    local base = %(base)d
    request = function()
      local body = string.format(
        '{"type": "%%s", "template": "debian-12", "numInstancesFixed": %%d, "numInstancesOption": %%d, '
        .. '"startTime": %%d, "duration": %%d}',
        sizes[math.random(1, 4)], math.random(1, 4), math.random(0, 1),
        base + math.random(0, 30 * 24 * 60) * 60000, math.random(1, 24) * 3600000)
      return wrk.format(nil, nil, nil, body)
    end
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, process: subprocess.Popen[bytes], path: str = "/OpenPEX/health") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not come up within 60 s")


def request(port: int, method: str, path: str, body: Any = None, auth: tuple[str, str] | None = None) -> Any:
    return answer(port, method, path, body, auth)[0]


def answer(port: int, method: str, path: str, body: Any = None,
           auth: tuple[str, str] | None = None) -> tuple[Any, str | None]:
    """The JSON body and the Link header (the next page of a list) of one request."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as response:
        link = response.headers.get("Link")
        return json.loads(response.read()), link[1:link.index(">")] if link else None


def every_page(port: int, path: str, auth: tuple[str, str]) -> list[Any]:
    """Every item of a list, following its pages."""
    items: list[Any] = []
    following: str | None = path
    while following:
        page, following = answer(port, "GET", following, auth=auth)
        items += page
    return items


def ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, script: Path, seconds: int, connections: int, core: int | None) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
               f"http://127.0.0.1:{port}/OpenPEX/reservations"]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    latencies = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)$", output, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms(latencies["50"]), "p99_ms": ms(latencies["99"]),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(command: list[str], core: int | None, log: Path) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def propose_script(folder: Path) -> Path:
    """The wrk script that proposes as the benchmark's user, written into `folder`."""
    token = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    script = folder / "propose.lua"
    script.write_text(WRK_SCRIPT % {"token": token, "base": (int(time.time()) + 3600) * 1000})
    return script


def drive_openpex(folder: Path, script: Path, seconds: int, connections: int, nodes: int, server_core: int,
                  load_core: int | None, serve_flags: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, int]]:
    """`openpex serve` (data dir `folder`, plus `serve_flags`) on `server_core`, driven by wrk
    from `load_core`: wrk's figures and how the negotiations were answered."""
    port = free_port()
    env_server = [sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(folder), "--port", str(port),
                  "--simulated-nodes", str(nodes), "--node-spec", "cpus=32,memory=131072,disk=2048",
                  "--offer-ttl", "3600", *serve_flags]
    os.environ.setdefault("OPENPEX_ADMIN_PASSWORD", "bench-admin-password")
    server = start(env_server, server_core, folder / "serve.log")
    try:
        wait_up(port, server)
        request(port, "POST", "/OpenPEX/users", {"username": "bench", "password": PASSWORD})
        # One user stands for many here: lift the per-user quotas that would otherwise stop it.
        unlimited = {"openOffers": 10**9, "heldInstanceHours": 10**9, "proposalsPerMinute": 10**9}
        request(port, "PUT", "/OpenPEX/users/bench/quota", unlimited, auth=("admin", os.environ["OPENPEX_ADMIN_PASSWORD"]))
        request(port, "GET", "/OpenPEX/types", auth=("bench", PASSWORD))  # verify once; later calls hit the cache
        cpu = cpu_seconds(server.pid)
        openpex = run_wrk(port, script, seconds, connections, load_core)
        openpex["server_cpu_s"] = round(cpu_seconds(server.pid) - cpu, 3)  # under load (all its threads)
        replies: dict[str, int] = {}
        for reservation in every_page(port, "/OpenPEX/reservations", ("bench", PASSWORD)):
            replies[reservation["status"]] = replies.get(reservation["status"], 0) + 1
    finally:
        stop(server)
    return openpex, replies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("benchmarks.api needs wrk: apt-get install -y wrk")
    cores = sorted(os.sched_getaffinity(0))
    server_core, load_core = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], None)

    folder = Path(tempfile.mkdtemp(prefix="openpex-api-"))
    script = propose_script(folder)
    openpex, replies = drive_openpex(folder, script, args.seconds, args.connections, args.nodes, server_core, load_core)

    bare_port = free_port()
    (folder / "bare.py").write_text(BARE_SERVER)
    bare = start([sys.executable, str(folder / "bare.py"), str(bare_port)], server_core, folder / "bare.log")
    try:
        wait_up(bare_port, bare, "/OpenPEX/reservations")
        plain = run_wrk(bare_port, script, args.seconds, args.connections, load_core)
    finally:
        stop(bare)

    print(f"{args.connections} connections for {args.seconds} s each; server on core {server_core}, "
          f"wrk on core {load_core}; {args.nodes} simulated 32-CPU hosts; SQLite store")
    print()
    print(f"{'server':<32}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for name, result in (("openpex POST /reservations", openpex), ("bare aiohttp JSON POST", plain)):
        print(f"{name:<32}{result['rps']:>10.0f}{result['p50_ms']:>10.2f}{result['p99_ms']:>10.2f}{result['non_2xx']:>10}")
    ratio = openpex["rps"] / plain["rps"] if plain["rps"] else None
    print()
    print(f"openpex / bare throughput: {ratio:.2f}" if ratio else "no bare figure")
    print("negotiations answered: " + ", ".join(f"{k} {v}" for k, v in sorted(replies.items())))
    print(json.dumps({"connections": args.connections, "seconds": args.seconds, "nodes": args.nodes,
                      "openpex": openpex, "bare": plain, "throughput_ratio": round(ratio, 3) if ratio else None,
                      "statuses": replies}))


if __name__ == "__main__":
    main()
