"""Result rows and the files a run leaves: summary.json, summary.csv, .hgrm, requests.csv.

One row per protocol x load point (x network condition, when the lab sets one), with
histograms merged over workers and repeats: percentiles are never averaged.
Files are rewritten after every load point, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.cells import parse_cell
from harness.measure.recorder import FORMULAS, PHASES, Recorder
from harness.measure.cpu import steal_share
from harness.measure.saturation import (Snapshot, client_bound as client_saturation,
                                        emulator_late, host_noisy, machine_bound, merge_max,
                                        server_bound, utilisation)

SCHEMA_VERSION = 1

# CSV columns, in order. The first five are the seed lab's table.
CSV_COLUMNS = [
    "protocol", "concurrency", "n", "median_wall_s", "p95_wall_s",
    "cell", "group", "server", "client",
    "mode", "rate_offered_rps", "workload", "network", "server_impl", "client_engine",
    "errors", "error_rate", "throughput_rps",
    "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
    "latency_p999_ms", "latency_max_ms", "service_p50_ms", "service_p99_ms",
    "server_time_p50_ms", "overhead_p50_ms", "overhead_p99_ms", "decode_p50_ms",
    "connect_p50_ms", "new_connections",
    "payload_up_bytes", "payload_down_bytes", "wire_up_bytes", "wire_down_bytes",
    "packets_up", "packets_down", "wire_source",
    "client_cpu_ms_per_req", "server_cpu_ms_per_req", "client_core_util",
    "machine_cores_used", "late_starts",
    "ttft_p50_ms", "ttft_p99_ms", "ttst_p50_ms", "itl_p50_ms", "itl_p99_ms", "tpot_p50_ms",
    "e2e_p50_ms", "owd_p50_ms", "owd_p99_ms", "tokens_per_chunk", "client_bound",
    "server_bound", "machine_bound", "failed", "goodput_fraction", "goodput_rps",
    "host_steal", "host_noisy",
]


HGRM_METRICS = ("latency", "ttft", "itl", "owd", "service_time")    # written as .hgrm
P50_INTERVALS = ("latency", "ttft", "itl")     # rows carry their p50's 95% interval


@dataclass
class PointKey:
    protocol: str
    mode: str
    concurrency: int | None
    rate: float | None
    network: str = "loopback"
    connections: str | None = None      # the swept connection count, when swept
    tls_version: str | None = None      # the swept TLS version, when swept
    dns_cache: bool | None = None       # with a DNS step: the resolver cache on or off
    resumption: str | None = None       # "session" / "0rtt": new connections resumed

    @property
    def label(self) -> str:
        load = f"c{self.concurrency}" if self.mode == "closed" else f"r{self.rate:g}"
        conn = f"-conn{self.connections}" if self.connections is not None else ""
        tls = f"-tls{self.tls_version}" if self.tls_version is not None else ""
        dns = {None: "", True: "-dnscache", False: "-nodnscache"}[self.dns_cache]
        resume = f"-resume{self.resumption}" if self.resumption is not None else ""
        net = "" if self.network == "loopback" else f"-{self.network}"
        return f"{self.protocol}-{load}{conn}{tls}{dns}{resume}{net}"

    @property
    def file_label(self) -> str:
        """The label made safe for a file name (link names carry spaces, = and %)."""
        return re.sub(r"[^A-Za-z0-9._+@=-]+", "_", self.label.replace("%", "pct"))


@dataclass
class PointResult:
    """Everything measured for one row, merged over workers and repeats."""

    key: PointKey
    rec: Recorder = field(default_factory=Recorder)
    wall_s: list[float] = field(default_factory=list)        # per repeat
    repeat_n: list[int] = field(default_factory=list)        # per repeat
    # Each repeat's own p50 (latency; TTFT for streams): the spread between repeats is
    # the run-to-run noise a difference between rows has to beat.
    repeat_p50_ms: dict[str, list[float]] = field(default_factory=dict)
    repeat_p99_ms: dict[str, list[float]] = field(default_factory=dict)   # and p99 (compare)
    slo: tuple[str, ...] = ()                  # the scenario's per-request limits, as written
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = 0.0
    client_core_util: float = 0.0                              # busiest worker, 0..1
    # Per server process over the measured window, the highest over repeats
    # (harness.measure.saturation): {label: {process, busiest_thread, cores}}.
    server_util: dict[str, dict[str, float]] = field(default_factory=dict)
    # Cores the client workers and the server processes used together, the highest
    # over repeats (None: the servers' CPU was not sampled here, e.g. `remote:`).
    machine_cores_used: float | None = None
    _repeat_server_cores: float | None = field(default=None, repr=False, compare=False)
    # The share of the CPUs' time the hypervisor took (steal), the highest over repeats
    # (None: not measurable here).
    host_steal: float | None = None
    failures: list[str] = field(default_factory=list)   # failed repeats (run.watchdog)
    # Each repeat's measured window on the wall clock (Unix s, start and end): what
    # lines up an outside instrument (a /proc sampler, a packet capture) with the row.
    windows_unix_s: list[tuple[float, float]] = field(default_factory=list)
    wire: dict[str, int] = field(default_factory=dict)        # summed IP bytes/packets
    wire_source: str = "not measured"
    server_impl: str = ""
    client_engine: str = ""
    link: dict[str, Any] | None = None                        # the emulated link's settings
    tls: bool | None = None                                   # did this cell run over TLS
    tls_version_used: str | None = None
    hol_repeats: list[dict[str, Any]] = field(default_factory=list)   # head-of-line analysis
    emulator: dict[str, float] = field(default_factory=dict)  # the link emulator's own lateness
    wire_counters: dict[str, int] = field(default_factory=dict)   # device counters (check)
    files: dict[str, list[str]] = field(default_factory=dict)   # packet logs, traces (relative)
    # Rows are rebuilt for every point after every load point (save(), the progress
    # line, the final table) and summaries are not free, so they are cached per
    # histogram counts: merging is the only way a histogram changes, and it always
    # changes its count.
    _summary_cache: tuple[tuple[int, ...], dict] | None = field(
        default=None, repr=False, compare=False)
    _shared_counts_dropped: bool = field(default=False, repr=False, compare=False)

    def add_repeat(self, rec: Recorder, wall_s: float, client_cpu_s: float,
                   server_cpu_s: float | None, core_util: float) -> None:
        self.rec.merge(rec)
        for metric in ("latency", "ttft"):
            h = rec.hist.get(metric)
            if h is not None and h.count:
                summary = h.summary_ms()
                self.repeat_p50_ms.setdefault(metric, []).append(round(summary["p50"], 4))
                self.repeat_p99_ms.setdefault(metric, []).append(round(summary["p99"], 4))
        self.wall_s.append(wall_s)
        self.repeat_n.append(rec.n)
        self.client_cpu_s += client_cpu_s
        if server_cpu_s is None or self.server_cpu_s is None:
            self.server_cpu_s = None
        else:
            self.server_cpu_s += server_cpu_s
        self.client_core_util = max(self.client_core_util, core_util)
        server_cores, self._repeat_server_cores = self._repeat_server_cores, None
        if server_cores is not None and wall_s > 0:
            used = client_cpu_s / wall_s + server_cores
            self.machine_cores_used = max(self.machine_cores_used or 0.0, used)

    def add_window(self, before: Snapshot, after: Snapshot, wall_s: float) -> None:
        """One repeat's measured window, ending now: the server processes' utilisation
        and the host's steal between the two snapshots."""
        end = time.time()
        self.windows_unix_s.append((round(end - wall_s, 6), round(end, 6)))
        self.add_server_util(utilisation(before, after, wall_s))
        steal = steal_share(before.host, after.host)
        if steal is not None:
            self.host_steal = max(self.host_steal or 0.0, steal)

    def add_server_util(self, util: dict[str, dict[str, float]]) -> None:
        """The server processes' utilisation over one repeat's window (before that
        repeat's add_repeat, which adds the clients' to it for the machine's)."""
        merge_max(self.server_util, util)
        self._repeat_server_cores = sum(u["process"] for u in util.values()) if util else None

    def add_wire(self, up: int, down: int, up_packets: int, down_packets: int) -> None:
        if self._shared_counts_dropped:
            return
        for k, v in (("up", up), ("down", down), ("up_packets", up_packets),
                     ("down_packets", down_packets)):
            self.wire[k] = self.wire.get(k, 0) + v

    def drop_shared_counts(self, why: str) -> None:
        """A repeat lost a worker mid-point: the link's bytes and the server's CPU include
        requests that no survivor counted, so per request they would be inflated. The row
        reports neither (from any repeat) rather than a wrong figure."""
        self._shared_counts_dropped = True
        self.wire.clear()
        self.wire_counters.clear()
        self.wire_source = f"not measured: {why}"
        self.server_cpu_s = None

    def add_counter_check(self, up: int, down: int) -> None:
        """The device counters' bytes for a point whose wire bytes come from the log."""
        c = self.wire_counters
        c["up"], c["down"] = c.get("up", 0) + up, c.get("down", 0) + down

    def add_emulator(self, stats: dict[str, Any] | None) -> None:
        """How late the emulator released packets during this point (repeats summed)."""
        if not stats:
            return
        e = self.emulator
        for d in ("up", "down"):
            e["packets"] = e.get("packets", 0) + sum(stats[d]["since_configure"].values())
            e["late_over_500us"] = e.get("late_over_500us", 0) + stats[d]["late_over_500us"]
            e["late_p99_us"] = max(e.get("late_p99_us", 0.0), stats[d]["late_p99_us"])
            e["late_max_us"] = max(e.get("late_max_us", 0.0), stats[d]["late_max_us"])

    def _wire_per_request(self, key: str, n: int) -> float | None:
        return round(self.wire[key] / n, 1) if n and key in self.wire else None

    @staticmethod
    def _phases(s: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]] | None:
        """{cold|warm: {phase: {p50, p99, mean, n}}} in ms, when the client stamped phases."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for which in ("cold", "warm"):
            got = {p: s[f"phase_{p}_{which}"] for p in PHASES if s.get(f"phase_{p}_{which}")}
            if got:
                out[which] = {p: {"p50": round(v["p50"], 4), "p99": round(v["p99"], 4),
                                  "mean": round(v["mean"], 4), "n": v["n"]}
                              for p, v in got.items()}
        return out or None

    def _pipeline(self) -> dict[str, Any]:
        """Pipeline rows: calls per user request, and mean ms per user request by bucket
        (along the critical path; they add up to the mean e2e) and by stage."""
        rec, n = self.rec, self.rec.n
        if not rec.pipeline_ns or not n:
            return {}
        return {"calls_per_request": round(rec.calls / n, 2),
                "pipeline_ms": {k: round(v / n / 1e6, 3) for k, v in rec.pipeline_ns.items()},
                "pipeline_stages_ms": {k: round(v / n / 1e6, 3)
                                       for k, v in rec.stages_ns.items()}}

    def client_bound(self) -> str:
        """Why the client side, not the server, may have limited this point ('' if not)."""
        bound = client_saturation(self.client_core_util, self.rec.late_starts, self.rec.n)
        reasons = [bound] if bound else []
        late = self.emulator.get("late_over_500us", 0)
        if emulator_late(late, self.emulator.get("packets", 0)):
            reasons.append(f"the link emulator released {late} packets over 0.5 ms late "
                           f"(it, not the link settings, shaped them)")
        return "; ".join(reasons)

    def _summaries(self) -> dict[str, dict[str, float] | None]:
        counts = tuple(h.count for h in self.rec.hist.values())
        if self._summary_cache is None or self._summary_cache[0] != counts:
            summaries = {k: h.summary_ms() for k, h in self.rec.hist.items()}
            for metric in P50_INTERVALS:        # the verdict block's intervals (cached too)
                h, summary = self.rec.hist.get(metric), summaries.get(metric)
                ci = h.quantile_interval_ms(0.5) if h is not None and summary else None
                if ci:
                    summary["p50_ci"] = [round(ci[0], 4), round(ci[1], 4)]
            self._summary_cache = (counts, summaries)
        return self._summary_cache[1]

    def row(self, workload: str) -> dict[str, Any]:
        rec, n = self.rec, self.rec.n
        total = n + rec.error_count
        s = self._summaries()

        def pct(metric: str, p: str) -> float | None:
            return round(s[metric][p], 4) if s.get(metric) else None

        wall = sum(self.wall_s)
        lat = s.get("latency")
        cell = parse_cell(self.key.protocol)
        return {
            "protocol": cell.protocol, "cell": cell.label, "server": cell.server,
            "client": cell.client, "mode": self.key.mode,
            "concurrency": self.key.concurrency, "rate_offered_rps": self.key.rate,
            "n": n, "workload": workload, "network": self.key.network,
            "median_wall_s": round(lat["p50"] / 1000, 6) if lat else None,
            "p95_wall_s": round(lat["p95"] / 1000, 6) if lat else None,
            "server_impl": self.server_impl, "client_engine": self.client_engine,
            "errors": rec.error_count, "errors_by_class": dict(rec.errors),
            "error_samples": rec.error_samples,
            "error_rate": round(rec.error_count / total, 6) if total else 0.0,
            "throughput_rps": round(n / wall, 2) if wall else None,
            # Goodput (scenario `slo:`): the share of requests, errors included, that kept
            # every per-request limit, and how many of those per second.
            "slo": list(self.slo) or None,
            "goodput_fraction": (round(rec.good / total, 4) if self.slo and total else None),
            "goodput_rps": round(rec.good / wall, 2) if self.slo and wall else None,
            "throughput_per_repeat_rps": [round(k / w, 2) for k, w in
                                          zip(self.repeat_n, self.wall_s) if w],
            "latency_p50_per_repeat_ms": self.repeat_p50_ms.get("latency"),
            "ttft_p50_per_repeat_ms": self.repeat_p50_ms.get("ttft"),
            "latency_p99_per_repeat_ms": self.repeat_p99_ms.get("latency"),
            "ttft_p99_per_repeat_ms": self.repeat_p99_ms.get("ttft"),
            "latency_ms": ({k: round(v, 4) for k, v in lat.items() if k not in ("n", "p50_ci")}
                           if lat else None),
            **{f"latency_{p}_ms": pct("latency", p) for p in
               ("p50", "p90", "p95", "p99", "p999", "max")},
            "service_p50_ms": pct("service_time", "p50"),
            "service_p99_ms": pct("service_time", "p99"),
            "server_time_p50_ms": pct("server_time", "p50"),
            "overhead_p50_ms": pct("overhead", "p50"), "overhead_p99_ms": pct("overhead", "p99"),
            "decode_p50_ms": pct("decode", "p50"), "connect_p50_ms": pct("connect", "p50"),
            "ttfb_p50_ms": pct("ttfb", "p50"),
            "curl_starttransfer_p50_ms": pct("curl_starttransfer", "p50"),
            "curl_total_p50_ms": pct("curl_total", "p50"),
            "new_connections": rec.new_connections,
            "dns_queries": rec.dns_queries,
            "payload_up_bytes": round(rec.payload_up / n, 1) if n else None,
            "payload_down_bytes": round(rec.payload_down / n, 1) if n else None,
            "wire_up_bytes": self._wire_per_request("up", n),
            "wire_down_bytes": self._wire_per_request("down", n),
            "packets_up": self._wire_per_request("up_packets", n),
            "packets_down": self._wire_per_request("down_packets", n),
            "wire_source": self.wire_source,
            "client_cpu_ms_per_req": round(self.client_cpu_s * 1000 / n, 4) if n else None,
            "server_cpu_ms_per_req": (round(self.server_cpu_s * 1000 / n, 4)
                                      if n and self.server_cpu_s is not None else None),
            "client_core_util": round(self.client_core_util, 3),
            "late_starts": rec.late_starts,
            "late_reads": rec.late_reads,
            "ttft_p50_ms": pct("ttft", "p50"), "ttft_p99_ms": pct("ttft", "p99"),
            **{f"{m}_p50_ci_ms": (s.get(m) or {}).get("p50_ci") for m in P50_INTERVALS},
            "ttst_p50_ms": pct("ttst", "p50"),
            "itl_p50_ms": pct("itl", "p50"), "itl_p99_ms": pct("itl", "p99"),
            "tpot_p50_ms": pct("tpot", "p50"), "e2e_p50_ms": pct("e2e", "p50"),
            "owd_p50_ms": pct("owd", "p50"), "owd_p99_ms": pct("owd", "p99"),
            "tokens_per_chunk": round(rec.tokens / rec.chunks, 3) if rec.chunks else None,
            "tokens_per_request": round(rec.tokens / n, 3) if n and rec.tokens else None,
            "client_bound": self.client_bound(),
            "server_bound": server_bound(self.server_util),
            "server_core_util": self.server_util or None,
            "machine_bound": (machine_bound(self.machine_cores_used)
                              if self.machine_cores_used is not None else ""),
            "machine_cores_used": (round(self.machine_cores_used, 3)
                                   if self.machine_cores_used is not None else None),
            "host_steal": round(self.host_steal, 3) if self.host_steal is not None else None,
            "host_noisy": host_noisy(self.host_steal),
            "failed": "; ".join(self.failures),
            "windows_unix_s": [list(w) for w in self.windows_unix_s] or None,
            "connections_policy": self.key.connections,
            "tls": self.tls, "tls_version": self.tls_version_used,
            "dns_cache": self.key.dns_cache,
            "resumption": self.key.resumption,
            # How the new connections' handshakes went when resumption was asked for:
            # {"full": n, "session": n, "0rtt": n} (checked, per connection).
            "handshakes": dict(rec.handshakes) or None,
            "link": self.link, "emulator": self.emulator or None,
            "wire_counters_bytes": self.wire_counters or None,
            "hol": self.hol_repeats or None, "files": self.files or None,
            # Where the run's .hgrm files for this row are (when outputs.hgrm is on).
            "hgrm_files": {m: f"hgrm/{self.key.file_label}-{m}.hgrm" for m in HGRM_METRICS
                           if m in self.rec.hist and self.rec.hist[m].count} or None,
            "phases_ms": self._phases(s),
            **self._pipeline(),
            "distributions_ms": {k: v for k, v in s.items() if v},
        }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultWriter:
    def __init__(self, directory: Path, scenario: dict[str, Any], env: dict[str, Any],
                 meta: dict[str, Any]) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scenario, self.env, self.meta = scenario, env, meta
        # .hgrm files already written, by file name -> histogram count. Rendering one
        # costs ~0.2 s; rewriting all after every load point would grow quadratically
        # with the points, so only changed ones are rewritten.
        self._hgrm_written: dict[str, int] = {}

    def write(self, rows: list[dict[str, Any]], status: str,
              points: list[PointResult], hgrm: bool, extra: dict[str, Any] | None = None) -> None:
        summary = {"schema_version": SCHEMA_VERSION, "status": status, **self.meta,
                   "scenario": self.scenario, "environment": self.env,
                   "formulas": FORMULAS, "rows": rows, **(extra or {})}
        _atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2, default=str))
        self._csv(rows)
        if hgrm:
            self._hgrm(points)
        self._requests(points)

    def _csv(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.dir / "summary.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for row in rows:
                w.writerow(row)
        os.replace(tmp, self.dir / "summary.csv")

    def _hgrm(self, points: list[PointResult]) -> None:
        out = self.dir / "hgrm"
        out.mkdir(exist_ok=True)
        for p in points:
            for metric, h in p.rec.hist.items():
                if h.count and metric in HGRM_METRICS:
                    name = f"{p.key.file_label}-{metric}.hgrm"
                    if self._hgrm_written.get(name) != h.count:
                        _atomic_write(out / name, h.hgrm())
                        self._hgrm_written[name] = h.count

    def _requests(self, points: list[PointResult]) -> None:
        if not any(p.rec.rows for p in points):
            return
        with open(self.dir / "requests.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["protocol", "load", "intended_ns", "start_ns", "end_ns", "payload_up",
                        "payload_down", "server_time_us", "new_connection", "error"])
            for p in points:
                for r in p.rec.rows or ():
                    w.writerow([p.key.protocol, p.key.label, *r])
