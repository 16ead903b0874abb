"""The same LinkSpec as kernel commands, for the `netem` backend (veth + tc + nft).

Pure: `netem_plan(spec)` only builds command lines; `harness.netlab.netns.Topology` runs them.
Per direction, on the *sender's* veth end (egress):

    root netem (delay, jitter, loss; a huge limit, so it never drops by itself)
      └ tbf (rate)                      only when rate_mbit is set
          └ pfifo limit queue_packets   the drop-tail queue ahead of the rate limiter

netem hands each packet to its child once its delay is over, so the rate limiter and
its queue sit after the delay; for a FIFO link with constant delay that gives the same
release times as the emulator's model (rate first, then delay).

What the kernel cannot express is done with nft in the *receiver's* namespace
(prerouting: the packet has crossed the wire, as a real loss would have):
- drop-list: one rule per DropRule, `numgen inc` counts the packets that match the
  rule's filter, a set of (nth - 1) drops exactly those;
- blackholes: a chain the Topology fills with `drop` at window start and flushes at
  the end, on timers (a few ms of precision, not the emulator's microseconds).

Differences from the TUN emulator, reported by `NetemPlan.notes`:
- netem's jitter is uniform in delay +- j, so delay d and jitter J become
  `delay d+J/2 J/2`; it reorders unless netem has a `rate`, so order-keeping jitter
  adds `rate 100gbit` (netem then schedules each packet after the previous one,
  which is the model's max(release, previous release), at 0.12 us per 1500 B).
- netem's loss RNG is the kernel's: the seed is not reproducible (iproute2 >= 6.5
  has `seed`, not used so that older tc works).
- the drop-list counts packets that survived netem's own loss (nft runs at the
  receiver); the emulator counts every packet offered to the link.
- tbf counts the 14-byte Ethernet header of each frame in the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.scenario.linkspec import Bernoulli, DirectionSpec, GilbertElliott, LinkSpec

NETEM_LIMIT = 100_000        # packets netem may hold (delay line); the queue is pfifo's
FRAME = 1514                 # largest Ethernet frame on a 1500-MTU veth
ORDER_RATE = "100gbit"       # netem `rate` used only to keep order under jitter
NFT_TABLE = "wirebench"
NTH_MOD = 4_000_000_000      # numgen modulus: never wraps within a run


@dataclass(frozen=True)
class NetemPlan:
    reset: tuple[tuple[str, tuple[str, ...]], ...]   # (side, argv): may fail harmlessly
    setup: tuple[tuple[str, tuple[str, ...]], ...]   # (side, argv): must succeed
    nft: tuple[tuple[str, str], ...]                 # (side, nft -f script)
    timed: tuple[tuple[float, str, tuple[str, ...]], ...]   # (ms after configure, side, argv)
    notes: tuple[str, ...]

    @property
    def needs_nft(self) -> bool:
        return bool(self.nft)


def _us(ms: float) -> str:
    return f"{round(ms * 1000)}us"


def _pct(p: float) -> str:
    return f"{p * 100:.6g}%"


def loss_args(loss: Bernoulli | GilbertElliott) -> list[str]:
    if isinstance(loss, GilbertElliott):
        # netem `loss gemodel p r 1-h 1-k`: 1-h = loss in bad, 1-k = loss in good
        return ["loss", "gemodel", _pct(loss.p), _pct(loss.r), _pct(loss.loss_bad),
                _pct(loss.loss_good)]
    if loss.p > 0:
        return ["loss", "random", _pct(loss.p)]
    return []


def qdisc_commands(d: DirectionSpec, dev: str) -> list[list[str]]:
    """tc commands that make `dev`'s egress behave like `d` (after a root reset)."""
    netem = ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
             "limit", str(NETEM_LIMIT)]
    if d.delay_ms or d.jitter_ms:
        netem += ["delay", _us(d.delay_ms + d.jitter_ms / 2)]
        if d.jitter_ms:
            netem.append(_us(d.jitter_ms / 2))
    netem += loss_args(d.loss)
    if d.jitter_ms and not d.reorder:
        netem += ["rate", ORDER_RATE]
    cmds = [netem]
    if d.rate_mbit:
        cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:",
                     "tbf", "rate", f"{round(d.rate_mbit * 1000)}kbit",
                     "burst", str(2 * FRAME), "limit", str(max(d.queue_packets, 1) * FRAME)])
        cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", "10:1", "handle", "100:",
                     "pfifo", "limit", str(d.queue_packets)])
    return cmds


