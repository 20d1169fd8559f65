"""`openpex replay` as an operator runs it: on the store of a real `openpex serve` driven through
a scripted session (proposals, a counter, confirms, a cancel, a withdrawal, a drain, a VM started
and stopped), the state it replays at each instant agrees with what the REST API answered then,
and a diff between two instants lists exactly what changed; a position of the log, a lost node
that comes back, a PostgreSQL store, and input it cannot use (one line, exit 2, store unchanged)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from pex.domain.application import OpenPEX
from pex.query import Query
from tests.integration.test_query import NOW, last_position, open_writer, record_history, store_name
from tests.support.cli import refused_in_one_line
from tests.support.server import ADMIN_PASSWORD, Server, rfc1123

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("admin", ADMIN_PASSWORD)
ALICE = ("alice", "correct-horse-battery-9")
BOB = ("bob", "staple-donkey-lamp-77")


def openpex_replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pex.cli", "replay", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def replayed(*args: str) -> list[dict[str, Any]]:
    result = openpex_replay(*args, "--format", "json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def refused(result: subprocess.CompletedProcess[str], *words: str, status: int = 2) -> None:
    refused_in_one_line(result, "openpex replay", *words, status=status)


def of_kind(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["kind"] == kind]


def millis(text: str) -> int:
    """Epoch ms from the API's RFC 1123 or replay's ISO 8601."""
    if text.endswith("GMT"):
        moment = parsedate_to_datetime(text)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------- a scripted session

@dataclass
class Snapshot:
    """What the API answered at an instant (the admin sees everything)."""

    at: int  # epoch ms: every event of the requests before it was recorded before it, none after
    reservations: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    capacity: dict[str, Any]  # GET /capacity for the minute from `at`, every node's too


@dataclass
class Session:
    folder: Path
    snapshots: list[Snapshot] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # name in the script -> reservation id
    vm: str = ""  # the VM started and stopped

    @property
    def store(self) -> Path:
        return self.folder / "events.db"


def snapshot(server: Server) -> Snapshot:
    reservations = server.request("GET", "/OpenPEX/reservations", auth=ADMIN)[1]
    instances = server.request("GET", "/OpenPEX/instances", auth=ADMIN)[1]
    nodes = server.request("GET", "/OpenPEX/nodes", auth=ADMIN)[1]
    time.sleep(0.005)
    at = int(time.time() * 1000)
    time.sleep(0.005)
    # (reads record nothing; nothing starts or ends within a minute of any snapshot)
    capacity = server.request("GET", f"/OpenPEX/capacity?from={at}&to={at + 60_000}&step=60000&node=*", auth=ADMIN)[1]
    return Snapshot(at, reservations, instances, nodes, capacity)


def propose(server: Server, user: tuple[str, str], fixed: int, kind: str, start: datetime,
            duration: int) -> dict[str, Any]:
    status, answer = server.request("POST", "/OpenPEX/reservations", {
        "duration": duration, "numInstancesFixed": fixed, "numInstancesOption": 0, "startTime": rfc1123(start),
        "template": "debian-12", "type": kind}, auth=user)
    assert status == 201, answer
    return answer


def reply(server: Server, user: tuple[str, str], rid: str, message: str) -> dict[str, Any]:
    status, answer = server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": message}, auth=user)
    assert status == 200, answer
    return answer


def instances_of(server: Server, rid: str) -> list[dict[str, Any]]:
    return [vm for vm in server.request("GET", "/OpenPEX/instances", auth=ADMIN)[1] if vm["reservationId"] == rid]


def wait_for(server: Server, rid: str, wanted: set[str], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        vms = instances_of(server, rid)
        if vms and all(vm["status"] in wanted for vm in vms):
            return vms[0]
        assert time.monotonic() < deadline, vms
        time.sleep(0.05)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Two nodes of 4 CPUs; five snapshots with these changes between them:
    0 -> 1: alice's a1 (2 SMALL) confirmed; bob's b1 (2 XLARGE, no room then) countered.
    1 -> 2: b1 accepted and confirmed; a2 offered (open); a1 cancelled; b2 offered, then
            rejected by bob (withdrawn); sim02 drained.
    2 -> 3: a3 (1 SMALL, starting in seconds) confirmed, activated, its VM running; sim02 undrained.
    3 -> 4: a3's VM stopped by alice."""
    folder = tmp_path_factory.mktemp("replay")
    server = Server(folder, "--simulated-nodes", "2", "--node-spec", "cpus=4,memory=8192,disk=100")
    made = Session(folder)
    try:
        for name, password in (ALICE, BOB):
            assert server.request("POST", "/OpenPEX/users", {"username": name, "password": password})[0] == 201
        later = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
        made.snapshots.append(snapshot(server))

        a1 = propose(server, ALICE, 2, "SMALL", later, 3_600_000)
        assert a1["reply"] == "ACCEPT"
        made.ids["a1"] = a1["proposal"]["id"]
        assert reply(server, ALICE, made.ids["a1"], "CONFIRM")["reply"] == "REQUEST_SUCCESS"
        b1 = propose(server, BOB, 2, "XLARGE", later, 3_600_000)
        assert b1["reply"] == "COUNTER", b1
        made.ids["b1"] = b1["proposal"]["id"]
        made.snapshots.append(snapshot(server))

        assert reply(server, BOB, made.ids["b1"], "ACCEPT")["reply"] == "CONFIRM_REQUEST"
        assert reply(server, BOB, made.ids["b1"], "CONFIRM")["reply"] == "REQUEST_SUCCESS"
        a2 = propose(server, ALICE, 1, "MEDIUM", later + timedelta(hours=3), 3_600_000)
        assert a2["reply"] == "ACCEPT"
        made.ids["a2"] = a2["proposal"]["id"]
        cancelled = server.request("DELETE", f"/OpenPEX/reservations/{made.ids['a1']}", auth=ALICE)[1]
        assert cancelled["status"] == "CANCELLED"
        b2 = propose(server, BOB, 1, "SMALL", later + timedelta(hours=5), 3_600_000)
        made.ids["b2"] = b2["proposal"]["id"]
        reply(server, BOB, made.ids["b2"], "REJECT")
        assert server.request("PUT", "/OpenPEX/nodes/sim02/drain", auth=ADMIN)[1]["status"] == "DRAINED"
        made.snapshots.append(snapshot(server))

        start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
        a3 = propose(server, ALICE, 1, "SMALL", start, 120_000)
        assert a3["reply"] == "ACCEPT", a3
        made.ids["a3"] = a3["proposal"]["id"]
        reply(server, ALICE, made.ids["a3"], "CONFIRM")
        assert server.request("PUT", f"/OpenPEX/reservations/{made.ids['a3']}/activate", auth=ALICE)[0] == 200
        assert server.request("PUT", "/OpenPEX/nodes/sim02/undrain", auth=ADMIN)[1]["status"] == "UP"
        made.vm = wait_for(server, made.ids["a3"], {"RUNNING"}, 15)["vmID"]
        made.snapshots.append(snapshot(server))

        assert server.request("PUT", f"/OpenPEX/instances/{made.vm}/stop", auth=ALICE)[0] == 200
        wait_for(server, made.ids["a3"], {"HALTED"}, 15)
        made.snapshots.append(snapshot(server))
        assert server.kill(signal.SIGTERM) == 0
    finally:
        server.close()
    yield made


