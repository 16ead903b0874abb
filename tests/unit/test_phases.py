"""curl -w style phase stamps, the recorder's phase durations, and textbook round trips."""

import pytest

from clients.base import UnaryResult
from clients.transport.phases import ConnectStamps, curl_style
from harness.measure.recorder import Recorder
from harness.measure.roundtrips import accounting, dns_accounting, measured_round_trips, textbook

MS = 1_000_000


def test_curl_style_cumulative_from_the_request_start():
    t0 = 10_000 * MS
    opened = ConnectStamps(t0, dns=t0 + 2 * MS, tcp=t0 + 52 * MS, handshake=t0 + 102 * MS)
    p = curl_style(t0, opened, t0 + 103 * MS, t0 + 153 * MS, t0 + 160 * MS)
    assert p == {"namelookup": 2000, "connect": 52000, "appconnect": 102000,
                 "pretransfer": 103000, "starttransfer": 153000, "total": 160000}
    warm = curl_style(t0, None, t0 + MS, t0 + 51 * MS, t0 + 52 * MS)
    assert warm["namelookup"] == warm["connect"] == warm["appconnect"] == 0
    quic = curl_style(t0, ConnectStamps(t0, handshake=t0 + 50 * MS), t0 + 51 * MS,
                      t0 + 101 * MS, t0 + 102 * MS)
    assert quic["connect"] == 0 and quic["appconnect"] == 50000


def test_recorder_splits_phases_into_cold_and_warm_durations():
    rec = Recorder()
    t0 = 0
    for cold in (True, False):
        opened = ConnectStamps(t0, tcp=t0 + 50 * MS, handshake=t0 + 100 * MS) if cold else None
        phases = curl_style(t0, opened, t0 + 101 * MS, t0 + 151 * MS, t0 + 152 * MS)
        rec.unary(UnaryResult(None, t0, t0 + 151 * MS, t0 + 152 * MS, t0 + 152 * MS, 1, 1, None,
                              cold, 100 * MS if cold else None, extra={"phases": phases}), None)
    ms = lambda k: rec.hist[k].summary_ms()["p50"]      # noqa: E731
    assert ms("phase_tcp_cold") == pytest.approx(50, rel=0.01)
    assert ms("phase_tls_cold") == pytest.approx(50, rel=0.01)
    assert ms("phase_wait_cold") == pytest.approx(50, rel=0.01)
    assert rec.hist["phase_tcp_warm"].summary_ms()["max"] < 0.01
    assert ms("phase_wait_warm") == pytest.approx(50, rel=0.01)


@pytest.mark.parametrize("cell, kw, expected", [
    ("rest-h1", {"cold": True, "tls": False}, 2),
    ("rest-h1", {"cold": False, "tls": False}, 1),
    ("rest-h2", {"cold": True, "tls": True, "tls_version": "1.3"}, 3),
    ("rest-h2", {"cold": True, "tls": True, "tls_version": "1.2"}, 4),
    ("rest-h3", {"cold": True, "tls": True}, 2),
    ("rest-h3", {"cold": True, "tls": True, "zero_rtt": True}, 1),
    ("ws", {"cold": True, "tls": False}, 3),
    ("grpc", {"cold": True, "tls": False}, 2),
])
def test_textbook_round_trips(cell, kw, expected):
    assert textbook(cell, **kw)[0] == expected


def test_accounting_flags_more_than_a_quarter_rtt():
    phases = {"tcp": {"p50": 50.0}, "tls": {"p50": 50.0}, "send": {"p50": 0.2},
              "wait": {"p50": 51.0}, "dns": {"p50": 0.0}}
    assert measured_round_trips(phases, 50) == pytest.approx(3.02, abs=0.01)
    row = {"cell": "rest-h2", "link": {"rtt_ms": 50}, "phases_ms": {"cold": phases}}
    (tls13,) = accounting(row, tls=True, tls_version="1.3")
    (tls12,) = accounting(row, tls=True, tls_version="1.2")
    assert tls13["agrees"] and not tls12["agrees"]


def _dns_row(cache: bool, queries: int, mean_ms: float, n: int = 12) -> dict:
    return {"cell": "rest-h1", "dns_cache": cache, "dns_queries": queries, "concurrency": 1,
            "link": {"rtt_ms": 50}, "phases_ms": {"cold": {"dns": {"mean": mean_ms, "n": n}}}}


def test_dns_accounting_cache_off_one_query_per_new_connection():
    a = dns_accounting(_dns_row(False, 12, 71.0), delay_ms=20)
    assert a["agrees"] and a["per_query_ms"] == pytest.approx(71.0)
    assert a["expected_ms"] == 70
    # a query that cost two round trips, or a request that skipped its query, disagrees
    assert not dns_accounting(_dns_row(False, 12, 121.0), delay_ms=20)["agrees"]
    assert not dns_accounting(_dns_row(False, 11, 71.0 * 11 / 12), delay_ms=20)["agrees"]


def test_dns_accounting_cache_on_only_the_first_lookup_queries():
    a = dns_accounting(_dns_row(True, 1, 70.5 / 12), delay_ms=20)
    assert a["agrees"] and a["per_query_ms"] == pytest.approx(70.5)
    assert a["per_request_ms"] == pytest.approx(70.5 / 12)
    assert not dns_accounting(_dns_row(True, 12, 70.5), delay_ms=20)["agrees"]
    assert dns_accounting({"cell": "x", "dns_cache": None, "phases_ms": {}}, 0) is None


def test_round_trip_note_names_grpcs_settings_wait_only_when_the_connect_shows_it():
    from harness.report.markdown import round_trip_lines

    def row(cell: str, tcp_ms: float) -> dict:
        return {"cell": cell, "protocol": cell, "concurrency": 1, "mode": "closed",
                "network": "rtt20", "connections_policy": "new", "tls": False,
                "link": {"rtt_ms": 20},
                "phases_ms": {"cold": {"tcp": {"p50": tcp_ms}, "send": {"p50": 0.2},
                                       "wait": {"p50": 21.0}}}}
    text = "\n".join(round_trip_lines([row("grpc", 42.5), row("rest-h1", 42.5),
                                       row("grpc", 21.0)]))
    assert text.count("become READY") == 1 and "HTTP/2 SETTINGS" in text
