"""Forms as people fill them in a real browser: wrong values come back with the values kept and
a message next to their field, and nothing recorded; a double submission makes one reservation;
the main flow works with JavaScript off and with the keyboard alone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import TEMPLATE, register, reservations_of, now
from tests.support.browser import local_input
from tests.support.server import Server


def fill_terms(page, *, fixed: str = "1", start: str | None = None, duration: str = "1", unit: str = "hours") -> None:
    page.get_by_label("Size", exact=True).select_option("SMALL")
    page.get_by_label("Template (operating system)").select_option(TEMPLATE)
    page.get_by_label("Instances you need").fill(fixed)
    page.get_by_label("Start (date and time)").fill(start or local_input(now() + timedelta(hours=2)))
    page.get_by_label("Duration", exact=True).fill(duration)
    page.get_by_label("Unit", exact=True).select_option(unit)


@pytest.mark.parametrize("field, given, said", [
    ("start", {"start": local_input(now() - timedelta(days=1))}, "in the past"),
    ("fixed", {"fixed": "0"}, "at least 1"),
    ("fixed", {"fixed": "1.5"}, "whole number"),
    ("duration", {"duration": "abc"}, "must be a number"),
    ("duration", {"duration": ""}, "is required"),
    ("duration", {"duration": "100", "unit": "days"}, "at most 90 days"),
    ("start", {"start": local_input(now() + timedelta(days=800))}, "days ahead"),
])
def test_a_wrong_field_comes_back_with_its_message_and_nothing_is_recorded(tabs, portal: Server, field, given,
                                                                           said) -> None:
    who = register(portal, f"kim-{field}-{abs(hash(str(given))) % 10_000}")
    tab = tabs.open()
    tab.login(*who)
    tab.go("/reservations/new")
    tab.refusing("/reservations/new")
    fill_terms(tab.page, **given)
    tab.page.get_by_label("Optional instances").fill("3")
    tab.submit("Send the proposal")
    error = tab.page.locator(f"#{field}-error")
    expect(error).to_contain_text(said)
    expect(tab.page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    expect(tab.page.locator(".form-errors")).to_contain_text("nothing was sent")
    expect(tab.page.get_by_label("Optional instances")).to_have_value("3")  # what was typed is kept
    expect(tab.page.get_by_label("Template (operating system)")).to_have_value(TEMPLATE)
    if field != "start":
        expect(tab.page.get_by_label("Start (date and time)")).to_have_value(given.get("start") or re.compile(r"\d"))
    assert reservations_of(portal, who) == []


def test_an_unknown_template_or_size_is_refused_next_to_its_field(tabs, portal: Server) -> None:
    who = register(portal, "lena")
    tab = tabs.open()
    tab.login(*who)
    tab.go("/reservations/new")
    form = {"csrf": tab.csrf(), "instance_type": "HUGE", "template": "windows-95", "fixed": "1", "optional": "",
            "start": local_input(now() + timedelta(hours=1)), "length": "duration", "duration": "2", "unit": "hours"}
    response = tab.page.request.post(tab.base + "/reservations/new", form=form, max_redirects=0)
    assert response.status == 400
    tab.page.set_content(response.text())
    expect(tab.page.locator("#template-error")).to_have_text("choose one of the templates")
    expect(tab.page.locator("#instance_type-error")).to_have_text("choose one of the sizes")
    expect(tab.page.locator("#template option[selected]")).to_have_text("windows-95 (unknown)")
    # an end before the start, chosen instead of a duration
    form.update(instance_type="SMALL", template=TEMPLATE, length="end", end=local_input(now()))
    response = tab.page.request.post(tab.base + "/reservations/new", form=form, max_redirects=0)
    assert response.status == 400 and "must be after the start" in response.text()
    # fields of megabytes and bytes that are not UTF-8 are no crash
    response = tab.page.request.post(tab.base + "/reservations/new",
                                     form={**form, "fixed": "9" * 5000, "duration": "\udcff"}, max_redirects=0)
    assert response.status == 400
    assert reservations_of(portal, who) == []


def test_a_double_click_or_a_resubmission_makes_one_reservation(tabs, portal: Server) -> None:
    who = register(portal, "mona")
    tab = tabs.open()
    tab.login(*who)
    tab.go("/reservations/new")
    fill_terms(tab.page)
    with tab.page.expect_navigation():
        tab.page.get_by_role("button", name="Send the proposal").dblclick()
    expect(tab.page.locator("h1 .status")).to_have_text("ACCEPTED")
    assert len(reservations_of(portal, who)) == 1
    # the same form sent again as it was (a resubmission): sent where the first one went
    tab.go("/reservations/new")
    fill_terms(tab.page)
    form = {name: tab.page.locator(f'[name="{name}"]').first.input_value()
            for name in ("csrf", "once", "instance_type", "template", "fixed", "optional", "start", "duration",
                         "unit")}
    form["length"] = "duration"
    first = tab.page.request.post(tab.base + "/reservations/new", form=form, max_redirects=0)
    second = tab.page.request.post(tab.base + "/reservations/new", form=form, max_redirects=0)
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(reservations_of(portal, who)) == 2


def test_the_main_flow_works_with_javascript_off(tabs, portal: Server) -> None:
    who = register(portal, "nina")
    tab = tabs.open(javascript=False)
    page = tab.page
    tab.login(*who)
    tab.go("/reservations/new")
    expect(page.locator("#start-hint")).to_contain_text("UTC")  # without the script, times are UTC
    start = (now() + timedelta(hours=3)).replace(second=0, microsecond=0)
    fill_terms(page, start=start.strftime("%Y-%m-%dT%H:%M"))
    tab.submit("Send the proposal")
    expect(page.get_by_role("heading", name="OpenPEX accepts")).to_be_visible()
    expect(page.locator(".countdown")).to_contain_text("min")
    tab.submit("Confirm")
    expect(page.locator("h1 .status")).to_have_text("CONFIRMED")
    tab.submit("Activate")
    expect(page.locator("h1 .status")).to_have_text("ACTIVATED")
    [made] = reservations_of(portal, who)
    assert made["status"] == "ACTIVATED" and made["startTime"] == start.strftime("%a, %d %b %Y %H:%M:%S GMT")
    # change it (extend it by an hour) and confirm the new terms
    page.get_by_role("link", name="Change").click()
    page.get_by_label("Duration", exact=True).fill("2")
    tab.submit("Send the change")
    expect(page.get_by_role("heading", name="OpenPEX accepts")).to_be_visible()
    tab.submit("Confirm")
    [changed] = reservations_of(portal, who)
    assert changed["duration"] == 2 * 3_600_000 and changed["status"] == "ACTIVATED"
    tab.go("/reservations")
    with page.expect_navigation():
        page.locator(f'tr[data-reservation="{made["id"]}"]').get_by_role("button", name="Delete").click()
    expect(page.locator(f'tr[data-reservation="{made["id"]}"] .status')).to_have_text("CANCELLED")


def test_a_reservation_made_with_the_keyboard_alone(tabs, portal: Server) -> None:
    who = register(portal, "omar")
    tab = tabs.open()
    page = tab.page
    tab.go("/login")

    def tab_to(selector: str, most: int = 40) -> None:
        for _ in range(most):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#username")
    page.keyboard.type(who[0])
    tab_to("#password")
    page.keyboard.type(who[1])
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {who[0]}")
    tab_to('a[href="/reservations/new"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tab_to("#fixed")
    page.keyboard.press("Control+a")
    page.keyboard.type("2")
    tab_to('button[type="submit"].primary')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("h1 .status")).to_have_text("ACCEPTED")
    tab_to('button.primary')  # Confirm
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("h1 .status")).to_have_text("CONFIRMED")
    [made] = reservations_of(portal, who)
    assert made["numInstancesFixed"] == 2