# ---------------------------------------------------------------------- the state at an instant

def test_replay_at_each_instant_agrees_with_what_the_api_answered_then(session: Session) -> None:
    for number, then in enumerate(session.snapshots):
        lines = replayed("--data-dir", str(session.folder), "--until", str(then.at))
        reservations = {r["id"]: r for r in of_kind(lines, "reservation")}
        assert list(reservations) == [r["id"] for r in then.reservations], number
        for answered in then.reservations:
            mine = reservations[answered["id"]]
            for key in ("userid", "status", "type", "template", "numInstancesFixed", "numInstancesOption",
                        "duration", "instances"):
                assert mine[key] == answered[key], (number, key, mine, answered)
            for key in ("startTime", "endTime"):
                assert millis(mine[key]) == millis(answered[key]), (number, key)
            # The price agreed (bound at CONFIRM), and an open offer's, as GET showed them.
            assert (mine["price"], mine["currency"]) == (answered.get("price"), answered.get("currency")), number
            assert (mine["price"] is not None) == (mine["status"] in ("CONFIRMED", "ACTIVATED", "CANCELLED")), number
            assert (mine["offer"] is None) == ("offer" not in answered), number
            if mine["offer"] is not None:
                assert (mine["offer"]["price"], mine["offer"]["currency"]) == (
                    answered["offer"]["price"], answered["offer"]["currency"]), number
                assert mine["offer"]["state"] == answered["offer"]["state"]
                assert millis(mine["offer"]["holdUntil"]) // 1000 == millis(answered["offer"]["holdUntil"]) // 1000
                offered, asked = mine["offer"]["proposal"], answered["offer"]["proposal"]
                assert millis(offered["startTime"]) == millis(asked["startTime"])
        instances = {vm["vmID"]: vm for vm in of_kind(lines, "instance")}
        assert set(instances) == {vm["vmID"] for vm in then.instances}, number
        for answered in then.instances:
            mine = instances[answered["vmID"]]
            assert (mine["status"], mine["node"], mine["reservationId"], mine["name"]) == (
                answered["status"], answered["node"], answered["reservationId"], answered["name"]), number
        nodes = of_kind(lines, "node")
        assert [(n["name"], n["status"], n["uri"], n["cpus"], n["memoryMB"], n["diskGB"]) for n in nodes] == [
            (n["name"], n["status"], n["uri"], n["cpus"], n["memoryMB"], n["diskGB"]) for n in then.nodes], number
        for node in nodes:
            assert node["used"] == then.capacity["nodes"][node["name"]]["steps"][0]["used"], (number, node)
        [capacity] = of_kind(lines, "capacity")
        assert capacity["used"] == then.capacity["cluster"]["steps"][0]["used"], number
        assert capacity["size"] == then.capacity["cluster"]["size"] and capacity["at"] == iso(then.at)
        offers = of_kind(lines, "offer")
        assert [o["reservationId"] for o in offers] == [r["id"] for r in then.reservations if "offer" in r], number
        assert [(o["price"], o["currency"]) for o in offers] == [
            (r["offer"]["price"], r["offer"]["currency"]) for r in then.reservations if "offer" in r], number
        [summary] = of_kind(lines, "summary")
        assert lines[-1] is summary and summary["at"] == iso(then.at)
        assert sum(summary["reservations"].values()) == len(then.reservations)
        assert sum(summary["instances"].values()) == len(then.instances) and summary["offers"] == len(offers)


