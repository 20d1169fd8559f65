"""The administrator's pages: the nodes (status, load, add, drain, undrain), the cluster's
bookings as a Gantt chart, and the accounts."""

from __future__ import annotations

import re

from aiohttp import web

from pex.domain.catalogue import NodeChange
from pex.domain.clock import DAY, HOUR
from pex.domain.errors import DomainError, InvalidField
from pex.domain.negotiation import LATEST_INSTANT
from pex.http.portal.forms import instant, iso, values_of
from pex.http.portal.gantt import chart
from pex.http.portal.sessions import flash
from pex.http.portal.site import act, form_of, page, render
from pex.http.typedefs import ask, ask_manager

NODE_FIELDS = ("name", "uri", "cpus", "memory_mb", "disk_gb")
EARLIEST = 0  # (the Unix epoch: the chart's times are from it on)
SPANS = {"6h": 6 * HOUR, "24h": DAY, "3d": 3 * DAY, "7d": 7 * DAY, "30d": 30 * DAY}


@page(admin=True)
async def nodes(request: web.Request) -> web.Response:
    return await _nodes_page(request)


async def _nodes_page(request: web.Request, values: dict[str, str] | None = None,
                      errors: dict[str, str] | None = None) -> web.Response:
    found = await ask(request, lambda allocator: allocator.nodes())
    return await render(request, "admin_nodes.html", {"nodes": found, "values": values or {}, "errors": errors or {}},
                        status=400 if errors else 200)


@page(admin=True)
async def add_node(request: web.Request) -> web.Response:
    values = values_of(form_of(request), NODE_FIELDS)
    errors: dict[str, str] = {}
    size: dict[str, int] = {}
    for name in ("cpus", "memory_mb", "disk_gb"):
        given = values[name].strip()
        if not given:
            continue
        if not re.fullmatch(r"[0-9]{1,9}", given) or int(given) < 1:
            errors[name] = "must be a whole number, 1 or more (or empty: what the host says)"
        else:
            size[name] = int(given)
    for name in ("name", "uri"):
        if not values[name].strip():
            errors[name] = "is required"
    if errors:
        return await _nodes_page(request, values, errors)
    try:
        added = await ask_manager(request, lambda manager: manager.add_node(values["name"].strip(),
                                                                            values["uri"].strip(), size))
    except InvalidField as error:
        field = {"memoryMB": "memory_mb", "diskGB": "disk_gb"}.get(error.field, error.field)
        return await _nodes_page(request, values, {field if field in NODE_FIELDS else "name": error.reason})
    except DomainError as refused:
        return await _nodes_page(request, values, {"name": refused.message})
    await flash(request, f"Node {added.name} added ({added.status.value}).")
    raise web.HTTPSeeOther("/admin/nodes")


@page(admin=True)
async def mark_node(request: web.Request) -> web.Response:
    name, change = request.match_info["name"], request.match_info["change"]
    marked: NodeChange = "DRAINED" if change == "drain" else "UNDRAINED"
    await act(request, ask(request, lambda allocator: allocator.app.catalogue.mark_node(name, marked)),
              lambda _: (f"Node {name} " + ("drained: it takes no new bookings." if change == "drain"
                                             else "back in service."), "ok"))
    raise web.HTTPSeeOther("/admin/nodes")


@page(admin=True)
async def capacity(request: web.Request) -> web.Response:
    """The Gantt over a window: `span` (6h, 24h, 3d, 7d, 30d) from `from` (a date and time,
    UTC; default the hour before this one)."""
    span_name = request.query.get("span", "24h")
    span = SPANS.get(span_name, DAY)
    day = request.query.get("from_utc", "") or request.query.get("from", "")  # (the page's script sends UTC)

    found, now = await ask(request, lambda allocator: (allocator.nodes(), allocator.clock.now()))
    start = (now // HOUR - 1) * HOUR
    error = None
    if day:
        try:
            start = instant(day, "from")
            if not EARLIEST <= start <= LATEST_INSTANT - 2 * max(SPANS.values()):
                raise InvalidField("from", "must be from 1970 to 9999")
        except InvalidField as refused:
            start, error = (now // HOUR - 1) * HOUR, f"{day[:40]!r} {refused.reason}"
    end = start + span
    bookings = await ask(request, lambda allocator: allocator.app.read.bookings(start, end))
    drawn = chart(found, bookings, start, end, now)
    return await render(request, "admin_capacity.html", {
        "chart": drawn, "span": span_name if span_name in SPANS else "24h", "spans": list(SPANS),
        "from": day[:40] if error else iso(start)[:16], "from_instant": "" if error else iso(start), "error": error, "earlier": iso(start - span)[:16], "later": iso(start + span)[:16],
        "bookings": bookings}, status=400 if error else 200)


@page(admin=True)
async def users(request: web.Request) -> web.Response:
    found = await ask(request, lambda allocator: allocator.accounts())
    return await render(request, "admin_users.html", {"accounts": found})
