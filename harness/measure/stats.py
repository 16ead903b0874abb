"""Latency distributions as HdrHistograms: exact percentiles, mergeable across workers.

Values are recorded in microseconds (1 us .. 1 hour, 3 significant digits). Percentiles
come from merged histograms, never from averaging per-worker or per-run percentiles.
"""

from __future__ import annotations

import io
import math
from typing import Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_HIGHEST_US = 3_600_000_000
_ROUNDING_US = 0.5      # values are recorded to the nearest microsecond


class Histogram:
    """An HdrHistogram whose recording is batched: record_ns appends to a list, and the
    values go into the histogram (vectorized, hdrh's own index formula) every
    FLUSH_AT values and before anything reads it."""

    __slots__ = ("_h", "_pending")
    FLUSH_AT = 4096

    def __init__(self, h: HdrHistogram | None = None) -> None:
        self._h = h or HdrHistogram(1, _HIGHEST_US, 3)
        self._pending: list[int] = []

    @property
    def h(self) -> HdrHistogram:
        if self._pending:
            self._flush()
        return self._h

    def record_ns(self, ns: int) -> None:
        pending = self._pending
        pending.append(ns)
        if len(pending) >= self.FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        h, values = self._h, np.array(self._pending, dtype=np.int64)
        self._pending = []
        # Clamped into range: a sub-microsecond value counts as 1 us, never dropped.
        us = np.clip((values + 500) // 1000, 1, _HIGHEST_US)
        # hdrh's _counts_index_for, vectorized (frexp's exponent is the bit length)
        _, bits = np.frexp((us | h.sub_bucket_mask).astype(np.float64))
        bucket = bits.astype(np.int64) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
        sub = us >> (bucket + h.unit_magnitude)
        index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
        np.add.at(np.ctypeslib.as_array(h.counts)[:h.counts_len], index, 1)
        h.total_count += len(us)
        h.min_value = min(h.min_value, int(us.min()))
        h.max_value = max(h.max_value, int(us.max()))

    def record_many_ns(self, values: Iterable[int]) -> None:
        for ns in values:
            self.record_ns(ns)

    @property
    def count(self) -> int:
        return self.h.get_total_count()

    def merge(self, other: "Histogram") -> None:
        self.h.add(other.h)

    def encode(self) -> str:
        return self.h.encode().decode("ascii")

    @classmethod
    def decode(cls, data: str) -> "Histogram":
        return cls(HdrHistogram.decode(data.encode("ascii")))

    def summary_ms(self) -> dict[str, float] | None:
        """p50 .. p99.9, max, mean and n, in milliseconds; None when empty."""
        if not self.count:
            return None
        out = {k: self.h.get_value_at_percentile(q) / 1000.0 for k, q in PERCENTILES.items()}
        out["max"] = self.h.get_max_value() / 1000.0
        out["min"] = self.h.get_min_value() / 1000.0
        out["mean"] = self._mean() / 1000.0
        out["n"] = self.count
        return out

    def quantile_interval_ms(self, q: float, z: float = 1.96) -> tuple[float, float] | None:
        """A distribution-free 95% confidence interval for the q-quantile (z = 1.96):
        the order statistics at ranks n*q -/+ z*sqrt(n*q*(1-q)) (the binomial normal
        approximation), read from the histogram, widened by half a microsecond each side
        for the recording's rounding. It holds for independent samples; the
        run-to-run spread a busy machine adds is not in it (the report widens it to the
        range over repeats). None when empty."""
        n = self.count
        if not n:
            return None
        half = z * math.sqrt(n * q * (1 - q))
        lo_rank, hi_rank = max(1, math.floor(n * q - half)), min(n, math.ceil(n * q + half))
        h = self.h
        lo = h.get_value_at_percentile(100.0 * lo_rank / n)
        hi = h.get_value_at_percentile(100.0 * hi_rank / n)
        # Widened by the recording's rounding: a value is kept to the nearest whole us
        # and anything below 1 us as 1 us, so a "1 us" quantile may be anything under 1.5.
        lo = lo - _ROUNDING_US if lo > 1 else 0.0
        return lo / 1000.0, (hi + _ROUNDING_US) / 1000.0

    def _mean(self) -> float:
        # hdrh's get_mean_value walks all ~23k buckets in Python (~50 ms a call); only
        # the non-empty ones matter. Same median-equivalent values as hdrh uses.
        h = self.h
        counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
        total = 0
        for i in np.flatnonzero(counts):
            v = h.get_value_from_index(int(i))
            lo, hi = h.get_lowest_equivalent_value(v), h.get_highest_equivalent_value(v)
            total += int(counts[i]) * (lo + (hi - lo + 1) // 2)
        return total / h.get_total_count()

    def hgrm(self) -> str:
        """The standard .hgrm percentile distribution, values in milliseconds."""
        buf = io.BytesIO()
        self.h.output_percentile_distribution(buf, 1000.0)
        return buf.getvalue().decode("ascii")
