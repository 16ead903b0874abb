"""The mechanism split of collateral stalls (harness.measure.mechanism): hand-built
timelines whose answer is known, the sender-state readers, the TCP sampler's parser."""

from __future__ import annotations

import json
import struct

import pytest

from harness.measure.hol import Stall
from harness.measure.hol_drops import StreamTrace
from harness.measure.mechanism.sender import SenderState, qlog_states
from harness.measure.mechanism.split import split_collateral
from harness.measure.packetlog import PacketRecord
from harness.netlab import tcp_sampler

MS = 1_000_000
PORT = 40000
OWD = 20 * MS


def pkt(t_ms: float, seq: int, payload: int = 100, dropped: bool = False,
        proto: str = "tcp") -> PacketRecord:
    t = round(t_ms * MS)
    return PacketRecord(t, "down", payload + 52, proto, 443, PORT,
                        "loss" if dropped else "fwd", 0 if dropped else t + OWD,
                        "PA" if proto == "tcp" else "", payload, seq if proto == "tcp" else 0)


def stall_of(trace: StreamTrace, token: int, itl_ns: int) -> Stall:
    toks = sorted(trace.tokens, key=lambda t: t[2])
    i = next(i for i, t in enumerate(toks) if t[0] == token)
    start, end = toks[i - 1][2], toks[i][2]
    return Stall(trace.stream, token, start, end, end - start - itl_ns, "collateral")


def test_a_token_behind_another_streams_lost_segment_is_held_by_ordering():
    # Stream 1 lost the segment at seq 1000 (t=100 ms); stream 0's next token went out
    # right after in seq 1100 and arrived at 125 ms, but TCP gave it to the client only
    # when the retransmission of 1000 arrived (150 + 20 = 170 ms).
    packets = [pkt(80, 900), pkt(100, 1000, dropped=True), pkt(105, 1100), pkt(150, 1000)]
    trace = StreamTrace(0, "c", PORT, 0, [(0, 80 * MS - 50_000, 100 * MS + 200_000),
                                          (1, 105 * MS - 50_000, 170 * MS + 300_000)])
    itl = 20 * MS
    s = stall_of(trace, 1, itl)
    out = split_collateral([trace], [s], packets, None, None, itl, tcp=True)
    parts = out.ordering_ms + out.cwnd_ms + out.app_server_ms + out.app_client_ms + out.link_ms
    assert out.collateral_ms == pytest.approx(s.duration_ns / MS)
    assert parts == pytest.approx(out.collateral_ms)           # the legs add up exactly
    assert out.ordering_ms == pytest.approx(45.0)               # 125 -> 170 ms behind the gap
    assert out.accounted_share == pytest.approx(1.0)


def test_the_same_timeline_on_quic_has_no_ordering_and_a_full_window_is_cwnd():
    # QUIC: the token waited at the sender 40 ms with the window full, then was read as
    # soon as it arrived.
    packets = [pkt(80, 0, proto="udp"), pkt(145, 0, proto="udp")]
    trace = StreamTrace(0, "c", PORT, 0, [(0, 80 * MS - 50_000, 100 * MS + 100_000),
                                          (1, 105 * MS, 165 * MS + 100_000)])
    state = SenderState("aioquic", sampled=False)
    state.add(100 * MS, False)
    state.add(106 * MS, True)           # full from 106 to 140 ms
    state.add(140 * MS, False)
    itl = 20 * MS
    s = stall_of(trace, 1, itl)
    out = split_collateral([trace], [s], packets, {PORT: state}, "aioquic qlog", itl, tcp=False)
    assert out.ordering_ms == 0
    assert out.cwnd_ms == pytest.approx(34.0)
    # Server app: emitted 5.05 ms late (105 - 79.95 - 20), then 6 of its 40 ms at the
    # sender with room in the window, less the previous token's 0.05 ms there.
    assert out.app_server_ms == pytest.approx(5.05 + 6.0 - 0.05)
    total = out.ordering_ms + out.cwnd_ms + out.app_server_ms + out.app_client_ms + out.link_ms
    assert total == pytest.approx(out.collateral_ms)


def test_a_stall_whose_packet_cannot_be_found_is_unaccounted():
    trace = StreamTrace(0, "c", PORT, 0, [(0, 10 * MS, 30 * MS), (1, 30 * MS, 90 * MS)])
    s = stall_of(trace, 1, 20 * MS)
    out = split_collateral([trace], [s], [pkt(5, 0)], None, None, 20 * MS, tcp=True)
    assert out.unaccounted_ms == pytest.approx(out.collateral_ms)
    assert out.accounted_share == 0


