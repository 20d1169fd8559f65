"""The sliding-window minimum the capacity index prunes with, against the obvious definition."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pex.domain.capacity_index import sliding_min


@given(st.data())
def test_sliding_min_is_the_minimum_of_every_window(data):
    rows = data.draw(st.integers(1, 70))
    width = data.draw(st.integers(1, rows))
    values = data.draw(arrays(np.int32, (rows, 3, 2), elements=st.integers(-1000, 1000)))
    expected = np.stack([values[i : i + width].min(axis=0) for i in range(rows - width + 1)])
    got = sliding_min(values, width)
    assert got.shape == expected.shape
    assert (got == expected).all()
