"""Head-of-line analysis on synthetic traces and packet logs whose answers are known."""

from __future__ import annotations

import pytest

from harness.measure.hol import PointAnalysis, analyse_point, drop_timeline
from harness.measure.hol_drops import (HolParams, StreamTrace, attribute_drops, load_traces,
                                       save_traces)
from harness.measure.packetlog import PacketRecord
from harness.report.hol import HolPoint, render_hol_section

MS = 1_000_000
ITL, OWD, RECOVERY, STAGGER, WIRE = 20 * MS, 20 * MS, 60 * MS, 2_500_000, 100_000
T0 = 1_000 * MS
PARAMS = HolParams(itl_ms=20, rtt_ms=40)


def lab(n_streams=4, shared=True, coupled=True, lost=((1, 10),), n_tokens=30, owd=OWD,
        recovery=RECOVERY):
    """Streams staggered by 2.5 ms, a token every 20 ms, 20 ms one way. Each lost
    (stream, token) packet is recovered 60 ms after it entered the link; until then the
    owner's later tokens wait, and so do its connection's other streams when `coupled`
    (TCP head-of-line blocking)."""
    emits = {s: [T0 + s * STAGGER + k * ITL for k in range(n_tokens)] for s in range(n_streams)}
    port = {s: 5000 if shared else 5000 + s for s in range(n_streams)}
    holds = [(s, emits[s][k] + WIRE) for s, k in lost]   # (owner, drop time)
    traces, packets = [], []
    for s in range(n_streams):
        tokens = []
        for k, e in enumerate(emits[s]):
            recv = e + owd
            for owner, t in holds:
                waits = s == owner or (shared and coupled)
                if waits and t - WIRE <= e < t + recovery:
                    recv = max(recv, t + recovery)
            tokens.append((k, e, recv))
            dropped = (s, k) in lost
            packets.append(PacketRecord(e + WIRE, "down", 200, "tcp", 443, port[s],
                                        "loss" if dropped else "fwd",
                                        0 if dropped else e + WIRE + owd, "PA", 150))
        traces.append(StreamTrace(s, "c0" if shared else f"c{s}", port[s], T0 - 50 * MS + s * STAGGER,
                                  tokens))
    return traces, sorted(packets, key=lambda p: p.t_ns)


def e1(token=10):
    return T0 + 1 * STAGGER + token * ITL


# ------------------------------------------------------------------ stalls


def test_one_drop_on_a_multiplexed_connection_is_own_for_the_owner_collateral_for_others():
    traces, packets = lab()
    a = analyse_point(traces, packets, PARAMS)
    by_stream = {s.stream: s for s in a.stall_list}
    assert set(by_stream) == {0, 1, 2, 3} and a.stalls == 4
    assert by_stream[1].kind == "own"
    assert {by_stream[s].kind for s in (0, 2, 3)} == {"collateral"}
    # Released at drop + 60 ms = e1 + 60.1 ms; each stream's previous receipt differs.
    assert by_stream[1].duration_ns == 60_100_000 - ITL            # prev receipt e1
    assert by_stream[0].duration_ns == 42_600_000 - ITL            # prev receipt e1 + 17.5
    assert by_stream[2].duration_ns == 57_600_000 - ITL            # prev receipt e1 + 2.5
    assert by_stream[3].duration_ns == 55_100_000 - ITL            # prev receipt e1 + 5
    assert {s.end_ns for s in a.stall_list} == {e1() + WIRE + RECOVERY}
    assert a.own_stalls == 1 and a.collateral_stalls == 3 and a.unknown_stalls == 0
    assert a.collateral_ms == pytest.approx(22.6 + 37.6 + 35.1)
    assert a.collateral_share == pytest.approx((22.6 + 37.6 + 35.1) / (40.1 + 22.6 + 37.6 + 35.1))
    assert a.stalls_on_clean_streams == 3
    assert [s.own_drops for s in a.per_stream] == [0, 1, 0, 0]
    assert a.corr_same_connection > 0.8 and a.corr_cross_connection is None


