"""The user-space link emulator: two TUN devices, one in each namespace, and a process
that forwards IP packets between them through a per-direction model of the link.

This kernel has no sch_netem, so this is the backend that must work everywhere; TUN
also hands over single IP packets (no GSO super-packets), so one emulated loss is one
packet, never a 64 KB burst.

    model.py     what the link does to each packet (pure, deterministic from the seed)
    specdict.py  LinkSpec <-> JSON-able dict (the control protocol carries specs)
    log.py       the per-packet log: compact while running, packetlog CSV when written
    tun.py       making and configuring the TUN devices inside the namespaces
    emulator.py  the forwarding loop and its control protocol (stdin/stdout JSON lines)
    control.py   the parent's side: start the emulator process and talk to it
    netem.py     the same LinkSpec as tc/nft commands, for kernels that have netem
    probe.py     time-bounded ICMP/UDP/TCP probes for the tests and the benchmark

harness.netlab.netns.Topology(backend="tun") is the way in; `python -m harness.netlab.linkemu` is the
emulator process it starts.
"""

VERSION = "1"
