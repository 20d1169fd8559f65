"""Every screen of the portal at 1280 and at 390 px wide: a screenshot of each under
tests/artifacts/, no sideways scrolling on the narrow one, and no console error anywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import ADMIN, register, reserve, now
from tests.support.browser import NARROW, WIDE
from tests.support.server import ADMIN_PASSWORD, Server


@pytest.fixture(scope="module")
def made(portal: Server) -> dict[str, str]:
    """A user with a reservation in every state a screen shows."""
    user = register(portal, "paula")
    filler = register(portal, "quentin")
    soon = now() + timedelta(hours=1)
    made = {"agreed": reserve(portal, user, soon, timedelta(hours=2)),
            "accepted": reserve(portal, user, soon + timedelta(days=2), timedelta(hours=1), confirm=False)}
    reserve(portal, filler, soon + timedelta(days=3), timedelta(hours=4), count=2)  # the cluster full then
    # Half the cluster taken for ten hours on day 5: the optional instance fits only much later,
    # so OpenPEX counters with fewer at the asked start, and the later start is the alternative.
    reserve(portal, filler, soon + timedelta(days=5), timedelta(hours=10))
    for width, day in ((WIDE, 3), (NARROW, 3), ("take", 5)):  # (one for each width's run, which accepts it)
        status, answer = portal.request("POST", "/OpenPEX/reservations", {
            "type": "SMALL", "template": "alpine-3.20", "numInstancesFixed": 1, "numInstancesOption": 1,
            "startTime": (soon + timedelta(days=day, hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "duration": 3_600_000}, auth=user)
        assert answer["reply"] == "COUNTER", answer
        made[f"countered-{width}"] = answer["proposal"]["id"]
    assert answer.get("alternatives"), answer
    status, answer = portal.request("POST", "/OpenPEX/reservations", {
        "type": "XLARGE", "template": "alpine-3.20", "numInstancesFixed": 5,
        "startTime": (soon + timedelta(days=4)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "duration": 3_600_000},
        auth=user)
    assert answer["reply"] == "REJECT", answer
    made["rejected"] = answer["proposal"]["id"]
    # More than a cent for an hour of a SMALL at any time: a COUNTER on price, with no cheaper hours.
    status, answer = portal.request("POST", "/OpenPEX/reservations", {
        "type": "SMALL", "template": "alpine-3.20", "numInstancesFixed": 1, "maxPrice": "0.01",
        "startTime": (soon + timedelta(days=6)).strftime("%a, %d %b %Y %H:%M:%S GMT"), "duration": 3_600_000},
        auth=user)
    assert answer["reply"] == "COUNTER" and answer["price"] == "0.05", answer
    made["price-countered"] = answer["proposal"]["id"]
    portal.request("PUT", "/OpenPEX/nodes/sim01/drain", auth=ADMIN)
    portal.request("PUT", "/OpenPEX/nodes/sim01/undrain", auth=ADMIN)
    return made


@pytest.mark.parametrize("width", [WIDE, NARROW])
def test_every_screen_at_both_widths(tabs, portal: Server, made: dict[str, str], width: int) -> None:
    tab = tabs.open(width=width)
    page = tab.page

    def screen(name: str, path: str, *, status: int = 200) -> None:
        tab.go(path, status=status)
        look(name)

    def look(name: str) -> None:
        """The screen shown now: saved, every field labelled, no sideways scrolling."""
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        tab.shot(name)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea, button')].filter((field) =>
            !(field.labels && field.labels.length) && !field.getAttribute('aria-label') &&
            !(field.tagName === 'BUTTON' && field.textContent.trim())).map((field) => field.outerHTML)""")
        assert not unlabelled, f"{name}: fields without a label: {unlabelled}"
        assert tab.overflow() <= 0, f"{name} scrolls sideways at {width} px"

    screen("login", "/login")
    screen("register", "/register")
    tab.login("paula", "violet-harbour-lantern-42")
    screen("welcome", "/")
    expect(page.locator("#offers-waiting")).to_have_text("5")
    screen("reservation-new", "/reservations/new")
    tab.refusing("/reservations/new")
    page.get_by_label("Duration", exact=True).fill("abc")
    tab.submit("Send the proposal")
    expect(page.locator("#duration-error")).to_be_visible()
    look("reservation-new-errors")
    screen("negotiation-accept", f"/reservations/{made['accepted']}")
    expect(page.get_by_role("button", name="Confirm")).to_be_visible()
    screen("negotiation-counter", f"/reservations/{made[f'countered-{width}']}")
    expect(page.locator('tr[data-changed="start"], tr[data-changed="optional"]').first).to_be_visible()
    tab.submit("Accept")
    expect(page.get_by_role("heading", name=re.compile("CONFIRM_REQUEST"))).to_be_visible()
    look("negotiation-confirm-request")
    screen("negotiation-price-counter", f"/reservations/{made['price-countered']}")
    expect(page.locator("#over-price")).to_contain_text("These terms cost 0.05 USD, more than the 0.01 USD")
    expect(page.locator('tr[data-changed="price"] mark')).to_have_text("0.05 USD")
    page.locator(".negotiation > details.price-detail summary").click()
    look("negotiation-price-counter-detail")
    screen("negotiation-reject", f"/reservations/{made['rejected']}")
    expect(page.get_by_role("heading", name="OpenPEX cannot meet these terms (REJECT)")).to_be_visible()
    screen("negotiation-counter-alternatives", f"/reservations/{made['countered-take']}")
    expect(page.locator('tr[data-changed="optional"]').first).to_be_visible()
    alternatives = page.locator(".alternative")
    expect(alternatives).not_to_have_count(0)
    if width == NARROW:  # an alternative, proposed as it is: answered at once (after both widths' screens)
        with page.expect_navigation():
            alternatives.first.get_by_role("button", name="Propose these terms").click()
        expect(page.locator(".notice")).to_contain_text("OpenPEX answered")
    screen("reservation", f"/reservations/{made['agreed']}")
    expect(page.locator("[data-agreed-price]")).to_have_text("0.10 USD")
    screen("reservation-change", f"/reservations/{made['agreed']}/change")
    screen("reservations", "/reservations")
    expect(page.locator("table.reservations tbody tr")).to_have_count(7)
    expect(page.locator(f'tr[data-reservation="{made["agreed"]}"] td[data-field="price"]')).to_have_text("0.10 USD")
    screen("instances", "/instances")
    screen("usage", "/usage")
    expect(page.locator('[data-total="total"]')).to_have_text("0.00 USD")
    screen("not-found", "/reservations/00000000-0000-4000-8000-000000000000", status=404)
    screen("forbidden", "/admin/nodes", status=403)
    screen("logout", "/logout")
    tab.logout()
    tab.login("admin", ADMIN_PASSWORD)
    screen("admin-nodes", "/admin/nodes")
    screen("admin-capacity", "/admin/capacity?span=7d")
    expect(page.locator("a.bar-link")).not_to_have_count(0)
    screen("admin-users", "/admin/users")
    screen("usage-admin", "/usage")
    expect(page.locator('[data-total="all"]')).to_be_visible()
