"""The DNS step through the emulated link (`python bench.py`, the network lab): with the
resolver cache off every new connection sends a query that costs one round trip plus
the resolver's delay; with it on only the first lookup does (about 10 s)."""

from __future__ import annotations

import pytest

from harness.measure.roundtrips import dns_accounting
from tests.network.conftest import run_lab_scenario

pytestmark = pytest.mark.network

RTT_MS, DELAY_MS, REQUESTS = 60, 20, 6
SCENARIO = f"""\
name: dns-rtt
workload: {{type: embed, batch_size: 1, dimensions: 16}}
protocols: [rest-h1]
load: {{concurrency: 1, requests: {REQUESTS}}}
warmup: {{requests: 0}}
connection: {{policy: new}}
dns: {{cache: [false, true], delay_ms: {DELAY_MS}}}
network:
  backend: tun
  link: {{name: rtt, rtt_ms: {RTT_MS}}}
"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    summary, run = run_lab_scenario(tmp_path_factory.mktemp("dns"), SCENARIO)
    assert "### The DNS step" in (run / "report.md").read_text()
    return {r["dns_cache"]: r for r in summary["rows"]}


def test_cache_off_pays_a_round_trip_and_the_delay_per_request(rows):
    a = dns_accounting(rows[False], DELAY_MS)
    assert rows[False]["errors"] == 0 and a["queries"] == REQUESTS == a["new_connections"]
    assert a["per_request_ms"] == pytest.approx(RTT_MS + DELAY_MS, abs=RTT_MS / 4)
    assert a["agrees"]


def test_cache_on_pays_only_the_first_lookup(rows):
    a = dns_accounting(rows[True], DELAY_MS)
    assert rows[True]["errors"] == 0 and a["queries"] == 1
    # One query, one sample: it paid a round trip and the delay, and not a second trip
    # (the run's first query also opens the resolver's socket, a few ms on a busy host).
    assert RTT_MS + DELAY_MS - 1 <= a["per_query_ms"] < 2 * RTT_MS + DELAY_MS
    assert a["per_request_ms"] == pytest.approx(a["per_query_ms"] / REQUESTS, rel=0.05)
