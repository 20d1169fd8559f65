"""The `openpex` command line."""

from __future__ import annotations

import argparse
import re
import sys

from pex.domain.pricing import POLICIES
from pex.domain.sizes import DEFAULT_NODE
from pex.logs import FORMATS

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openpex", description="Advance reservation of virtual machines.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a negotiation on a small simulated cluster and print it")
    demo.add_argument("--data-dir", help="where the SQLite event store goes (default: a new temporary folder)")
    serve = commands.add_parser("serve", help="run the service: actors, simulated or real libvirt hosts, REST API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", default="var", help="the SQLite event store and simulated host files (default ./var)")
    serve.add_argument("--simulated-nodes", type=_count, default=4, metavar="N",
                       help="libvirt test-driver hosts to run (default 4; 0 for none)")
    serve.add_argument("--node-spec", default="",
                       help="size of each simulated host, and the disk of real ones (memory MB, disk GB; "
                            f"default cpus={DEFAULT_NODE.cpus},memory={DEFAULT_NODE.memory_mb},disk={DEFAULT_NODE.disk_gb})")
    serve.add_argument("--node", action="append", default=[], metavar="NAME=URI", help="a real libvirt host (repeatable)")
    serve.add_argument("--database", help="a SQLite file or postgresql://user:password@host:port/db")
    serve.add_argument("--offer-ttl", type=float, default=300.0, metavar="SECONDS", help="how long offers are held")
    serve.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                       help="between a graceful shutdown at a reservation's end and a forced one")
    serve.add_argument("--monitor-interval", type=float, default=5.0, metavar="SECONDS",
                       help="how often hosts are polled and VMs reconciled (default 5)")
    serve.add_argument("--image-dir", metavar="DIR",
                       help="the only directory template files (kernel, initrd) may be in (default DATA_DIR/images)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web origin (https://host[:port]) whose pages may call the API (repeatable; default none)")
    serve.add_argument("--quota-open-offers", type=_count, metavar="N", help="offers a user may hold open at once (default 10)")
    serve.add_argument("--quota-instance-hours", type=_count, metavar="N",
                       help="instance-hours a user's open offers may hold (default 2000)")
    serve.add_argument("--quota-proposals", type=_count, metavar="N", help="proposals a user may send a minute (default 60)")
    serve.add_argument("--pricing", choices=sorted(POLICIES), default="demand",
                       help="how demand moves the rate card's prices: demand (x1 up to 50 %% committed, rising to x3 "
                            "at 100 %%; default) or flat")
    serve.add_argument("--signing-key", metavar="PATH",
                       help="the Ed25519 key (PEM) tree heads are signed with (default DATA_DIR/audit-signing-key.pem, "
                            "made on the first start)")
    serve.add_argument("--head-interval", type=float, default=1.0, metavar="SECONDS",
                       help="how often the log's tree head is signed (default 1; 0: never, no tamper evidence)")
    serve.add_argument("--snapshot-every", type=int, default=20_000, metavar="EVENTS",
                       help="write a snapshot of the view (DATA_DIR/projections.snapshot, by a separate process) "
                            "once the log has grown this many events past the last (default 20000; 0: never)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain) file; "
                                                         "the portal's cookies are then Secure")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (default: in --tls-cert)")
    serve.add_argument("--log-format", choices=FORMATS, default="text",
                       help="text lines (default), or one JSON object per line with the reservation, VM, node "
                            "and user a line is about")
    project = commands.add_parser("project", help="materialise the projections into SQL tables (docs/sql-read-model.md)")
    project.add_argument("--database", required=True, metavar="STORE",
                         help="the event store, read only: a SQLite file or postgresql://user:password@host:port/db")
    project.add_argument("--into", required=True, metavar="TARGET",
                         help="the read model: a SQLite file (created if missing) or a postgresql:// URL")
    project.add_argument("--schema", help="the PostgreSQL schema of the tables (created if missing; default public)")
    project.add_argument("--follow", action="store_true",
                         help="keep applying new events as they are recorded, until SIGINT or SIGTERM")
    project.add_argument("--batch-size", type=_count, default=None, metavar="N",
                         help="events written per transaction (default 20000)")
    events = commands.add_parser("events", help="list the event log, filtered; --follow for new events (read only)")
    from pex.audit.events import configure as configure_events

    configure_events(events)
    replay = commands.add_parser("replay", help="the store as it was at an instant or a position, or what changed "
                                                "between two instants (read only)")
    from pex.audit.replay import configure as configure_replay

    configure_replay(replay)
    from pex.audit import verify as auditing

    head = commands.add_parser("head", help="print the latest signed tree head of the log (save it elsewhere)")
    auditing.configure(head, "openpex head")
    verify = commands.add_parser("verify", help="check the log against its signed tree heads, or check a proof")
    auditing.configure_verify(verify)
    prove = commands.add_parser("prove", help="print an inclusion proof of one event against the latest head")
    auditing.configure_prove(prove)
    own_errors = {"events": events, "replay": replay, "head": head, "verify": verify, "prove": prove}
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        own_errors.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "events":
        from pex.audit.events import run as list_events

        return list_events(args)
    if args.command == "replay":
        from pex.audit.replay import run as replay_log

        return replay_log(args)
    if args.command in ("head", "verify", "prove"):
        run = {"head": auditing.run_head, "verify": auditing.run_verify, "prove": auditing.run_prove}[args.command]
        return run(args)
    if args.command == "project":
        return _project(args)
    if args.command == "serve":
        return _serve(parser, args)
    if args.command == "demo":
        from pex import demo as demo_module

        return demo_module.run(args.data_dir)
    parser.error(f"unknown command {args.command}")
    return 2


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from pathlib import Path

    from pex.domain.errors import DomainError
    from pex.domain.quotas import Quota
    from pex.service import Config, parse_node_spec, serve

    try:
        spec = parse_node_spec(args.node_spec)
    except ValueError as error:
        parser.error(str(error))
    nodes: list[tuple[str, str]] = []
    for item in args.node:
        name, eq, uri = item.partition("=")
        if not eq or not name or "://" not in uri:
            parser.error(f"--node {item!r}: expected NAME=URI, e.g. local=qemu:///system")
        if any(name == known or uri == used for known, used in nodes):
            parser.error(f"--node {item!r}: that name or URI is given twice")
        nodes.append((name, uri))
    if args.offer_ttl <= 0 or args.grace < 0 or args.monitor_interval <= 0:
        parser.error("--offer-ttl and --monitor-interval must be > 0, --grace >= 0")
    if not 0 <= args.head_interval <= 60:
        parser.error("--head-interval must be between 0 (no tree heads) and 60 seconds")
    if args.snapshot_every < 0:
        parser.error("--snapshot-every must be >= 0 (0: no snapshots)")
    for origin in args.cors_origin:
        if not _ORIGIN.fullmatch(origin):
            parser.error(f"--cors-origin {origin!r}: expected an origin such as https://portal.example.org:8443")
    limits = {"open_offers": args.quota_open_offers, "held_instance_hours": args.quota_instance_hours,
              "proposals_per_minute": args.quota_proposals}
    given = {name: value for name, value in limits.items() if value is not None}
    try:
        quota = Quota().changed(given) if given else Quota()
    except DomainError as error:
        parser.error(f"quota: {error}")
    return serve(Config(host=args.host, port=args.port, data_dir=Path(args.data_dir), simulated_nodes=args.simulated_nodes,
                        node_spec=spec, nodes=nodes, database=args.database, offer_ttl=args.offer_ttl, grace=args.grace,
                        monitor_interval=args.monitor_interval, cors_origins=tuple(args.cors_origin), quota=quota,
                        image_dir=Path(args.image_dir) if args.image_dir else None,
                        signing_key=Path(args.signing_key) if args.signing_key else None,
                        head_interval=args.head_interval, pricing=POLICIES[args.pricing],
                        snapshot_every=args.snapshot_every,
                        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
                        tls_key=Path(args.tls_key) if args.tls_key else None), log_format=args.log_format)


def _project(args: argparse.Namespace) -> int:
    """Exit 2 with one line for input that cannot be used, 1 if a database fails on the way
    or a catch-up is stopped before the end; the view stays consistent and resumable."""
    import signal
    import threading

    from eventsourcing.persistence import PersistenceError

    from pex.sql_read_model import ProjectionError, project
    from pex.sql_read_model.projection import BATCH
    from pex.stores import StoreError

    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        outcome = project(args.database, args.into, schema=args.schema, follow=args.follow, stop=stop,
                          batch_size=args.batch_size or BATCH)
    except (StoreError, ProjectionError) as error:
        print(f"openpex project: {error}", file=sys.stderr)
        return 2
    except PersistenceError as error:
        print(f"openpex project: a database failed: {' '.join(str(error).split())[:300]}", file=sys.stderr)
        return 1
    print(f"openpex project: the read model is at position {outcome.position} (the store's last: {outcome.head}); "
          f"{outcome.applied} events applied in {outcome.seconds:.2f} s")
    return 0 if args.follow or outcome.caught_up else 1


if __name__ == "__main__":
    sys.exit(main())
