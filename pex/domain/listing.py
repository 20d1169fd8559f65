"""Which part of a long list a reader asks for: a page after a cursor, of some statuses,
meeting a period. One rule for every list of reservations and instances."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar
from uuid import UUID

from pex.domain.clock import Millis
from pex.domain.errors import InvalidField

Item = TypeVar("Item")

LONGEST_PAGE = 1000  # items one page may hold (and holds unless asked for fewer)


@dataclass(frozen=True)
class Listing:
    after: UUID | None = None  # the last item of the previous page
    limit: int = LONGEST_PAGE
    statuses: frozenset[str] = frozenset()  # any, if empty
    start: Millis | None = None  # items whose time meets [start, end)
    end: Millis | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= LONGEST_PAGE:
            raise InvalidField("limit", f"must be from 1 to {LONGEST_PAGE}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidField("to", "must be after from")

    def keeps(self, status: str, start: Millis, end: Millis) -> bool:
        """Whether an item in `status` over [start, end) is asked for."""
        return ((not self.statuses or status in self.statuses)
                and (self.start is None or end > self.start) and (self.end is None or start < self.end))

    def select(self, ids: Iterable[UUID], table: Mapping[UUID, Item], what: str,
               kept: Callable[[Item], bool]) -> list[Item]:
        """The page: up to `limit` items of `table` in the order of `ids`, after the cursor,
        that `kept` keeps. A cursor that is not among `ids` is refused (InvalidField): a page
        cannot be told to follow an item the reader cannot see."""
        chosen = (table[i] for i in self._after(iter(ids), what))
        return list(islice((item for item in chosen if kept(item)), self.limit))

    def _after(self, ids: Iterator[UUID], what: str) -> Iterator[UUID]:
        if self.after is None:
            return ids
        for i in ids:
            if i == self.after:
                return ids
        raise InvalidField("after", f"is not an item of this list of {what}s")


def statuses_named(names: Collection[str], known: Collection[str], field: str = "status") -> frozenset[str]:
    """Status names as a reader gives them, each one of `known`, or InvalidField listing them."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidField(field, f"{unknown[0][:32]!r} is not one of {', '.join(sorted(known))}")
    return frozenset(names)
