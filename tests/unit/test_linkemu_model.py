"""The link model (pure, deterministic), the spec's JSON form, the compact packet log,
and the netem backend's command generation (netem itself cannot run on this kernel)."""

from __future__ import annotations

import math
import struct

import pytest

from harness.netlab.linkemu.log import PacketLog, transport
from harness.netlab.linkemu.model import (BLACKHOLE, DROPLIST, FWD, LOSS, MS, QUEUE,
                                   DirectionModel, LinkModel)
from harness.netlab.linkemu.netem import NTH_MOD, merged_windows, netem_plan, nft_script, qdisc_commands
from harness.netlab.linkemu.specdict import spec_from_dict, spec_to_dict
from harness.scenario.linkspec import (Bernoulli, Blackhole, DirectionSpec, DropRule, GilbertElliott,
                              LinkSpec)
from harness.measure.packetlog import read_csv, write_csv

UDP, TCP = 17, 6
T0 = 1_000_000_000


def run(spec: DirectionSpec, arrivals, seed: int = 1, direction: str = "up"):
    """[(outcome, release)] for arrivals [(t_ns, size, proto)]."""
    m = DirectionModel(spec, seed, direction, T0)
    return [m.offer(t, size, proto) for t, size, proto in arrivals]


def spaced(n: int, gap_ns: int = 100_000, size: int = 1200, proto: int = UDP):
    return [(T0 + i * gap_ns, size, proto) for i in range(n)]


def binomial_99(n: int, p: float) -> tuple[float, float]:
    half = 2.576 * math.sqrt(n * p * (1 - p))
    return n * p - half, n * p + half


# -- delay, jitter, order -------------------------------------------------------------

def test_delay_is_added_to_every_packet():
    arr = spaced(50)
    out = run(DirectionSpec(delay_ms=10), arr)
    assert [o for o, _ in out] == [FWD] * 50
    assert [rel - t for (_, rel), (t, _, _) in zip(out, arr)] == [10 * MS] * 50


def test_jitter_without_reorder_keeps_order_and_stays_in_range():
    arr = spaced(2000, gap_ns=50_000)            # 0.05 ms apart, jitter 5 ms: would reorder
    out = run(DirectionSpec(delay_ms=2, jitter_ms=5), arr)
    rel = [r for _, r in out]
    assert rel == sorted(rel)
    extra = [r - t - 2 * MS for r, (t, _, _) in zip(rel, arr)]
    assert min(extra) >= 0
    # held back only behind an earlier packet, never more than that packet's jitter
    assert max(extra) <= 5 * MS
    assert len(set(rel)) < len(rel) or max(extra) > 4 * MS   # jitter really applied


def test_jitter_with_reorder_reorders_and_each_delay_is_uniform():
    arr = spaced(5000, gap_ns=50_000)
    out = run(DirectionSpec(delay_ms=2, jitter_ms=5, reorder=True), arr)
    rel = [r for _, r in out]
    assert rel != sorted(rel)
    extra = [(r - t - 2 * MS) / MS for r, (t, _, _) in zip(rel, arr)]
    assert 0 <= min(extra) and max(extra) <= 5
    assert abs(sum(extra) / len(extra) - 2.5) < 0.1            # uniform in [0, 5]
    assert 0.45 < sum(e < 2.5 for e in extra) / len(extra) < 0.55


# -- rate and drop-tail queue ----------------------------------------------------------

def test_rate_serializes_and_the_queue_drops_tail():
    spec = DirectionSpec(rate_mbit=12.0, queue_packets=4, delay_ms=1)   # 1500 B = 1 ms
    burst = [(T0, 1500, UDP)] * 10
    out = run(spec, burst)
    # one serializing + 4 waiting; the other 5 find the queue full
    assert [o for o, _ in out] == [FWD] * 5 + [QUEUE] * 5
    assert [r - T0 for _, r in out[:5]] == [k * MS + MS for k in range(1, 6)]


def test_queue_frees_as_packets_start_serializing():
    m = DirectionModel(DirectionSpec(rate_mbit=12.0, queue_packets=2), 1, "up", T0)
    assert [m.offer(T0, 1500, UDP)[0] for _ in range(4)] == [FWD, FWD, FWD, QUEUE]
    # at 1.5 ms the second packet is serializing: one waits, so one more fits
    assert m.offer(T0 + 1_500_000, 1500, UDP)[0] == FWD
    assert m.offer(T0 + 1_500_000, 1500, UDP)[0] == QUEUE
    assert m.queued == 2


