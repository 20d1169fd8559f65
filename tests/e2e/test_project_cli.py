"""`openpex project` as a user runs it: input it cannot use fails with one line on stderr and
exit code 2, and the source store is never created or changed."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import HOUR
from pex.domain.negotiation import TermsChange
from pex.domain.quotas import Quota
from pex.domain.sizes import Resources

from tests.support.cli import refused_in_one_line

NOW = 1_900_000_000_000
ROOT = Path(__file__).resolve().parents[2]


def openpex_project(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pex.cli", "project", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def build_store(path: Path, reservations: int) -> None:
    """A small OpenPEX store, written by the real application (more reservations if it exists)."""
    app = OpenPEX({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)},
                  settings=Settings(quota=Quota(10**9, 10**9, 10**9)), origin=NOW)
    try:
        if not app.view.nodes:
            app.catalogue.register_node("n1", "test:///n1.xml", Resources(8, 16384, 200))
            app.catalogue.register_template("debian", "Debian 12")
        for _ in range(reservations):
            terms = TermsChange(instance_type="SMALL", template="debian", fixed=1, start=NOW + HOUR, duration=HOUR)
            answer = app.negotiation.propose("alice", terms, NOW)
            app.negotiation.respond(answer.reservation_id, "alice", "CONFIRM", NOW)
    finally:
        app.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    build_store(path, 3)
    return path


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    refused_in_one_line(result, "openpex project", *words)


def test_a_missing_source_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    refused(openpex_project("--database", str(missing), "--into", str(tmp_path / "read.db")), "no such file")
    assert not missing.exists() and not (tmp_path / "read.db").exists()


@pytest.mark.parametrize("make", ["directory", "text file"])
def test_a_source_that_is_not_an_event_store_is_refused(tmp_path: Path, make: str) -> None:
    source = tmp_path / "source"
    if make == "directory":
        source.mkdir()
    else:
        source.write_text("not a database\n")
    refused(openpex_project("--database", str(source), "--into", str(tmp_path / "read.db")))
    assert not (tmp_path / "read.db").exists()


def test_unreachable_databases_are_refused(tmp_path: Path, store: Path) -> None:
    nobody = f"postgresql://openpex:secret-word@127.0.0.1:{unused_port()}/openpex"
    refused(openpex_project("--database", nobody, "--into", str(tmp_path / "read.db")), "cannot reach")
    result = openpex_project("--database", str(store), "--into", nobody, "--schema", "reports")
    refused(result, "cannot reach")
    assert "secret-word" not in result.stderr


@pytest.mark.parametrize("target", ["under a file", "a directory", "a text file", "in /proc", "the store itself"])
def test_a_target_that_cannot_be_a_read_model_is_refused(tmp_path: Path, store: Path, target: str) -> None:
    before = digest(store)
    into = {"under a file": store / "read.db", "a directory": tmp_path, "a text file": tmp_path / "notes.txt",
            "in /proc": Path("/proc/openpex-read.db"), "the store itself": store}[target]
    if target == "a text file":
        into.write_text("my notes\n")
    refused(openpex_project("--database", str(store), "--into", str(into)))
    assert digest(store) == before
    if target == "a text file":
        assert into.read_text() == "my notes\n"


def test_a_schema_is_for_postgresql_only(tmp_path: Path, store: Path) -> None:
    refused(openpex_project("--database", str(store), "--into", str(tmp_path / "read.db"), "--schema", "x"), "--schema")


def test_a_read_model_of_another_store_is_refused(tmp_path: Path, store: Path) -> None:
    other = tmp_path / "other.db"
    build_store(other, 2)
    into = str(tmp_path / "read.db")
    done = openpex_project("--database", str(store), "--into", into)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "at position" in done.stdout
    before = digest(other)
    refused(openpex_project("--database", str(other), "--into", into), "another event store", str(store))
    assert digest(other) == before


def test_a_read_model_ahead_of_its_store_is_refused(tmp_path: Path, store: Path) -> None:
    """A store put back from an older copy: the read model has events the store lacks."""
    older = tmp_path / "older.db"
    shutil.copyfile(store, older)
    build_store(store, 2)
    into = str(tmp_path / "read.db")
    assert openpex_project("--database", str(store), "--into", into).returncode == 0
    refused(openpex_project("--database", str(older), "--into", into), "does not have")


def test_running_again_carries_on(tmp_path: Path, store: Path) -> None:
    into = str(tmp_path / "read.db")
    first = openpex_project("--database", str(store), "--into", into)
    build_store(store, 1)
    again = openpex_project("--database", str(store), "--into", into)
    assert (first.returncode, again.returncode) == (0, 0)
    assert "applied" in again.stdout and again.stderr == ""
    assert (tmp_path / "read.db").stat().st_mode & 0o077 == 0  # private, as the store is


def test_a_read_model_an_older_openpex_made_is_refused(tmp_path: Path, store: Path) -> None:
    """One made before prices were projected (no price columns): its rows would lack them, so it
    is refused rather than half-filled; a new target is made from scratch."""
    into = tmp_path / "read.db"
    assert openpex_project("--database", str(store), "--into", str(into)).returncode == 0
    db = sqlite3.connect(into)
    try:
        for column in ("price", "currency", "offer_price", "cancelled_at", "cancelled_ms"):
            db.execute(f"ALTER TABLE reservations DROP COLUMN {column}")
        db.execute("DROP TABLE prices")
        db.commit()
    finally:
        db.close()
    build_store(store, 1)
    refused(openpex_project("--database", str(store), "--into", str(into)), "older OpenPEX", "reservations.price",
            "new target")
    fresh = openpex_project("--database", str(store), "--into", str(tmp_path / "new.db"))
    assert fresh.returncode == 0, fresh.stderr
