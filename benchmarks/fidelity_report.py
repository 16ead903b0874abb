"""One comparison point of benchmarks/fidelity.py (native runs beside harness runs, in
pairs) and the report it writes: the table, where the time went, the noise warning."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from fidelity_measure import Run
from fidelity_setup import (FLOOR_P50_RATIO, FLOOR_RPS_RATIO, SATURATED_UTIL,
                            TARGET_P50_RATIO, TARGET_RPS_RATIO)
from fidelity_tools import cell_label

from harness.measure.saturation import STEAL_NOISY


@dataclass
class Point:
    protocol: str
    size: str
    concurrency: int
    engine: str = "python"          # the harness's client engine
    variant: str = ""               # the tree the harness ran from ("": this one)
    client: str = ""                # the harness's protocol id (rest-h1, rest-h2)
    native: list[Run] = field(default_factory=list)
    harness: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def med(runs: list[Run], attr: str) -> float | None:
            vals = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
            return statistics.median(vals) if vals else None

        def med_extra(runs: list[Run], key: str) -> float | None:
            vals = [r.extra.get(key) for r in runs if r.extra.get(key) is not None]
            return statistics.median(vals) if vals else None

        pairs = list(zip(self.native, self.harness))
        rps_ratios = [h.rps / n.rps for n, h in pairs if n.rps]
        p50_ratios = [h.p50_ms / n.p50_ms for n, h in pairs if n.p50_ms]
        last = [h.extra["last_byte_p50_ms"] / n.p50_ms for n, h in pairs
                if n.p50_ms and h.extra.get("last_byte_p50_ms")]
        rps_ratio, p50_ratio = statistics.median(rps_ratios), statistics.median(p50_ratios)
        last_ratio = statistics.median(last) if len(last) == len(pairs) else None
        util = med(self.harness, "client_util")
        srv_n, srv_h = med(self.native, "server_util"), med(self.harness, "server_util")
        # Like for like: the native tools time to the last byte and never decode.
        like = last_ratio if last_ratio is not None else p50_ratio
        like_key = "last_byte_p50_ms" if last_ratio is not None else None
        floor_pairs = [(h.rps / n.rps, (h.extra[like_key] if like_key else h.p50_ms) / n.p50_ms)
                       for n, h in pairs if n.rps and n.p50_ms]
        like_ratios = [p50 for _, p50 in floor_pairs] or [like]
        ok = rps_ratio >= TARGET_RPS_RATIO and like <= TARGET_P50_RATIO
        errors = sum(r.errors for r in self.native + self.harness)
        return {
            "protocol": self.protocol, "size": self.size, "concurrency": self.concurrency,
            "engine": self.engine, "harness_client": None,
            "native_tool": self.native[0].tool if self.native else None,
            "native_rps": med(self.native, "rps"), "harness_rps": med(self.harness, "rps"),
            "rps_ratio": rps_ratio,
            "native_p50_ms": med(self.native, "p50_ms"),
            "harness_p50_ms": med(self.harness, "p50_ms"),
            "p50_ratio": p50_ratio,
            "harness_last_byte_p50_ms": med_extra(self.harness, "last_byte_p50_ms"),
            "last_byte_p50_ratio": last_ratio,
            "pass": ok and errors == 0,
            "floor": (rps_ratio >= FLOOR_RPS_RATIO and like <= FLOOR_P50_RATIO
                      and errors == 0),
            "floor_verdict": floor_verdict(floor_pairs, errors),
            "rps_ratio_range": [min(rps_ratios), max(rps_ratios)],
            "like_p50_ratio_range": [min(like_ratios), max(like_ratios)],
            "errors": errors,
            "harness_decode_p50_ms": med_extra(self.harness, "decode_p50_ms"),
            "harness_client_cpu_us_per_req": med(self.harness, "client_cpu_us_per_req"),
            "native_client_cpu_us_per_req": med(self.native, "client_cpu_us_per_req"),
            "harness_client_util": util,
            "harness_saturated": util is not None and util >= SATURATED_UTIL,
            "server_cpu_us_per_req_native": med(self.native, "server_cpu_us_per_req"),
            "server_cpu_us_per_req_harness": med(self.harness, "server_cpu_us_per_req"),
            "server_util_native": srv_n, "server_util_harness": srv_h,
            "harness_client_core_busy_all": med(self.harness, "client_core_busy_all"),
            "native_client_core_busy_all": med(self.native, "client_core_busy_all"),
            "server_core_busy_all_native": med(self.native, "server_core_busy_all"),
            "server_core_busy_all_harness": med(self.harness, "server_core_busy_all"),
            "machine_cores_busy_harness": med(self.harness, "machine_cores_busy"),
            # the client core's business beyond the client's own CPU: other processes
            "foreign_client_core": max((r.client_core_processes - r.client_util
                                        for r in self.native + self.harness
                                        if r.client_core_processes is not None
                                        and r.client_util is not None), default=None),
            "steal": max((r.steal for r in self.native + self.harness if r.steal is not None),
                         default=None),
            "diagnosis": None,
        }

    def diagnosis(self, s: dict[str, Any]) -> str:
        """Why the harness differs from the native tool, in a few words."""
        hc, nc = s["harness_client_cpu_us_per_req"], s["native_client_cpu_us_per_req"]
        util, core = s["harness_client_util"], s["harness_client_core_busy_all"]
        srv = s["server_core_busy_all_harness"]
        extra = f"harness +{hc - nc:,.0f} us client CPU/req" if hc and nc else ""
        if s["pass"]:
            return "within target"
        if util is not None and util >= SATURATED_UTIL:
            return f"harness CPU-bound ({extra})"
        if core is not None and core >= SATURATED_UTIL:
            others = core - (util or 0)
            return f"client core full ({others:.0%} of it not the worker's; {extra})"
        if srv is not None and srv >= SATURATED_UTIL:
            return f"server core full ({extra})"
        if self.concurrency == 1:
            return f"closed loop c=1: client CPU is on every cycle ({extra})"
        return f"neither core full ({extra})"

    def full_summary(self) -> dict[str, Any]:
        s = self.summary()
        s["harness_client"] = cell_label(self.client, self.engine)
        s["client_path"] = ", ".join(sorted({r.extra.get("client_path", "asyncio")
                                             for r in self.harness}))
        late = sum(r.extra.get("late_reads") or 0 for r in self.harness)
        if late:                        # the one-user loop's (harness.run.load.blocking_loop)
            s["client_path"] += f" ({late} late read{'s' if late > 1 else ''})"
        if self.variant:
            s["harness_client"] += f" [{self.variant}]"
        s["variant"] = self.variant
        s["diagnosis"] = self.diagnosis(s)
        return s

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.full_summary(),
                "native_runs": [asdict(r) for r in self.native],
                "harness_runs": [asdict(r) for r in self.harness]}


# ---------------------------------------------------------------- report

def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _pct_s(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def floor_verdict(pairs: list[tuple[float, float]], errors: int) -> str:
    """The floor judged pair by pair ((req/s ratio, p50 ratio) each), since one pair's
    ratio moves by as much as the clients differ on this machine: 'met' when every pair
    clears both bars, 'missed' when none does (or there were errors), else 'undecided'."""
    cleared = [rps >= FLOOR_RPS_RATIO and p50 <= FLOOR_P50_RATIO for rps, p50 in pairs]
    if errors or not any(cleared):
        return "missed"
    return "met" if all(cleared) else "undecided"


def _down(ratio: float) -> str:
    return f"{math.floor(ratio * 1000) / 1000:.3f}"


def _up(ratio: float) -> str:
    return f"{math.ceil(ratio * 1000) / 1000:.3f}"


def _floor_text(s: dict[str, Any]) -> str:
    """The pair-by-pair verdict and, for each bar not cleared by every pair, the median
    ratio with its range over the pairs, to three decimals rounded away from the floor
    (a 0.9497x reads 0.95x in the ratio column, 0.949x here)."""
    verdict = s["floor_verdict"]
    if verdict == "met":
        return "met (every pair)"
    like = s.get("last_byte_p50_ratio") or s["p50_ratio"]
    (r_lo, r_hi), (p_lo, p_hi) = s["rps_ratio_range"], s["like_p50_ratio_range"]
    parts = ([f"req/s {_down(s['rps_ratio'])}x [{_down(r_lo)}-{_down(r_hi)}]"]
             if r_lo < FLOOR_RPS_RATIO else []) + (
        [f"p50 {_up(like)}x [{_up(p_lo)}-{_up(p_hi)}]"] if p_hi > FLOOR_P50_RATIO else [])
    if s["errors"]:
        parts.append("errors")
    return f"{verdict}: " + ", ".join(parts)


def table(summaries: list[dict[str, Any]]) -> str:
    """The fidelity table: native vs harness throughput and p50, against the target."""
    rows = ["| protocol | size | conc | native | harness | native req/s | harness req/s | "
            "ratio | native p50 ms | harness p50 to last byte ms | ratio | "
            "harness p50 decoded ms | ratio | target | floor |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in summaries:
        last = s.get("last_byte_p50_ratio")
        rows.append(
            f"| {s['protocol']} | {s['size']} | {s['concurrency']} | {s['native_tool']} | "
            f"{s['harness_client']} | "
            f"{_f(s['native_rps'], ',.0f')} | {_f(s['harness_rps'], ',.0f')} | "
            f"{s['rps_ratio']:.2f}x | {_f(s['native_p50_ms'], '.3f')} | "
            f"{_f(s.get('harness_last_byte_p50_ms'), '.3f')} | "
            f"{'-' if last is None else f'{last:.2f}x'} | "
            f"{_f(s['harness_p50_ms'], '.3f')} | {s['p50_ratio']:.2f}x | "
            f"{'PASS' if s['pass'] else 'FAIL'}{' (errors)' if s['errors'] else ''} | "
            f"{_floor_text(s)} |")
    return "\n".join(rows)


def diagnostics(summaries: list[dict[str, Any]]) -> str:
    """Where the time went: client and server CPU per request, core business."""
    rows = ["| protocol | size | conc | harness | client path | harness decode p50 ms | "
            "client CPU us/req harness / native | harness core busy: ours / all processes | "
            "server CPU us/req native / harness | server core busy native / harness | "
            "host steal, worst run | diagnosis |",
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        sat = " (saturated)" if s["harness_saturated"] else ""
        rows.append(
            f"| {s['protocol']} | {s['size']} | {s['concurrency']} | {s['harness_client']} | "
            f"{s.get('client_path', '-')} | {_f(s['harness_decode_p50_ms'], '.3f')} | "
            f"{_f(s['harness_client_cpu_us_per_req'], ',.0f')} / "
            f"{_f(s['native_client_cpu_us_per_req'], ',.0f')} | "
            f"{_pct_s(s['harness_client_util'])}{sat} / "
            f"{_pct_s(s['harness_client_core_busy_all'])} | "
            f"{_f(s['server_cpu_us_per_req_native'], ',.0f')} / "
            f"{_f(s['server_cpu_us_per_req_harness'], ',.0f')} | "
            f"{_pct_s(s['server_core_busy_all_native'])} / "
            f"{_pct_s(s['server_core_busy_all_harness'])} | {_pct_s(s.get('steal'))} | "
            f"{s['diagnosis']} |")
    return "\n".join(rows)


NOISY = 0.15      # other processes took more than this share of the client core


def _points(summaries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['protocol']} {s['size']} c={s['concurrency']}"
                     + (f" {s['harness_client']}" if s.get("harness_client") else "")
                     for s in summaries)


def noise_warning(summaries: list[dict[str, Any]]) -> str:
    out = ""
    noisy = [s for s in summaries if (s["foreign_client_core"] or 0) > NOISY]
    if noisy:
        worst = max(s["foreign_client_core"] for s in noisy)
        out += (f"**Noisy run**: other processes took up to {worst:.0%} of the client core "
                f"during {len(noisy)} of {len(summaries)} points ({_points(noisy)}); their "
                "ratios understate the harness. Rerun on a quiet machine.\n")
    stolen = [s for s in summaries if (s.get("steal") or 0) >= STEAL_NOISY]
    if stolen:
        worst = max(s["steal"] for s in stolen)
        out += (f"**Host noise**: the hypervisor took up to {worst:.0%} of the pinned CPUs' "
                f"time (steal) during {len(stolen)} of {len(summaries)} points "
                f"({_points(stolen)}). It slows whichever tool runs at the time, so their "
                "ratios move from pair to pair by more than the clients differ. Rerun on a "
                "quieter host.\n")
    return out


def markdown(meta: dict[str, Any], summaries: list[dict[str, Any]]) -> str:
    pin = meta["pinning"]
    pin_text = (f"server on CPU {pin['server']}, every client on CPU {pin['client']}"
                if pin["server"] is not None else "not pinned")
    return f"""# Harness fidelity: wirebench clients vs native tools