def merged_windows(d: DirectionSpec) -> list[tuple[float, float]]:
    """Blackhole windows as disjoint (start_ms, end_ms), overlapping ones merged."""
    out: list[list[float]] = []
    for b in sorted(d.blackholes, key=lambda b: b.start_ms):
        end = b.start_ms + b.duration_ms
        if out and b.start_ms <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([b.start_ms, end])
    return [(a, b) for a, b in out]


def nft_script(d: DirectionSpec, dev_in: str) -> str:
    """nft script for the receiver of direction `d` arriving on `dev_in`; '' if none."""
    if not d.drops and not d.blackholes:
        return ""
    rules = []
    for r in d.drops:
        match = [f'iifname "{dev_in}"']
        if r.proto != "any":
            match.append(f"meta l4proto {r.proto}")
        match.append(f"meta length {r.min_size}-{r.max_size}")
        nth = ", ".join(str(k - 1) for k in sorted(set(r.nth)))
        rules.append(" ".join(match) + f" numgen inc mod {NTH_MOD} {{ {nth} }} drop")
    if d.blackholes:                     # after the drop-list: its counters see every packet
        rules.append(f'iifname "{dev_in}" jump blackhole')
    body = "\n".join(f"    {r}" for r in rules)
    return (f"table ip {NFT_TABLE}\n"
            f"delete table ip {NFT_TABLE}\n"
            f"table ip {NFT_TABLE} {{\n"
            f"  chain blackhole {{\n  }}\n"
            f"  chain pre {{\n"
            f"    type filter hook prerouting priority -300; policy accept;\n"
            f"{body}\n  }}\n}}\n")


def netem_plan(spec: LinkSpec, client_dev: str = "wbc0", server_dev: str = "wbs0") -> NetemPlan:
    reset, setup, nft, timed = [], [], [], []
    # up: client sends on client_dev, server receives on server_dev; down the reverse
    for d, sender, dev_out, receiver, dev_in in (
            (spec.up, "client", client_dev, "server", server_dev),
            (spec.down, "server", server_dev, "client", client_dev)):
        reset.append((sender, ("tc", "qdisc", "del", "dev", dev_out, "root")))
        reset.append((receiver, ("nft", "delete", "table", "ip", NFT_TABLE)))
        if d.impaired or d.rate_mbit:
            setup.extend((sender, tuple(c)) for c in qdisc_commands(d, dev_out))
        script = nft_script(d, dev_in)
        if script:
            nft.append((receiver, script))
        for start, end in merged_windows(d):
            timed.append((start, receiver, ("nft", "add", "rule", "ip", NFT_TABLE,
                                            "blackhole", "drop")))
            timed.append((end, receiver, ("nft", "flush", "chain", "ip", NFT_TABLE,
                                          "blackhole")))
    notes = ["netem jitter is uniform in delay +- J/2 (mapped from [delay, delay+J])",
             "netem loss is not seeded: which packets drop differs run to run"]
    if nft:
        notes.append("drop-list counts packets that survived netem loss (nft at receiver)")
    if timed:
        notes.append("blackhole windows are timed by the runner (ms precision)")
    timed.sort(key=lambda t: t[0])
    return NetemPlan(tuple(reset), tuple(setup), tuple(nft), tuple(timed), tuple(notes))