def test_below_the_rate_nothing_queues():
    arr = spaced(1000, gap_ns=2 * MS, size=1500)          # 6 Mbit/s offered to 12 Mbit/s
    out = run(DirectionSpec(rate_mbit=12.0, queue_packets=1), arr)
    assert all(o == FWD for o, _ in out)
    assert all(r - t == MS for (_, r), (t, _, _) in zip(out, arr))


def test_rate_gives_the_configured_throughput():
    arr = [(T0, 1000, TCP)] * 500                          # a 500-packet burst
    out = run(DirectionSpec(rate_mbit=8.0, queue_packets=1000), arr)
    last = out[-1][1]
    assert last - T0 == 500 * 1000 * 8 * 1000 // 8          # 1 us per byte at 8 Mbit/s


# -- loss ------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
def test_bernoulli_rate_is_inside_the_99_percent_binomial_interval(p):
    n = 20_000
    out = run(DirectionSpec(loss=Bernoulli(p)), spaced(n, gap_ns=1000))
    lost = sum(o == LOSS for o, _ in out)
    lo, hi = binomial_99(n, p)
    assert lo <= lost <= hi


def _bursts(outcomes: list[int]) -> list[int]:
    runs, cur = [], 0
    for o in outcomes:
        if o == LOSS:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return runs + ([cur] if cur else [])


def test_gilbert_elliott_mean_loss_and_burstiness():
    ge = GilbertElliott(p=0.01, r=0.2)               # bad bursts of 1/r = 5 packets
    n = 200_000
    out = [o for o, _ in run(DirectionSpec(loss=ge), spaced(n, gap_ns=1000))]
    rate = sum(o == LOSS for o in out) / n
    assert abs(rate - ge.mean_loss) < 0.15 * ge.mean_loss
    bursts = _bursts(out)
    assert 4.5 < sum(bursts) / len(bursts) < 5.5
    # Bernoulli at the same mean loss has bursts of ~1/(1-p) ~ 1.05
    bern = [o for o, _ in run(DirectionSpec(loss=Bernoulli(ge.mean_loss)), spaced(n, 1000))]
    b = _bursts(bern)
    assert sum(b) / len(b) < 1.2


def test_gilbert_elliott_partial_loss_in_each_state():
    ge = GilbertElliott(p=0.05, r=0.05, loss_bad=0.5, loss_good=0.02)
    n = 200_000
    out = run(DirectionSpec(loss=ge), spaced(n, gap_ns=1000))
    rate = sum(o == LOSS for o, _ in out) / n
    assert abs(ge.mean_loss - 0.26) < 1e-9
    assert abs(rate - ge.mean_loss) < 0.1 * ge.mean_loss


# -- drop-list and blackhole ------------------------------------------------------------

def test_drop_list_drops_exactly_the_nth_matching_packets():
    rule = DropRule(nth=(2, 5), min_size=1000, proto="udp")
    arr = []
    for i in range(12):                      # big UDP, small UDP, big TCP, repeating
        arr += [(T0 + i * 3000, 1200, UDP), (T0 + i * 3000 + 1000, 100, UDP),
                (T0 + i * 3000 + 2000, 1200, TCP)]
    out = run(DirectionSpec(drops=(rule,)), arr)
    dropped = [i for i, (o, _) in enumerate(out) if o != FWD]
    assert all(out[i][0] == DROPLIST for i in dropped)
    big_udp = [i for i, (_, size, proto) in enumerate(arr) if proto == UDP and size >= 1000]
    assert dropped == [big_udp[1], big_udp[4]]


def test_drop_rules_count_every_matching_packet_even_if_something_else_dropped_it():
    # packets 1-3 fall into a blackhole; the drop-list still counts them
    spec = DirectionSpec(drops=(DropRule(nth=(2, 4)),), blackholes=(Blackhole(0, 0.003),))
    out = run(spec, spaced(6, gap_ns=1000))
    assert [o for o, _ in out] == [BLACKHOLE, BLACKHOLE, BLACKHOLE, DROPLIST, FWD, FWD]


def test_blackhole_window_is_relative_to_configure_time():
    spec = DirectionSpec(blackholes=(Blackhole(start_ms=10, duration_ms=5),))
    times = [9.999, 10.0, 12.0, 14.999, 15.0, 20.0]
    out = run(spec, [(T0 + round(ms * MS), 500, UDP) for ms in times])
    assert [o for o, _ in out] == [FWD, BLACKHOLE, BLACKHOLE, BLACKHOLE, FWD, FWD]


