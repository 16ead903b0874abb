"""Conclusions rank only unsaturated rows of the first group, and say when a gap is noise."""

import pytest
import yaml

from harness.report.conclusion import conclusions, latency_ranking, protocol_or_library
from harness.scenario import ScenarioError, parse_scenario, with_protocols

GROUPS = {"fastest": ["rest-h1@caddy+curl", "rest-h3@caddy+curl"], "python": ["rest-h3"]}


def row(cell, protocol, group, p50, repeats=None, concurrency=1, bound="", rps=100.0):
    return {"cell": cell, "protocol": protocol, "group": group, "mode": "closed",
            "concurrency": concurrency, "n": 100, "workload": "embed",
            "latency_p50_ms": p50, "latency_p50_per_repeat_ms": repeats,
            "throughput_rps": rps, "throughput_per_repeat_rps": None,
            "server_bound": bound, "client_bound": "", "server_impl": "srv",
            "client_engine": "cli"}


def test_ranks_first_group_and_calls_a_separated_gap_real():
    rows = [row("rest-h3", "rest-h3", "python", 28.0, [27.5, 28.0, 28.4]),
            row("rest-h3@caddy+curl", "rest-h3", "fastest", 1.5, [1.45, 1.5, 1.55]),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2, [1.15, 1.2, 1.25])]
    text = "\n".join(latency_ranking(rows, GROUPS))
    assert "rest-h1@caddy+curl p50 1.20" in text and "gap is real" in text
    assert "rest-h3 p50 28" not in text          # the python group is not ranked


def test_overlapping_repeats_say_no_difference():
    rows = [row("rest-h3@caddy+curl", "rest-h3", "fastest", 1.25, [1.1, 1.25, 1.4]),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2, [1.0, 1.2, 1.3])]
    assert "no difference" in "\n".join(latency_ranking(rows, GROUPS))


def test_bound_row_is_named_and_never_ranked():
    rows = [row("rest-h3@caddy+curl", "rest-h3", "fastest", 0.5, bound="server at 97%"),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2)]
    lines = latency_ranking(rows, GROUPS)
    assert not any("Lowest" in l and "**rest-h3" in l for l in lines)
    assert any("rest-h3@caddy+curl c=1 is left out" in l and "97%" in l for l in lines)


def test_library_factor_against_protocol_spread():
    rows = [row("rest-h3", "rest-h3", "python", 28.0, bound="server at 95%"),
            row("rest-h3@caddy+curl", "rest-h3", "fastest", 1.5),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2)]
    text = "\n".join(protocol_or_library(rows, GROUPS))
    assert "1.25x spread" in text and "18.67x" in text and "the library decides" in text


def test_without_groups_there_is_no_library_verdict():
    rows = [row("rest-h1", "rest-h1", "all", 1.2), row("rest-h2", "rest-h2", "all", 1.9)]
    assert protocol_or_library(rows, None) == []
    assert any("rest-h1 p50 1.20" in l for l in conclusions(rows, None))


SCENARIO = """
name: g
workload: {type: embed}
load: {mode: closed, concurrency: 1, requests: 10}
groups:
  fastest: [rest-h1@caddy+curl, grpc]
  python: [rest-h1]
"""


def test_groups_give_protocols_and_survive_a_round_trip():
    s = parse_scenario(yaml.safe_load(SCENARIO))
    assert s.protocols == ("rest-h1@caddy+curl", "grpc", "rest-h1")
    assert parse_scenario(s.to_dict()) == s
    assert with_protocols(s, ["rest-h1"]).groups == (("python", ("rest-h1",)),)


@pytest.mark.parametrize("groups, message", [
    ({"a": ["rest-h1"], "b": ["rest-h1"]}, "already in group"),
    ({"a": []}, "non-empty list"),
    ({"a": ["rest-h9"]}, "unknown protocol"),
])
def test_bad_groups_name_the_field(groups, message):
    data = yaml.safe_load(SCENARIO)
    data["groups"] = groups
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_grouped_cell_must_be_in_protocols():
    data = yaml.safe_load(SCENARIO)
    data["protocols"] = ["grpc"]
    with pytest.raises(ScenarioError, match="not in protocols"):
        parse_scenario(data)


