"""Goodput: the share of requests that kept every per-request limit of a scenario's
`slo:`, counted per request by the recorder and merged across workers."""

from __future__ import annotations

import numpy as np
import pytest

from clients.base import StreamResult, StreamToken, UnaryResult
from harness.measure.recorder import Recorder
from harness.scenario import ScenarioError, parse_scenario

MS = 1_000_000


def unary(latency_ms: float) -> UnaryResult:
    end = int(latency_ms * MS)
    return UnaryResult(np.zeros((1, 4), "<f4"), 0, end, end, end, 10, 10, None)


def stream(ttft_ms: float, gaps_ms: list[float]) -> StreamResult:
    t = int(ttft_ms * MS)
    toks = [StreamToken(0, "a", None, t)]
    for i, gap in enumerate(gaps_ms, 1):
        t += int(gap * MS)
        toks.append(StreamToken(i, "a", None, t))
    return StreamResult(toks, 0, toks[0].recv_ns, t, 10, 10, None)


def test_unary_requests_count_when_their_latency_keeps_the_limit():
    rec = Recorder(slo_ns={"latency": 50 * MS})
    for ms in (10, 49.9, 50, 51, 200):
        rec.unary(unary(ms), None)
    rec.error("timeout", "x", 0, 0, 1)
    assert rec.good == 3 and rec.n == 5 and rec.error_count == 1


def test_streams_must_keep_every_limit():
    rec = Recorder(slo_ns={"ttft": 100 * MS, "itl": 30 * MS, "tpot": 20 * MS})
    rec.stream(stream(80, [10, 10, 10]), None)       # good
    rec.stream(stream(120, [10, 10]), None)          # ttft over
    rec.stream(stream(50, [10, 40, 5]), None)        # one gap over 30 ms
    rec.stream(stream(50, [25, 25]), None)           # mean per token over 20 ms
    rec.stream(StreamResult([], 0, 0, 5 * MS, 1, 1, None), None)   # no token: misses
    assert rec.good == 1


def test_merged_across_workers_through_json():
    a, b = Recorder(slo_ns={"latency": 5 * MS}), Recorder(slo_ns={"latency": 5 * MS})
    a.unary(unary(1), None)
    b.unary(unary(1), None)
    b.unary(unary(9), None)
    merged = Recorder()
    merged.merge(Recorder.from_json(a.to_json()))
    merged.merge(Recorder.from_json(b.to_json()))
    assert merged.good == 2 and merged.n == 3


BASE = {"name": "s", "workload": {"type": "embed"}, "load": {"concurrency": 1, "requests": 10}}


def test_the_slo_key():
    s = parse_scenario({**BASE, "slo": ["latency < 50ms", "latency <= 0.2s"]})
    assert [(t.metric, t.value) for t in s.slo] == [("latency", 50.0), ("latency", 200.0)]
    stream = parse_scenario({**BASE, "workload": {"type": "stream"},
                             "slo": ["ttft < 200ms", "itl < 50ms", "tpot < 20ms"]})
    assert [t.metric for t in stream.slo] == ["ttft", "itl", "tpot"]


@pytest.mark.parametrize("slo, message", [
    (["ttft < 200ms"], r"slo\[0\]: ttft applies to stream workloads only"),
    (["latency > 5ms"], r'expected "metric < value\[unit\]"'),
    (["p99 < 5ms"], "unknown SLO metric"),
    (["latency < 5rps"], "unit"),
])
def test_bad_slo_is_refused_with_its_path(slo, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({**BASE, "slo": slo})