def test_the_script_went_as_planned(session: Session) -> None:
    # (what the other tests rely on, checked on the API's own answers)
    statuses = [{r["id"]: r["status"] for r in then.reservations} for then in session.snapshots]
    ids = session.ids
    assert statuses[1] == {ids["a1"]: "CONFIRMED", ids["b1"]: "COUNTERED"}
    assert statuses[2] == {ids["a1"]: "CANCELLED", ids["b1"]: "CONFIRMED", ids["a2"]: "ACCEPTED",
                           ids["b2"]: "WITHDRAWN"}
    assert statuses[3][ids["a3"]] == "ACTIVATED"
    running = [vm["status"] for then in session.snapshots[3:] for vm in then.instances if vm["vmID"] == session.vm]
    assert running == ["RUNNING", "HALTED"]
    used = [then.capacity["cluster"]["steps"][0]["used"]["cpus"] for then in session.snapshots]
    assert used == [0, 0, 0, 1, 1]  # (a3 holds its CPU while its VM is stopped)


# ---------------------------------------------------------------------- what changed

def changes(session: Session, first: int, second: int) -> set[tuple[str, str, str, str | None, str]]:
    lines = replayed("--data-dir", str(session.folder), "--diff", iso(session.snapshots[first].at),
                     str(session.snapshots[second].at))
    [summary] = of_kind(lines, "summary")
    assert lines[-1] is summary
    assert (summary["from"], summary["to"]) == (iso(session.snapshots[first].at), iso(session.snapshots[second].at))
    found = [(c["kind"], c["change"], c["id"], c["from"], c["to"]) for c in lines[:-1]]
    assert len(found) == len(set(found)) == sum(sum(kind.values()) for kind in summary["changes"].values())
    return set(found)


