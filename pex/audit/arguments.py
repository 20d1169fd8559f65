"""What the read-only audit commands (`openpex events`, `replay`, `head`, `verify`, `prove`) share on the command
line: where the store is, how times and positions are read, and how input they cannot use is
refused (one line on stderr naming the command, exit status 2, never a traceback)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TextIO

from pex.domain.errors import InvalidField
from pex.domain.event_log import LAST_POSITION
from pex.domain.negotiation import LATEST_INSTANT


class UsageError(Exception):
    """Input that cannot be used: one line for the user, exit 2."""


def answered(program: str, work: Callable[[], int], *, refused: tuple[type[BaseException], ...] = (),
             failed: tuple[type[BaseException], ...] = (), interrupted: int = 0) -> int:
    """A command's work, its exit status, and what it cannot do as one line on stderr: 2 for
    input or a store it cannot use (UsageError, pex.query's QueryError, StoreError, and
    `refused`), 1 for a store that fails while being read (`failed`), 0 once the reader of its
    output has gone (`| head`), `interrupted` after Ctrl-C."""
    from pex.query import QueryError
    from pex.stores import StoreError

    cannot_use: tuple[type[BaseException], ...] = (UsageError, QueryError, StoreError, *refused)
    try:
        return work()
    except cannot_use as error:
        complain(program, error)
        return 2
    except failed as error:
        complain(program, error)
        return 1
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return interrupted


def store_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir DIR (the SQLite store DIR/events.db) or --database STORE, not both."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", metavar="DIR", help="the SQLite store DIR/events.db (default ./var)")
    where.add_argument("--database", metavar="STORE", help="a SQLite file or postgresql://user:password@host:port/db")


def store_of(args: argparse.Namespace) -> str:
    """The store the arguments name: --database as given, else DIR/events.db (DIR: ./var)."""
    return str(args.database) if args.database else str(Path(args.data_dir or "var") / "events.db")


def one_line_errors(parser: argparse.ArgumentParser, program: str) -> None:
    """Make the parser's errors one line, `program: ...`, and exit status 2."""

    def error(message: str) -> NoReturn:
        complain(program, message)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def complain(program: str, message: object) -> None:
    """One line on stderr: `program: message`, the message's whitespace folded."""
    print(f"{program}: {' '.join(str(message).split())}", file=sys.stderr)


def position(text: str) -> int:
    """A position of the log (a notification id, >= 0)."""
    if not text.isascii() or not text.isdigit() or int(text) > LAST_POSITION:
        raise argparse.ArgumentTypeError(f"{text[:64]!r} is not a position (a whole number from 0 to {LAST_POSITION})")
    return int(text)


def instant(text: str) -> int:
    """Epoch milliseconds from RFC 1123, ISO 8601 (pex.http.wire's grammar) or epoch ms."""
    from pex.http.wire import parse_time

    if text.isascii() and text.isdigit():
        if int(text) > LATEST_INSTANT:
            raise argparse.ArgumentTypeError(f"{text[:64]!r} is after 9999")
        return int(text)
    try:
        return parse_time("endTime", text)
    except InvalidField as error:
        raise argparse.ArgumentTypeError(error.reason) from None


def style_of(args: argparse.Namespace, out: TextIO) -> str:
    """--format as given, else a table on a terminal and JSON lines otherwise."""
    return str(args.format or ("table" if out.isatty() else "json"))


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, shown only on a terminal and once the work has taken a second
    (tqdm's delay); told (done, of how many) as it goes."""
    from tqdm import tqdm

    with tqdm(desc=label, unit=" events", delay=1.0, disable=not sys.stderr.isatty(), leave=False,
              file=sys.stderr) as bar:
        def told(done: int, most: int) -> None:
            if bar.total != most:
                bar.total = most
            bar.update(done - bar.n)

        yield told


def quiet_stdout() -> None:
    """After a broken pipe (`| head`): the reader has what it wanted; say nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
