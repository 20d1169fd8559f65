"""Holds that run out, and a service that goes away, as a visitor sees them: the countdown
ends and says the hold lapsed (and the page then shows OFFER_EXPIRED); a live page says when
its updates stop."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import register, reserve, reservations_of, now
from tests.support.browser import NARROW
from tests.support.server import Server

TTL = 6  # seconds an offer is held


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("holds"), "--simulated-nodes", "1", "--offer-ttl", str(TTL))
    yield server
    server.close()


def test_a_hold_counts_down_and_then_says_it_lapsed(tabs, portal: Server) -> None:
    who = register(portal, "rita")
    rid = reserve(portal, who, now() + timedelta(hours=1), timedelta(hours=1), confirm=False)
    tab = tabs.open()
    tab.login(*who)
    tab.go(f"/reservations/{rid}")
    confirm = tab.page.get_by_role("button", name="Confirm")
    expect(confirm).to_be_enabled()
    expect(tab.page.locator(".lapsed-note")).to_be_hidden()
    expect(tab.page.locator(".lapsed-note")).to_be_visible(timeout=(TTL + 5) * 1000)
    expect(tab.page.locator(".lapsed-note")).to_contain_text("The hold has lapsed")
    expect(confirm).to_be_disabled()
    tab.shot("negotiation-lapsing")
    # once the service has noticed too, the page says so by itself
    deadline = now() + timedelta(seconds=20)
    while reservations_of(portal, who)[0]["status"] != "OFFER_EXPIRED":
        assert now() < deadline, "the offer never lapsed"
        tab.page.wait_for_timeout(200)
    tab.go(f"/reservations/{rid}")
    expect(tab.page.locator("h1 .status")).to_have_text("OFFER_EXPIRED")
    expect(tab.page.get_by_role("heading", name="The hold lapsed")).to_be_visible()
    expect(tab.page.get_by_role("button", name="Confirm")).to_have_count(0)
    tab.shot("negotiation-lapsed")
    narrow = tabs.open(width=NARROW)
    narrow.login(*who)
    narrow.go(f"/reservations/{rid}")
    narrow.shot("negotiation-lapsed")
    assert narrow.overflow() <= 0
    # "Propose again" starts a form with its terms
    with tab.page.expect_navigation():
        tab.page.get_by_role("link", name="Propose again").click()
    expect(tab.page.get_by_label("Instances you need")).to_have_value("1")


def test_a_confirm_after_the_hold_is_refused_with_a_message(tabs, portal: Server) -> None:
    who = register(portal, "sam")
    tab = tabs.open(javascript=False)  # (no countdown to stop the click)
    tab.login(*who)
    rid = reserve(portal, who, now() + timedelta(hours=1), timedelta(hours=1), confirm=False)
    tab.go(f"/reservations/{rid}")
    tab.page.wait_for_timeout((TTL + 1) * 1000)
    tab.submit("Confirm")
    expect(tab.page.locator(".notice.error")).to_be_visible()
    expect(tab.page.locator("h1 .status")).to_have_text("OFFER_EXPIRED")
    assert reservations_of(portal, who)[0]["status"] == "OFFER_EXPIRED"


def test_a_live_page_says_when_the_service_is_gone(tabs, portal: Server) -> None:
    who = register(portal, "tess")
    reserve(portal, who, now() + timedelta(hours=1), timedelta(hours=1))
    tab = tabs.open()
    tab.login(*who)
    tab.go("/instances")
    state = tab.page.locator("[data-live-state]")
    expect(state).to_contain_text("Live")
    portal.kill(signal.SIGKILL)
    expect(state).to_contain_text("interrupted", timeout=15_000)
    tab.problems.clear()  # (the browser logs the lost stream: that is what this test does)
