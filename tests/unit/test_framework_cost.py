"""harness.framework_cost pairs each @fastapi row with the bare app on the same server."""

from __future__ import annotations

import pytest

from harness.framework_cost import bare_cell, pairs, table


def row(cell, protocol, c=1, cpu=0.1, p50=1.0, workload="embed", **kw):
    return {"cell": cell, "protocol": protocol, "concurrency": c, "mode": "closed", "n": 100,
            "workload": workload, "server_cpu_ms_per_req": cpu, "latency_p50_ms": p50,
            "ttft_p50_ms": None if workload == "embed" else p50, **kw}


@pytest.mark.parametrize("cell, protocol, bare", [
    ("rest-h1@fastapi", "rest-h1", "rest-h1"),
    ("rest-h2@fastapi+curl", "rest-h2", "rest-h2+curl"),
    ("rest-h3@fastapi+curl", "rest-h3", "rest-h3@caddy+curl"),
    ("sse-h3@fastapi", "sse-h3", "sse-h3@caddy"),
])
def test_bare_cell_is_the_same_server_library(cell, protocol, bare):
    assert bare_cell(cell, protocol) == bare


def test_a_non_http_protocol_is_refused_by_name():
    with pytest.raises(ValueError, match="grpc"):
        bare_cell("grpc@fastapi", "grpc")


def test_pairs_match_cell_concurrency_and_workload_only():
    rows = [row("rest-h1@fastapi", "rest-h1", c=1), row("rest-h1", "rest-h1", c=1),
            row("rest-h1@fastapi", "rest-h1", c=8), row("rest-h1", "rest-h1", c=4),
            row("rest-h3@fastapi+curl", "rest-h3"), row("rest-h3+curl", "rest-h3"),
            row("rest-h2@fastapi", "rest-h2", n=0), row("rest-h2", "rest-h2")]
    got = [(f["cell"], b["cell"], f["concurrency"]) for f, b in pairs(rows)]
    # c=8 has no bare twin, h3's twin is @caddy (not the aioquic row), h2 had no requests.
    assert got == [("rest-h1@fastapi", "rest-h1", 1)]


def test_table_shows_both_figures_and_the_difference():
    rows = [row("rest-h1@fastapi", "rest-h1", cpu=0.30, p50=1.50),
            row("rest-h1", "rest-h1", cpu=0.10, p50=1.00),
            row("rest-h3@fastapi+curl", "rest-h3", cpu=0.5, p50=2.0,
                server_bound="server-bound: uvicorn 91% of a core"),
            row("rest-h3@caddy+curl", "rest-h3", cpu=None, p50=1.0)]
    lines = table(rows).splitlines()
    assert lines[0].startswith("| FastAPI cell | bare cell |")
    h1 = next(line for line in lines if line.startswith("| rest-h1@fastapi "))
    cells = [c.strip() for c in h1.strip("|").split("|")]
    assert cells == ["rest-h1@fastapi", "rest-h1", "1", "0.300", "0.100", "+0.200 (3.00x)",
                     "1.500", "1.000", "+0.500 (1.50x)", ""]
    h3 = next(line for line in lines if line.startswith("| rest-h3@fastapi+curl "))
    assert "| n/a | n/a |" in h3 and "server-bound" in h3 and "rest-h3@caddy+curl" in h3


def test_stream_rows_compare_ttft_and_say_so():
    rows = [row("sse-h1@fastapi", "sse-h1", p50=3.0, workload="stream"),
            row("sse-h1", "sse-h1", p50=2.0, workload="stream")]
    out = table(rows)
    assert "+1.000 (1.50x)" in out and "TTFT p50" in out


def test_no_pair_no_table():
    assert table([row("rest-h1", "rest-h1")]) == ""