def test_the_same_drop_on_one_connection_per_stream_stalls_only_the_owner():
    traces, packets = lab(shared=False)
    a = analyse_point(traces, packets, PARAMS)
    assert [(s.stream, s.kind, s.duration_ns) for s in a.stall_list] == [(1, "own", 40_100_000)]
    assert a.collateral_stalls == 0 and a.collateral_share == 0.0
    assert a.drops[0].rule == "only-stream" and a.drops[0].streams == (1,)
    assert a.stalls_per_stream == 0.25 and a.stall_ms_per_stream == pytest.approx(40.1 / 4)
    assert a.corr_cross_connection == 0.0 and a.corr_same_connection is None


def test_coalesced_tokens_after_a_stall_are_one_stall_and_one_chunk():
    traces, packets = lab(n_streams=1, lost=((0, 10),))
    (t,) = traces
    recvs = [r for _, _, r in t.tokens]
    assert recvs.count(T0 + 10 * ITL + WIRE + RECOVERY) == 3   # tokens 10, 11, 12 together
    a = analyse_point(traces, packets, PARAMS)
    assert len(a.stall_list) == 1 and a.stall_list[0].token == 10
    # Chunk gaps: 20 ms except the stall gap; the coalesced tokens add no zero gaps.
    assert a.itl_p99_ms == pytest.approx(60.1)
    assert a.owd_max_ms == pytest.approx(60.1) and a.owd_p50_ms == pytest.approx(20.0)
    assert a.ttft_p50_ms == pytest.approx(70.0)


def test_stall_factor_is_a_parameter():
    traces, packets = lab()
    strict = analyse_point(traces, packets, HolParams(itl_ms=20, rtt_ms=40, stall_factor=2.5))
    assert {s.stream for s in strict.stall_list} == {1, 2, 3}    # stream 0's 42.6 ms gap is under 50


def test_own_window_reaches_one_rtt_before_the_previous_receipt_and_ends_at_the_stall():
    # 35 ms one way: the previous token arrives 15 ms *after* the drop left, so only the
    # RTT lookback ties the drop to the stall.
    traces, packets = lab(shared=False, owd=35 * MS, recovery=80 * MS)
    rtt70 = HolParams(itl_ms=20, rtt_ms=70)
    assert [s.kind for s in analyse_point(traces, packets, rtt70).stall_list] == ["own"]
    no_lookback = HolParams(itl_ms=20, rtt_ms=70, lookback_ms=0)
    assert [s.kind for s in analyse_point(traces, packets, no_lookback).stall_list] == ["collateral"]
    # A drop after the stalled token arrived cannot have caused the stall.
    late = [p if p.outcome == "fwd" else
            PacketRecord(e1() + 100 * MS, "down", 200, "tcp", 443, 5001, "loss", 0, "PA", 150)
            for p in packets]
    assert [s.kind for s in analyse_point(traces, late, rtt70).stall_list] == ["collateral"]


def test_a_drop_nobody_can_own_leaves_nearby_stalls_unclassified_not_collateral():
    traces, packets = lab()
    # The stall's packet arrives intact, but an orphan (e.g. a retransmission) was lost
    # 2.4 ms after the last emit: outside the 2 ms attribution window.
    packets = [p if p.outcome == "fwd" else
               PacketRecord(p.t_ns + 2_300_000, "down", 200, "tcp", 443, 5000, "loss", 0, "PA", 150)
               for p in packets]
    a = analyse_point(traces, packets, PARAMS)
    assert a.drops[0].rule == "no-recent-event" and a.unattributed_down == 1
    assert a.unknown_stalls == 4 and a.collateral_stalls == 0 and a.own_stalls == 0


# ------------------------------------------------------------- attribution


