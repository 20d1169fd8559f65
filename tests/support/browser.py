"""Debian's Chromium driven by Playwright (sync API), for the portal's tests: a browser per
test session, a tab per visitor that records every console error and uncaught exception, and
screenshots under tests/artifacts/."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect

CHROMIUM = "/usr/bin/chromium"
# (the background-networking flags: this machine's closed network refuses Chromium's own calls)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WIDE, NARROW = 1280, 390
ZONE = "Europe/Paris"  # the visitors' time zone: not UTC, so a time shown or sent in the wrong zone shows
_EXPECTED_STATUS = re.compile(r"Failed to load resource: the server responded with a status of (4\d\d)")


@dataclass
class Tab:
    """One visitor's browser tab on the portal."""

    page: Page
    base: str
    width: int
    problems: list[str] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)  # documents visited expecting a 4xx answer

    def go(self, path: str, *, status: int = 200) -> Response:
        url = self.base + path
        if status >= 400:
            self.expected.add(url)
        response = self.page.goto(url)
        assert response is not None
        assert response.status == status, f"{path}: {response.status}\n{self.page.content()[:2000]}"
        return response

    def refusing(self, path: str) -> None:
        """The page at `path` is about to be answered with a 4xx on purpose (a form sent back
        with its errors): the browser's line about that status is no error of the page's."""
        self.expected.add(self.base + path)

    def login(self, username: str, password: str) -> None:
        self.go("/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {username}")

    def logout(self) -> None:
        self.page.get_by_role("button", name="Log out").first.click()
        expect(self.page).to_have_url(re.compile(r"/login$"))

    def submit(self, name: str) -> None:
        """Click a submit button and wait for the page it leads to."""
        with self.page.expect_navigation():
            self.page.get_by_role("button", name=name, exact=True).first.click()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}-{self.width}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    def csrf(self) -> str:
        return self.page.locator('input[name="csrf"]').first.get_attribute("value") or ""

    def overflow(self) -> int:
        """How far the page is wider than the window (0: no sideways scrolling)."""
        return int(self.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning"):
            return
        expected = _EXPECTED_STATUS.match(message.text)
        if expected and message.location.get("url") in self.expected:
            return
        self.problems.append(f"console {message.type}: {message.text} at {message.location}")


class Tabs:
    """Opens tabs, each in a context of its own (its own cookies), and closes them all."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser, self.base = browser, base
        self.contexts: list[tuple[BrowserContext, Tab]] = []

    def open(self, *, width: int = WIDE, javascript: bool = True) -> Tab:
        context = self.browser.new_context(viewport={"width": width, "height": 900}, timezone_id=ZONE,
                                           java_script_enabled=javascript, locale="en-GB")
        context.set_default_timeout(15_000)
        page = context.new_page()
        tab = Tab(page, self.base, width)
        page.on("console", tab._console)
        page.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
        page.on("dialog", lambda dialog: dialog.accept())  # "Delete this …?" is answered yes
        self.contexts.append((context, tab))
        return tab

    def close(self) -> list[str]:
        problems = []
        for context, tab in self.contexts:
            problems += tab.problems
            context.close()
        return problems


def local_input(instant: datetime) -> str:
    """What a visitor in ZONE types into a datetime-local field for `instant`."""
    return instant.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M")


def utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


def cookie_header(tab: Tab) -> dict[str, Any]:
    cookies = tab.page.context.cookies()
    return {"Cookie": "; ".join(f"{c['name']}={c['value']}" for c in cookies)}
