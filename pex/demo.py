"""`openpex demo`: a negotiation printed to the terminal, on a SQLite store and a small cluster.

Until the service exists (actors, HTTP, libvirt) this shows the protocol end to end: an
ACCEPT, a COUNTER that moves the start, one that trims optional instances, a CONFIRM_REQUEST,
a renegotiation that keeps the old terms until confirmed, a lapse, and a restart that rebuilds
the same state from the event store.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from pex.domain.application import OpenPEX, Settings
from pex.domain.clock import HOUR, MINUTE, SystemClock, to_datetime
from pex.domain.negotiation import Terms, TermsChange
from pex.domain.sizes import DEFAULT_NODE
from pex.fencing import StoreInUse, StoreLock
from pex.http import presenters


def _say(who: str, what: str, body: Any = None) -> None:
    print(f"{who:>8} | {what}")
    if body is not None:
        for line in json.dumps(body, indent=2, default=str).splitlines():
            print(f"{'':>8} |   {line}")


def _when(ms: int) -> str:
    return to_datetime(ms).strftime("%a, %d %b %Y %H:%M:%S GMT")


def run(data_dir: str | None = None) -> int:
    folder = data_dir or tempfile.mkdtemp(prefix="openpex-demo-")
    os.makedirs(folder, exist_ok=True)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(folder, "events.db")}
    lock = StoreLock(Path(env["SQLITE_DBNAME"]))  # one writer per store, as `serve` (issue 13)
    try:
        lock.acquire()
    except StoreInUse as error:
        print(f"openpex demo: {error}", file=sys.stderr)
        return 1
    try:
        return _run(env, folder)
    finally:
        lock.release()


def _run(env: dict[str, str], folder: str) -> int:
    now = SystemClock().now()
    now -= now % MINUTE
    app = OpenPEX(env, settings=Settings(offer_ttl=5 * MINUTE), origin=now)
    try:
        _say("operator", f"event store: {env['SQLITE_DBNAME']}")
        for name in ("node1", "node2"):
            if name not in app.view.nodes:
                app.catalogue.register_node(name, f"test:///{folder}/{name}.xml", DEFAULT_NODE)
        if "Debian 12" not in app.view.templates:
            app.catalogue.register_template("Debian 12", "Debian bookworm")
        _say("operator", "two nodes of 8 CPUs, 16 GiB, 200 GB; XLARGE is 4 CPUs, so 4 fit at once")

        start = now + HOUR
        ask = Terms("XLARGE", "Debian 12", 3, 0, start, 2 * HOUR)
        _say("alice", f"3 XLARGE from {_when(start)} for 2 hours", presenters.proposal(ask))
        reply = app.negotiation.propose("alice", TermsChange.of(ask), now)
        _say("OpenPEX", reply.reply, presenters.answer(reply))
        alice = reply.reservation_id
        _say("alice", "CONFIRM")
        _say("OpenPEX", app.negotiation.respond(alice, "alice", "CONFIRM", now).reply)

        ask = replace(ask, fixed=2)
        _say("bob", "2 XLARGE at the same time (only 1 slot is left)", presenters.proposal(ask))
        reply = app.negotiation.propose("bob", TermsChange.of(ask), now)
        _say("OpenPEX", f"{reply.reply}: start moved to {_when(reply.terms.start)}", presenters.answer(reply))
        bob = reply.reservation_id
        _say("bob", "ACCEPT")
        _say("OpenPEX", app.negotiation.respond(bob, "bob", "ACCEPT", now).reply)
        _say("bob", "CONFIRM")
        _say("OpenPEX", app.negotiation.respond(bob, "bob", "CONFIRM", now).reply)

        ask = replace(ask, fixed=1, optional=3, duration=6 * HOUR)
        _say("carol", "1 XLARGE, up to 3 more if possible, 6 hours", presenters.proposal(ask))
        reply = app.negotiation.propose("carol", TermsChange.of(ask), now)
        _say("OpenPEX", reply.reply, presenters.answer(reply))

        ask = Terms("XLARGE", "Debian 12", 1, 0, start, HOUR, max_price=Decimal("0.30"))
        _say("dave", "1 XLARGE in alice's first hour, paying at most 0.30 (the card says 0.20 an hour, "
                     "but that hour is busy)", presenters.proposal(ask))
        reply = app.negotiation.propose("dave", TermsChange.of(ask), now)
        _say("OpenPEX", f"{reply.reply} at {reply.price.total if reply.price else '-'} for the hour asked (a COUNTER "
                        "on price lists the nearest window within 0.30 first)", presenters.answer(reply))

        _say("alice", "renegotiate: extend to 3 hours")
        reply = app.negotiation.respond(alice, "alice", "COUNTER", now, TermsChange(duration=3 * HOUR))
        _say("OpenPEX", reply.reply, presenters.answer(reply))
        shown = app.read.reservation(alice, "alice")
        _say("OpenPEX", f"alice's reservation is {shown.status} with duration "
                        f"{shown.terms.duration // HOUR} h until the change is confirmed")

        lapsed = app.lifecycle.lapse_due(now + 5 * MINUTE)
        _say("clock", f"5 minutes later: {len(lapsed)} offers lapsed and their holds were released")
    finally:
        app.close()

    reopened = OpenPEX(env, origin=now)
    try:
        statuses = {r.userid: r.status.value for r in reopened.read.reservations("operator", is_admin=True)}
        _say("operator", "restarted: state rebuilt from the event store", statuses)
        position = reopened.recorder.max_notification_id()
        _say("operator", f"{position} events stored")
    finally:
        reopened.close()
    return 0