def test_attribution_by_emit_time():
    traces, _ = lab(lost=())
    t2 = T0 + 2 * STAGGER + 5 * ITL            # stream 2's token 5
    # Stream 3's token 4 re-stamped 0.2 ms before stream 2's token 5: a tie (< 0.5 ms).
    traces[3].tokens[4] = (4, t2 - 200_000, traces[3].tokens[4][2])
    up_start = traces[1].t_start_ns
    packets = [
        PacketRecord(t2 + 300_000, "down", 200, "tcp", 443, 5000, "loss", 0, "PA", 150),
        PacketRecord(t2 + 2_300_000, "down", 200, "tcp", 443, 5000, "loss", 0, "PA", 150),
        PacketRecord(T0 + 3 * ITL + 100_000, "down", 200, "tcp", 443, 5000, "loss", 0, "PA", 150),
        PacketRecord(T0 + 3 * ITL + 100_000, "down", 52, "tcp", 443, 5000, "loss", 0, "A", 0),
        PacketRecord(T0 + 3 * ITL, "down", 200, "tcp", 443, 6000, "loss", 0, "PA", 150),
        PacketRecord(up_start + 200_000, "up", 300, "tcp", 5000, 443, "loss", 0, "PA", 250),
        PacketRecord(T0, "down", 200, "tcp", 443, 5000, "fwd", T0 + OWD, "PA", 150),
    ]
    got = [(d.streams, d.rule) for d in attribute_drops(traces, packets, PARAMS)]
    assert got == [((2, 3), "ambiguous"),
                   ((), "no-recent-event"),
                   ((0,), "emit-time"),
                   ((), "no-payload"),
                   ((), "foreign-port"),
                   ((1,), "start-time")]


def test_traces_without_a_port_or_packet_log_are_unclassified():
    traces, packets = lab()
    assert analyse_point(traces, None, PARAMS).unknown_stalls == 4
    traces[0].client_port = None
    a = analyse_point(traces, packets, PARAMS)
    assert [s.kind for s in sorted(a.stall_list, key=lambda s: s.stream)] == [
        "unknown", "own", "collateral", "collateral"]


# -------------------------------------------------------------- correlation


def stalls_at(stream, connection, gaps_at):
    """A 60-token stream whose tokens after each index in gaps_at arrive 60 ms late."""
    tokens, late = [], 0
    for k in range(60):
        late = 60 * MS if any(k >= g for g in gaps_at) else 0
        tokens.append((k, T0 + k * ITL, T0 + k * ITL + OWD + late))
    return StreamTrace(stream, connection, 7000 + stream, T0 - MS, tokens)


def test_simultaneous_stalls_correlate_fully_and_independent_ones_not_at_all():
    together = [stalls_at(s, "c0", [20]) for s in range(4)]
    a = analyse_point(together, [], PARAMS)
    assert a.stalls == 4 and a.corr_same_connection == pytest.approx(1.0)
    apart = [stalls_at(s, f"c{s}", [5 + 12 * s]) for s in range(4)]
    b = analyse_point(apart, [], PARAMS)
    assert b.stalls == 4 and abs(b.corr_cross_connection) < 0.1
    assert b.corr_same_connection is None


# ------------------------------------------------------------ edge cases, io


def test_errors_and_empty_streams_are_counted_not_fatal(tmp_path):
    traces, packets = lab()
    traces.append(StreamTrace(9, "c9", 5009, T0, [], error="ConnectionResetError"))
    traces.append(StreamTrace(10, "c10", 5010, T0, [(0, T0 + MS, T0 + OWD)], error="timeout"))
    a = analyse_point(traces, packets, PARAMS)
    assert a.streams == 6 and a.active_streams == 5 and a.errors == 2
    assert a.stalls_per_stream == pytest.approx(4 / 5)
    empty = analyse_point([StreamTrace(0, "c", None, T0, [], "refused")], [], PARAMS)
    assert empty.stalls_per_stream is None and empty.ttft_p99_ms is None
    assert empty.corr_same_connection is None and empty.owd_p99_ms is None
    path = tmp_path / "traces-p0.json.gz"
    save_traces(path, traces)
    assert load_traces(path) == traces


