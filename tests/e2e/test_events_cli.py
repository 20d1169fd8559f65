"""`openpex events` as an operator runs it, on a store the real application wrote: each filter,
JSON lines that match the store's notifications, a password hash never shown, --follow that
prints a new event within a second and stops on SIGTERM, and input it cannot use refused with
one line and exit 2 (a missing store never created)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from pex.domain.aggregates import Account, Node
from pex.domain.application import OpenPEX
from pex.domain.clock import HOUR
from pex.query import Query
from tests.integration.test_query import NOW, History, last_position, open_writer, proposal, record_history

from tests.support.cli import refused_in_one_line

ROOT = Path(__file__).resolve().parents[2]
HASH = "argon2-hash-placeholder"  # what open_writer registers as every account's password hash


def openpex_events(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pex.cli", "events", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def listed(*args: str) -> list[dict[str, Any]]:
    result = openpex_events(*args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert HASH not in result.stdout
    return [json.loads(line) for line in result.stdout.splitlines()]


def positions(*args: str) -> list[int]:
    return [event["position"] for event in listed(*args)]


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    refused_in_one_line(result, "openpex events", *words)


class Store:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "events.db"
        self.env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(self.path)}
        self.app = open_writer(self.env)
        self.history: History = record_history(self.app)
        self.app.catalogue.mark_node("n2", "DRAINED")
        self.app.hosts.lose_node("n1", NOW)  # n1's instances move to n2, or find no room
        self.app.catalogue.set_quota("bob", {"open_offers": 3}, NOW)

    def everything(self) -> list[Any]:
        with Query.open(str(self.path)) as query:
            return query.events()


@pytest.fixture
def store(tmp_path: Path):
    built = Store(tmp_path)
    yield built
    built.app.close()


def test_json_lines_match_the_stores_notifications(store: Store) -> None:
    printed = listed("--data-dir", str(store.folder))
    assert printed == listed("--database", str(store.path))
    records = store.everything()
    assert len(printed) == len(records) == last_position(store.app)
    for event, record in zip(printed, records):
        kind, _, name = record.kind.partition(".")
        assert (event["position"], event["id"], event["version"], event["kind"], event["type"]) == (
            record.position, str(record.originator_id), record.version, kind, name)
        assert datetime.fromisoformat(event["time"].replace("Z", "+00:00")) == datetime.fromtimestamp(
            record.timestamp / 1000, timezone.utc)
        assert set(event["data"]) == set(record.fields)
    planned = next(e for e in printed if e["type"] == "Planned")
    assert planned["data"]["reservation_id"] == str(UUID(planned["data"]["reservation_id"]))  # ids as strings
    accounts = [e for e in printed if e["kind"] == "Account" and e["type"] == "Registered"]
    assert [e["data"]["username"] for e in accounts] == ["alice", "bob"]
    assert all(e["data"]["password_hash"] == "<hidden>" for e in accounts)


def test_the_table_never_shows_a_password_hash_either(store: Store) -> None:
    result = openpex_events("--data-dir", str(store.folder), "--format", "table")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["POSITION", "TIME", "TYPE"] and len(lines) == 1 + len(store.everything())
    assert HASH not in result.stdout and "<hidden>" in result.stdout


def test_after_limit_and_times(store: Store) -> None:
    every = positions("--data-dir", str(store.folder))
    assert positions("--data-dir", str(store.folder), "--after", "5") == every[5:]
    assert positions("--data-dir", str(store.folder), "--after", "5", "--limit", "3") == every[5:8]
    records = store.everything()
    middle = records[len(records) // 2]
    since = [r.position for r in records if r.timestamp >= middle.timestamp]
    until = [r.position for r in records if r.timestamp < middle.timestamp]
    as_iso = datetime.fromtimestamp(middle.timestamp / 1000, timezone.utc).isoformat(timespec="milliseconds")
    assert positions("--data-dir", str(store.folder), "--since", str(middle.timestamp)) == since
    assert positions("--data-dir", str(store.folder), "--since", as_iso) == since
    assert positions("--data-dir", str(store.folder), "--until", as_iso.replace("+00:00", "Z")) == until
    rfc = "Mon, 17 Aug 2009 04:49:03 GMT"
    assert positions("--data-dir", str(store.folder), "--until", rfc) == []
    assert positions("--data-dir", str(store.folder), "--since", rfc) == every


def test_reservation_user_node_and_type(store: Store) -> None:
    records = store.everything()
    folder = str(store.folder)
    agreed = store.history.agreed
    with Query.open(str(store.path)) as query:
        its_instances = {vm.id for vm in query.instances(reservation=agreed)}
        bobs = {r.id for r in query.reservations(user="bob")} | {vm.id for vm in query.instances(user="bob")}
    assert its_instances
    assert positions("--data-dir", folder, "--reservation", str(agreed)) == [
        r.position for r in records if r.originator_id == agreed or r.originator_id in its_instances]
    bobs |= {Account.create_id("bob")}
    assert positions("--data-dir", folder, "--user", "BOB") == [
        r.position for r in records if r.originator_id in bobs]
    assert {e["type"] for e in listed("--data-dir", folder, "--user", "bob")} >= {"Registered", "QuotaSet", "Planned"}
    # n1 was lost: its instances were relocated or stranded; they are listed for n1 up to then
    n1 = listed("--data-dir", folder, "--node", "n1")
    placed_on_n1 = {e["id"] for e in n1 if e["kind"] == "Instance" and e["type"] == "Planned"}
    assert placed_on_n1 and {e["type"] for e in n1 if e["kind"] == "Node"} == {"Registered", "NodeWentDown"}
    assert all(e["id"] == str(Node.create_id("n1")) for e in n1 if e["kind"] == "Node")
    assert all(e["id"] in placed_on_n1 for e in n1 if e["kind"] == "Instance")
    assert [e["position"] for e in n1 if e["kind"] == "Instance"] == [
        r.position for r in records if str(r.originator_id) in placed_on_n1]  # none of them came back to n1
    assert {e["type"] for e in n1} >= {"Relocated"} or {e["type"] for e in n1} >= {"Stranded"}
    moved = [e for e in listed("--data-dir", folder, "--node", "n2") if e["type"] in ("Relocated", "Rescheduled")]
    assert {e["position"] for e in moved} <= {e["position"] for e in n1}  # from n1 to n2: both
    assert [e["type"] for e in listed("--data-dir", folder, "--node", "n2", "--type", "Drained")] == ["Drained"]
    confirmed = [r.position for r in records if r.kind == "Reservation.Confirmed"]
    assert positions("--data-dir", folder, "--type", "Confirmed") == confirmed
    assert positions("--data-dir", folder, "--type", "Reservation.Confirmed") == confirmed
    assert positions("--data-dir", folder, "--type", "Registered") == [
        r.position for r in records if r.kind.endswith(".Registered")]
    both = positions("--data-dir", folder, "--user", "alice", "--type", "Requested", "--after", "3")
    assert both == [r.position for r in records if r.kind == "Reservation.Requested" and r.position > 3
                    and r.fields["userid"] == "alice"]
    assert positions("--data-dir", folder, "--user", "nobody") == []


def test_follow_prints_a_new_event_within_a_second_and_stops_on_sigterm(store: Store) -> None:
    known = len(store.everything())
    with following(store, "--type", "Requested") as (follower, lines):
        first = [json.loads(lines.next(30.0)) for _ in range(4)]  # the four reservations requested so far
        assert [e["type"] for e in first] == ["Requested"] * 4
        made = store.app.negotiation.propose("alice", proposal(1, "SMALL", NOW + 8 * HOUR, HOUR), NOW).reservation_id
        appended = time.monotonic()
        line = lines.next(5.0)
        latency = time.monotonic() - appended
        event = json.loads(line)
        assert event["id"] == str(made) and event["type"] == "Requested" and event["position"] > known
        assert latency < 1.0, latency
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=10) == 0
        assert lines.rest() == b""
        assert follower.stderr is not None and follower.stderr.read() == b""


@contextmanager
def following(store: Store, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], LineReader]]:
    """`openpex events --follow` on the store, its output read a line at a time; killed if a
    test leaves it running."""
    follower = subprocess.Popen([sys.executable, "-m", "pex.cli", "events", "--data-dir", str(store.folder), "--follow",
                                 *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert follower.stdout is not None
    lines = LineReader(follower.stdout)
    try:
        yield follower, lines
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        lines.selector.close()
        for pipe in (follower.stdout, follower.stderr):
            if pipe is not None:
                pipe.close()


class LineReader:
    """Lines from a pipe, each within a deadline."""

    def __init__(self, pipe: Any) -> None:
        self.fd = pipe.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)

    def next(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"no line within {timeout} s (got {self.buffer!r})"
            if self.selector.select(left):
                chunk = os.read(self.fd, 65536)
                assert chunk, f"the pipe closed (got {self.buffer!r})"
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def rest(self) -> bytes:
        os.set_blocking(self.fd, True)
        rest = self.buffer + b"".join(iter(lambda: os.read(self.fd, 65536), b""))
        return rest


def test_sigint_stops_a_follower_too(store: Store) -> None:
    with following(store, "--limit", "1000") as (follower, lines):
        lines.next(30.0)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
        assert follower.stderr is not None and b"Traceback" not in follower.stderr.read()


@pytest.mark.parametrize("args, words", [
    (["--after", "-1"], ["--after"]),
    (["--after", "abc"], ["--after", "position"]),
    (["--since", "yesterday"], ["--since", "ISO 8601"]),
    (["--until", "2030-13-01T00:00:00Z"], ["--until"]),
    (["--since", "2030-01-02T00:00:00Z", "--until", "2030-01-01T00:00:00Z"], ["--until"]),
    (["--type", "Confirmd"], ["Confirmd", "Reservation.Confirmed", "Planned"]),
    (["--reservation", "not-an-id"], ["--reservation"]),
    (["--reservation", "00000000-0000-0000-0000-000000000001"], ["no reservation"]),
    (["--limit", "0"], ["--limit"]),
    (["--format", "xml"], ["--format"]),
    (["--bogus"], ["unrecognized", "--bogus"]),
])
def test_bad_input_is_one_line_and_exit_2(store: Store, args: list[str], words: list[str]) -> None:
    before = store.path.read_bytes()
    refused(openpex_events("--data-dir", str(store.folder), *args), *words)
    assert store.path.read_bytes() == before


def test_bad_stores_are_one_line_and_exit_2_and_never_created(tmp_path: Path, store: Store) -> None:
    missing = tmp_path / "nowhere"
    refused(openpex_events("--data-dir", str(missing)), "no such file")
    refused(openpex_events("--database", str(missing / "events.db")), "no such file")
    assert not missing.exists()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    refused(openpex_events("--database", str(corrupt)), "not an event store")
    refused(openpex_events("--database", str(tmp_path)), "directory")
    refused(openpex_events("--database", "postgresql://nobody:pw@127.0.0.1:1/none"), "cannot reach")
    refused(openpex_events("--data-dir", str(store.folder), "--database", str(store.path)), "not allowed with")


def test_it_never_changes_the_store_and_runs_beside_a_writer(store: Store) -> None:
    before = store.path.read_bytes()
    assert len(listed("--data-dir", str(store.folder))) == last_position(store.app)
    assert store.path.read_bytes() == before
    store.app.negotiation.propose("bob", proposal(1, "SMALL", NOW + 9 * HOUR, HOUR), NOW)
    assert len(listed("--data-dir", str(store.folder))) == last_position(store.app)


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    # a store with no events at all: nothing to print, and no error
    app = OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.db")})
    app.close()
    assert listed("--data-dir", str(tmp_path)) == []
