"""Fixtures for tests that run `openpex serve` as a real process."""

from __future__ import annotations

import pytest

from tests.support.server import Server


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def start(*extra: str) -> Server:
        server = Server(tmp_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
