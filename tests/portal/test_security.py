"""The portal's security in a real browser: forms without their CSRF token are refused, one
user cannot see another's things, the logged-out are sent to the login, the session cookie is
what it must be, and the pages run no inline script."""

from __future__ import annotations

import ipaddress
import re
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import expect

from tests.portal.conftest import PASSWORD, TEMPLATE, register, reservations_of, reserve, now
from tests.support.browser import Tabs, local_input
from tests.support.server import Server

PAGES = ("/", "/reservations", "/reservations/new", "/instances", "/admin/nodes", "/admin/capacity", "/admin/users",
         "/logout", "/reservations/00000000-0000-4000-8000-000000000000")


def new_reservation_form(start: str) -> dict[str, str]:
    return {"instance_type": "SMALL", "template": TEMPLATE, "fixed": "1", "optional": "0", "start": start,
            "length": "duration", "duration": "1", "unit": "hours"}


def test_a_form_without_its_csrf_token_is_refused_and_records_nothing(tabs, portal: Server) -> None:
    erin = register(portal, "erin")
    tab = tabs.open()
    tab.login(*erin)
    tab.go("/reservations/new")
    token = tab.csrf()
    start = local_input(now() + timedelta(hours=1))
    form = new_reservation_form(start)
    for sent in (form, {**form, "csrf": "not-the-token"}, {**form, "csrf": ""}):
        response = tab.page.request.post(tab.base + "/reservations/new", form=sent, max_redirects=0)
        assert response.status == 403
        assert "reload the page" in response.text()
    assert reservations_of(portal, erin) == []
    # the same form with its token goes through
    response = tab.page.request.post(tab.base + "/reservations/new", form={**form, "csrf": token}, max_redirects=0)
    assert response.status == 303
    assert len(reservations_of(portal, erin)) == 1
    # another session's token is not this session's
    other = tabs.open()
    other.login(*erin)
    other.go("/reservations/new")
    response = other.page.request.post(other.base + "/reservations/new", form={**form, "csrf": token},
                                       max_redirects=0)
    assert response.status == 403
    # a logout needs the token too
    response = tab.page.request.post(tab.base + "/logout", form={}, max_redirects=0)
    assert response.status == 403
    tab.go("/")


def test_another_users_reservation_and_instances_are_not_found(tabs, portal: Server) -> None:
    frank, grace = register(portal, "frank"), register(portal, "grace")
    theirs = reserve(portal, frank, now() + timedelta(hours=1), timedelta(hours=1))
    tab = tabs.open()
    tab.login(*grace)
    tab.go(f"/reservations/{theirs}", status=404)
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Not found")
    assert "frank" not in tab.page.content()
    tab.go(f"/reservations/{theirs}/change", status=404)
    for action in ("activate", "delete", "reply", "change"):
        response = tab.page.request.post(f"{tab.base}/reservations/{theirs}/{action}",
                                         form={"csrf": tab.csrf(), "reply": "REJECT"}, max_redirects=0)
        assert response.status == 404, (action, response.status)
    _, instances = portal.request("GET", "/OpenPEX/instances", auth=frank)
    vm = instances[0]["vmID"]
    response = tab.page.request.post(f"{tab.base}/instances/{vm}/stop", form={"csrf": tab.csrf()}, max_redirects=0)
    assert response.status == 404
    tab.go("/instances")
    assert vm not in tab.page.content()
    tab.go(f"/reservations/new?from={theirs}")  # (a form of someone else's terms: a fresh form instead)
    expect(tab.page.get_by_label("Instances you need")).to_have_value("1")
    assert [r["status"] for r in reservations_of(portal, frank)] == ["CONFIRMED"]


