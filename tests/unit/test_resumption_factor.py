"""The `resumption` scenario factor: validation, plan expansion, textbook round trips
for resumed handshakes, and the accounting's flag when a handshake did not resume."""

import pytest

from harness.measure.roundtrips import accounting, textbook
from harness.scenario import ScenarioError, expand_plan, parse_scenario

BASE = {
    "name": "r",
    "workload": {"type": "embed", "batch_size": 1, "dimensions": 8},
    "load": {"mode": "closed", "concurrency": 1, "requests": 5},
    "connection": {"policy": "new"},
}


def scenario(**kw):
    return parse_scenario({**BASE, **kw})


def test_default_is_none_and_adds_no_points():
    s = scenario(protocols=["rest-h2"])
    assert s.resumption == ("none",)
    assert [p.resumption for p in expand_plan(s)] == [None]


def test_sweep_expands_only_what_each_cell_supports():
    s = scenario(protocols=["rest-h1", "rest-h2", "rest-h3", "rest-h2+curl", "grpc"],
                 resumption=["none", "session", "0rtt"], tls_version=["1.2", "1.3"])
    got = {(p.protocol, p.tls_version, p.resumption) for p in expand_plan(s)}
    assert got == {
        ("rest-h1", None, None),                      # cleartext: nothing to resume
        ("rest-h2", "1.2", None), ("rest-h2", "1.2", "session"),
        ("rest-h2", "1.3", None), ("rest-h2", "1.3", "session"),   # no 0-RTT over TCP
        ("rest-h3", None, None), ("rest-h3", None, "session"), ("rest-h3", None, "0rtt"),
        ("rest-h2+curl", "1.2", None), ("rest-h2+curl", "1.3", None),
        ("grpc", None, None),
    }


def test_reused_connections_never_resume():
    s = scenario(protocols=["rest-h3"], resumption=["none", "0rtt"],
                 connection={"policy": ["new", "reuse"]})
    got = {(p.connection.policy, p.resumption) for p in expand_plan(s)}
    assert got == {("new", None), ("new", "0rtt"), ("reuse", None)}


def test_yaml_false_means_none():
    assert scenario(protocols=["rest-h3"], resumption=[False, "0rtt"]).resumption == \
        ("none", "0rtt")


@pytest.mark.parametrize("kw, field, words", [
    ({"resumption": "yes please"}, "resumption", '"none", "session" or "0rtt"'),
    ({"resumption": True}, "resumption", '"none", "session" or "0rtt"'),
    ({"resumption": "0rtt", "connection": {"policy": "reuse"}}, "resumption",
     "connection.policy: new"),
    ({"resumption": "0rtt", "protocols": ["rest-h2"]}, "resumption", '"rest-h2" can run only'),
    ({"resumption": "session", "protocols": ["rest-h2+curl"]}, "resumption", "libcurl"),
    ({"resumption": "session", "protocols": ["rest-h1"]}, "resumption", "without TLS"),
    ({"resumption": ["session", "session"]}, "resumption[1]", "duplicate"),
])
def test_clear_errors(kw, field, words):
    kw = {"protocols": ["rest-h3"], **kw}
    with pytest.raises(ScenarioError) as err:
        scenario(**kw)
    assert err.value.field == field
    assert words in str(err.value)


@pytest.mark.parametrize("cell, kw, expected", [
    ("rest-h2", {"tls_version": "1.2", "resumption": "session"}, 3),   # abbreviated: 1 RTT
    ("rest-h2", {"tls_version": "1.3", "resumption": "session"}, 3),   # PSK: still 1 RTT
    ("rest-h2", {"tls_version": "1.2"}, 4),
    ("rest-h3", {"resumption": "session"}, 2),
    ("rest-h3", {"resumption": "0rtt"}, 1),
])
def test_textbook_resumed(cell, kw, expected):
    assert textbook(cell, cold=True, tls=True, **kw)[0] == expected


def _row(handshakes, wait_ms=50.0):
    phases = {"tcp": {"p50": 0.0}, "tls": {"p50": 0.0}, "send": {"p50": 0.3},
              "wait": {"p50": wait_ms}, "dns": {"p50": 0.0}}
    return {"cell": "rest-h3", "link": {"rtt_ms": 50}, "phases_ms": {"cold": phases},
            "handshakes": handshakes}


def test_accounting_agrees_when_every_handshake_resumed():
    (a,) = accounting(_row({"0rtt": 20}), tls=True, tls_version="1.3", resumption="0rtt")
    assert a["textbook"] == 1 and a["agrees"] and a["shortfall"] is None


def test_accounting_flags_handshakes_that_did_not_resume():
    # The round trips match, but 3 connections fell back to full handshakes: flagged.
    (a,) = accounting(_row({"0rtt": 17, "full": 3}), tls=True, tls_version="1.3",
                      resumption="0rtt")
    assert not a["agrees"]
    assert "3 of 20 new connections did a full handshake" in a["shortfall"]


def _report_row(cell, policy, p50, resumption=None, handshakes=None, wait_ms=50.0):
    base = {"cell": cell, "network": "rtt50", "tls_version": "1.3", "connections_policy": policy,
            "resumption": resumption, "handshakes": handshakes, "latency_p50_ms": p50,
            "payload_up_bytes": 1, "payload_down_bytes": 2, "wire_up_bytes": 3,
            "mode": "closed", "concurrency": 1, "tls": True, "link": {"rtt_ms": 50}}
    phases = {"tcp": {"p50": 0.0}, "tls": {"p50": 0.0}, "send": {"p50": 0.2},
              "wait": {"p50": wait_ms}, "dns": {"p50": 0.0}}
    base["phases_ms"] = {"cold" if policy == "new" else "warm": phases}
    return base


def test_report_keeps_resumed_rows_apart():
    from harness.report.markdown import cold_warm_table, round_trip_lines
    rows = [_report_row("rest-h3", "new", 112.0, wait_ms=100.0),
            _report_row("rest-h3", "new", 63.0, "0rtt", {"0rtt": 18, "full": 2}),
            _report_row("rest-h3", "auto", 55.0)]
    table = cold_warm_table(rows)
    # The plain cold row is the "first request"; the 0-RTT one has its own column.
    assert "| rest-h3 | rtt50 tls1.3 | 112.0 | 63.00 (0rtt) | 55.00 |" in table
    text = "\n".join(round_trip_lines(rows))
    assert "0-RTT request | 18 of 20 | 1 | 1.00" in text
    assert "**resumption missed**" in text and "2 of 20 new connections did a full" in text
