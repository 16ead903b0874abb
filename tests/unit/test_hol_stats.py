"""Repeated single drops summarised per series: median [min-max] of the owner's and the
collateral stall, and how many drops stalled a stream that lost nothing."""

from __future__ import annotations

from types import SimpleNamespace

from harness.measure.hol import DropTimeline, StreamTimeline
from harness.measure.hol_drops import DropAttribution
from harness.measure.hol_stats import drop_stats

DROP = DropAttribution(0, "down", 1, 300, 248, "droplist", (0,), "emit-time")


def stream(i: int, peak: float | None, *, owner: bool = False, stalled: bool = False):
    return StreamTimeline(i, "c1", owner, 0, 60.0, [], peak, stalled, None, None)


def point(series: str, owner_ms: float, others: list[float], stalled: bool,
          hit: bool = True):
    tl = DropTimeline(DROP, 1, [stream(0, owner_ms, owner=True)]
                      + [stream(i + 1, p, stalled=stalled) for i, p in enumerate(others)])
    return SimpleNamespace(series=series, single_drop=True, timeline=tl if hit else None)


def test_medians_and_spreads_per_series():
    points = [point("sse-h2", 45.0, [40.0, 38.0], True),
              point("sse-h2", 55.0, [0.5, -1.0], False),
              point("sse-h2", 50.0, [30.0, 31.0], True),
              point("sse-h3", 44.0, [0.2, 0.1], False),
              point("sse-h3", 0.0, [], False, hit=False)]
    h2, h3 = drop_stats(points)
    assert (h2.series, h2.drops, h2.missed) == ("sse-h2", 3, 0)
    assert (h2.owner_ms.median, h2.owner_ms.low, h2.owner_ms.high) == (50.0, 45.0, 55.0)
    assert (h2.collateral_ms.median, h2.collateral_ms.low, h2.collateral_ms.high) == \
        (31.0, 0.5, 40.0)
    assert h2.with_collateral_stall == 2 and h2.clean_streams == 2
    assert (h3.drops, h3.missed, h3.with_collateral_stall) == (1, 1, 0)
    assert h3.collateral_ms.text() == "0.2 [0.2-0.2]"


def test_a_negative_excess_counts_as_no_delay():
    (d,) = drop_stats([point("ws", 40.0, [-3.0, -2.0], False)])
    assert d.collateral_ms.median == 0.0
