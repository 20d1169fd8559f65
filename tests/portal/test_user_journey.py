"""A user's whole journey through the portal in a real browser: register, log in, reserve
while the cluster is full, see the COUNTER with its changed start marked, accept, confirm,
activate, watch the instances start live, stop one, delete the reservation."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parsedate_to_datetime

from playwright.sync_api import expect

from tests.portal.conftest import PASSWORD, TEMPLATE, register, reservations_of, reserve, now
from tests.support.browser import local_input
from tests.support.server import Server


def test_register_reserve_negotiate_run_stop_and_delete(tabs, portal: Server) -> None:
    tab = tabs.open()
    page = tab.page

    # register (which signs in), log out, log in
    tab.go("/register")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Full name (optional)").fill("Alice Liddell")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    tab.submit("Register")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, alice")
    tab.logout()
    tab.login("alice", PASSWORD)
    expect(page.locator("#offers-waiting")).to_have_text("0")

    # The cluster is full from now until a while after the minute alice will ask for.
    ask_at = (now() + timedelta(seconds=80)).replace(second=0, microsecond=0)
    filler = register(portal, "filler")
    blocked_until = ask_at + timedelta(seconds=35)
    block_start = now() + timedelta(seconds=3)
    reserve(portal, filler, block_start, blocked_until - block_start.replace(microsecond=0), count=2)

    tab.go("/reservations/new")
    page.get_by_label("Size", exact=True).select_option("SMALL")
    page.get_by_label("Template (operating system)").select_option(TEMPLATE)
    page.get_by_label("Instances you need").fill("2")
    page.get_by_label("Start (date and time)").fill(local_input(ask_at))
    page.get_by_label("Duration", exact=True).fill("3")
    page.get_by_label("Unit", exact=True).select_option("minutes")
    tab.submit("Send the proposal")

    # The COUNTER: the request and the counter side by side, the start (and so the end) changed.
    expect(page.get_by_role("heading", name="OpenPEX countered")).to_be_visible()
    expect(page.locator(".status").first).to_have_text("COUNTERED")
    changed = page.locator("table.compare").first.locator("tr.changed")
    expect(changed).to_have_count(2)
    expect(page.locator('tr[data-changed="start"] mark')).to_be_visible()
    expect(page.locator('tr[data-changed="end"]')).to_be_visible()
    offered = page.locator('tr[data-changed="start"] td').nth(1).locator("time").get_attribute("datetime")
    asked = page.locator('tr[data-changed="start"] td').nth(0).locator("time").get_attribute("datetime")
    assert asked == ask_at.strftime("%Y-%m-%dT%H:%M:%SZ")  # sent in GMT, typed in Paris time
    rid = page.url.rsplit("/", 1)[1]
    held = [r for r in reservations_of(portal, ("alice", PASSWORD)) if r["id"] == rid][0]
    assert offered == parsedate_to_datetime(held["offer"]["proposal"]["startTime"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert offered > asked
    # shown in the visitor's zone (Paris), not in UTC
    expect(page.locator('tr[data-changed="start"] td').nth(1).locator("time")).to_contain_text(
        re.compile(r"CET|GMT\+1|UTC\+1|\+01"))
    expect(page.locator(".countdown")).to_have_text(re.compile(r"[0-9] min [0-9]{2} s"))
    expect(page.locator(".history")).to_contain_text("countered (start moved to")
    expect(page.locator(".history")).not_to_contain_text("GMT")  # its times in the visitor's zone too
    for name in ("Accept", "Reject"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Counter with changed terms")).to_be_visible()
    tab.shot("negotiation-counter")

    tab.submit("Accept")
    expect(page.get_by_role("heading", name=re.compile("CONFIRM_REQUEST"))).to_be_visible()
    expect(page.locator(".step.done", has_text="CONFIRM_REQUEST")).to_be_visible()
    tab.shot("negotiation-confirm-request")
    tab.submit("Confirm")
    expect(page.locator(".notice")).to_contain_text("REQUEST_SUCCESS")
    expect(page.locator("h1 .status")).to_have_text("CONFIRMED")
    expect(page.locator(".step.done", has_text="REQUEST_SUCCESS")).to_be_visible()
    tab.submit("Activate")
    expect(page.locator("h1 .status")).to_have_text("ACTIVATED")

    # The instances: waiting, then RUNNING at the start, without the page being loaded again.
    tab.go("/instances")
    rows = page.locator("table.instances tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("[data-live-state]")).to_contain_text("Live")
    page.evaluate("window.stayedHere = true")
    for row in rows.all():
        expect(row.locator('[data-field="status"]')).to_have_text("RUNNING", timeout=150_000)
    assert page.evaluate("window.stayedHere === true"), "the page was loaded again"
    tab.shot("instances-running")
    tab.go("/")
    expect(page.locator("#instances-running")).to_have_text("2")
    tab.go("/instances")

    first = rows.nth(0)
    vm = first.get_attribute("data-vm")
    with page.expect_navigation():
        first.get_by_role("button", name="Stop").click()
    stopped = page.locator(f'tr[data-vm="{vm}"] [data-field="status"]')
    expect(stopped).to_have_text("HALTED", timeout=60_000)
    expect(page.locator(f'tr[data-vm="{vm}"]').get_by_role("button", name="Start")).to_be_visible()

    tab.go(f"/reservations/{rid}")
    tab.submit("Delete")
    expect(page.locator("h1 .status")).to_have_text("CANCELLED")
    final = [r for r in reservations_of(portal, ("alice", PASSWORD)) if r["id"] == rid][0]
    assert final["status"] == "CANCELLED"
    status, instances = portal.request("GET", "/OpenPEX/instances", auth=("alice", PASSWORD))
    assert {i["status"] for i in instances} == {"DELETED"}
