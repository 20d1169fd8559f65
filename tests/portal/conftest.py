"""Fixtures for the portal's tests: Chromium and `openpex serve` as a real process per module,
and tabs whose console must stay free of errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import ARGS, CHROMIUM, Tabs
from tests.support.server import ADMIN_PASSWORD, Server, rfc1123

ADMIN = ("admin", ADMIN_PASSWORD)
PASSWORD = "violet-harbour-lantern-42"
TEMPLATE = "alpine-3.20"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: while Playwright's sync API runs, its event loop counts as
    # running in this thread, and async tests collected after the portal's could not start theirs.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One small node (2 CPUs: two SMALL instances fill it), polled every second."""
    server = Server(tmp_path_factory.mktemp("portal"), "--simulated-nodes", "1", "--node-spec",
                    "cpus=2,memory=4096,disk=100", "--monitor-interval", "1")
    yield server
    server.close()


@pytest.fixture
def tabs(browser: Browser, portal: Server) -> Iterator[Tabs]:
    opened = Tabs(browser, f"http://127.0.0.1:{portal.port}")
    yield opened
    problems = opened.close()
    assert not problems, "the pages logged errors:\n" + "\n".join(problems)


def register(server: Server, username: str) -> tuple[str, str]:
    status, body = server.request("POST", "/OpenPEX/users", {"username": username, "password": PASSWORD})
    assert status == 201, body
    return username, PASSWORD


def reserve(server: Server, who: tuple[str, str], start: datetime, duration: timedelta, count: int = 1,
            confirm: bool = True) -> str:
    """A reservation made over the API (ACCEPTed as asked, then confirmed unless told not to)."""
    status, answer = server.request("POST", "/OpenPEX/reservations", {
        "type": "SMALL", "template": TEMPLATE, "numInstancesFixed": count, "startTime": rfc1123(start),
        "duration": int(duration.total_seconds() * 1000)}, auth=who)
    assert status == 201 and answer["reply"] == "ACCEPT", answer
    rid = answer["proposal"]["id"]
    if confirm:
        status, confirmed = server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=who)
        assert status == 200 and confirmed["reply"] == "REQUEST_SUCCESS", confirmed
    return rid


def reservations_of(server: Server, who: tuple[str, str]) -> list[dict]:
    status, found = server.request("GET", "/OpenPEX/reservations", auth=who)
    assert status == 200, found
    return found


def now() -> datetime:
    return datetime.now(timezone.utc)