def test_a_diff_lists_exactly_what_changed_between_two_instants(session: Session) -> None:
    ids, snaps = session.ids, session.snapshots
    vms = {then: {vm["vmID"]: vm for vm in snaps[then].instances} for then in range(len(snaps))}
    a1_vms = [vm for vm in vms[1] if vms[1][vm]["reservationId"] == ids["a1"]]
    b1_vms = [vm for vm in vms[2] if vms[2][vm]["reservationId"] == ids["b1"]]
    assert len(a1_vms) == 2 and len(b1_vms) == 2
    assert changes(session, 0, 1) == {
        ("reservation", "created", ids["a1"], None, "CONFIRMED"),
        ("reservation", "created", ids["b1"], None, "COUNTERED"),
        *{("instance", "planned", vm, None, "PENDING") for vm in a1_vms}}
    assert changes(session, 1, 2) == {
        ("reservation", "confirmed", ids["b1"], "COUNTERED", "CONFIRMED"),
        ("reservation", "cancelled", ids["a1"], "CONFIRMED", "CANCELLED"),
        ("reservation", "created", ids["a2"], None, "ACCEPTED"),
        ("reservation", "created", ids["b2"], None, "WITHDRAWN"),
        ("node", "drained", "sim02", "UP", "DRAINED"),
        *{("instance", "deleted", vm, "PENDING", "DELETED") for vm in a1_vms},
        *{("instance", "planned", vm, None, "PENDING") for vm in b1_vms}}
    assert changes(session, 2, 3) == {
        ("reservation", "created", ids["a3"], None, "ACTIVATED"),
        ("node", "undrained", "sim02", "DRAINED", "UP"),
        ("instance", "started", session.vm, None, "RUNNING")}
    assert changes(session, 3, 4) == {("instance", "stopped", session.vm, "RUNNING", "HALTED")}
    assert changes(session, 4, 4) == set()
    assert changes(session, 0, 4) >= {("reservation", "created", ids["a1"], None, "CANCELLED"),
                                      ("instance", "halted", session.vm, None, "HALTED")}  # (started and stopped since)


def test_a_diff_carries_the_terms_and_the_nodes(session: Session) -> None:
    snaps = session.snapshots
    lines = replayed("--data-dir", str(session.folder), "--diff", str(snaps[2].at), str(snaps[3].at))
    created = next(c for c in lines if c["kind"] == "reservation")
    answered = next(r for r in snaps[3].reservations if r["id"] == session.ids["a3"])
    assert (created["userid"], created["terms"]["type"], created["terms"]["numInstancesFixed"],
            millis(created["terms"]["startTime"]), created["termsBefore"]) == (
        "alice", "SMALL", 1, millis(answered["startTime"]), None)
    assert (created["price"], created["currency"], created["priceBefore"]) == (
        answered["price"], answered["currency"], None)
    started = next(c for c in lines if c["kind"] == "instance")
    assert (started["node"], started["reservationId"], started["nodeBefore"]) == (
        snaps[3].instances[-1]["node"], session.ids["a3"], None)


def test_the_tables_show_the_state_and_the_changes(session: Session) -> None:
    snaps = session.snapshots
    result = openpex_replay("--data-dir", str(session.folder), "--until", str(snaps[2].at), "--format", "table")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = result.stdout
    assert f"at {iso(snaps[2].at)}" in text
    for heading in ("RESERVATIONS (4)", "OPEN OFFERS (1)", "INSTANCES (4)", "NODES (2)", "CLUSTER"):
        assert heading in text, text
    assert session.ids["a2"] in text and "WITHDRAWN" in text and "DRAINED" in text
    b1 = next(r for r in snaps[2].reservations if r["id"] == session.ids["b1"])
    row = next(line for line in text.splitlines() if line.startswith(session.ids["b1"]))
    assert row.endswith(f"{b1['price']} {b1['currency']}"), row  # the price agreed
    a2 = next(r for r in snaps[2].reservations if r["id"] == session.ids["a2"])
    offered = [line for line in text.splitlines() if line.startswith(session.ids["a2"])]
    assert offered[-1].endswith(f"{a2['offer']['price']} {a2['offer']['currency']}"), offered  # the open offer's
    result = openpex_replay("--data-dir", str(session.folder), "--diff", str(snaps[3].at), str(snaps[4].at),
                            "--format", "table")
    assert result.returncode == 0 and "CHANGES (1)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if session.vm in line)
    assert row.split()[:2] == ["instance", "stopped"] and "RUNNING" in row and "HALTED" in row


