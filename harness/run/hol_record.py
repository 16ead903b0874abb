"""A stream point's head-of-line evidence: its token traces (kept with the results),
their analysis against the packet log, and what the server's sender was blocked on,
for the mechanism split of collateral stalls (harness.measure.mechanism).

TCP cells: harness.netlab.tcp_sampler runs in the server's namespace for the measured
window (tcp_info of the server's sockets every 2 ms). HTTP/3 cells: the server is started
with QLOGDIR (aioquic through servers.http.qlog, quic-go in Caddy on its own), and the
point reads the connections that were alive during it. Files go under the results:
`mechanism/<point>-tcp.csv`, `qlog/<server kind>/`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from base.lifetime import child_env, pdeathsig_prefix, reap
from harness.measure.hol import Stall, hol_summary
from harness.measure.hol_drops import StreamTrace, save_traces
from harness.measure.mechanism.sender import States, qlog_states, tcp_states
from harness.measure.mechanism.split import split_collateral
from harness.measure.packetlog import PacketRecord
from harness.measure.packetlog import read_csv as read_packet_log
from harness.measure.results import PointResult
from harness.scenario.linkspec import LinkSpec

INTERVAL_MS = 2.0


def record_hol(out: Path, label: str, traces: list[StreamTrace], packets: Path | None,
               itl_ms: float, link: LinkSpec | None, result: PointResult,
               watch: SenderWatch | None) -> None:
    """Save the traces, analyse them against the packet log, add the split."""
    path = out / "traces" / f"{label}.json.gz"
    path.parent.mkdir(exist_ok=True)
    save_traces(path, traces)
    result.files.setdefault("traces", []).append(str(path.relative_to(out)))
    log = list(read_packet_log(packets)) if packets is not None else None
    summary = hol_summary(traces, log, itl_ms, link)
    if watch is not None:        # what the collateral stalls waited on
        summary["mechanism"] = watch.split(traces, summary, log)
    result.hol_repeats.append(summary)


def qlog_dir(out: Path, server_kind: str) -> Path:
    return out / "qlog" / server_kind


def qlog_switch(out: Path, cell: Any, link: LinkSpec | None) -> None:
    """Trace the HTTP/3 connections a point opens only where its link drops packets
    (servers.http.qlog's flag file; quic-go in Caddy traces every connection)."""
    if cell.kind != "h3":
        return
    flag = qlog_dir(out, cell.server_kind) / "on"
    if link is not None and link.drops_packets:
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


def server_env(out: Path, server_kind: str, kind: str) -> dict[str, str] | None:
    """The environment an HTTP/3 server needs to write its recovery state."""
    return {"QLOGDIR": str(qlog_dir(out, server_kind))} if kind == "h3" else None


class SenderWatch:
    """One point's recording: `start()` before the measured window, `stop()` after,
    then `split()` with the point's traces, stalls and packet log."""

    def __init__(self, out: Path, label: str, kind: str, server_kind: str,
                 port: int, wrap: list[str]) -> None:
        self.quic = kind == "h3"
        self.csv = out / "mechanism" / f"{label}-tcp.csv"
        self.qlog = qlog_dir(out, server_kind)
        self.port, self.wrap = port, wrap
        self.proc: subprocess.Popen | None = None
        self.since_ns = 0
        self.error: str | None = None

    @classmethod
    def started(cls, out: Path, label: str, cell: Any, port: int,
                wrap: list[str]) -> SenderWatch:
        watch = cls(out, label, cell.kind, cell.server_kind, port, wrap)
        watch.start()
        return watch

    def start(self) -> None:
        self.since_ns = time.monotonic_ns()
        if self.quic:
            return
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.wrap + pdeathsig_prefix() + [
            sys.executable, "-m", "harness.netlab.tcp_sampler", "--port", str(self.port),
            "--out", str(self.csv), "--interval-ms", str(INTERVAL_MS), "--max-s", "900"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=child_env())

    def stop(self) -> None:
        """EOF on its stdin: it writes its samples and exits."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            reap(proc)
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        if proc.returncode:
            self.error = f"tcp_sampler exit {proc.returncode}: {err[-300:]}"

    def states(self) -> tuple[States | None, str | None]:
        """(state by client port, its source), or (None, None) when none was recorded
        (the reason, if any, is in `error`)."""
        try:
            if self.quic:
                states = qlog_states(self.qlog, self.since_ns) if self.qlog.is_dir() else {}
                stacks = sorted({s.stack for s in states.values()})
                return (states, f"{'/'.join(stacks)} qlog") if states else (None, None)
            if self.error or not self.csv.exists():
                return None, None
            return tcp_states(self.csv), f"tcp_info every {INTERVAL_MS:g} ms"
        except (OSError, ValueError, KeyError) as exc:
            self.error = f"sender state unreadable: {exc}"
            return None, None

    def split(self, traces: list[StreamTrace], summary: dict[str, Any],
              packets: list[PacketRecord] | None) -> dict[str, Any] | None:
        """The mechanism split of the point's collateral stalls, for its HOL summary."""
        analysis = summary.get("analysis")
        if not analysis:
            return None
        stalls = [Stall(**s) for s in analysis.get("stall_list", [])]
        states, source = self.states()
        interval_ns = round(summary["itl_ms"] * 1e6)
        result = split_collateral(traces, stalls, packets, states, source, interval_ns,
                                  tcp=not self.quic).to_dict()
        if self.error:
            result["note"] = self.error
        return result
