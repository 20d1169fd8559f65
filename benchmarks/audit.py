"""What the audit commands cost on a big store, and what keeping the Merkle tree costs the API.

    python -m benchmarks.audit --events 1000000 [--seconds 10] [--connections 32] [--nodes 100]

1. The store: N events (benchmarks/admission.py's filler: confirmed reservations, three events
   each, on up to 1,000 nodes, padded with templates to exactly N), signed as the service signs
   it, without actors: pex.audit.keeper.TreeKeeper turns of 6,000 events (a head a second of a
   busy service) until nothing is left, with a key made beside the store. Kept under var/
   (var/bench-audit-N.db, its key var/bench-audit-N.key.pem and .key.pub) for the next run.
   Each run signs a copy of the store afresh, timed: events hashed and signed per second by
   the keeper, the service's tree cost per event.
2. Replay: `openpex replay --position P --database STORE --format json` as a subprocess, to the
   end and to the midpoint (events/s, end to end: start-up, replay, printing the state), and
   `pex.query.Query.open(store, position=P)` in this process (what the command does).
3. Verify: `openpex verify --database STORE --format json` as a subprocess; it must exit 0
   and its last line must count every event of the store.
4. Follow: `openpex events --follow --database COPY --format json --after LAST` as a
   subprocess on a copy of the store, while a writer (OpenPEX on the same file) registers a
   template a few times a second: the time from each commit to its line on the follower's
   stdout (p50, p99, max).
5. The tree on the API benchmark: benchmarks/api.py's negotiation run with `openpex serve
   --head-interval 0` (no tree heads) and with the default (a head every second), alternated
   off, on, off, on, ... (--rounds pairs, 3 by default), each on a fresh data dir;
   negotiations/s of each, their ratio, the server's CPU time per negotiation (less at the
   mercy of other load on the machine), and what the keeper's own rate predicts. After each
   "on" run, `openpex head` must show a tree of (at least 99 % of) the events its store holds.

Every process that is measured is pinned to one core (the follower's writer and wrk to the other).
Targets (one core): replay and verify >= 100,000 events/s; the tree costs <= 5 % of the API's
negotiations/s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks import admission
from pex.audit.signing import public_key_path
from pex.domain.clock import DAY

VAR = Path(__file__).resolve().parent.parent / "var"
TURN = 6_000  # events a head: a head a second of a busy service
NODES = 1_000  # at most; fewer for small stores (100 reservations a node, as benchmarks/projection.py)


# ---------------------------------------------------------------------- the store

def store_paths(events: int) -> tuple[Path, Path]:
    """The cached store of `events` events and its signing key."""
    return VAR / f"bench-audit-{events}.db", VAR / f"bench-audit-{events}.key.pem"


def build(path: Path, events: int, seed: int = 1) -> dict[str, Any]:
    """A store of exactly `events` events: nodes, a template, confirmed reservations (three
    events each) and as many extra templates as make up the count. Built beside `path` and moved
    there when whole, so a build that was stopped leaves nothing to reuse."""
    from pex.domain.application import OpenPEX, Settings
    from pex.domain.quotas import Quota
    from pex.stores import writer_env

    nodes = max(2, min(NODES, events // 300))
    reservations = max(0, (events - nodes - 1) // 3)
    padding = events - nodes - 1 - 3 * reservations
    if padding < 0:
        raise SystemExit(f"--events must be at least {nodes + 1}")
    building = path.with_name(path.name + ".building")
    for stale in (building, building.with_name(building.name + "-wal"), building.with_name(building.name + "-shm")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    app = OpenPEX(writer_env(str(building)), origin=admission.ORIGIN - DAY,
                  settings=Settings(quota=Quota(10**9, 10**9, 10**9)))
    try:
        for i in range(nodes):
            app.catalogue.register_node(f"node{i:04d}", f"test:///bench/node{i:04d}.xml", admission.NODE)
        app.catalogue.register_template(admission.TEMPLATE)
        skipped, _ = admission.fill(app, random.Random(seed), reservations, 0.6)
        for i in range(padding):
            app.catalogue.register_template(f"padding-{i}")
        stored = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    if stored != events:
        raise SystemExit(f"built {stored} events, not {events}")
    with sqlite3.connect(building) as db:  # everything in the file itself before it is moved
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.replace(building, path)
    if stored_events(path) != events:
        raise SystemExit(f"{path} lost events when it was moved")
    return {"nodes": nodes, "reservations": reservations, "skipped": skipped,
            "build_s": round(time.perf_counter() - started, 1)}


def sign(store: Path, key_path: Path) -> dict[str, Any]:
    """Sign the store's log as the service's Notary does, without actors: keeper turns of
    TURN events until nothing is left (a keeper opened on a store with heads goes on from the
    last). Returns the events hashed, the heads stored and the time the turns took."""
    from pex.audit.keeper import TreeKeeper
    from pex.audit.ledger import Ledger
    from pex.audit.signing import signing_key

    key = signing_key(key_path, create=True)
    turns: list[float] = []
    hashed = 0
    cpu = time.process_time()
    with Ledger.open(str(store), write=True) as ledger:
        keeper = TreeKeeper(ledger, key)
        while True:
            started = time.perf_counter()
            done = keeper.turn(int(time.time() * 1000), most=TURN)
            turns.append(time.perf_counter() - started)
            hashed += done
            if done == 0:
                break
        size = keeper.frontier.size
    cpu = time.process_time() - cpu
    seconds = sum(turns)
    return {"hashed": hashed, "tree_size": size, "turns": len(turns), "sign_s": round(seconds, 3), "cpu_s": round(cpu, 3),
            "sign_events_per_s": round(hashed / seconds) if hashed and seconds else None,
            "turn_ms_p50": round(admission.percentile([t * 1000 for t in turns], 50) or 0, 2),
            "turn_ms_max": round(max(turns) * 1000, 2)}


def stored_events(store: Path) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        count = db.execute("SELECT count(*) FROM stored_events").fetchone()[0]
    db.close()
    return int(count)


def head_count(store: Path) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        found = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tree_heads'").fetchone()[0]
        heads = db.execute("SELECT count(*) FROM tree_heads").fetchone()[0] if found else 0
    db.close()
    return int(heads)


def prepared(events: int) -> tuple[Path, Path, dict[str, Any]]:
    """The cached store of `events` events, signed (built and signed now if need be)."""
    store, key_path = store_paths(events)
    store.parent.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {"built": False}
    if not store.exists():
        print(f"building {store} ({events} events) ...", flush=True)
        made |= build(store, events) | {"built": True}
        print(f"built in {made['build_s']} s: {made['nodes']} nodes, {made['reservations']} reservations", flush=True)
    if head_count(store) == 0:
        key_path.unlink(missing_ok=True)
        public_key_path(key_path).unlink(missing_ok=True)
        print(f"signing {store} ...", flush=True)
        made["first_signing"] = sign(store, key_path)
    elif not key_path.exists():
        raise SystemExit(f"{store} has tree heads but its key {key_path} is gone: remove the store to rebuild it")
    made["events"] = stored_events(store)
    made["heads"] = head_count(store)
    return store, key_path, made


# ---------------------------------------------------------------------- running the commands

def openpex(*arguments: str, core: int | None = None) -> list[str]:
    """An openpex command line (pinned to `core` by taskset, if given)."""
    pinned = [] if core is None else ["taskset", "-c", str(core)]
    return [*pinned, sys.executable, "-m", "pex.cli", *arguments]


def run_to(command: list[str], stdout: Path) -> tuple[int, float, float, str]:
    """Run `command`, its stdout into a file: exit status, wall and CPU seconds, stderr. (The
    CPU time tells, on a busy machine, how much of the wall time the command had the core.)"""
    with open(stdout, "wb") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, check=False, stdout=out, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return done.returncode, seconds, cpu, done.stderr.decode(errors="replace")


def last_line(path: Path) -> dict[str, Any]:
    """The last line of a file of JSON lines, read from its end (the file may be big)."""
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - 65536))
        tail = file.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(tail) if tail else {}


def replay_command(store: Path, position: int, core: int, folder: Path) -> dict[str, Any]:
    """`openpex replay --position P --format json`, end to end; its summary must be at P."""
    output = folder / f"replay-{position}.jsonl"
    status, seconds, cpu, errors = run_to(
        openpex("replay", "--position", str(position), "--database", str(store), "--format", "json", core=core), output)
    if status != 0:
        raise SystemExit(f"openpex replay --position {position} exited {status}: {errors.strip()[-500:]}")
    summary = last_line(output)
    if summary.get("kind") != "summary" or summary.get("position") != position:
        raise SystemExit(f"openpex replay --position {position} ended with {str(summary)[:300]}")
    lines = output.stat().st_size
    output.unlink()
    return {"position": position, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3), "output_bytes": lines,
            "events_per_s": round(position / seconds) if position else None}


def replay_in_process(store: Path, position: int) -> dict[str, Any]:
    """`Query.open(store, position=P)` here: the replay `openpex replay` runs."""
    import gc

    from pex.query import Query

    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    query = Query.open(str(store), position=position)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    reached = query.position
    query.close()
    del query
    gc.collect()
    if reached != position:
        raise SystemExit(f"Query.open(position={position}) stopped at {reached}")
    return {"position": position, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3),
            "events_per_s": round(position / seconds) if position else None}


def verify_command(store: Path, events: int, core: int, folder: Path) -> dict[str, Any]:
    """`openpex verify --format json`: exit 0, and its verdict counts every event."""
    output = folder / "verify.jsonl"
    status, seconds, cpu, errors = run_to(openpex("verify", "--database", str(store), "--format", "json", core=core), output)
    verdict = last_line(output)
    output.unlink()
    if status != 0 or verdict.get("events") != events or not verdict.get("ok"):
        raise SystemExit(f"openpex verify exited {status} with {str(verdict)[:300]} (expected {events} events); "
                         f"{errors.strip()[-300:]}")
    return {"events": events, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3),
            "events_per_s": round(events / seconds),
            "reason": verdict.get("reason")}


# ---------------------------------------------------------------------- events --follow

class Follower:
    """`openpex events --follow --format json` in a subprocess, each line timed as it arrives."""

    def __init__(self, store: Path, after: int, core: int) -> None:
        self.seen: dict[int, float] = {}  # position -> when its line was read (perf_counter)
        self.arrived = threading.Condition()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            openpex("events", "--follow", "--database", str(store), "--format", "json", "--after", str(after), core=core),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name="follower-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            now = time.perf_counter()
            position = json.loads(line)["position"]
            with self.arrived:
                self.seen[position] = now
                self.arrived.notify_all()

    def wait_for(self, position: int, timeout: float) -> float | None:
        """When the line of `position` was read (None if not within `timeout` seconds)."""
        deadline = time.perf_counter() + timeout
        with self.arrived:
            while position not in self.seen:
                left = deadline - time.perf_counter()
                if left <= 0 or self.process.poll() is not None:
                    return None
                self.arrived.wait(min(left, 0.5))
            return self.seen[position]

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")


def follow_lag(store: Path, count: int, rate: float, follower_core: int, writer_core: int,
               seed: int = 1) -> dict[str, Any]:
    """Start a follower after the store's last event, then register `count` templates at about
    `rate` a second from a writer on the same file: milliseconds from each commit to its line."""
    from pex.domain.application import OpenPEX
    from pex.stores import writer_env

    os.sched_setaffinity(0, {writer_core})
    rng = random.Random(seed)
    started = time.perf_counter()
    app = OpenPEX(writer_env(str(store)), origin=admission.ORIGIN - DAY)
    writer_open_s = time.perf_counter() - started
    try:
        last = app.recorder.max_notification_id() or 0
        follower = Follower(store, last, follower_core)
        try:
            app.catalogue.register_template("follow-ready")  # its line: the follower has caught up
            ready = follower.wait_for(last + 1, timeout=1800)
            if ready is None:
                raise SystemExit(f"openpex events --follow printed nothing: {follower.stop().strip()[-500:]}")
            ready_s = ready - follower.started
            lags: list[float] = []
            commits: list[float] = []
            for i in range(count):
                time.sleep(rng.uniform(0.5, 1.5) / rate)
                before = time.perf_counter()
                app.catalogue.register_template(f"follow-{i}")
                committed = time.perf_counter()
                commits.append((committed - before) * 1000)
                position = app.recorder.max_notification_id() or 0
                seen = follower.wait_for(position, timeout=60)
                if seen is None:
                    raise SystemExit(f"the follower did not print position {position} within 60 s")
                lags.append(max(0.0, seen - committed) * 1000)
        finally:
            errors = follower.stop()
        if follower.process.returncode not in (0, -15):
            raise SystemExit(f"openpex events --follow exited {follower.process.returncode}: {errors.strip()[-300:]}")
    finally:
        app.close()
    return {"events": len(lags), "rate_per_s": rate, "writer_open_s": round(writer_open_s, 2),
            "ready_s": round(ready_s, 2), "p50_ms": _ms(admission.percentile(lags, 50)),
            "p99_ms": _ms(admission.percentile(lags, 99)), "max_ms": _ms(max(lags)),
            "commit_p50_ms": _ms(admission.percentile(commits, 50))}


def _mean(values: Iterable[float]) -> float:
    found = list(values)
    return float(sum(found)) / len(found)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---------------------------------------------------------------------- the tree on the API

def api_rounds(rounds: int, seconds: int, connections: int, nodes: int, server_core: int,
               load_core: int | None) -> list[dict[str, Any]]:
    """benchmarks/api.py's negotiation run, alternately without tree heads and with them (a
    head a second, the default), each on a fresh data dir; after a run with heads, the latest
    head's tree size against the events its store holds."""
    from benchmarks import api

    runs = []
    for round_ in range(rounds):
        for tree in (False, True):
            folder = Path(tempfile.mkdtemp(prefix="openpex-audit-api-"))
            try:
                script = api.propose_script(folder)
                flags = () if tree else ("--head-interval", "0")
                result, replies = api.drive_openpex(folder, script, seconds, connections, nodes, server_core,
                                                    load_core, flags)
                events = stored_events(folder / "events.db")
                head = subprocess.run(openpex("head", "--data-dir", str(folder), "--format", "json"),
                                      check=False, capture_output=True, text=True)
                tree_size = json.loads(head.stdout.splitlines()[-1])["treeSize"] if head.returncode == 0 else None
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if tree and (tree_size is None or tree_size < 0.99 * events):
                raise SystemExit(f"with tree heads, the latest head covers {tree_size} of {events} events")
            if not tree and tree_size is not None:
                raise SystemExit(f"--head-interval 0 signed a head (of {tree_size} events)")
            run = {"round": round_ + 1, "tree": tree, "rps": result["rps"], "p50_ms": result["p50_ms"],
                   "p99_ms": result["p99_ms"], "non_2xx": result["non_2xx"], "requests": result["requests"],
                   "server_cpu_s": result["server_cpu_s"],
                   "cpu_ms_per_negotiation": round(1000 * result["server_cpu_s"] / max(1, result["requests"]), 4),
                   "events": events, "tree_size": tree_size, "statuses": replies}
            print(f"  api round {run['round']} tree {'on ' if tree else 'off'}: {run['rps']:,.0f} negotiations/s, "
                  f"p99 {run['p99_ms']:.1f} ms, {run['cpu_ms_per_negotiation']:.3f} CPU ms each; {events} events, "
                  f"head of {tree_size}", flush=True)
            runs.append(run)
    return runs