# ---------------------------------------------------------------------- a position of the log

def test_replay_at_a_position_shows_the_log_up_to_that_notification(session: Session) -> None:
    with Query.open(session.store) as query:
        confirmed = query.events(originator=session.ids["b1"], kind="Reservation.Confirmed")[0]
        last = query.position
    at = replayed("--database", str(session.store), "--position", str(confirmed.position))
    before = replayed("--database", str(session.store), "--position", str(confirmed.position - 1))
    b1 = [r for r in of_kind(at, "reservation") if r["id"] == session.ids["b1"]]
    assert b1[0]["status"] == "CONFIRMED"
    b1_before = [r["status"] for r in of_kind(before, "reservation") if r["id"] == session.ids["b1"]]
    assert b1_before == ["ACCEPTED"]  # (its counter accepted, not yet confirmed)
    assert session.ids["a3"] not in {r["id"] for r in of_kind(at, "reservation")}
    [summary] = of_kind(at, "summary")
    assert summary["position"] == confirmed.position and millis(summary["at"]) == confirmed.timestamp
    assert of_kind(replayed("--data-dir", str(session.folder), "--position", str(last + 100)), "summary")[0][
        "position"] == last
    empty = replayed("--data-dir", str(session.folder), "--position", "0")
    assert [line["kind"] for line in empty] == ["capacity", "summary"] and empty[-1]["at"] is None


def test_the_progress_is_told_the_notifications_applied_up_to_the_end(session: Session) -> None:
    told: list[tuple[int, int]] = []
    with Query.open(session.store, progress=lambda applied, most: told.append((applied, most))) as query:
        assert told[-1] == (query.position, query.position)
    told.clear()
    with Query.open(session.store, position=10, progress=lambda applied, most: told.append((applied, most))):
        assert told[-1] == (10, 10)


# ---------------------------------------------------------------------- a lost node, PostgreSQL

def instant() -> int:
    time.sleep(0.005)
    moment = int(time.time() * 1000)
    time.sleep(0.005)
    return moment


