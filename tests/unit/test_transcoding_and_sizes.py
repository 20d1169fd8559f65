from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from uuid import uuid4

import pytest

from pex.domain.sizes import InstanceType, Resources
from pex.domain.transcoding import MsgpackTranscoder


def test_msgpack_round_trips_what_events_hold():
    value = {"id": uuid4(), "at": datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
             "price": Decimal("1.10"), "shares": [["n1", 1, 2, 3]], "nested": {"x": None, "y": True}}
    transcoder = MsgpackTranscoder()
    assert transcoder.decode(transcoder.encode(value)) == value


def test_msgpack_refuses_what_it_cannot_store():
    with pytest.raises(TypeError, match="cannot store a set"):
        MsgpackTranscoder().encode({"x": {1, 2}})


def test_table_1_sizes():
    assert {t.name: t.resources.as_tuple() for t in InstanceType} == {
        "SMALL": (1, 768, 10), "MEDIUM": (2, 1536, 20), "LARGE": (3, 2560, 40), "XLARGE": (4, 3584, 60),
    }
    assert InstanceType.named("HUGE") is None


def test_how_many_fit_counts_the_scarcest_resource():
    node = Resources(32, 131072, 2048)
    assert InstanceType.SMALL.resources.how_many_fit_in(node) == 32
    assert InstanceType.XLARGE.resources.how_many_fit_in(Resources(32, 131072, 100)) == 1
    assert InstanceType.SMALL.resources.how_many_fit_in(Resources(-1, 0, 0)) == 0