Started {meta['started_utc']}; {meta['repeats']} interleaved repeats of {meta['duration_s']} s
per tool and point; medians. Ratios are harness / native, taken within each
native-harness pair, then the median. Target: harness req/s >= {TARGET_RPS_RATIO}x
native and harness p50 <= {TARGET_P50_RATIO}x native, both timed to the last response
byte (the decoded p50, the product's `latency`, is shown beside it). Floor: the stricter
bar for a client engine, req/s >= {FLOOR_RPS_RATIO}x and p50 to the last byte <=
{FLOOR_P50_RATIO}x native, judged pair by pair: met when every pair clears it, missed
when no pair does, undecided when the pairs fall on both sides (this run cannot
tell); [lo-hi] is the range over the pairs.

{noise_warning(summaries)}
{table(summaries)}

Where the time went (medians):

{diagnostics(summaries)}

- Servers: uvicorn + the bare ASGI app (HTTP/1.1); hypercorn + the same app, HTTP/2 as
  cleartext **h2c** (prior knowledge) for both tools, so TLS is out of the comparison.
- Native: `wrk -t1 -cC` (C keep-alive connections) and `h2load -t1 -c1 -mC` (one
  connection, C streams); harness: `rest-h1` with C users each on its own keep-alive
  connection, `rest-h2` with C users multiplexed on one connection, each run in a real
  `python -m harness.run.worker` process (warmed up, then told "go").
- Same request everywhere: POST /v1/embeddings with the identical JSON body
  (small = 1 input x 8 dims, {meta['request_bytes']['small']} B request; embed = 8 inputs
  x 1536 dims as JSON floats, {meta['request_bytes']['embed']} B request, ~154 KB response).
- p50: wrk's own latency histogram; h2load's per-request log (`--log-file`); the
  harness's time to the last response byte (its lifecycle phase `total`, curl -w's
  time_total: what the native tools time), and beside it the harness's `latency`
  (start -> response received *and decoded*). The native tools never parse the body;
  the harness decodes the JSON into float32 vectors, reported on its own ("harness
  decode p50": response received -> decoded, which on the asyncio path also includes
  the wait for the event loop to resume the request's task).
- CPU per request: client CPU from the worker's own `process_time` (harness) or the
  tool's rusage (native); server CPU from /proc schedstat over each run. "Harness core
  busy": ours = the worker's CPU / wall time (saturated at >= {SATURATED_UTIL:.0%}); all
  processes = the client CPU's business from /proc/stat, which shows when other
  processes on this shared machine took the client's (or the server's) core.
- At concurrency 1 a closed loop runs client and server in turn: every microsecond of
  client CPU per request lengthens every cycle, so the harness can only match the
  native tool where its per-request CPU is small next to the server's. Its one-user
  path ("client path") runs without an event loop and decodes response N while request
  N+1 is with the server (benchmarks/README.md).
- CPU pinning: {pin_text}. Machine: {meta['environment'].get('cpu')},
  {meta['environment'].get('cores')} cores, shared and noisy: trust the ratios, not the
  absolute numbers.
- Tools: {meta['tools']['wrk']}; {meta['tools']['h2load']}.
"""