def test_framework_cost_pairs_fastapi_with_the_bare_app_on_the_same_server():
    from harness.report.conclusion import framework_cost
    rows = [row("rest-h1@fastapi", "rest-h1", "python", 1.6),
            row("rest-h1", "rest-h1", "python", 1.2),
            row("rest-h3@fastapi+curl", "rest-h3", "python", 2.9),
            row("rest-h3@caddy+curl", "rest-h3", "fastest", 2.4)]
    for r, cpu in zip(rows, (0.9, 0.6, 1.1, 0.8)):
        r["server_cpu_ms_per_req"] = cpu
    text = "\n".join(framework_cost(rows))
    assert "rest-h1@fastapi p50 1.600 ms vs the bare ASGI app rest-h1 1.200 ms (+0.400 ms)" in text
    assert "rest-h3@caddy+curl 2.400" in text and "(+0.300)" in text


def test_bytes_ranking_orders_rows_measured_the_same_way():
    from harness.report.conclusion import bytes_ranking
    base = {"mode": "closed", "concurrency": 1, "n": 10, "workload": "embed",
            "latency_p50_ms": 1.0}
    rows = [
        {**base, "cell": "grpc", "protocol": "grpc", "wire_up_bytes": 300,
         "wire_down_bytes": 6_000},
        {**base, "cell": "rest-h1", "protocol": "rest-h1", "wire_up_bytes": 500,
         "wire_down_bytes": 20_000},
        {**base, "cell": "ws", "protocol": "ws", "wire_up_bytes": None,
         "wire_down_bytes": None, "payload_up_bytes": 100, "payload_down_bytes": 19_000},
    ]
    (line,) = bytes_ranking(rows)
    assert "(wire, up + down): **grpc 6,300 B**, then rest-h1 20,500 B (3.25x)" in line
    assert "ws" not in line          # payload-only rows are not ranked against wire ones


def test_library_factor_within_the_protocol_spread_noise_is_undecided():
    rows = [row("rest-h1", "rest-h1", "python", 2.0, [1.9, 2.0, 2.1]),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2, [1.15, 1.2, 1.25]),
            row("rest-h3@caddy+curl", "rest-h3", "fastest", 2.0, [1.8, 2.0, 2.3])]
    text = "\n".join(protocol_or_library(rows, GROUPS))
    # library 1.67x [1.52-1.83] against protocols 1.67x [1.44-2.00]: the run cannot say
    assert "cannot say which is larger" in text
    assert "the library decides" not in text and "differ more" not in text


def test_cost_lines_name_a_saturated_row_and_queueing_above_one_user():
    from harness.report.conclusion import framework_cost, hop_cost
    rows = [row("rest-h1@fastapi", "rest-h1", "python", 9.0, concurrency=8,
                bound="python[1]'s busiest thread used 97% of a core"),
            row("rest-h1", "rest-h1", "python", 5.0, concurrency=8),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.8),
            row("rest-h1+curl", "rest-h1", "hop", 1.2)]
    text = "\n".join(framework_cost(rows))
    assert "saturated (rest-h1@fastapi: python[1]'s busiest thread used 97%" in text
    assert "includes queueing" in text
    assert "saturated" not in "\n".join(hop_cost(rows))     # neither row is bound


def test_seed_lab_table_flags_a_saturated_row():
    from harness.report.markdown import seed_lab_table
    r = row("rest-h3", "rest-h3", "python", 13.0, bound="server at 97%")
    r.update(median_wall_s=0.013, p95_wall_s=0.015)
    line = seed_lab_table([r]).splitlines()[-1]
    assert "server-bound" in line


def test_bytes_ranking_leaves_a_saturated_row_out_and_names_it():
    from harness.report.conclusion import bytes_ranking
    base = {"mode": "closed", "concurrency": 1, "n": 10, "workload": "embed",
            "latency_p50_ms": 1.0}
    rows = [
        {**base, "cell": "grpc", "protocol": "grpc", "wire_up_bytes": 300,
         "wire_down_bytes": 6_000, "server_bound": "grpc[1] used 97% of a core"},
        {**base, "cell": "rest-h1", "protocol": "rest-h1", "wire_up_bytes": 500,
         "wire_down_bytes": 20_000},
        {**base, "cell": "ws", "protocol": "ws", "wire_up_bytes": 400,
         "wire_down_bytes": 21_000},
    ]
    ranked, note = bytes_ranking(rows)
    assert "**rest-h1 20,500 B**, then ws 21,400 B" in ranked and "grpc" not in ranked
    assert note == ("- Not ranked for bytes (saturated, its packets follow its library's "
                    "pace): grpc.")


