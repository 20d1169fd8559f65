"""The wire format: the paper's JSON, with times as RFC 1123 strings in GMT.

The domain speaks epoch milliseconds; this module turns incoming times (RFC 1123, ISO 8601, or
epoch milliseconds) into them and outgoing ones back into RFC 1123.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from pex.domain.clock import Millis, from_datetime, to_datetime
from pex.domain.errors import DomainError, InvalidField

TIME_FIELDS = ("startTime", "endTime", "holdUntil")


DEEPEST = 16  # levels of nesting a body may have (the deepest real one has 3)


class InvalidBody(DomainError):
    code = "INVALID_JSON"


def _refuse_constant(name: str) -> Any:
    raise InvalidBody(f"the body is not valid JSON: {name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or InvalidBody: UTF-8, standard JSON only (no NaN or
    Infinity), numbers Python can hold, and at most DEEPEST levels of nesting (deeper input
    would exhaust the parser's recursion)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBody("the body is not UTF-8") from None
    if not text.strip():
        return None
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise InvalidBody(f"the body is not valid JSON: {error.msg} at {error.pos}") from None
    except RecursionError:
        raise InvalidBody(f"the body nests deeper than {DEEPEST} levels") from None
    except ValueError:  # an integer too long to convert
        raise InvalidBody("the body holds a number too large to read") from None
    if _depth(body) > DEEPEST:
        raise InvalidBody(f"the body nests deeper than {DEEPEST} levels")
    return body


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            level.extend((child, depth + 1) for child in item)
    return deepest


def format_time(instant: Millis) -> str | int:
    """'Mon, 17 Aug 2009 04:49:03 GMT' (seconds: RFC 1123 has no finer unit). An instant no
    calendar can show (which input checks now refuse) is shown as the number it is."""
    try:
        return format_datetime(to_datetime(instant).astimezone(timezone.utc), usegmt=True)
    except (OverflowError, OSError, ValueError):
        return instant


def parse_time(field: str, value: Any) -> Millis:
    if isinstance(value, bool):
        raise InvalidField(field, "must be an RFC 1123 or ISO 8601 time")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(field, "must be an RFC 1123 or ISO 8601 time")
    text = value.strip()
    moment: datetime | None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        moment = None
    if moment is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidField(field, f"{value!r} is not an RFC 1123 or ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # a time without a zone is GMT, as in the paper
    return from_datetime(moment)


def proposal_in(body: Any) -> Any:
    """An incoming proposal with its times in epoch ms (anything else is left for the domain
    to judge, so it names the field)."""
    if not isinstance(body, dict):
        return body
    return {key: parse_time(key, value) if key in ("startTime", "endTime") and value is not None else value
            for key, value in body.items()}


def out(value: Any) -> Any:
    """Times to RFC 1123, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {key: format_time(item) if key in TIME_FIELDS and isinstance(item, int) else out(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [out(item) for item in value]
    return value