def test_analysis_survives_a_round_trip_through_a_dict():
    traces, packets = lab()
    a = analyse_point(traces, packets, PARAMS)
    assert PointAnalysis.from_dict(a.to_dict()) == a
    assert a.flat()["hol_collateral_stalls"] == 3


# ----------------------------------------------------------------- timeline


def test_drop_timeline_finds_the_drop_and_the_delay_it_caused():
    traces, packets = lab()
    a = analyse_point(traces, packets, PARAMS)
    tl = drop_timeline(traces, a)
    assert tl.drop.t_ns == e1() + WIRE and tl.drop.streams == (1,) and tl.drops_in_point == 1
    owner = next(s for s in tl.streams if s.owner)
    assert owner.stream == 1 and owner.baseline_owd_ms == pytest.approx(20.0)
    assert owner.peak_excess_ms == pytest.approx(40.1)      # token 10: 60.1 ms one way
    assert all(s.stalled and s.resumed_ms == pytest.approx(60.0) for s in tl.streams)
    assert [s.lost_nothing for s in tl.streams] == [True, False, True, True]
    first = next(t for t in owner.tokens if t.index == 10)
    assert first.emit_ms == pytest.approx(-0.1) and first.owd_ms == pytest.approx(60.1)
    # The probe is the drop-list packet even when the loss model dropped one earlier.
    early = PacketRecord(T0 + 5 * ITL + WIRE, "down", 200, "tcp", 443, 5000, "loss", 0, "PA", 150)
    probe = [p if p.outcome == "fwd" else PacketRecord(**{**vars_of(p), "outcome": "droplist"})
             for p in packets]
    assert drop_timeline(traces, analyse_point(traces, [early] + probe, PARAMS)).drop.t_ns == e1() + WIRE
    alone = analyse_point(*lab(shared=False), PARAMS)
    assert [s.stalled for s in drop_timeline(lab(shared=False)[0], alone).streams] == [
        False, True, False, False]


def vars_of(p):
    return {f: getattr(p, f) for f in p.__slots__}


# ------------------------------------------------------------------- report


def point(cell, protocol, connections, loss, traces_packets, single=False):
    traces, packets = traces_packets
    a = analyse_point(traces, packets, PARAMS)
    return HolPoint(cell, protocol, connections, "lossy", loss, 40, 20, a,
                    drop_timeline(traces, a) if single else None, single)


def sweep_and_probes(h3_coupled):
    two = ((1, 10), (3, 20))
    return [
        point("sse-h2", "sse-h2", 1, 0.0, lab(lost=())),
        point("sse-h2", "sse-h2", 1, 0.02, lab(lost=two)),
        point("sse-h3", "sse-h3", 1, 0.0, lab(lost=())),
        point("sse-h3", "sse-h3", 1, 0.02, lab(lost=two, coupled=h3_coupled)),
        point("sse-h1", "sse-h1", 4, 0.0, lab(shared=False, lost=())),
        point("sse-h1", "sse-h1", 4, 0.02, lab(shared=False, lost=two)),
        point("sse-h2", "sse-h2", 1, 0.0, lab(), single=True),
        point("sse-h3", "sse-h3", 1, 0.0, lab(coupled=h3_coupled), single=True),
        point("sse-h1", "sse-h1", 4, 0.0, lab(shared=False), single=True),
    ]


