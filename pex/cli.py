"""The `openpex` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openpex", description="Advance reservation of virtual machines.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a negotiation on a small simulated cluster and print it")
    demo.add_argument("--data-dir", help="where the SQLite event store goes (default: a new temporary folder)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from pex import demo as demo_module

        return demo_module.run(args.data_dir)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
