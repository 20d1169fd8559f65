from __future__ import annotations

import pytest

from tests.support.libvirtd import Libvirtd
from tests.support.postgres import PrivateCluster


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session. If it cannot start, the tests that need it
    fail with the server's log; they are never skipped."""
    cluster = PrivateCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def libvirtd() -> str:
    """The URI of a running libvirtd with QEMU (qemu:///system), started if none answers. If it
    cannot start, the tests that need it fail with the daemon's log; they are never skipped. The
    daemon is left running at the end (see tests/support/libvirtd.py)."""
    return Libvirtd().ensure()


@pytest.fixture
def postgres_env(postgres_server):
    postgres_server.reset()
    return postgres_server.env()


@pytest.fixture
def sqlite_env(tmp_path):
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.db")}