def test_report_states_the_computed_numbers_and_writes_figures(tmp_path):
    pytest.importorskip("matplotlib")
    points = sweep_and_probes(h3_coupled=True)
    text = render_hol_section(points, tmp_path / "fig", report_dir=tmp_path)
    for name in ("hol-loss-sweep.png", "hol-drop-timeline.png"):
        f = tmp_path / "fig" / name
        assert f.stat().st_size > 10_000 and f"](fig/{name})" in text
    h2 = points[1].analysis
    assert h2.collateral_stalls == 6
    assert (f"sse-h2 on one connection {h2.collateral_stalls} times "
            f"({h2.collateral_ms_per_stream:,.1f} ms per stream") in text
    assert "sse-h1 on one connection per stream 0 times" in text
    assert "At 2% downstream loss and 40 ms RTT" in text
    assert "every one of 1 single drops stalled streams that lost nothing" in text   # h2 drop
    assert "| sse-h2 on one connection | 1 |" in text      # the per-series single-drop table
    assert "none of the 3 streams that lost nothing stalled" in text  # h1 baseline
    assert "Not consistent with \"HTTP/3 has no head-of-line blocking\" in the single drops" \
        in text
    assert not [line for line in text.splitlines() if line.startswith("- **")]  # no bold verdict
    assert "stream 0 +60.0 ms" in text and "the owner resumed at +60.0 ms" in text
    assert "| 1 (owner) | c0 | +40 +20 +0 +0" in text


def test_a_point_survives_a_round_trip_through_json(tmp_path):
    import json
    p = sweep_and_probes(h3_coupled=True)[-1]
    again = HolPoint.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and again.series == "sse-h1 on one connection per stream"


def test_report_says_so_when_http3_kept_streams_apart(tmp_path):
    points = sweep_and_probes(h3_coupled=False)
    text = render_hol_section(points, tmp_path)
    assert "Consistent with \"HTTP/3 has no head-of-line blocking\"" in text
    assert "Not consistent" not in text
    h3 = points[3].analysis
    assert h3.collateral_stalls == 0 and "sse-h3 on one connection 0 times" in text


def test_hol_summary_reads_the_link_and_feeds_the_report(tmp_path):
    import json

    from harness.measure.hol import hol_summary
    from harness.scenario.linkspec import Bernoulli, DirectionSpec, DropRule, LinkSpec
    traces, packets = lab()
    probe = LinkSpec(up=DirectionSpec(delay_ms=20),
                     down=DirectionSpec(delay_ms=20, drops=(DropRule(nth=(40,)),)), name="drop1")
    lossy = LinkSpec(up=DirectionSpec(delay_ms=20),
                     down=DirectionSpec(delay_ms=20, loss=Bernoulli(0.02)), name="loss2")
    one = json.loads(json.dumps(hol_summary(traces, packets, 20, probe)))
    two = json.loads(json.dumps(hol_summary(traces, packets, 20, lossy, stall_factor=2.5)))
    assert one["single_drop"] and one["rtt_ms"] == 40 and one["timeline"]["drop"]["streams"] == [1]
    assert two["loss"] == 0.02 and two["loss_direction"] == "down" and two["timeline"] is None
    assert two["analysis"]["params"]["stall_factor"] == 2.5
    assert "skipped" in hol_summary(traces, packets, 0.0, lossy)
    points = [HolPoint.from_summary("sse-h2", "sse-h2", 1, d) for d in (one, two)]
    assert points[0].timeline.drop.streams == (1,) and points[1].loss_direction == "down"
    assert "sse-h2 on one connection" in render_hol_section(points, tmp_path)


def test_streams_per_connection_counts_overlap_not_reuse():
    """Two rounds of streams on one connection each: reuse is not multiplexing."""
    one_round, _ = lab(n_streams=3, shared=False, lost=())
    later = [StreamTrace(t.stream + 3, t.connection, t.client_port, t.t_start_ns + 2_000 * MS,
                         [(i, e + 2_000 * MS, r + 2_000 * MS) for i, e, r in t.tokens])
             for t in one_round]
    a = analyse_point(one_round + later, None, PARAMS)
    assert a.connections == 3 and a.streams_per_connection == 1
    shared, _ = lab(n_streams=3, shared=True, lost=())
    assert analyse_point(shared, None, PARAMS).streams_per_connection == 3


