"""The benchmarks run in a tiny mode, as processes (each pins itself to a core): they finish,
print a table and then one JSON line with the figures the README quotes, the pricing
comparison of issue 12 included (unpriced and priced decisions of the same requests in
benchmarks.admission; rounds of unpriced and priced proposals, and of a baseline tree's
server, in benchmarks.api) and issue 13's standby takeovers (benchmarks.failover), hosts at scale
(benchmarks.scale) and starts from a snapshot (benchmarks.restart)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(module: str, *args: str, timeout: float = 300) -> tuple[list[str], dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_admission_compares_unpriced_and_priced_decisions_in_one_run():
    lines, figures = run_benchmark("benchmarks.admission", "--nodes", "12", "--reservations", "300",
                                   "--typical", "20", "--hard", "6", "--proposals", "5",
                                   "--priced-typical", "30", "--priced-hard", "9")
    assert figures["typical"]["accepts"] + figures["typical"]["counters"] + figures["typical"]["rejects"] == 20
    pricing = figures["pricing"]
    assert set(pricing) == {"typical", "hard"}
    for name, count in (("typical", 30), ("hard", 9)):
        rows = pricing[name]
        assert set(rows) == {"none", "generous", "tight", "all"}
        assert sum(rows[kind]["n"] for kind in ("none", "generous", "tight")) == rows["all"]["n"] == count
        for kind, row in rows.items():
            for side in ("unpriced", "priced"):
                assert 0 < row[side]["p50_ms"] <= row[side]["p99_ms"] <= row[side]["max_ms"]
                assert row[side]["per_s"] > 0
            assert row["ratio"]["p99"] == round(row["priced"]["p99_ms"] / row["unpriced"]["p99_ms"], 3)
            assert sum(n for reply, n in row["replies"].items()
                       if reply in ("ACCEPT", "COUNTER", "REJECT", "price COUNTER")) == row["n"]
        # Without maxPrice, or with 4x the flat price, pricing never changes admission's reply.
        assert "price COUNTER" not in rows["none"]["replies"]
        assert "price COUNTER" not in rows["generous"]["replies"]
    assert any(line.startswith("pricing: the same requests") for line in lines)


def test_api_alternates_rounds_of_unpriced_and_priced_proposals():
    assert shutil.which("wrk"), "benchmarks.api needs wrk (scripts/setup.sh installs it)"
    # The baseline tree is this one: the option's path (a server from another tree's sources) is taken.
    lines, figures = run_benchmark("benchmarks.api", "--compare-pricing", "--seconds", "1", "--rounds", "1",
                                   "--connections", "4", "--nodes", "10", "--no-bare",
                                   "--max-price-share", "1", "--baseline-tree", str(ROOT))
    assert [r["kind"] for r in figures["rounds"]] == ["before", "unpriced", "priced"]
    for kind in ("before", "unpriced", "priced"):
        (one,) = [r for r in figures["rounds"] if r["kind"] == kind]
        assert one["rps"] > 0 and one["non_2xx"] == 0 and one["requests"] > 0
        assert sum(one["statuses"].values()) >= one["requests"]
        assert figures["means"][kind]["rps"] == one["rps"]
    assert set(figures["ratios"]) == {"priced/unpriced", "unpriced/before", "priced/before"}
    assert figures["bare"] is None
    assert any(line.startswith("priced/unpriced: req/s") for line in lines)


def test_failover_kills_the_writer_and_times_the_standby_taking_over():
    lines, figures = run_benchmark("benchmarks.failover", "--kills", "2", "--nodes", "2")
    assert figures["kills"] == 2 and [r["killed"] for r in figures["rounds"]] == ["a", "b"]
    assert 0 < figures["takeover_min_s"] <= figures["takeover_p50_s"] <= figures["takeover_max_s"] < 60
    assert any("writes accepted again after" in line for line in lines)


def test_scale_starts_many_hosts_boots_a_storm_and_loses_a_host():
    lines, figures = run_benchmark("benchmarks.scale", "--hosts", "4", "--vms", "12", "--per-reservation", "6",
                                   "--interval", "1", "--idle", "1", "--lead", "4")
    assert figures["hosts"] == 4 and figures["vms"] == 12
    assert 0 < figures["seed_s"] and 0 < figures["start_s"] <= figures["all_polled_s"]
    assert figures["threads"] > 0 and figures["rss_mb"] > 0 and figures["idle_cpu_pct"] >= 0
    assert 0 <= figures["start_to_running_s"] < 60
    assert figures["vms_on_lost"] > 0 and 0 < figures["detect_s"] <= figures["replanned_s"] <= figures["rerunning_s"]
    assert figures["stop_s"] is not None
    assert any(line.split()[:2] == ["4", "12"] for line in lines), "the table's row"


def test_restart_times_the_whole_log_a_snapshot_and_a_snapshot_with_its_tail(tmp_path):
    lines, figures = run_benchmark("benchmarks.restart", "--reservations", "3000", "--store",
                                   str(tmp_path / "store.db"))
    whole, snapshot, tail = figures["whole_log"], figures["from_snapshot"], figures["from_snapshot_and_tail"]
    assert not whole["from_snapshot"] and snapshot["from_snapshot"] and tail["from_snapshot"]
    assert whole["reservations"] == snapshot["reservations"] == 3000 and whole["open"] == snapshot["open"] == 300
    assert whole["position"] == snapshot["position"] < tail["position"]  # (the tail was read on)
    assert figures["snapshot_mb"] > 0 and 0 < figures["next_snapshot_s"]
    assert any(line.startswith("snapshot + tail") for line in lines), "the table's row"