# -- determinism -------------------------------------------------------------------------

def _lost(spec, seed=1, direction="up", n=5000):
    return [i for i, (o, _) in enumerate(run(spec, spaced(n, 1000), seed, direction))
            if o == LOSS]


def test_same_seed_same_link_and_different_seed_different_losses():
    spec = DirectionSpec(delay_ms=3, jitter_ms=2, loss=Bernoulli(0.05))
    assert run(spec, spaced(3000), seed=7) == run(spec, spaced(3000), seed=7)
    assert _lost(spec, seed=7) != _lost(spec, seed=8)


def test_changing_jitter_or_drop_rules_does_not_change_which_packets_are_lost():
    base = _lost(DirectionSpec(loss=Bernoulli(0.05)))
    assert _lost(DirectionSpec(loss=Bernoulli(0.05), jitter_ms=4)) == base
    assert _lost(DirectionSpec(loss=Bernoulli(0.05), delay_ms=20, rate_mbit=100)) == base
    with_rule = run(DirectionSpec(loss=Bernoulli(0.05), drops=(DropRule(nth=(3, 9)),)),
                    spaced(5000, 1000))
    assert [i for i, (o, _) in enumerate(with_rule) if o == LOSS] == [
        i for i in base if i not in (2, 8)]


def test_directions_have_independent_streams():
    spec = DirectionSpec(loss=Bernoulli(0.05))
    assert _lost(spec, direction="up") != _lost(spec, direction="down")
    link = LinkModel(LinkSpec(up=spec, down=spec, seed=3), T0)
    up = [link.up.offer(t, s, p)[0] for t, s, p in spaced(2000, 1000)]
    link2 = LinkModel(LinkSpec(up=spec, down=DirectionSpec(), seed=3), T0)
    for t, s, p in spaced(2000, 1000):      # traffic down does not shift the up stream
        link2.down.offer(t, s, p)
    assert [link2.up.offer(t, s, p)[0] for t, s, p in spaced(2000, 1000)] == up


# -- spec as JSON -----------------------------------------------------------------------

def test_spec_dict_round_trip():
    spec = LinkSpec(
        up=DirectionSpec(delay_ms=20, jitter_ms=3, rate_mbit=50, queue_packets=64,
                         loss=GilbertElliott(0.01, 0.3, 0.9, 0.001),
                         drops=(DropRule(nth=(3, 7), min_size=1000, proto="tcp"),),
                         blackholes=(Blackhole(100, 50),)),
        down=DirectionSpec(delay_ms=20, loss=Bernoulli(0.02), reorder=True),
        seed=42, name="lossy")
    import json
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


# -- the packet log ---------------------------------------------------------------------

def ipv4(proto: int, payload: bytes, sport=1234, dport=443, flags=0x18,
         options: bytes = b"") -> bytes:
    if proto == TCP:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 2, 8 << 4, flags, 65535, 0, 0)
        l4 += bytes(12)                                   # options: 32-byte header
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    total = 20 + len(options) + len(l4) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45 + len(options) // 4, 0, total, 1, 0x4000, 64,
                     proto, 0, bytes([169, 254, 77, 1]), bytes([169, 254, 77, 2]))
    return ip + options + l4 + payload


def test_transport_fields_from_the_ip_header():
    assert transport(ipv4(TCP, b"x" * 100)) == (TCP, 1234 << 16 | 443, 0x18, 100)
    assert transport(ipv4(UDP, b"y" * 30, 5000, 53)) == (UDP, 5000 << 16 | 53, 0, 30)
    frag = bytearray(ipv4(UDP, b"z" * 30))
    frag[7] = 10                                              # a later fragment
    assert transport(bytes(frag))[1] == 0
    assert transport(b"\x60" + bytes(39)) == (0, 0, 0, 0)      # not IPv4


def test_packet_log_writes_packetlog_records(tmp_path):
    log = PacketLog()
    log.start()
    log.add(10, 0, FWD, 20, ipv4(TCP, b"a" * 50, flags=0x12))
    log.add(11, 1, LOSS, 0, ipv4(UDP, b"b" * 7, 443, 40000))
    log.add(12, 0, QUEUE, 0, ipv4(TCP, b"c" * 9, 7, 8, 0x11, options=b"\x01" * 8))
    log.add(13, 1, FWD, 30, ipv4(1, b"", options=b""))      # ICMP: no ports
    assert log.stop(tmp_path / "p.csv.gz") == 4
    recs = list(read_csv(tmp_path / "p.csv.gz"))
    assert [(r.direction, r.proto, r.sport, r.dport, r.outcome, r.tcp_flags, r.payload,
             r.release_ns, r.size) for r in recs] == [
        ("up", "tcp", 1234, 443, "fwd", "SA", 50, 20, 102),
        ("down", "udp", 443, 40000, "loss", "", 7, 0, 35),
        ("up", "tcp", 7, 8, "queue", "FA", 9, 0, 69),           # IP options: 28-byte header
        ("down", "icmp", 0, 0, "fwd", "", 8, 30, 28)]


