"""The seeds' claims judged from rows: the measured side comes from the rows only."""

from __future__ import annotations

from harness.report.claims import (CLAIMS, claims_section, grpc_faster, hpack, smaller_payload,
                                   tls13)


def row(cell: str, p50: float, *, policy: str = "auto", tls: str | None = None,
        rtt: float = 1.0, **extra) -> dict:
    return {"cell": cell, "protocol": cell, "workload": "embed", "mode": "closed",
            "concurrency": 1, "n": 100, "latency_p50_ms": p50, "connections_policy": policy,
            "tls_version": tls, "dns_cache": None, "link": {"rtt_ms": rtt},
            "network": "lab", "failed": None, "server_bound": None, "client_bound": None,
            "payload_up_bytes": 100, "payload_down_bytes": 300, **extra}


def test_grpc_speed_is_judged_by_the_measured_ratio():
    rows = [row("grpc", 1.0), row("rest-h1", 6.0), row("rest-h2", 2.0)]
    verdict, measured, _ = grpc_faster(5)(rows)
    assert verdict == "holds" and "rest-h1 6.00x slower" in measured
    rows = [row("grpc", 1.0), row("rest-h1", 0.8)]
    assert grpc_faster(5)(rows)[0] == "does not hold"


def test_a_saturated_row_is_not_evidence():
    rows = [row("grpc", 1.0), row("rest-h1", 6.0, server_bound="server at 99%")]
    assert grpc_faster(5)(rows) is None


def test_payload_ratio_comes_from_the_rows_bytes():
    rows = [row("grpc", 1.0, payload_up_bytes=10, payload_down_bytes=20),
            row("rest-h1", 1.0, payload_up_bytes=100, payload_down_bytes=200)]
    verdict, measured, _ = smaller_payload(10)(rows)
    assert verdict == "holds" and "(10.0x)" in measured


def test_tls_round_trips_from_the_cold_phases():
    def cold(tls: str, tls_ms: float) -> dict:
        return row("rest-h2", 80.0, policy="new", tls=tls, rtt=20.0,
                   phases_ms={"cold": {"tls": {"p50": tls_ms}}})
    assert tls13([cold("1.2", 41.0), cold("1.3", 21.0)])[0] == "holds"
    assert tls13([cold("1.2", 21.0), cold("1.3", 21.0)])[0] == "does not hold"


def test_every_claim_is_listed_and_unmeasured_ones_name_their_scenario():
    lines = claims_section([], "embedding")
    table = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == len(CLAIMS)
    assert all("not measured by this run" in line and "run scenarios/" in line
               for line in table)


def test_hpack_says_more_or_fewer_bytes_without_a_minus_sign():
    more = hpack([row("rest-h1", 1.0, wire_up_bytes=470), row("rest-h2", 1.0, wire_up_bytes=531)])
    assert more[0] == "does not hold" and "(13% more;" in more[1]
    fewer = hpack([row("rest-h1", 1.0, wire_up_bytes=500), row("rest-h2", 1.0, wire_up_bytes=350)])
    assert fewer[0] == "holds" and "(30% fewer;" in fewer[1]
