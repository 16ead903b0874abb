"""Batched histogram recording gives exactly the histogram hdrh's record_value gives."""

import numpy as np
from hdrh.histogram import HdrHistogram

from harness.measure.stats import _HIGHEST_US, Histogram


def test_batched_records_match_record_value_bucket_for_bucket():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 10**13, 5000), rng.integers(0, 5000, 3000),
                             [0, 1, 499, 500, 10**16]])
    batched, plain = Histogram(), HdrHistogram(1, _HIGHEST_US, 3)
    for v in values:
        batched.record_ns(int(v))
        plain.record_value(min(max(1, (int(v) + 500) // 1000), _HIGHEST_US))
    h = batched.h                      # reading flushes what is pending
    assert list(h.counts) == list(plain.counts)
    assert (h.total_count, h.min_value, h.max_value) == (
        plain.total_count, plain.min_value, plain.max_value)
    assert batched.summary_ms()["p99"] == plain.get_value_at_percentile(99) / 1000
