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

With --compare-pricing (issue 12: pricing may add at most 10 % to decision p99 and to
negotiations/s), step 1 is run in rounds, the order rotated every round: rounds of unpriced
proposals and rounds of priced ones (a share of them, --max-price-share, with maxPrice: half
generous, 4x the rate card's flat price, so admission's reply stands; half tight, the flat
price, so wherever an hour is above the calm share the reply is a price COUNTER with a search
for a cheaper window), each round on a fresh `openpex serve` and data dir so that every round
starts from an empty cluster. --baseline-tree DIR adds rounds of unpriced proposals to the
server of another tree (e.g. `git archive` of the commit before pricing, unpacked in DIR): a
server that prices nothing at all.
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

# The same proposals; a share of them (`share`) with maxPrice: half generous (4x the card's flat
# price), half tight (the flat price: the least the terms can cost). Prices in cents, exact.
PRICED_WRK_SCRIPT = textwrap.dedent("""
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Basic %(token)s"
    local sizes = {"SMALL", "MEDIUM", "LARGE", "XLARGE"}
    local cents = {%(cents)s}
    local base = %(base)d
    local share = %(share)f
    request = function()
      local size = math.random(1, 4)
      local fixed, optional, hours = math.random(1, 4), math.random(0, 1), math.random(1, 24)
      local ceiling = ""
      if math.random() < share then
        local flat = cents[size] * (fixed + optional) * hours
        if math.random() < 0.5 then flat = 4 * flat end
        ceiling = string.format(', "maxPrice": "%%d.%%02d"', math.floor(flat / 100), flat %% 100)
      end
      local body = string.format(
        '{"type": "%%s", "template": "debian-12", "numInstancesFixed": %%d, "numInstancesOption": %%d, '
        .. '"startTime": %%d, "duration": %%d%%s}',
        sizes[size], fixed, optional, base + math.random(0, 30 * 24 * 60) * 60000, hours * 3600000, ceiling)
      return wrk.format(nil, nil, nil, body)
    end
""")
SIZES = ("SMALL", "MEDIUM", "LARGE", "XLARGE")


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


def start(command: list[str], core: int | None, log: Path, tree: Path | None = None) -> subprocess.Popen[bytes]:
    """`command` pinned to `core`; with `tree`, run from that tree's sources (its directory as
    the working directory and first on PYTHONPATH)."""
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    env = None
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin, env=env,
                                cwd=tree)


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


def priced_script(folder: Path, share: float) -> Path:
    """The wrk script that proposes as propose_script's does, a `share` of proposals with
    maxPrice (half generous, half tight), written into `folder`."""
    from pex.domain.pricing import DEFAULT_RATES  # (the card a new server seeds)

    token = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    cents = ", ".join(str(int(DEFAULT_RATES[size] * 100)) for size in SIZES)
    script = folder / "propose-priced.lua"
    script.write_text(PRICED_WRK_SCRIPT % {"token": token, "base": (int(time.time()) + 3600) * 1000,
                                           "cents": cents, "share": share})
    return script