HOP_GROUPS = {"fastest": ["rest-h1@caddy+curl", "grpc"], "python": ["rest-h1"],
              "hop": ["rest-h1+curl"]}


def hop_rows(front, direct, grpc):
    """The default scenario's shape: a front row, its Caddy-less twin, and gRPC."""
    return [row("rest-h1@caddy+curl", "rest-h1", "fastest", front[1], front),
            row("rest-h1+curl", "rest-h1", "hop", direct[1], direct),
            row("grpc", "grpc", "fastest", grpc[1], grpc)]


def test_a_ranking_across_the_hop_names_it_and_asks_whether_it_decides():
    # The front is 0.5 ms behind gRPC, and the hop is 0.5 ms: no protocol gap is left.
    rows = hop_rows([1.70, 1.75, 1.80], [1.20, 1.25, 1.30], [1.23, 1.24, 1.25])
    (line,) = latency_ranking(rows, HOP_GROUPS)
    assert "Caddy's local hop to the backend, which grpc does not" in line
    assert "+0.50 ms [+0.50 to +0.50] at c=1" in line and "would be 1.25 ms" in line
    assert "this run cannot say which of the two is faster" in line
    # A hop of 0.1 ms leaves the front behind, and the sentence says so.
    rows = hop_rows([1.70, 1.75, 1.80], [1.60, 1.65, 1.70], [1.23, 1.24, 1.25])
    assert "still behind grpc" in latency_ranking(rows, HOP_GROUPS)[0]
    # No Caddy-less twin: the hop is named as not separated.
    rows = [r for r in rows if r["cell"] != "rest-h1+curl"]
    assert "not separated" in latency_ranking(rows, HOP_GROUPS)[0]


def test_protocol_spread_is_taken_less_the_hop():
    rows = hop_rows([1.70, 1.75, 1.80], [1.20, 1.25, 1.30], [0.99, 1.0, 1.01])
    rows.append(row("rest-h1", "rest-h1", "python", 1.6, [1.55, 1.6, 1.65]))
    text = "\n".join(protocol_or_library(rows, HOP_GROUPS))
    assert "1.25x" in text and "to rest-h1@caddy+curl 1.25 ms" in text
    assert "measured 1.75 ms, less Caddy's +0.50 ms hop" in text


def test_a_saturated_row_is_never_called_faster():
    rows = [row("rest-h1", "rest-h1", "python", 1.2, [1.15, 1.2, 1.25], bound="server at 96%"),
            row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.75, [1.7, 1.75, 1.8]),
            row("grpc", "grpc", "fastest", 1.25, [1.2, 1.25, 1.3])]
    (line,) = [l for l in protocol_or_library(rows, HOP_GROUPS) if l.startswith("- rest-h1:")]
    assert "1.46x apart" in line and "faster" not in line
    assert "Caddy's hop included" in line and "rest-h1 saturated: server at 96%" in line


def test_the_verdict_names_the_hop_when_only_one_of_the_two_crosses_it():
    from harness.report.questions import verdict_lines
    # A 0.1 ms hop leaves the front behind gRPC: the verdict stands, the hop is named.
    rows = hop_rows([1.60, 1.65, 1.70], [1.50, 1.55, 1.60], [1.0, 1.05, 1.1])
    (latency, *_) = verdict_lines(rows, HOP_GROUPS)
    assert latency.startswith("Latency at c=1 (p50): grpc")
    assert "rest-h1@caddy+curl crosses Caddy's hop to the backend, +0.10 ms p50" in latency
    # A 0.5 ms hop: less it, the front would lead, and the verdict says so.
    rows = hop_rows([1.30, 1.35, 1.40], [0.80, 0.85, 0.90], [1.0, 1.05, 1.1])
    (latency, *_) = verdict_lines(rows, HOP_GROUPS)
    assert ("rest-h1@caddy+curl less Caddy's hop (+0.50 ms in this run) would be 0.85 ms "
            "[0.8-0.9]: ahead of grpc") in latency