def test_logged_out_every_page_sends_to_the_login(tabs, portal: Server) -> None:
    tab = tabs.open()
    for path in PAGES:
        tab.page.goto(tab.base + path)
        expect(tab.page).to_have_url(re.compile(r"/login(\?next=.*)?$"))
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Log in")
    # after the login, the page first asked for
    henry = register(portal, "henry")
    tab.page.goto(tab.base + "/instances")
    tab.page.get_by_label("Username").fill(henry[0])
    tab.page.get_by_label("Password").fill(PASSWORD)
    tab.submit("Log in")
    expect(tab.page).to_have_url(re.compile(r"/instances$"))
    # never to another site
    tab.logout()
    tab.page.goto(tab.base + "/login?next=//evil.example/")
    tab.page.get_by_label("Username").fill(henry[0])
    tab.page.get_by_label("Password").fill(PASSWORD)
    tab.submit("Log in")
    expect(tab.page).to_have_url(tab.base + "/")
    # logged out, an action is not carried out
    tab.logout()
    response = tab.page.request.post(tab.base + "/reservations/new", form={"csrf": "x"}, max_redirects=0)
    assert response.status == 303 and response.headers["location"] == "/login"


def test_a_wrong_password_is_said_next_to_the_field(tabs, portal: Server) -> None:
    register(portal, "ivan")
    tab = tabs.open()
    tab.go("/login")
    tab.refusing("/login")
    tab.page.get_by_label("Username").fill("ivan")
    tab.page.get_by_label("Password").fill("not-the-password")
    tab.submit("Log in")
    expect(tab.page.locator("#password-error")).to_have_text("wrong username or password")
    expect(tab.page.get_by_label("Username")).to_have_value("ivan")
    expect(tab.page.get_by_label("Password")).to_have_value("")  # never sent back


def test_the_session_cookie_and_the_page_headers(tabs, portal: Server) -> None:
    judy = register(portal, "judy")
    tab = tabs.open()
    response = tab.go("/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    tab.login(*judy)
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    session = cookies["openpex_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and not session["secure"]  # (plain HTTP here)
    assert "judy" not in session["value"]  # encrypted
    assert tab.page.evaluate("document.cookie") == ""  # out of a script's reach
    # a session cookie that was tampered with is no session at all
    tab.page.context.add_cookies([{**session, "value": session["value"][:-8] + "AAAAAAAA"}])
    tab.page.goto(tab.base + "/")
    expect(tab.page).to_have_url(re.compile(r"/login"))
    # no page carries an inline script
    tab.login(*judy)
    for path in ("/", "/reservations/new", "/reservations", "/instances"):
        tab.go(path)
        assert tab.page.locator("script:not([src])").count() == 0
        assert tab.page.locator("[onclick], [onload], [onsubmit]").count() == 0


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    moment = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(moment - timedelta(minutes=1))
                   .not_valid_after(moment + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert, private = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def test_over_tls_the_session_cookie_is_secure(browser, tmp_path) -> None:
    cert, key = self_signed(tmp_path)
    server = Server(tmp_path, "--simulated-nodes", "1", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        who = register(server, "xena")
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(server.base + "/login")
        page.get_by_label("Username").fill(who[0])
        page.get_by_label("Password").fill(who[1])
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, xena")
        session = {c["name"]: c for c in context.cookies()}["openpex_session"]
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
        context.close()
    finally:
        server.close()


def test_a_restart_keeps_everyone_logged_in(browser, tmp_path) -> None:
    server = Server(tmp_path, "--simulated-nodes", "1")
    port = server.port
    try:
        who = register(server, "yuri")
        tabs = Tabs(browser, server.base)
        tab = tabs.open()
        tab.login(*who)
        assert (tmp_path / "portal-session.key").stat().st_mode & 0o777 == 0o600
        tab.page.wait_for_load_state("networkidle")  # (the icon too, before the server goes)
        server.kill(signal.SIGTERM)
        server = Server(tmp_path, "--simulated-nodes", "1", port=port)
        tab.go("/reservations")
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("View and activate reservations")
        assert not tabs.close()
    finally:
        server.close()