# ---------------------------------------------------------------------- the run

def signing_on_copy(store: Path, copy: Path) -> dict[str, Any]:
    """The keeper's cost, measured again on a copy of the store stripped of its heads (and the
    copy, signed, is where the follower runs)."""
    shutil.copyfile(store, copy)
    with sqlite3.connect(copy) as db:
        db.execute("DROP TABLE IF EXISTS tree_heads")
    db.close()
    return sign(copy, copy.with_name("key.pem"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store (default 1,000,000)")
    parser.add_argument("--follow-events", type=int, default=50, help="events the follower is timed on (default 50)")
    parser.add_argument("--follow-rate", type=float, default=5.0, help="of them a second, about (default 5)")
    parser.add_argument("--seconds", type=int, default=10, help="of each API run (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=100, help="simulated hosts of the API runs (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="API runs without and with the tree, alternated")
    parser.add_argument("--skip-api", action="store_true", help="leave out the API runs")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    core, other = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], None)
    os.sched_setaffinity(0, {core})  # the store is built and signed on one core, as the targets are for one

    store, _, made = prepared(args.events)
    events = made["events"]
    print(f"store {store}: {events} events under {made['heads']} signed heads"
          + (f" (built in {made['build_s']} s)" if made.get("built") else " (cached)"), flush=True)
    half = events // 2
    with tempfile.TemporaryDirectory(prefix="openpex-audit-") as scratch:
        folder = Path(scratch)
        copy = folder / "events.db"
        print("signing a copy ...", flush=True)
        signing = signing_on_copy(store, copy)
        print("replaying ...", flush=True)
        replays = [replay_command(store, position, core, folder) for position in (events, half, 0)]
        os.sched_setaffinity(0, {core})
        in_process = [replay_in_process(store, position) for position in (events, half)]
        print("verifying ...", flush=True)
        verified = verify_command(store, events, core, folder)
        print("following ...", flush=True)
        follow = follow_lag(copy, args.follow_events, args.follow_rate, core, other if other is not None else core)
    os.sched_setaffinity(0, set(cores))
    runs: list[dict[str, Any]] = []
    if not args.skip_api:
        print("API runs, tree heads off and on, alternated ...", flush=True)
        runs = api_rounds(args.rounds, args.seconds, args.connections, args.nodes, core, other)
    report(args, store, made, signing, replays, in_process, verified, follow, runs)


def report(args: argparse.Namespace, store: Path, made: dict[str, Any], signing: dict[str, Any],
           replays: list[dict[str, Any]], in_process: list[dict[str, Any]], verified: dict[str, Any],
           follow: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    events = made["events"]
    full, half, empty = replays
    print()
    print(f"{events:,} events ({store.name}), one core each")
    print(f"{'what':<48}{'events':>11}{'seconds':>9}{'CPU s':>9}{'events/s':>11}")
    rows = [("sign: TreeKeeper turns of 6,000 (in process)", signing["hashed"], signing),
            ("openpex replay --position END (subprocess)", full["position"], full),
            ("openpex replay --position MID (subprocess)", half["position"], half),
            ("openpex replay --position 0 (start-up alone)", 0, empty),
            ("Query.open(position=END) (in process)", in_process[0]["position"], in_process[0]),
            ("Query.open(position=MID) (in process)", in_process[1]["position"], in_process[1]),
            ("openpex verify (subprocess)", verified["events"], verified)]
    for label, count, figures in rows:
        seconds = figures.get("seconds", figures.get("sign_s"))
        rate = figures.get("events_per_s", figures.get("sign_events_per_s"))
        print(f"{label:<48}{count:>11,}{seconds:>9.2f}{figures['cpu_s']:>9.2f}{'-' if rate is None else format(rate, ','):>11}")
    print(f"(signing: {signing['turns']} turns, p50 {signing['turn_ms_p50']} ms, max {signing['turn_ms_max']} ms a turn)")
    print()
    print(f"openpex events --follow: {follow['events']} events at about {follow['rate_per_s']:g}/s; "
          f"commit to line p50 {follow['p50_ms']} ms, p99 {follow['p99_ms']} ms, max {follow['max_ms']} ms "
          f"(the follower caught up with the store in {follow['ready_s']} s; a commit took {follow['commit_p50_ms']} ms)")
    result: dict[str, Any] = {
        "events": events, "heads": made["heads"], "store": str(store), "built": made.get("built", False),
        "sign": signing, "replay": {"end": full, "mid": half, "startup": empty},
        "query_open": {"end": in_process[0], "mid": in_process[1]}, "verify": verified, "follow": follow,
    }
    if made.get("built"):
        result["build"] = {key: made[key] for key in ("nodes", "reservations", "skipped", "build_s")}
    if runs:
        print()
        print(f"API, {args.connections} connections for {args.seconds} s a run, {args.nodes} simulated hosts:")
        print(f"{'run':<6}{'tree':<6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/neg':>12}{'events':>9}{'head':>9}")
        for run in runs:
            print(f"{run['round']:<6}{'on' if run['tree'] else 'off':<6}{run['rps']:>9,.0f}{run['p50_ms']:>9.2f}"
                  f"{run['p99_ms']:>9.2f}{run['cpu_ms_per_negotiation']:>12.3f}{run['events']:>9}"
                  f"{run['tree_size'] if run['tree_size'] is not None else '-':>9}")
        off, on = [r for r in runs if not r["tree"]], [r for r in runs if r["tree"]]
        off_rps, on_rps = _mean(r["rps"] for r in off), _mean(r["rps"] for r in on)
        off_cpu, on_cpu = _mean(r["cpu_ms_per_negotiation"] for r in off), _mean(r["cpu_ms_per_negotiation"] for r in on)
        ratio = on_rps / off_rps
        # What the keeper's own rate predicts: its CPU per event times the events a negotiation records.
        per_negotiation = _mean(r["events"] / max(1, r["requests"]) for r in on)
        predicted = 100 * on_rps * per_negotiation / signing["sign_events_per_s"]
        print(f"mean: off {off_rps:,.0f}, on {on_rps:,.0f} negotiations/s; on/off {ratio:.3f} "
              f"(the tree costs {100 * (1 - ratio):.1f} % of the throughput); CPU per negotiation "
              f"off {off_cpu:.3f}, on {on_cpu:.3f} ms (+{100 * (on_cpu / off_cpu - 1):.1f} %); "
              f"the keeper's rate predicts {predicted:.1f} % of the core ({per_negotiation:.2f} events a negotiation)")
        result["api"] = {"runs": runs, "off_rps": round(off_rps, 1), "on_rps": round(on_rps, 1),
                         "on_off_ratio": round(ratio, 4), "tree_cost_pct": round(100 * (1 - ratio), 2),
                         "off_cpu_ms_per_negotiation": round(off_cpu, 4), "on_cpu_ms_per_negotiation": round(on_cpu, 4),
                         "tree_cpu_cost_pct": round(100 * (on_cpu / off_cpu - 1), 2),
                         "predicted_cost_pct": round(predicted, 2)}
    targets = {"replay": (full["events_per_s"] or 0) >= 100_000, "verify": verified["events_per_s"] >= 100_000}
    if runs:
        targets["tree_cost"] = result["api"]["tree_cost_pct"] <= 5.0
    result["targets_met"] = targets
    print()
    print("targets (one core): replay >= 100,000 events/s "
          f"{'met' if targets['replay'] else 'MISSED'}; verify >= 100,000 events/s {'met' if targets['verify'] else 'MISSED'}"
          + (f"; tree <= 5 % of the API {'met' if targets['tree_cost'] else 'MISSED'}" if runs else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
