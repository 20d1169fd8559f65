"""The administrator's journey in a real browser: add a node, drain it, undrain it, and find a
user's booking (and an open offer's hold) on the capacity Gantt; and what others may not see."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import expect

from tests.portal.conftest import ADMIN, register, reserve, now
from tests.support.server import ADMIN_PASSWORD, Server


def test_add_a_node_drain_it_and_see_bookings_on_the_gantt(tabs, portal: Server) -> None:
    tab = tabs.open()
    page = tab.page
    tab.login("admin", ADMIN_PASSWORD)

    tab.go("/admin/nodes")
    page.get_by_label("Name", exact=True).fill("extra")
    page.get_by_label("libvirt URI").fill("test:///default")
    page.get_by_label("CPUs", exact=True).fill("4")
    page.get_by_label("Memory (MB)").fill("8192")
    tab.submit("Add the node")
    expect(page.locator(".notice")).to_contain_text("Node extra added")
    row = page.locator('tr[data-node="extra"]')
    expect(row.locator(".status")).to_have_text("UP")
    expect(row).to_contain_text("4 CPU, 8192 MB")
    assert portal.request("GET", "/OpenPEX/nodes/extra", auth=ADMIN)[1]["status"] == "UP"

    with page.expect_navigation():
        row.get_by_role("button", name="Drain").click()
    expect(page.locator('tr[data-node="extra"] .status')).to_have_text("DRAINED")
    assert portal.request("GET", "/OpenPEX/nodes/extra", auth=ADMIN)[1]["status"] == "DRAINED"
    tab.shot("admin-nodes")
    with page.expect_navigation():
        page.locator('tr[data-node="extra"]').get_by_role("button", name="Undrain").click()
    expect(page.locator('tr[data-node="extra"] .status')).to_have_text("UP")

    # A booking and a hold, each a bar whose hover text names its reservation.
    carol = register(portal, "carol")
    booked = reserve(portal, carol, now() + timedelta(hours=2), timedelta(hours=3))
    held = reserve(portal, carol, now() + timedelta(hours=6), timedelta(hours=1), confirm=False)
    tab.go("/admin/capacity")
    bar = page.locator(f'a.bar-link[data-reservation="{booked}"] rect.bar')
    expect(bar).to_have_class("bar booked")
    expect(page.locator(f'a.bar-link[data-reservation="{held}"] rect.bar')).to_have_class("bar held")
    bar.hover()
    title = page.locator(f'a.bar-link[data-reservation="{booked}"] title').text_content() or ""
    assert booked in title and "carol" in title and "1 × SMALL" in title
    expect(page.locator('g.row[data-node="extra"]')).to_be_visible()
    tab.shot("admin-capacity")
    with page.expect_navigation():
        page.locator(f'a.bar-link[data-reservation="{booked}"]').click()
    expect(page.locator("h1 code")).to_have_text(booked)

    # An earlier window holds neither; a malformed one is an error next to its field.
    tab.go("/admin/capacity?from=2020-01-01T00:00&span=6h")
    expect(page.locator("a.bar-link")).to_have_count(0)
    tab.go("/admin/capacity?from=yesterday", status=400)
    expect(page.locator("#from-error")).to_contain_text("date and time")

    tab.go("/admin/users")
    expect(page.locator("table.users")).to_contain_text("carol")
    tab.shot("admin-users")


def test_a_bad_node_comes_back_with_its_error_and_adds_nothing(tabs, portal: Server) -> None:
    tab = tabs.open()
    page = tab.page
    tab.login("admin", ADMIN_PASSWORD)
    before = len(portal.request("GET", "/OpenPEX/nodes", auth=ADMIN)[1])
    tab.go("/admin/nodes")
    tab.refusing("/admin/nodes")
    page.get_by_label("Name", exact=True).fill("bad name!")
    page.get_by_label("libvirt URI").fill("test:///default")
    page.get_by_label("CPUs", exact=True).fill("1.5")
    with page.expect_navigation():
        page.get_by_role("button", name="Add the node").click()
    expect(page.locator("#cpus-error")).to_contain_text("whole number")
    expect(page.get_by_label("Name", exact=True)).to_have_value("bad name!")
    page.get_by_label("CPUs", exact=True).fill("")
    with page.expect_navigation():
        page.get_by_role("button", name="Add the node").click()
    expect(page.locator("#name-error")).to_be_visible()
    assert len(portal.request("GET", "/OpenPEX/nodes", auth=ADMIN)[1]) == before


def test_the_admin_pages_are_refused_to_a_user(tabs, portal: Server) -> None:
    dave = register(portal, "dave")
    tab = tabs.open()
    tab.login(*dave)
    for path in ("/admin/nodes", "/admin/capacity", "/admin/users"):
        tab.go(path, status=403)
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(tab.page.get_by_role("link", name="Nodes")).to_have_count(0)
    response = tab.page.request.post(tab.base + "/admin/nodes/sim01/drain", form={"csrf": tab.csrf()},
                                     max_redirects=0)
    assert response.status == 403
