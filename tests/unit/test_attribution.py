"""Protocol or library, pair by pair: the protocol spread never rests on a saturated row,
and a comparison the repeats cannot resolve says so."""

from harness.measure.attribution import larger_spread, protocol_or_library, ratio_range


def row(cell, protocol, concurrency, rps, repeats=None, bound=""):
    return {"cell": cell, "protocol": protocol, "mode": "closed", "concurrency": concurrency,
            "n": 100, "workload": "embed", "throughput_rps": rps,
            "throughput_per_repeat_rps": repeats, "latency_p50_ms": 1.0,
            "server_bound": bound, "client_bound": "", "failed": "",
            "server_impl": "srv", "client_engine": "cli"}


def test_protocol_spread_uses_unsaturated_rows_at_a_common_load_point():
    rows = [row("rest-h1", "rest-h1", 1, 1000, [990, 1010]),
            row("rest-h1", "rest-h1", 8, 1200, [1190, 1210], bound="server at 95%"),
            row("rest-h1@caddy+curl", "rest-h1", 1, 600, [590, 610]),
            row("rest-h1@caddy+curl", "rest-h1", 8, 900, [890, 910]),
            row("grpc", "grpc", 1, 800, [790, 810]),
            row("grpc", "grpc", 8, 3000, [2990, 3010], bound="server at 97%")]
    text = "\n".join(protocol_or_library(rows))
    # At c=8 grpc is saturated, so the spread is taken at c=1: grpc 800 against rest-h1's
    # fastest unsaturated row there (rest-h1 1,000), never grpc's 3,000.
    assert "against grpc at c=1, unsaturated rows only: protocol spread 1.25x" in text
    assert "3,000" not in text
    # The implementation spread (a library figure) may use the saturated row: 1,200 / 900.
    assert "1.33x" in text and "the implementation difference is the larger" in text


def test_no_common_unsaturated_point_says_the_spread_is_not_measured():
    rows = [row("rest-h1", "rest-h1", 1, 1000, bound="server at 95%"),
            row("rest-h1@caddy+curl", "rest-h1", 1, 600),
            row("grpc", "grpc", 1, 800, bound="server at 97%")]
    text = "\n".join(protocol_or_library(rows))
    assert "against grpc: no load point at which both protocols ran unsaturated" in text
    assert "the protocol difference is the larger" not in text


def test_overlapping_ratio_ranges_are_undecided():
    rng = ratio_range([100, 120], [90, 100])
    assert rng == (1.0, 120 / 90)
    text = larger_spread(1.1, rng, 1.15, (1.1, 1.2), "A", "B", ("first", "second"))
    assert "cannot say which is larger" in text and "first 1.00-1.33x" in text
    assert larger_spread(2.0, (1.9, 2.1), 1.2, (1.1, 1.3), "A", "B", ("a", "b")) == "A"
    assert larger_spread(1.2, (1.1, 1.3), 2.0, (1.9, 2.1), "A", "B", ("a", "b")) == "B"
    assert "indicative" in larger_spread(2.0, None, 1.2, (1.1, 1.3), "A", "B", ("a", "b"))


def test_a_machine_bound_row_is_no_protocol_result_either():
    """Client and server together at the machine's limit: the spread moves to the load
    point where neither protocol's row is bound, as for a saturated server."""
    rows = [row("rest-h1", "rest-h1", 1, 1000, [990, 1010]),
            {**row("rest-h1", "rest-h1", 8, 1200, [1190, 1210]),
             "machine_bound": "client and server processes together used 1.80 of the "
                              "machine's 2 cores"},
            row("rest-h1@caddy+curl", "rest-h1", 1, 600, [590, 610]),
            row("grpc", "grpc", 1, 800, [790, 810]),
            row("grpc", "grpc", 8, 3000, [2990, 3010])]
    text = "\n".join(protocol_or_library(rows))
    assert "against grpc at c=1, unsaturated rows only: protocol spread 1.25x" in text


def test_a_spread_across_the_caddy_hop_says_which_way_the_hop_moves_it():
    rows = [row("rest-h1", "rest-h1", 1, 1000, [990, 1010]),
            row("rest-h1@caddy+curl", "rest-h1", 1, 600, [590, 610]),
            row("grpc", "grpc", 1, 800, [790, 810]),
            row("ws", "ws", 1, 400, [390, 410])]
    lines = protocol_or_library(rows)
    # rest-h1's fastest row there is the Caddy-less one: no hop between it and grpc.
    assert not any("against grpc" in l and "hop" in l for l in lines)
    rows[0]["server_bound"] = "server at 95%"       # now rest-h1@caddy+curl stands for it
    lines = protocol_or_library(rows)
    (slower,) = [l for l in lines if "against grpc at c=1" in l]
    assert "rest-h1@caddy+curl crosses Caddy's hop" in slower and "part of this" in slower
    (faster,) = [l for l in lines if "against ws at c=1" in l]
    assert "without it the gap would be wider" in faster


def test_a_row_near_saturation_leaves_the_spread_undecided():
    # protocol_vs_library.yaml: rest-h3's aioquic server at 83% and its client at 79% of
    # a core, under the 85% flag. Its req/s is mostly its library's CPU, so "the protocol
    # difference is the larger" (5.8x against rest-h2) would be folklore, not a finding.
    rows = [row("rest-h2", "rest-h2", 1, 614, [610, 618]),
            row("rest-h2@granian", "rest-h2", 1, 580, [575, 585]),
            {**row("rest-h3", "rest-h3", 1, 105, [104, 106]), "client_core_util": 0.79,
             "server_core_util": {"python[1]": {"busiest_thread": 0.834}}},
            row("rest-h3+curl", "rest-h3", 1, 98, [97, 99])]
    text = "\n".join(protocol_or_library(rows))
    line = next(x for x in text.splitlines() if x.startswith("- against rest-h3 at c=1"))
    assert "the protocol difference is the larger" not in line
    assert ("cannot say which is larger: near saturation, rest-h3 (python[1] (server) 83% "
            "of a core, the client worker 79% of a core)") in line
    # A row at 60% stays a protocol result.
    calm = [{**r, "client_core_util": 0.6} if r["cell"] == "rest-h3" else r for r in rows]
    calm = [{k: v for k, v in r.items() if k != "server_core_util"} for r in calm]
    assert "the protocol difference is the larger" in "\n".join(protocol_or_library(calm))


def test_a_saturated_rows_figures_are_flagged_where_implementations_are_compared():
    from harness.report.markdown import implementation_table
    rows = [row("rest-h1", "rest-h1", 1, 1000, [990, 1010], bound="server at 95%"),
            row("rest-h1", "rest-h1", 8, 1200, [1190, 1210], bound="server at 96%"),
            row("rest-h1@caddy+curl", "rest-h1", 1, 600, [590, 610]),
            row("rest-h1@caddy+curl", "rest-h1", 8, 900, [890, 910])]
    for r in rows:
        r["machine_bound"] = ""
    (line,) = [t for t in protocol_or_library(rows) if t.startswith("- implementation")]
    assert ("best throughput rest-h1 1,200 req/s (server-bound) vs rest-h1@caddy+curl 900 "
            "req/s (1.33x)") in line
    assert line.endswith("p50 at c=1 1.00 ms (server-bound) vs 1.00 ms")
    table = implementation_table(rows)
    assert "| 1,200 **server-bound** | 1.000 **server-bound** |" in table
    assert "| 900 | 1.000 |" in table
