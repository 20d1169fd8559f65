"""The cluster as a Gantt chart: one row per node, each reservation's booking (and each open
offer's hold) a bar over the chosen window. Geometry only, in the SVG's own units: the template
draws it, so the page needs no script (the bars' titles are the hover text)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pex.domain.clock import DAY, HOUR, MINUTE, Millis
from pex.domain.read_models import Booking, NodeView

WIDTH = 1000  # the time axis, in SVG units
LABELS = 150  # the node names' column
BAR = 18  # a bar's height
GAP = 4  # between lanes and rows
AXIS = 28  # the tick labels' band at the top
TICKS = (15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY)
MOST_TICKS = 12


@dataclass(frozen=True)
class Bar:
    booking: Booking
    x: float
    y: float
    width: float
    clipped_left: bool  # it began before the window
    clipped_right: bool  # it ends after the window


@dataclass(frozen=True)
class Row:
    node: NodeView
    y: float
    height: float
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Tick:
    x: float
    at: Millis


@dataclass(frozen=True)
class Chart:
    start: Millis
    end: Millis
    rows: tuple[Row, ...]
    ticks: tuple[Tick, ...]
    width: float
    height: float
    now_x: float | None  # where now is, if inside the window


def lanes(bookings: Sequence[Booking]) -> list[int]:
    """A lane for each booking (sorted by start) such that no two in one lane overlap: the
    first lane free by its start."""
    ends: list[Millis] = []
    chosen = []
    for booking in bookings:
        lane = next((i for i, end in enumerate(ends) if end <= booking.start), len(ends))
        if lane == len(ends):
            ends.append(booking.end)
        else:
            ends[lane] = booking.end
        chosen.append(lane)
    return chosen


def chart(nodes: Iterable[NodeView], bookings: Iterable[Booking], start: Millis, end: Millis,
          now: Millis) -> Chart:
    span = end - start
    scale = WIDTH / span

    def x_of(instant: Millis) -> float:
        return LABELS + (min(max(instant, start), end) - start) * scale

    by_node: dict[str, list[Booking]] = {}
    for booking in bookings:
        by_node.setdefault(booking.node, []).append(booking)
    rows = []
    y = float(AXIS)
    for node in nodes:
        found = sorted(by_node.get(node.name, ()), key=lambda b: (b.start, b.end))
        chosen = lanes(found)
        count = max(chosen, default=-1) + 1
        height = max(1, count) * (BAR + GAP) + GAP
        bars = tuple(Bar(booking, x_of(booking.start), y + GAP + lane * (BAR + GAP),
                         max(1.0, x_of(booking.end) - x_of(booking.start)), booking.start < start, booking.end > end)
                     for booking, lane in zip(found, chosen))
        rows.append(Row(node, y, height, bars))
        y += height
    step = next((tick for tick in TICKS if span / tick <= MOST_TICKS), TICKS[-1])
    first = -(-start // step) * step
    ticks = tuple(Tick(x_of(at), at) for at in range(first, end + 1, step))
    return Chart(start, end, tuple(rows), ticks, LABELS + WIDTH, y + GAP,
                 x_of(now) if start <= now <= end else None)
