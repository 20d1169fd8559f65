"""The web portal (the paper's §3.3): server-rendered pages in the same aiohttp app, on the same
accounts, store and actors as the REST API. `add_portal` mounts it; docs/portal.md tells its
design."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from pex.domain.application import OpenPEX
from pex.domain.clock import Millis
from pex.http.portal import accounts, admin, pages
from pex.http.portal.forms import iso, picker_value
from pex.http.portal.live import Hub
from pex.http.portal.prices import breakdown, hours, priced
from pex.http.portal.sessions import SIGNED_OUT, SIGNED_OUT_FILE, SignedOut
from pex.http.presenters import span_words
from pex.http.wire import format_time

STATIC = Path(__file__).parent / "static"


def when(instant: Millis | None) -> Markup:
    """An instant as the page shows it: UTC, which the page's script turns into the visitor's
    own time zone (`datetime` says which instant)."""
    if instant is None:
        return Markup("—")
    shown = str(format_time(instant)).replace("GMT", "UTC")
    return Markup('<time datetime="{}">{}</time>').format(iso(instant), shown)


def add_portal(app: web.Application, domain: OpenPEX, data_dir: Path | None = None) -> None:
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("pex.http.portal", "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.globals.update(when=when, span=span_words, iso=iso, priced=priced, hours=hours, breakdown=breakdown)
    env.filters["picker"] = picker_value
    app[pages.HUB] = hub = Hub()
    app[pages.SENT] = pages.SentOnce()
    app[SIGNED_OUT] = SignedOut(data_dir / SIGNED_OUT_FILE if data_dir is not None else None)

    async def start_hub(_: web.Application) -> None:
        hub.start(asyncio.get_running_loop())
        domain.saved_listeners.append(hub.saved)

    async def stop_hub(_: web.Application) -> None:
        if hub.saved in domain.saved_listeners:
            domain.saved_listeners.remove(hub.saved)
        await hub.close()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_hub)
    app.router.add_routes([
        web.get("/", pages.welcome),
        web.get("/login", accounts.login_form),
        web.post("/login", accounts.login),
        web.get("/register", accounts.register_form),
        web.post("/register", accounts.register),
        web.get("/logout", accounts.logout_form),
        web.post("/logout", accounts.logout),
        web.get("/reservations/new", pages.new_reservation_form),
        web.post("/reservations/new", pages.new_reservation),
        web.get("/reservations", pages.reservations),
        web.get("/reservations/{id}", pages.reservation),
        web.post("/reservations/{id}/reply", pages.reply),
        web.get("/reservations/{id}/change", pages.change_form),
        web.post("/reservations/{id}/change", pages.change),
        web.post("/reservations/{id}/activate", pages.activate),
        web.post("/reservations/{id}/delete", pages.delete),
        web.get("/instances", pages.instances),
        web.get("/instances/live", pages.live_instances),
        web.post("/instances/{vm_id}/{operation}", pages.operate),
        web.get("/usage", pages.usage),
        web.get("/admin/nodes", admin.nodes),
        web.post("/admin/nodes", admin.add_node),
        web.post("/admin/nodes/{name}/{change:drain|undrain}", admin.mark_node),
        web.get("/admin/capacity", admin.capacity),
        web.get("/admin/users", admin.users),
        web.static("/static", STATIC),
    ])
