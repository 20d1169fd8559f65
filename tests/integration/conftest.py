from __future__ import annotations

import pytest

from pex.domain.clock import ManualClock
from tests.support.hosts import Hosts
from tests.support.service import ADMIN_PASSWORD, T0, Service


def _store(request, kind):
    if kind == "popo":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if kind == "postgres":
        request.applymarker(pytest.mark.postgres)
        return request.getfixturevalue("postgres_env")
    return request.getfixturevalue("sqlite_env")


@pytest.fixture(params=["popo", "sqlite", "postgres"])
def store_env(request):
    """The same test on eventsourcing's in-memory store, the SQLite file store and the real
    PostgreSQL server."""
    return _store(request, request.param)


@pytest.fixture(params=["sqlite", "postgres"])
def durable_store_env(request):
    """A store that outlives the application on it: the SQLite file and PostgreSQL."""
    return _store(request, request.param)


@pytest.fixture
def clock():
    """The service's time, moved only by the test."""
    return ManualClock(T0)


@pytest.fixture
def hosts():
    """Test-driver hosts that outlive a Service, and can be made unreachable."""
    shared = Hosts()
    yield shared
    shared.close()


@pytest.fixture
def service(tmp_path, clock, monkeypatch):
    """The real service (actors, SQLite store, two simulated hosts) on the manual clock."""
    monkeypatch.setenv("OPENPEX_ADMIN_PASSWORD", ADMIN_PASSWORD)
    running = Service(tmp_path, clock)
    yield running
    running.stop()


@pytest.fixture
async def client(aiohttp_client, service):
    """An HTTP client of the service's REST API."""
    return await aiohttp_client(service.http)