def test_the_verdict_names_a_front_row_the_hop_alone_puts_behind_the_runner_up():
    # The default run's shape: gRPC first, ws second, the front third; less the hop the
    # front is not apart from gRPC, so "grpc vs ws: real" must not stand alone.
    from harness.report.questions import verdict_lines
    rows = hop_rows([1.90, 2.10, 2.30], [1.30, 1.45, 1.60], [1.39, 1.44, 1.46])
    rows.append(row("ws", "ws", "fastest", 1.97, [1.89, 1.97, 2.03]))
    groups = {**HOP_GROUPS, "fastest": ["rest-h1@caddy+curl", "grpc", "ws"]}
    (latency, *_) = verdict_lines(rows, groups)
    assert latency.startswith("Latency at c=1 (p50): grpc 1.44 ms, 1.37x")
    assert "vs ws: real" in latency
    assert ("rest-h1@caddy+curl less Caddy's hop (+0.65 ms in this run) would be 1.45 ms "
            "[1.2-1.7]: not apart from grpc") in latency
    # With the front well behind even less the hop, nothing is added about it.
    rows[0].update(latency_p50_ms=3.1, latency_p50_per_repeat_ms=[3.0, 3.1, 3.2])
    rows[1].update(latency_p50_ms=2.45, latency_p50_per_repeat_ms=[2.35, 2.45, 2.55])
    (latency, *_) = verdict_lines(rows, groups)
    assert "Caddy" not in latency


def test_a_throughput_ranking_across_the_hop_says_which_way_it_moves_the_gap():
    from harness.report.conclusion import throughput_ranking
    rows = hop_rows([1.7, 1.75, 1.8], [1.2, 1.25, 1.3], [1.0, 1.05, 1.1])
    rows[0]["throughput_rps"], rows[2]["throughput_rps"] = 600.0, 800.0
    (line,) = throughput_ranking(rows, HOP_GROUPS)
    assert "**grpc 800 req/s**" in line and "part of the gap is the hop" in line


def test_a_measured_hop_is_never_called_unmeasured_when_neither_extreme_carries_it():
    rows = hop_rows([1.70, 1.75, 1.80], [1.20, 1.25, 1.30], [0.99, 1.0, 1.01])
    rows.append(row("ws", "ws", "fastest", 1.5, [1.45, 1.5, 1.55]))
    (spread,) = [l for l in protocol_or_library(rows, {**HOP_GROUPS, "fastest": [
        "rest-h1@caddy+curl", "grpc", "ws"]}) if "Protocol spread" in l] or [""]
    assert "from grpc 1.00 ms to ws 1.50 ms" in spread
    assert "taken less Caddy's +0.50 ms hop" in spread and "cannot measure" not in spread


def test_the_hop_is_taken_off_ttft_but_never_off_itl():
    # The hop is measured on TTFT: it may move a TTFT order, never an ITL one.
    from harness.report.questions import verdict_lines

    def stream(cell, group, ttft, itl):
        r = row(cell, cell.split("@")[0].split("+")[0], group, None, None)
        r.update(workload="stream", ttft_p50_ms=ttft[1], ttft_p50_per_repeat_ms=ttft,
                 itl_p50_ms=itl)
        return r
    rows = [stream("sse-h1@caddy+curl", "fastest", [1.30, 1.35, 1.40], 20.02),
            stream("sse-h1+curl", "hop", [0.80, 0.85, 0.90], 20.00),
            stream("grpc-stream", "fastest", [1.0, 1.05, 1.1], 20.01),
            stream("ws-stream", "fastest", [1.6, 1.65, 1.7], 20.03)]
    groups = {"fastest": ["sse-h1@caddy+curl", "grpc-stream", "ws-stream"],
              "hop": ["sse-h1+curl"]}
    ttft, itl = [l for l in verdict_lines(rows, groups) if l.startswith(("TTFT", "ITL"))]
    assert "sse-h1@caddy+curl less Caddy's hop (+0.50 ms in this run)" in ttft
    assert "less Caddy's hop" not in itl


def test_the_hop_is_measured_on_http11_only():
    # sse-h3@caddy against sse-h3 compares quic-go with aioquic, not the hop.
    from harness.report.conclusion import hop_cost, measured_hop
    rows = [row("rest-h3@caddy+curl", "rest-h3", "fastest", 2.0),
            row("rest-h3+curl", "rest-h3", "hop", 9.0)]
    assert hop_cost(rows) == [] and measured_hop(rows, 1, "embed") is None
    rows += [row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.8),
             row("rest-h1+curl", "rest-h1", "hop", 1.2)]
    assert [line.split(":")[0] for line in hop_cost(rows)] == ["- The Caddy hop at c=1"]
    assert round(measured_hop(rows, 1, "embed").ms, 3) == 0.6