def test_sender_state_time_full_is_integrated_and_stale_samples_are_unknown():
    s = SenderState("tcp")
    s.add(0, False)
    s.add(2 * MS, True)
    s.add(4 * MS, False)
    assert s.full_ns(1 * MS, 5 * MS) == (2 * MS, 4 * MS)
    late = SenderState("tcp")
    late.add(0, True)                   # one sample, then nothing for 200 ms
    full, known = late.full_ns(0, 200 * MS)
    assert full == known == 50 * MS     # STALE_NS: a sample vouches for 50 ms at most


def test_quic_go_and_aioquic_qlogs_give_a_state_per_client_port(tmp_path):
    (tmp_path / "aioquic-1-0-ab.qlog.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"stack": "aioquic"},
        {"t_ns": 10, "name": "transport:connection_started",
         "data": {"remote": {"ip": "10.0.0.1", "port": 5555}}},
        {"t_ns": 20, "name": "recovery:metrics_updated",
         "data": {"cwnd": 12000, "bytes_in_flight": 11900}}]) + "\n")
    head = {"trace": {"common_fields": {"reference_time": {
        "clock_type": "monotonic", "wall_clock_time": "2026-12-05T17:39:30.427035030Z"}}}}
    (tmp_path / "x_server.sqlog").write_text("\n".join("\x1e" + json.dumps(x) for x in [
        head, {"time": 0.5, "name": "transport:connection_started",
               "data": {"remote": {"ip_v4": "10.0.0.1", "port_v4": 6666}}},
        {"time": 1.0, "name": "recovery:metrics_updated",
         "data": {"congestion_window": 38400, "bytes_in_flight": 1200}},
        {"time": 2.0, "name": "recovery:metrics_updated", "data": {"bytes_in_flight": 38400}},
    ]) + "\n")
    states = qlog_states(tmp_path)
    assert states[5555].full == [True]                 # 100 bytes of room: no frame fits
    assert states[6666].full == [False, True]          # cwnd carried from the first update
    assert states[6666].t_ns[1] - states[6666].t_ns[0] == 1_000_000
    # since_ns keeps only connections with events from then on (aioquic's last at 20 ns;
    # where the quic-go trace lands depends on when this host booted)
    assert 5555 in qlog_states(tmp_path, since_ns=15)
    assert 5555 not in qlog_states(tmp_path, since_ns=21)
    assert qlog_states(tmp_path, since_ns=2**62) == {}


def test_tcp_sampler_parses_a_sock_diag_reply():
    # One inet_diag_msg for local port 443 -> client 5555 with a tcp_info attribute.
    info = bytearray(160)
    info[1] = 3                                         # recovery
    struct.pack_into("=24I", info, 8, *([0] * 24))
    struct.pack_into("=I", info, 8 + 4 * 4, 7)          # unacked
    struct.pack_into("=I", info, 8 + 18 * 4, 5)         # snd_cwnd
    struct.pack_into("=I", info, 144, 300)              # notsent_bytes
    msg = bytearray(72)
    struct.pack_into("!HH", msg, 4, 443, 5555)
    attr = struct.pack("=HH", 4 + len(info), 2) + bytes(info)
    body = bytes(msg) + attr
    data = struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body
    data += struct.pack("=IHHII", 20, 3, 2, 1, 0) + bytes(4)
    found: dict[int, tuple[int, bytes]] = {}
    samples, done = tcp_sampler.parse(data, 443, 123, found)
    assert done and list(found) == [5555]
    (s,) = samples
    assert (s.ca_state, s.cwnd, s.in_flight, s.notsent_bytes) == ("recovery", 5, 7, 300)
    assert s.window_full
    assert tcp_sampler.parse(data, 444, 123, {})[0] == []   # another port: nothing


def test_aioquic_traces_connections_only_on_links_that_drop_packets(tmp_path):
    from types import SimpleNamespace

    from harness.run.hol_record import qlog_dir, qlog_switch
    from harness.scenario.linkspec import Bernoulli, DirectionSpec, DropRule, LinkSpec

    h3 = SimpleNamespace(kind="h3", server_kind="h3")
    flag = qlog_dir(tmp_path, "h3") / "on"
    qlog_switch(tmp_path, h3, LinkSpec(down=DirectionSpec(loss=Bernoulli(0.01))))
    assert flag.exists()
    qlog_switch(tmp_path, h3, LinkSpec(down=DirectionSpec(delay_ms=20)))     # lossless
    assert not flag.exists()
    qlog_switch(tmp_path, h3, LinkSpec(up=DirectionSpec(drops=(DropRule((5,)),))))
    assert flag.exists()
    qlog_switch(tmp_path, h3, None)                                          # no lab link
    assert not flag.exists()
    qlog_switch(tmp_path, SimpleNamespace(kind="h2", server_kind="h2"),
                LinkSpec(down=DirectionSpec(loss=Bernoulli(0.01))))          # TCP: tcp_info
    assert not qlog_dir(tmp_path, "h2").exists()