def drive_openpex(folder: Path, script: Path, seconds: int, connections: int, nodes: int, server_core: int,
                  load_core: int | None, serve_flags: Sequence[str] = (),
                  tree: Path | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """`openpex serve` (data dir `folder`, plus `serve_flags`; from `tree`'s sources if given)
    on `server_core`, driven by wrk from `load_core`: wrk's figures and how the negotiations
    were answered."""
    port = free_port()
    env_server = [sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(folder), "--port", str(port),
                  "--simulated-nodes", str(nodes), "--node-spec", "cpus=32,memory=131072,disk=2048",
                  "--offer-ttl", "3600", *serve_flags]
    os.environ.setdefault("OPENPEX_ADMIN_PASSWORD", "bench-admin-password")
    server = start(env_server, server_core, folder / "serve.log", tree)
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


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def compare_pricing(folder: Path, args: argparse.Namespace, server_core: int,
                    load_core: int | None) -> dict[str, Any]:
    """Rounds of unpriced and priced proposals (and of the baseline tree's server, if given),
    each on a fresh server and data dir, the order rotated every round. Prints a table; returns
    the rounds, the means per kind and the ratios."""
    scripts = {"unpriced": propose_script(folder), "priced": priced_script(folder, args.max_price_share)}
    kinds = ["unpriced", "priced"]
    if args.baseline_tree:
        scripts["before"] = scripts["unpriced"]
        kinds.insert(0, "before")
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        shift = number % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            data = folder / f"round{number}-{kind}"
            data.mkdir()
            result, statuses = drive_openpex(data, scripts[kind], args.seconds, args.connections, args.nodes,
                                             server_core, load_core,
                                             tree=Path(args.baseline_tree).resolve() if kind == "before" else None)
            result["cpu_ms_per_negotiation"] = round(result["server_cpu_s"] * 1000 / max(1, result["requests"]), 4)
            rounds.append({"round": number, "kind": kind, **result, "statuses": statuses})
            shutil.rmtree(data, ignore_errors=True)
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_negotiation")
    means: dict[str, dict[str, float]] = {}
    for kind in kinds:
        mine = [r for r in rounds if r["kind"] == kind]
        means[kind] = {key: round(mean([r[key] for r in mine]), 3) for key in keys}
        rps = [r["rps"] for r in mine]
        means[kind]["rps_range"] = round((max(rps) - min(rps)) / mean(rps), 3)
    pairs = [("priced", "unpriced")] + ([("unpriced", "before"), ("priced", "before")] if args.baseline_tree else [])
    ratios = {f"{a}/{b}": {key: round(means[a][key] / means[b][key], 3) if means[b][key] else None for key in keys}
              for a, b in pairs}

    print(f"pricing comparison: {args.rounds} rounds of {', '.join(kinds)} (order rotated each round), "
          f"{args.connections} connections for {args.seconds} s each, a fresh server and data dir each; "
          f"priced: {args.max_price_share:.0%} of proposals with maxPrice (half generous, half tight)")
    if args.baseline_tree:
        print(f"before: the server of {args.baseline_tree}")
    print()
    print(f"{'round':<7}{'proposals':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/neg':>12}{'non-2xx':>9}  statuses")
    for r in rounds:
        print(f"{r['round']:<7}{r['kind']:<11}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['cpu_ms_per_negotiation']:>12.3f}{r['non_2xx']:>9}  "
              + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())))
    print()
    print(f"{'mean':<7}{'proposals':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/neg':>12}{'req/s range':>13}")
    for kind in kinds:
        m = means[kind]
        print(f"{'':<7}{kind:<11}{m['rps']:>9.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
              f"{m['cpu_ms_per_negotiation']:>12.3f}{m['rps_range']:>13.1%}")
    for name, r in ratios.items():
        print(f"{name}: req/s {r['rps']}, p50 {r['p50_ms']}, p99 {r['p99_ms']}, "
              f"CPU per negotiation {r['cpu_ms_per_negotiation']}")
    return {"rounds": rounds, "means": means, "ratios": ratios}


def bare_run(folder: Path, script: Path, args: argparse.Namespace, server_core: int,
             load_core: int | None) -> dict[str, Any]:
    """The bare aiohttp server on `server_core` under the same load: the HTTP stack's ceiling."""
    bare_port = free_port()
    (folder / "bare.py").write_text(BARE_SERVER)
    bare = start([sys.executable, str(folder / "bare.py"), str(bare_port)], server_core, folder / "bare.log")
    try:
        wait_up(bare_port, bare, "/OpenPEX/reservations")
        return run_wrk(bare_port, script, args.seconds, args.connections, load_core)
    finally:
        stop(bare)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--compare-pricing", action="store_true",
                        help="rounds of unpriced and priced proposals, alternated (issue 12)")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare-pricing: rounds of each kind")
    parser.add_argument("--max-price-share", type=float, default=2 / 3,
                        help="with --compare-pricing: the share of priced rounds' proposals that carry maxPrice")
    parser.add_argument("--baseline-tree", metavar="DIR",
                        help="with --compare-pricing: also rounds on the server of the tree in DIR (unpriced)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare aiohttp server")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("benchmarks.api needs wrk: apt-get install -y wrk")
    cores = sorted(os.sched_getaffinity(0))
    server_core, load_core = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], None)

    folder = Path(tempfile.mkdtemp(prefix="openpex-api-"))
    script = propose_script(folder)
    if args.compare_pricing:
        comparison = compare_pricing(folder, args, server_core, load_core)
        plain = None if args.no_bare else bare_run(folder, script, args, server_core, load_core)
        if plain:
            print(f"bare aiohttp JSON POST: {plain['rps']:.0f} req/s, p50 {plain['p50_ms']:.2f} ms, "
                  f"p99 {plain['p99_ms']:.2f} ms")
        print(json.dumps({"connections": args.connections, "seconds": args.seconds, "nodes": args.nodes,
                          "max_price_share": args.max_price_share, "baseline_tree": args.baseline_tree,
                          **comparison, "bare": plain}))
        return
    openpex, replies = drive_openpex(folder, script, args.seconds, args.connections, args.nodes, server_core, load_core)

    plain = bare_run(folder, script, args, server_core, load_core)

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