def test_a_row_near_saturation_is_marked_in_the_order_with_its_busy_process():
    # protocol_vs_library.yaml's rest-h3 (aioquic at 83% of a core) stood in the order
    # like any other row.
    busy = {**row("rest-h3@caddy+curl", "rest-h3", "fastest", 9.0),
            "server_core_util": {"python[9]": {"busiest_thread": 0.83}}}
    text = "\n".join(latency_ranking([busy, row("rest-h1@caddy+curl", "rest-h1", "fastest",
                                                1.2)], GROUPS))
    assert "rest-h3@caddy+curl 9.00 (near saturation) ms." in text
    assert "possibly its library's figure: rest-h3@caddy+curl (python[9] (server) 83%" in text
    calm = "\n".join(latency_ranking([row("rest-h3@caddy+curl", "rest-h3", "fastest", 9.0),
                                      row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.2)],
                                     GROUPS))
    assert "near saturation" not in calm


def test_a_verdict_on_a_row_the_hypervisor_slowed_says_so():
    from harness.report.questions import verdict_lines
    rows = [row("grpc", "grpc", "fastest", 1.25, [1.2, 1.25, 1.3]),
            {**row("ws", "ws", "fastest", 1.97, [1.89, 1.97, 2.03]), "host_steal": 0.13,
             "host_noisy": "steal: the hypervisor took 13% of this machine's CPU time"}]
    groups = {"fastest": ["grpc", "ws"]}
    (latency, *_) = verdict_lines(rows, groups)
    assert "vs ws: real" in latency and "ws measured under 13% host steal" in latency
    rows[1]["host_noisy"] = ""
    (latency, *_) = verdict_lines(rows, groups)
    assert "steal" not in latency


def test_the_verdict_and_the_conclusions_call_the_same_gaps_real():
    # The default run of 2026-12-06 16:47 said "no difference" for throughput in its
    # verdict (the count intervals overlap) and "a real gap" below it (the three
    # repeats apart). Both now decide on the same widened intervals.
    from harness.report.conclusion import throughput_ranking
    from harness.report.questions import verdict_lines
    h2 = row("rest-h2@caddy+curl", "rest-h2", "fastest", 9.6, [9.1, 9.6, 9.9],
             concurrency=8, rps=787.0)
    h3 = row("rest-h3@caddy+curl", "rest-h3", "fastest", 11.5, [11.2, 11.4, 11.8],
             concurrency=8, rps=697.0)
    h2.update(n=600, throughput_per_repeat_rps=[777.0, 785.0, 798.0])
    h3.update(n=600, throughput_per_repeat_rps=[657.0, 713.0, 724.0])
    groups = {"fastest": ["rest-h2@caddy+curl", "rest-h3@caddy+curl"]}
    (line,) = throughput_ranking([h2, h3], groups)
    throughput = [v for v in verdict_lines([h2, h3], groups) if v.startswith("Throughput")]
    assert "no difference" in line and throughput[0].startswith("Throughput at c=8: no difference")
    h2.update(n=20_000)          # many more requests: the count interval narrows to the repeats
    h3.update(n=20_000)
    (line,) = throughput_ranking([h2, h3], groups)
    throughput = [v for v in verdict_lines([h2, h3], groups) if v.startswith("Throughput")]
    assert "the gap is real" in line and ": real" in throughput[0]
    # Latency: repeats apart, but the histogram's interval of one row reaches the other.
    a = row("rest-h1@caddy+curl", "rest-h1", "fastest", 1.20, [1.18, 1.20, 1.22])
    b = row("rest-h3@caddy+curl", "rest-h3", "fastest", 1.30, [1.28, 1.30, 1.32])
    a["latency_p50_ci_ms"] = (1.15, 1.29)
    text = "\n".join(latency_ranking([a, b], GROUPS))
    (latency,) = [v for v in verdict_lines([a, b], GROUPS) if v.startswith("Latency")]
    assert "no difference" in text and latency.startswith("Latency at c=1 (p50): no difference")

    # One repeat: both say the intervals are apart and that the spread between runs is
    # unknown (the streaming run of 2026-12-06 had "real" above, "undecided" below).
    for r in (a, b):
        r["latency_p50_per_repeat_ms"] = None
    a["latency_p50_ci_ms"] = (1.19, 1.21)
    (text,) = [t for t in latency_ranking([a, b], GROUPS) if t.startswith("- Lowest")]
    (latency,) = [v for v in verdict_lines([a, b], GROUPS) if v.startswith("Latency")]
    assert "do not overlap, but with one repeat" in text and "repeats is unknown" in text
    assert ": real" in latency and "1 repeat: the spread between runs is unknown" in latency
