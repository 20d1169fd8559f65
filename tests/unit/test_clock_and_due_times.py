from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from pex.domain.clock import ManualClock, SystemClock, from_datetime, to_datetime
from pex.domain.projections import DueTimes


def test_the_system_clock_reads_epoch_milliseconds():
    before = time.time() * 1000
    assert before - 1 <= SystemClock().now() <= time.time() * 1000 + 1


def test_a_manual_clock_moves_only_forward_when_told():
    clock = ManualClock(1_000)
    assert clock.now() == 1_000
    assert clock.advance(500) == 1_500
    clock.set(2_000)
    assert clock.now() == 2_000
    with pytest.raises(ValueError):
        clock.set(1_999)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_instants_convert_to_and_from_utc_datetimes():
    moment = datetime(2009, 8, 17, 4, 49, 3, tzinfo=timezone.utc)
    assert to_datetime(from_datetime(moment)) == moment
    assert from_datetime(moment.replace(tzinfo=None)) == from_datetime(moment)


def test_due_times_keep_one_time_per_key_and_list_what_is_due():
    due = DueTimes()
    due.set("a", 30)
    due.set("b", 10)
    due.set("c", 20)
    due.set("a", 5)  # moved earlier: the old time is forgotten
    due.set("c", None)  # no longer due at all
    assert due.next() == 5 and len(due) == 2
    assert due.due(9) == ["a"]
    assert due.due(10) == ["a", "b"]
    assert due.due(4) == []
