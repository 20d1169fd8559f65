"""The `openpex` command line."""

from __future__ import annotations

import argparse
import re
import sys

from pex.domain.sizes import DEFAULT_NODE

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
    args = parser.parse_args(argv)
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
    nodes = []
    for item in args.node:
        name, eq, uri = item.partition("=")
        if not eq or not name or "://" not in uri:
            parser.error(f"--node {item!r}: expected NAME=URI, e.g. local=qemu:///system")
        if any(name == known or uri == used for known, used in nodes):
            parser.error(f"--node {item!r}: that name or URI is given twice")
        nodes.append((name, uri))
    if args.offer_ttl <= 0 or args.grace < 0 or args.monitor_interval <= 0:
        parser.error("--offer-ttl and --monitor-interval must be > 0, --grace >= 0")
    for origin in args.cors_origin:
        if not _ORIGIN.fullmatch(origin):
            parser.error(f"--cors-origin {origin!r}: expected an origin such as https://portal.example.org:8443")
    limits = {"openOffers": args.quota_open_offers, "heldInstanceHours": args.quota_instance_hours,
              "proposalsPerMinute": args.quota_proposals}
    given = {name: value for name, value in limits.items() if value is not None}
    try:
        quota = Quota().changed(given) if given else Quota()
    except DomainError as error:
        parser.error(f"quota: {error}")
    return serve(Config(host=args.host, port=args.port, data_dir=Path(args.data_dir), simulated_nodes=args.simulated_nodes,
                        node_spec=spec, nodes=nodes, database=args.database, offer_ttl=args.offer_ttl, grace=args.grace,
                        monitor_interval=args.monitor_interval, cors_origins=tuple(args.cors_origin), quota=quota,
                        image_dir=Path(args.image_dir) if args.image_dir else None))


if __name__ == "__main__":
    sys.exit(main())
