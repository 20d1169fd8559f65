"""How `openpex serve` writes its log on stderr: text lines as they always were, or one JSON
object per line (`--log-format json`) for a log collector, with what the line is about.

A call site says what its line is about with `extra=about(reservation=..., vm=..., node=...,
user=...)`; only those fields go out besides the line's own (time, level, logger, message,
and the traceback as `exc`), so nothing a call site happens to attach (let alone a password)
ends up in the log by accident.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import Literal, get_args

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = get_args(LogFormat)
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT = ("reservation", "vm", "node", "user")  # what a line may be about, in the order written


def about(*, reservation: object = None, vm: object = None, node: str | None = None,
          user: str | None = None) -> dict[str, str]:
    """`extra=` for a log call: the ids and names the line is about, as strings (what is None
    or empty is left out)."""
    given = {"reservation": reservation, "vm": vm, "node": node, "user": user}
    return {key: str(value) for key, value in given.items() if value is not None and value != ""}


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line whatever the message or traceback holds (JSON
    escapes line breaks; non-ASCII is escaped too, so no Unicode line separator splits one)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                                                                       .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line)


def configure(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Log to stderr in the given format. With JSON, what would otherwise reach stderr as
    several lines (warnings, an exception nobody caught, in any thread) is logged as well."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler])
    if log_format == "json":
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("openpex").critical("uncaught %s", kind.__name__, exc_info=error.with_traceback(traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("openpex").error("uncaught %s in thread %s", args.exc_type.__name__, name,
                                       exc_info=args.exc_value)
