"""`python -m harness.netlab.linkemu --client-ns /proc/C/ns/net --server-ns /proc/S/ns/net`

Makes one TUN device in each namespace, prints a ready line on stdout and forwards
packets until stdin closes, a `quit` command comes, or its parent dies (the parent
starts it under `setpriv --pdeathsig`, and `die_with_parent` covers a start through
`child_env`). Commands and replies are JSON lines on stdin / stdout (see emulator.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from base.lifetime import die_with_parent

from . import VERSION
from .emulator import SPIN_NS, Emulator
from .tun import make_tun, net_dev_of


def realtime(priority: int) -> str:
    """Optional SCHED_FIFO, so the emulator runs as soon as a packet or a release is due,
    ahead of the load it carries. Off by default (harness.netlab.netns says why: it starves
    the receiver on its core). Falls back to normal scheduling when refused."""
    if priority <= 0:
        return "SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"SCHED_OTHER (SCHED_FIFO refused: {exc.strerror})"
    return f"SCHED_FIFO {priority}"


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    ap = argparse.ArgumentParser(prog="python -m harness.netlab.linkemu")
    ap.add_argument("--client-ns", required=True, help="path of the client's netns")
    ap.add_argument("--server-ns", required=True, help="path of the server's netns")
    ap.add_argument("--client-dev", default="wbc0")
    ap.add_argument("--server-dev", default="wbs0")
    ap.add_argument("--client-ip", default="169.254.77.1")
    ap.add_argument("--server-ip", default="169.254.77.2")
    ap.add_argument("--prefix", type=int, default=30)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="SCHED_FIFO priority (0: normal scheduling)")
    ap.add_argument("--spin-us", type=float, default=SPIN_NS / 1000,
                    help="poll instead of sleeping this close to a release")
    args = ap.parse_args(argv)
    try:
        client = make_tun(args.client_ns, args.client_dev, args.client_ip, args.prefix, args.mtu)
        server = make_tun(args.server_ns, args.server_dev, args.server_ip, args.prefix, args.mtu)
    except OSError as exc:
        sys.stdout.write(json.dumps({"ready": False, "error": str(exc), "version": VERSION}) + "\n")
        sys.stdout.flush()
        return 1
    info = {"devices": [args.client_dev, args.server_dev], "mtu": args.mtu,
            "scheduling": realtime(args.rt_priority)}
    info["spin_us"] = args.spin_us
    senders = [(net_dev_of(args.client_ns), args.client_dev),
               (net_dev_of(args.server_ns), args.server_dev)]
    if all(path for path, _ in senders):         # device counters over the log's window
        info["counters"] = senders
    Emulator(client, server, sys.stdin.fileno(), sys.stdout.fileno(), info,
             spin_ns=round(args.spin_us * 1000)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
