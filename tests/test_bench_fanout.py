"""The fan-out bench's pure parts (bench/fanout.py): how the time left is shared between the
scales, and the per-1,000 cost segments read from the coverage samples. No server."""

from __future__ import annotations

import pytest

from bench.fanout import caps_for, next_cap, segments


def test_caps_share_the_budget_in_proportion_to_size():
    caps = caps_for(580)
    assert caps[0] == 40 and caps[1] * 2 == pytest.approx(caps[2])
    assert sum(caps) == pytest.approx(580 - 24)


def test_time_a_scale_leaves_unused_goes_to_the_later_ones():
    scales, planned = (1_000, 5_000, 10_000), (40.0, 172.0, 344.0)
    assert next_cap(planned, 0.0, scales, 0) == 40.0
    # 1,000 units took 25 s: the 15 s left over are shared 5:10 by the two bigger scales.
    assert next_cap(planned, 25.0, scales, 1) == pytest.approx(172.0 + 5.0)
    assert next_cap(planned, 25.0 + 150.0, scales, 2) == pytest.approx(556.0 - 175.0)
    # A scale that used all of its cap leaves the next one its planned share.
    assert next_cap(planned, 40.0, scales, 1) == pytest.approx(172.0)


def test_segments_give_wall_and_cpu_per_thousand_done():
    samples = [(0.0, 0, 0, {}), (1.0, 200, 0, {"worker": 1.0, "temporal": 0.5, "postgres": 0.1}),
               (20.0, 200, 600, {"worker": 15.0, "temporal": 5.0}),
               (31.0, 200, 1_000, {"worker": 25.0, "temporal": 9.5}),
               (70.0, 200, 2_100, {"worker": 52.0, "temporal": 30.5})]
    assert segments(samples) == [
        {"done": 1_000, "inspections": 1_000, "wall": 30.0, "worker": 24.0, "temporal": 9.0},
        {"done": 2_100, "inspections": 1_100, "wall": 39.0, "worker": 27.0, "temporal": 21.0},
    ]
    assert segments([]) == []