def test_a_lost_node_and_its_return_and_the_instances_it_had(tmp_path: Path) -> None:
    app = open_writer({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.db")})
    try:
        record_history(app)
        with Query.open(tmp_path / "events.db") as query:
            on_n1 = {str(vm.id) for vm in query.instances(node="n1")}
        assert on_n1
        before = instant()
        app.hosts.lose_node("n1", NOW)
        lost = instant()
        app.catalogue.mark_node("n1", "UP")
        back = instant()
    finally:
        app.close()
    lines = replayed("--data-dir", str(tmp_path), "--diff", str(before), str(lost))
    nodes = [(c["change"], c["id"], c["from"], c["to"]) for c in of_kind(lines, "node")]
    assert nodes == [("lost", "n1", "UP", "DOWN")]
    moved = {c["id"]: c for c in of_kind(lines, "instance")}
    assert set(moved) == on_n1 and all(c["nodeBefore"] == "n1" and c["node"] != "n1" for c in moved.values())
    assert {c["change"] for c in moved.values()} <= {"moved", "stopped"}
    lines = replayed("--data-dir", str(tmp_path), "--diff", str(lost), str(back))
    assert [(c["kind"], c["change"], c["id"]) for c in lines[:-1]] == [("node", "back", "n1")]
    assert of_kind(replayed("--data-dir", str(tmp_path), "--until", str(lost)), "node")[0]["status"] == "DOWN"


@pytest.mark.postgres
def test_a_postgresql_store_replays_as_its_writer_shows_it(postgres_env: dict[str, str]) -> None:
    app = open_writer(postgres_env)
    try:
        history = record_history(app)
        between = int(history.between.timestamp() * 1000)
        now = instant()
        shown = app.read.reservations("admin", is_admin=True)
        position = last_position(app)
    finally:
        app.close()
    url = store_name(postgres_env)
    lines = replayed("--database", url, "--until", str(now))
    assert [(r["id"], r["status"]) for r in of_kind(lines, "reservation")] == [
        (str(r.id), r.status.value) for r in shown]
    assert of_kind(lines, "summary")[0]["position"] == position
    assert [n["name"] for n in of_kind(lines, "node")] == ["n1", "n2"]
    then = replayed("--database", url, "--until", str(between))
    assert {r["id"]: r["status"] for r in of_kind(then, "reservation")}[str(history.offered)] == "ACCEPTED"
    diff = replayed("--database", url, "--diff", str(between), str(now))
    assert ("reservation", "confirmed", str(history.offered)) in {(c["kind"], c["change"], c["id"]) for c in diff[:-1]}
    refused(openpex_replay("--database", url + "_missing", "--until", "0"), "cannot reach")


# ---------------------------------------------------------------------- input it cannot use

@pytest.mark.parametrize("args, words", [
    ([], ["one of the arguments --until --position --diff is required"]),
    (["--until", "2030-01-01T00:00:00Z", "--position", "3"], ["not allowed with"]),
    (["--until", "yesterday"], ["--until", "ISO 8601"]),
    (["--until", "2030-13-01T00:00:00Z"], ["--until"]),
    (["--position", "-1"], ["--position", "position"]),
    (["--position", "abc"], ["--position"]),
    (["--diff", "2030-01-02T00:00:00Z", "2030-01-01T00:00:00Z"], ["--diff", "before"]),
    (["--diff", "2030-01-02T00:00:00Z"], ["--diff", "2 arguments"]),
    (["--diff", "2030-01-01T00:00:00Z", "soon"], ["--diff"]),
    (["--format", "xml", "--position", "1"], ["--format"]),
    (["--position", "1", "--bogus"], ["unrecognized", "--bogus"]),
])
def test_bad_input_is_one_line_and_exit_2_and_the_store_unchanged(session: Session, args: list[str],
                                                                    words: list[str]) -> None:
    before = session.store.read_bytes()
    refused(openpex_replay("--data-dir", str(session.folder), *args), *words)
    assert session.store.read_bytes() == before


def test_bad_stores_are_one_line_and_never_created(tmp_path: Path, session: Session) -> None:
    missing = tmp_path / "nowhere"
    refused(openpex_replay("--data-dir", str(missing), "--position", "1"), "no such file")
    refused(openpex_replay("--database", str(missing / "events.db"), "--until", "0"), "no such file")
    assert not missing.exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    refused(openpex_replay("--database", str(garbage), "--position", "1"), "not an event store")
    refused(openpex_replay("--database", str(tmp_path), "--position", "1"), "directory")
    refused(openpex_replay("--data-dir", str(session.folder), "--database", str(session.store), "--position", "1"),
            "not allowed with")
    whole = session.store.read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(whole[: len(whole) // 2])
    result = openpex_replay("--database", str(truncated), "--position", "100000")
    assert result.returncode in (1, 2)
    refused(result, "openpex replay:", status=result.returncode)
    corrupt = tmp_path / "corrupt.db"
    damaged = bytearray(whole)
    spot = damaged.rindex(b"debian-12")  # inside a stored event's state
    damaged[spot - 24: spot + 9] = b"\xc1" * 33  # (0xc1: never used in msgpack)
    corrupt.write_bytes(bytes(damaged))
    result = openpex_replay("--database", str(corrupt), "--position", "100000")
    refused(result, "OpenPEX did not write", "does not decode")  # (a row no writer stored: its position named)


@pytest.mark.parametrize("millis", [0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, NOW + 123_456_789,
                                    253_402_300_799_999])
def test_instants_are_written_as_the_events_command_writes_them(millis: int) -> None:
    from pex.audit.events import iso_time as events_time
    from pex.audit.replay import iso_time

    assert iso_time(millis) == events_time(millis)
    assert iso_time(0) == "1970-01-01T00:00:00.000Z" and iso_time(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


def test_an_empty_store_replays_to_nothing(tmp_path: Path) -> None:
    OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.db")}).close()
    lines = replayed("--data-dir", str(tmp_path), "--until", "2030-01-01T00:00:00Z")
    assert [line["kind"] for line in lines] == ["capacity", "summary"]
    assert lines[-1]["position"] == 0 and lines[0]["size"] == {"cpus": 0, "memoryMB": 0, "diskGB": 0}
