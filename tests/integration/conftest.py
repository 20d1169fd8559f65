from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request):
    """The same test on the SQLite file store and on the real PostgreSQL server."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return request.getfixturevalue("postgres_env")
    return request.getfixturevalue("sqlite_env")