def test_packet_log_file_is_byte_identical_to_packetlog_write_csv(tmp_path):
    log = PacketLog()
    log.start()
    for i, pkt in enumerate([ipv4(TCP, b"a" * 1448), ipv4(UDP, b"b" * 20), ipv4(1, b""),
                             ipv4(TCP, b"", flags=0x02, options=b"\x01" * 4)]):
        log.add(1000 + i, i & 1, (FWD, LOSS, DROPLIST, BLACKHOLE)[i], 2000 * (i != 1), pkt)
    expected = list(log.records())
    write_csv(tmp_path / "ref.csv", expected)
    assert log.stop(tmp_path / "mine.csv") == 4
    assert (tmp_path / "mine.csv").read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert not log.on and len(log) == 0


# -- netem commands ---------------------------------------------------------------------

def test_netem_commands_for_delay_jitter_loss_rate_and_queue():
    d = DirectionSpec(delay_ms=20, jitter_ms=4, rate_mbit=12.5, queue_packets=50,
                      loss=Bernoulli(0.01))
    cmds = qdisc_commands(d, "wbc0")
    assert cmds == [
        ["tc", "qdisc", "add", "dev", "wbc0", "root", "handle", "1:", "netem", "limit",
         "100000", "delay", "22000us", "2000us", "loss", "random", "1%", "rate", "100gbit"],
        ["tc", "qdisc", "add", "dev", "wbc0", "parent", "1:1", "handle", "10:", "tbf",
         "rate", "12500kbit", "burst", "3028", "limit", "75700"],
        ["tc", "qdisc", "add", "dev", "wbc0", "parent", "10:1", "handle", "100:", "pfifo",
         "limit", "50"]]


def test_netem_gemodel_reorder_and_plain_delay():
    ge = DirectionSpec(delay_ms=5, jitter_ms=2, reorder=True,
                       loss=GilbertElliott(0.01, 0.25, 0.8, 0.001))
    assert qdisc_commands(ge, "wbs0") == [
        ["tc", "qdisc", "add", "dev", "wbs0", "root", "handle", "1:", "netem", "limit",
         "100000", "delay", "6000us", "1000us", "loss", "gemodel", "1%", "25%", "80%", "0.1%"]]
    assert qdisc_commands(DirectionSpec(delay_ms=0.25), "x")[0][-2:] == ["delay", "250us"]


def test_netem_plan_puts_each_direction_on_its_sender_and_rules_at_the_receiver():
    spec = LinkSpec(up=DirectionSpec(delay_ms=10, drops=(DropRule(nth=(1, 3), proto="tcp",
                                                                  min_size=100),)),
                    down=DirectionSpec(delay_ms=10, blackholes=(Blackhole(100, 50),
                                                                Blackhole(120, 100))))
    plan = netem_plan(spec)
    assert [(side, argv[4]) for side, argv in plan.setup] == [("client", "wbc0"),
                                                             ("server", "wbs0")]
    sides = dict(plan.nft)
    assert (f'iifname "wbs0" meta l4proto tcp meta length 100-65535 numgen inc mod '
            f'{NTH_MOD} {{ 0, 2 }} drop') in sides["server"]
    assert 'iifname "wbc0" jump blackhole' in sides["client"]
    # overlapping windows merge: one drop at 100 ms, one flush at 220 ms
    assert [(t, side, argv[1]) for t, side, argv in plan.timed] == [
        (100, "client", "add"), (220, "client", "flush")]
    assert plan.needs_nft
    assert not netem_plan(LinkSpec()).setup and not netem_plan(LinkSpec()).needs_nft


def test_nft_script_is_empty_without_rules_and_windows_merge():
    assert nft_script(DirectionSpec(delay_ms=5), "wbs0") == ""
    d = DirectionSpec(blackholes=(Blackhole(0, 10), Blackhole(30, 5), Blackhole(5, 10)))
    assert merged_windows(d) == [(0, 15), (30, 35)]