def test_drop_timeline_leaves_out_streams_not_alive_at_the_drop():
    traces, packets = lab(n_streams=4, shared=True, coupled=True, lost=((1, 10),))
    finished = StreamTrace(9, "c0", 5000, T0 - 900 * MS,
                           [(k, T0 - 800 * MS + k * ITL, T0 - 780 * MS + k * ITL)
                            for k in range(5)])
    a = analyse_point(traces + [finished], packets, PARAMS)
    tl = drop_timeline(traces + [finished], a)
    assert {s.stream for s in tl.streams} == {0, 1, 2, 3}


def test_a_dropped_packet_carrying_two_tokens_belongs_to_both_emitters():
    """A busy sender coalesces queued tokens: a packet twice the usual size carried the
    two latest emitters' tokens, so neither one's stall is collateral."""
    traces, packets = lab(n_streams=4, shared=True, coupled=True, lost=())
    t_drop = e1(10) + WIRE
    big = PacketRecord(t_drop, "down", 350, "tcp", 443, 5000, "loss", 0, "PA", 300)
    drops = attribute_drops(traces, packets + [big], PARAMS)
    (d,) = [x for x in drops if x.payload == 300]
    assert d.rule == "coalesced" and d.streams == (0, 1)


def test_clean_single_drops_lead_and_sustained_loss_coupling_is_named_apart(tmp_path):
    """One drop stalled no other HTTP/3 stream, but 2% loss made them stall together:
    the headline follows the single drop, the coupling is reported as coupling."""
    points = sweep_and_probes(h3_coupled=True)
    points[7] = point("sse-h3", "sse-h3", 1, 0.0, lab(coupled=False), single=True)
    text = render_hol_section(points, tmp_path)
    verdict = next(line for line in text.splitlines() if "HTTP/3 has no head-of" in line)
    assert verdict.startswith("- Consistent with") and "single drops" in verdict
    assert "Coupling under sustained loss (not head-of-line blocking" in text
    assert "Not consistent" not in text and "contradicts" not in text



def mech(collateral, source, **parts):
    out = {"source": source, "collateral_stalls": 3, "collateral_ms": collateral,
           "unaccounted_ms": 0.0, "state_unknown_ms": 0.0}
    return {**out, **{f"{k}_ms": parts.get(k, 0.0)
                      for k in ("ordering", "cwnd", "app_server", "app_client", "link")}}


def test_the_mechanism_split_is_tabled_per_series_and_cited_by_the_verdict(tmp_path):
    points = sweep_and_probes(h3_coupled=True)
    points[1].mechanism = mech(60.0, "tcp_info every 2 ms", ordering=54.0, cwnd=6.0)
    again = point("sse-h2", "sse-h2", 1, 0.02, lab(lost=((1, 10), (3, 20))))   # a repeat
    again.mechanism = mech(40.0, "tcp_info every 2 ms", ordering=36.0, cwnd=2.0,
                           app_client=2.0)
    points[3].mechanism = mech(200.0, "aioquic qlog", cwnd=190.0, app_server=10.0)
    text = render_hol_section(points + [again], tmp_path)
    # Two repeats of sse-h2 at 2%: 100 ms, 90 ordering, 8 window, 2 client.
    assert ("| sse-h2 on one connection | 2% loss | 6 | 100 ms | 90% | 8% | 0% | 2% | 0% | "
            "0% | 100% | tcp_info every 2 ms |") in text
    assert "- sse-h2 on one connection, 2% loss: 100 ms of collateral stall over 6 stalls: " \
        "90% ordering, 8% congestion window" in text
    assert ("sse-h3 on one connection at 2% loss: 95% congestion window, 5% server "
            "application of 200 ms (aioquic qlog). QUIC orders data per stream only") in text
    assert "these numbers do not measure" not in text


def test_without_a_recorded_split_the_report_says_it_cannot_tell(tmp_path):
    text = render_hol_section(sweep_and_probes(h3_coupled=True), tmp_path)
    assert "What the collateral stalls waited on" not in text
    assert "recorded no sender state" in text or "no sender state was recorded" in text
