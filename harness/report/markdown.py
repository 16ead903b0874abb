"""report.md: the tables, where the time goes, and what the numbers say in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.measure.attribution import per_cell, protocol_or_library
from base.cells import parse_cell
from harness.report.capacity import markdown_section as capacity_section
from harness.report.claims import claims_section
from harness.report.questions import METHOD, verdict_lines
from harness.report.conclusion import conclusions, protocol_or_library as library_lines
from harness.run.status import effective_status
from harness.report.hol import HolPoint, render_hol_section
from harness.report.pipeline import render_pipeline_section
from harness.measure.recorder import FORMULAS, PHASES
from harness.measure.roundtrips import accounting, dns_accounting
from harness.measure.saturation import bound_words, emulator_late
from harness.report.tables import fastest_first, fmt, load_label, table as _table


TAIL_SAMPLES = 100     # fewer samples beyond a percentile than this: it is indicative


def _tail(r: dict[str, Any], field: str, q: float) -> str:
    """A percentile, marked ~ when fewer than TAIL_SAMPLES requests lie beyond it."""
    text = fmt(r[field])
    return text + "~" if r[field] is not None and (r["n"] or 0) * (1 - q) < TAIL_SAMPLES \
        else text


def latency_table(rows: list[dict[str, Any]]) -> str:
    table = _table(
        ["protocol", "load", "n", "errors", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms",
         "max ms", "achieved rps", "offered rps", "late starts", "group", "saturated"],
        [[r["cell"], load_label(r), fmt(r["n"]), fmt(r["errors"]), fmt(r["latency_p50_ms"]),
          _tail(r, "latency_p90_ms", 0.9), _tail(r, "latency_p95_ms", 0.95),
          _tail(r, "latency_p99_ms", 0.99), _tail(r, "latency_p999_ms", 0.999),
          fmt(r["latency_max_ms"]), fmt(r["throughput_rps"], 1),
          fmt(r["rate_offered_rps"], 1), fmt(r["late_starts"]), r.get("group", "-"),
          _bound_flag(r)] for r in fastest_first(rows, "latency_p50_ms")])
    if any("~" in line for line in table.splitlines()[2:]):
        table += (f"\n\n~ fewer than {TAIL_SAMPLES} requests lie beyond this percentile: "
                  "it rests on a handful of samples and is indicative only.")
    return table


def goodput_table(rows: list[dict[str, Any]]) -> str:
    """Per row, the share of requests within the scenario's SLO and their rate."""
    return _table(
        ["protocol", "load", "n", "errors", "within SLO", "goodput rps", "achieved rps",
         "saturated"],
        [[r["cell"], load_label(r), fmt(r["n"]), fmt(r["errors"]),
          f"{100 * r['goodput_fraction']:.1f}%" if r.get("goodput_fraction") is not None
          else "-", fmt(r.get("goodput_rps"), 1), fmt(r["throughput_rps"], 1), _bound_flag(r)]
         for r in rows])


def _paragraph(lines: list[str]) -> list[str]:
    """Lines followed by a blank one, or nothing when there are none."""
    return [*lines, ""] if lines else []


def _bound_flag(r: dict[str, Any]) -> str:
    return _flagged("", bound_words(r)).strip() or "-"


def wire_table(rows: list[dict[str, Any]]) -> str:
    """What the protocol costs on the wire: should barely depend on the implementation."""
    cells = per_cell(rows).values()

    def framing(c: dict, d: str) -> str:
        w, p = c[f"wire_{d}_bytes"], c[f"payload_{d}_bytes"]
        return fmt(w - p, 0) if w is not None and p is not None else "-"

    return _table(
        ["cell", "payload up B", "payload down B", "wire up B", "wire down B",
         "non-payload up B", "non-payload down B", "packets up", "packets down"],
        [[c["cell"], fmt(c["payload_up_bytes"], 0), fmt(c["payload_down_bytes"], 0),
          fmt(c["wire_up_bytes"], 0), fmt(c["wire_down_bytes"], 0), framing(c, "up"),
          framing(c, "down"), fmt(c["packets_up"], 1), fmt(c["packets_down"], 1)]
         for c in cells])


def implementation_table(rows: list[dict[str, Any]]) -> str:
    """What this implementation costs: CPU, saturation throughput, latency at c=1."""
    cells = per_cell(rows).values()

    def per_message(c: dict, key: str) -> str:
        return fmt(c[key] / c["tokens_per_req"], 1) if c[key] and c["tokens_per_req"] else "-"

    return _table(
        ["cell", "server", "client engine", "server CPU us/req", "client CPU us/req",
         "server CPU us/message", "client CPU us/message", "best req/s", "p50 at c=1 ms"],
        [[c["cell"], c["server"], c["client"], fmt(c["server_us"], 0), fmt(c["client_us"], 0),
          per_message(c, "server_us"), per_message(c, "client_us"),
          _flagged(fmt(c["saturation_rps"], 0), c["saturation_flags"]),
          _flagged(fmt(c["c1_p50_ms"]), c["c1_flags"])] for c in cells])


def _flagged(value: str, words: str) -> str:
    """A figure from a saturated row, marked as its library's ceiling."""
    return value + "".join(f" **{w}**" for w in words.split())


def time_table(rows: list[dict[str, Any]]) -> str:
    return _table(
        ["protocol", "load", "latency p50 ms", "server time p50 ms", "overhead p50 ms",
         "overhead p99 ms", "decode p50 ms", "connect p50 ms", "new connections", "saturated"],
        [[r["cell"], load_label(r), fmt(r["latency_p50_ms"]), fmt(r["server_time_p50_ms"]),
          fmt(r["overhead_p50_ms"]), fmt(r["overhead_p99_ms"]), fmt(r["decode_p50_ms"]),
          fmt(r["connect_p50_ms"]), fmt(r["new_connections"]), _bound_flag(r)] for r in rows])


def stream_table(rows: list[dict[str, Any]]) -> str:
    return _table(
        ["protocol", "load", "TTFT p50 ms", "TTFT p99 ms", "TTST p50 ms", "ITL p50 ms",
         "ITL p99 ms", "TPOT p50 ms", "E2E p50 ms", "one-way p50 ms", "one-way p99 ms",
         "tokens/chunk", "saturated"],
        [[r["cell"], load_label(r), fmt(r["ttft_p50_ms"]), fmt(r["ttft_p99_ms"]),
          fmt(r["ttst_p50_ms"]), fmt(r["itl_p50_ms"]), fmt(r["itl_p99_ms"]),
          fmt(r["tpot_p50_ms"]), fmt(r["e2e_p50_ms"]), fmt(r["owd_p50_ms"]),
          fmt(r["owd_p99_ms"]), fmt(r["tokens_per_chunk"], 2), _bound_flag(r)]
         for r in fastest_first(rows, "ttft_p50_ms")])


def seed_lab_table(rows: list[dict[str, Any]]) -> str:
    """The lab's own CSV shape: mode, concurrency, n, median and p95 wall time (and
    whether the row was saturated: then it measured a library, not the protocol)."""
    return _table(["mode", "concurrency", "n", "median_wall_s", "p95_wall_s", "saturated"],
                  [[r["cell"], fmt(r["concurrency"]), fmt(r["n"]),
                    fmt(r["median_wall_s"], 4), fmt(r["p95_wall_s"], 4), _bound_flag(r)]
                   for r in rows])


def ttft_vs_http(rows: list[dict[str, Any]], workload: dict[str, Any]) -> str | None:
    """The seed lab's question: how much does HTTP add on top of warm TTFT?"""
    c1 = [r for r in rows if r["mode"] == "closed" and r["concurrency"] == 1 and r["ttft_p50_ms"]]
    if not c1:
        return None
    model_ttft = float(workload.get("ttft_ms") or 0.0)
    lines = [f"The model's warm TTFT is set to {model_ttft:g} ms (server-side, exact). "
             "At concurrency 1, measured from the client:", ""]
    for r in c1:
        extra = r["ttft_p50_ms"] - model_ttft
        lines.append(f"- **{r['cell']}**: TTFT p50 {r['ttft_p50_ms']:.2f} ms, so HTTP and "
                     f"network overhead is about **{extra:.2f} ms** on top of warm TTFT "
                     f"({extra / r['ttft_p50_ms']:.0%} of what the user waits for the first "
                     f"token); whole-response wall time p50 {r['median_wall_s'] * 1000:.2f} ms, "
                     f"p95 {r['p95_wall_s'] * 1000:.2f} ms.")
    lines.append("")
    for proto in sorted({r["cell"] for r in rows}):
        mine = sorted((r for r in rows if r["cell"] == proto and r["mode"] == "closed"),
                      key=lambda r: r["concurrency"])
        if len(mine) > 1 and mine[0]["median_wall_s"]:
            base = mine[0]["median_wall_s"]
            steps = ", ".join(f"c={r['concurrency']}: {r['median_wall_s'] / base:.2f}x"
                              for r in mine[1:] if r["median_wall_s"])
            lines.append(f"- {proto}: median wall time against c=1 — {steps}.")
    best = min(c1, key=lambda r: r["ttft_p50_ms"] - model_ttft)
    worst = max(c1, key=lambda r: r["ttft_p50_ms"] - model_ttft)
    share = (worst["ttft_p50_ms"] - model_ttft) / worst["ttft_p50_ms"] if worst["ttft_p50_ms"] else 0
    verdict = ("meaningful latency changes will mostly come from model/runtime tuning, not the "
               "network" if share < 0.1 else
               "the HTTP stack is a non-trivial part of time to first token")
    lines += ["", f"Rule of thumb on this machine: HTTP overhead is about "
              f"{best['ttft_p50_ms'] - model_ttft:.1f}-{worst['ttft_p50_ms'] - model_ttft:.1f} ms "
              f"on top of warm TTFT; {verdict}."]
    return "\n".join(lines)


def curl_phase_check(rows: list[dict[str, Any]]) -> list[str]:
    """libcurl times its own phases; they should agree with the harness's timestamps."""
    out = []
    for r in rows:
        ours, theirs = r.get("ttfb_p50_ms"), r.get("curl_starttransfer_p50_ms")
        if ours is None or theirs is None:
            continue
        out.append(f"- {r['cell']} {load_label(r)}: first byte p50 {ours:.3f} ms by the harness vs "
                   f"{theirs:.3f} ms by libcurl (starttransfer), {abs(ours - theirs) * 1000:.0f} "
                   f"us apart; libcurl's total p50 {fmt(r.get('curl_total_p50_ms'))} ms.")
    return out


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r.get("failed"):
            out.append(f"- {r['cell']} {load_label(r)}: **failed** ({r['failed']}); what "
                       "survived is kept here, never ranked.")
        if r.get("server_bound"):
            out.append(f"- {r['cell']} {load_label(r)}: **server-bound** "
                       f"({r['server_bound']}): it measures the server library at its limit, "
                       "not the protocol; it is never ranked.")
        if r["client_bound"]:
            out.append(f"- {r['cell']} {load_label(r)}: **the client side may be the "
                       f"bottleneck** ({r['client_bound']}); its throughput is a floor, not "
                       "the protocol's limit.")
        if r.get("machine_bound"):
            out.append(f"- {r['cell']} {load_label(r)}: **machine-bound** "
                       f"({r['machine_bound']}): its req/s is this machine's cores divided "
                       "by client and server CPU per request, the load generator's "
                       "included; it is never ranked.")
        if r.get("host_noisy"):
            out.append(f"- {r['cell']} {load_label(r)}: **host-noisy** ({r['host_noisy']}): "
                       "every process ran slower than its CPU time says, so its latency and "
                       "rate are inflated by other guests of the host; rerun before "
                       "trusting a difference that involves it.")
        for kind, sample in (r.get("error_samples") or {}).items():
            out.append(f"- {r['cell']} {load_label(r)}: {r['errors_by_class'][kind]} "
                       f"`{kind}` errors, e.g. {sample}")
    return out


def host_steal_line(rows: list[dict[str, Any]]) -> str | None:
    """A warning above everything when the hypervisor took CPU time during some points:
    the verdicts below do not know it."""
    noisy = [r for r in rows if r.get("host_noisy")]
    if not noisy:
        return None
    worst = max(r["host_steal"] for r in noisy)
    names = ", ".join(f"{r['cell']} {load_label(r)}" for r in noisy)
    return (f"**Host noise:** the hypervisor took CPU time from this machine (steal, up to "
            f"{worst:.0%}) during {len(noisy)} of {len(rows)} points ({names}). Their "
            "figures are inflated by an amount that varied while they ran, and a verdict "
            "that involves them may say more than the data can; rerun on a quieter host.")


def hol_section(rows: list[dict[str, Any]], out_dir: Path) -> str:
    """Head-of-line blocking, from the network lab's per-point analyses (every repeat)."""
    points = [HolPoint.from_summary(r["cell"], r["protocol"], h["analysis"]["connections"], h)
              for r in rows for h in (r.get("hol") or ()) if "analysis" in h]
    return render_hol_section(points, out_dir / "figures", out_dir, rows)


def lifecycle_table(rows: list[dict[str, Any]]) -> str | None:
    """Phase by phase (p50 ms), for requests that opened a connection and those that
    reused one: where a request's time goes before and after its first byte."""
    lines = []
    for r in rows:
        for which, phases in (r.get("phases_ms") or {}).items():
            lines.append([r["cell"], load_label(r), which, fmt(phases["total"]["n"])]
                         + [fmt(phases.get(p, {}).get("p50")) for p in PHASES])
    if not lines:
        return None
    return _table(["protocol", "load", "connection", "n", *(f"{p} ms" for p in PHASES)],
                  lines)


def cold_warm_table(rows: list[dict[str, Any]]) -> str | None:
    """The seed's table, measured: first request (a new connection) vs later ones (a
    reused connection) vs payload size, per protocol, from a scenario that sweeps
    connection.policy over new and reuse."""
    def key(r: dict[str, Any]) -> tuple:        # one cold row per warm one: same TLS too
        return r["cell"], r["network"], r.get("tls_version")
    new = [r for r in rows if r.get("connections_policy") == "new"]
    cold = {key(r): r for r in new if not r.get("resumption")}
    resumed: dict[tuple, list[dict[str, Any]]] = {}     # cold with a resumed session
    for r in new:
        if r.get("resumption"):
            resumed.setdefault(key(r), []).append(r)
    lines = []
    for r in rows:
        if r.get("connections_policy") in (None, "new"):
            continue
        c = cold.get(key(r))
        if c is None:
            continue
        ratio = (c["latency_p50_ms"] / r["latency_p50_ms"]
                 if c["latency_p50_ms"] and r["latency_p50_ms"] else None)
        line = [r["cell"], r["network"] + (f" tls{r['tls_version']}" if r.get("tls_version")
                                           else ""), fmt(c["latency_p50_ms"])]
        if resumed:
            line.append("; ".join(f"{fmt(x['latency_p50_ms'])} ({x['resumption']})"
                                  for x in resumed.get(key(r), ())) or "-")
        lines.append(line + [fmt(r["latency_p50_ms"]), fmt(ratio, 1) + "x" if ratio else "-",
                             fmt(r["payload_up_bytes"], 0), fmt(r["payload_down_bytes"], 0),
                             fmt(c["wire_up_bytes"], 0), fmt(r["wire_up_bytes"], 0)])
    if not lines:
        return None
    return _table(["protocol", "link", "first request (cold) p50 ms",
                   *(["cold, session resumed p50 ms"] if resumed else []),
                   "subsequent (warm) p50 ms", "cold / warm", "payload up B", "payload down B",
                   "wire up B cold", "wire up B warm"], lines)


def round_trip_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Measured round trips before the first byte next to the textbook count: a table,
    then a line for each row flagged (off by more than a quarter RTT, or resumption
    asked for but not every handshake resumed)."""
    lines, notes = [], []
    for r in rows:
        for a in accounting(r, tls=bool(r.get("tls")), tls_version=r.get("tls_version") or "1.3",
                            resumption=r.get("resumption")):
            off = abs(a["measured"] - a["textbook"]) > 0.25
            verdict = ("agrees" if a["agrees"] else
                       "**off by more than 1/4 RTT**" if off else "**resumption missed**")
            handshakes = r.get("handshakes") or {}
            resumed = (f"{handshakes.get(a['resumption'], 0)} of {sum(handshakes.values())}"
                       if a["resumption"] else "")
            lines.append([a["cell"], load_label(r), a["which"], a["how"], resumed,
                          str(a["textbook"]), f"{a['measured']:.2f}",
                          fmt(a["dns_round_trips"]) if a["dns_round_trips"] else "-",
                          f"{a['rtt_ms']:g}", verdict])
            if a["shortfall"]:
                notes.append(f"- {a['cell']} {load_label(r)}: resumption ({a['resumption']}) "
                             f"was asked for, but {a['shortfall']}: the textbook count "
                             f"assumes every one resumed.")
            if off:
                emu = r.get("emulator") or {}
                late = emu.get("late_over_500us", 0)
                busy = (f" The link emulator released {late} of {emu.get('packets', 0)} "
                        f"packets over 0.5 ms late (up to {emu.get('late_max_us', 0) / 1000:.1f}"
                        f" ms): the host was busy, and that, not the protocol, may be the "
                        f"difference." if emulator_late(late, emu.get("packets", 0)) else "")
                notes.append(f"- {a['cell']} {load_label(r)}, {a['which']}: measured "
                             f"{a['measured']:.2f} round trips, textbook {a['textbook']} "
                             f"({a['how']}): they differ by more than a quarter RTT.{busy}"
                             f"{_grpc_ready(r, a)}")
    if not lines:
        return []
    table = _table(["protocol", "load", "connection", "textbook path", "resumed",
                    "textbook RTTs", "measured RTTs", "DNS RTTs (apart)", "RTT ms",
                    "verdict"], lines)
    return [table, "", *notes] if notes else [table]


def _grpc_ready(row: dict[str, Any], a: dict[str, Any]) -> str:
    """gRPC's known extra round trip, when the connect phase shows it."""
    if parse_cell(row["cell"]).kind != "grpc" or a["which"] != "cold":
        return ""
    ready = ((row.get("phases_ms") or {}).get("cold", {}).get("tcp") or {}).get("p50")
    if not ready or ready / a["rtt_ms"] < 1.75:
        return ""
    return (f" Its channel took {ready / a['rtt_ms']:.2f} round trips to become READY (the "
            f"tcp phase): grpc-core sends its first request only after the server's HTTP/2 "
            f"SETTINGS arrived, a round trip of the implementation that the textbook count "
            f"leaves out (the point's packet log shows the request leaving after them).")


def dns_lines(rows: list[dict[str, Any]], dns: dict[str, Any] | None) -> list[str]:
    """The DNS step: queries per request with the resolver cache off and on, and what a
    query cost against one round trip plus the resolver's delay."""
    if not dns:
        return []
    lines = []
    for r in rows:
        a = dns_accounting(r, float(dns.get("delay_ms") or 0))
        if a is None:
            continue
        lines.append([a["cell"], load_label(r), "on" if a["cache"] else "off",
                      str(a["requests"]), str(a["new_connections"]), str(a["queries"]),
                      a["expect_queries"], fmt(a["per_request_ms"]), fmt(a["per_query_ms"]),
                      f"{a['expected_ms']:g} ({a['rtt_ms']:g} RTT + {a['delay_ms']:g} delay)",
                      "agrees" if a["agrees"] else "**disagrees**"])
    if not lines:
        return []
    return [_table(["protocol", "load", "resolver cache", "requests", "new connections",
                    "DNS queries sent", "textbook queries", "DNS ms per request (mean)",
                    "ms per query", "textbook ms per query", "verdict"], lines), "",
            "A query's cost is the summed dns phase over the queries sent; a cache hit costs "
            "microseconds. Agrees: the queries are as the textbook says, and a query cost "
            "one round trip plus the resolver's delay within a quarter RTT."]


def lab_line(summary: dict[str, Any]) -> str | None:
    lab = summary.get("network_lab")
    if not lab:
        return None

    def show(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {show(x)}" for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return "; ".join(map(str, v))
        return str(v)
    return ("Network lab: " + "; ".join(f"{k.replace('_', ' ')}: {show(v)}"
                                        for k, v in lab.items() if v not in (None, "", [], {}))
            + ".")


def cluster_lines(cluster: dict[str, Any] | None) -> list[str]:
    """The Ray cluster's load workers: where each ran, its clock, what it did."""
    if not cluster:
        return []
    where = {"local": "a one-host Ray cluster started for this run",
             "auto": "the Ray cluster found from this host"}.get(
        cluster["address"], f"the Ray cluster at {cluster['address']}")
    n = len(cluster["workers"])
    return [f"Load workers: {n} Ray actor{'' if n == 1 else 's'} on {where} "
            f"(their histograms merged as local workers' are); one-way delay: "
            f"{cluster['one_way_delay']}.", "",
            _table(["host", "Ray node", "pid", "clock offset ms (+/- error)", "requests",
                    "client CPU s", "points"],
                   [[w["host"], w["node"], str(w["pid"]),
                     f"{w['offset_ms']:+.3f} (+/- {w['offset_error_ms']:.3f})",
                     fmt(w["requests"]), fmt(w["cpu_s"], 2), str(w["points"])]
                    for w in cluster["workers"]]), ""]


def _workload(scenario: dict[str, Any], kind: str) -> dict[str, Any]:
    """The scenario's workload of one kind (a scenario may give an embed and a stream one)."""
    given = scenario["workload"]
    return next(w for w in (given if isinstance(given, list) else [given]) if w["type"] == kind)


def render(summary: dict[str, Any], thresholds: list[str], out_dir: Path | None = None) -> str:
    s, env, rows = summary["scenario"], summary["environment"], summary["rows"]
    parts = [f"# wirebench: {s['name']}", ""]
    if s.get("description"):
        parts += [s["description"].strip(), ""]
    parts += [f"Status: **{effective_status(summary)}** — started {summary.get('started_utc', '?')}; "
              f"Python {env['python']}, kernel {env['kernel']}, {env['cpu']} x{env['cores']}, "
              f"host TCP congestion control {env['tcp_congestion_control']}, commit "
              f"{(env.get('git_commit') or '?')[:10]}{' (dirty)' if env.get('git_dirty') else ''}.",
              "", "Client and server share this machine: compare ratios within this run, not "
              "absolute times across machines.", ""]
    if summary.get("failure"):
        parts += [f"The run failed: {summary['failure']}", ""]
    steal = host_steal_line(rows)
    if steal:
        parts += [steal, ""]
    lab = lab_line(summary)
    if lab:
        parts += [lab, ""]
    parts += cluster_lines(summary.get("cluster"))
    verdict = verdict_lines(rows, s.get("groups"))
    if verdict:
        parts += ["## Verdict", "", *[f"- {line}" for line in verdict], "", f"_{METHOD}_", ""]
    shown = conclusions(rows, s.get("groups"))
    if shown:
        parts += ["## What this run shows", "", *shown, ""]
    parts += capacity_section(summary)
    parts += ["## Latency and throughput", "", latency_table(rows), ""]
    slo = next((r["slo"] for r in rows if r.get("slo")), None)
    if slo:
        parts += ["## Goodput", "", f"Requests that kept every per-request limit of the "
                  f"scenario's SLO ({'; '.join(slo)}), errors counted as missing it.", "",
                  goodput_table(rows), ""]
    stream_rows = [r for r in rows if r["workload"] == "stream"]
    unary_rows = [r for r in rows if r["workload"] == "embed"]
    parts += render_pipeline_section(rows)
    if stream_rows:
        parts += ["## Streams", "", stream_table(stream_rows), ""]
        section = ttft_vs_http(stream_rows, _workload(s, "stream"))
        if section:
            parts += ["## TTFT vs HTTP latency", "", section, ""]
        if out_dir is not None and any(r.get("hol") for r in stream_rows):
            parts += [hol_section(stream_rows, out_dir), ""]
    if unary_rows:
        parts += ["## Where the time goes", "", time_table(unary_rows), ""]
    seed_table = cold_warm_table(rows)
    if seed_table:
        parts += ["## First request vs subsequent ones", "",
                  "The seed's cold/warm/payload table, measured: *cold* opens a new "
                  "connection for every request (DNS when the scenario has a DNS step, TCP, "
                  "TLS or QUIC, WebSocket upgrade), *warm* reuses one.", "", seed_table, ""]
    lifecycle = lifecycle_table(rows)
    if lifecycle:
        parts += ["## The request lifecycle, phase by phase", "",
                  "Medians per phase (curl -w style; definitions below): cold requests "
                  "opened a connection, warm ones reused one.", "", lifecycle, ""]
        trips = round_trip_lines(rows)
        if trips:
            parts += ["### Round trips before the first byte", "", *trips, ""]
        dns = dns_lines(rows, s.get("dns"))
        if dns:
            parts += ["### The DNS step", "", *dns, ""]
    wire_note = rows[0].get("wire_source", "") if rows else ""
    parts += ["## What the protocol costs on the wire", "",
              f"Per request, averaged over all load points; wire = IP packets incl. "
              f"headers ({wire_note}). Round trips to the first byte and stalls under "
              "loss need an emulated link (the network lab).", "", wire_table(rows), "",
              "## What this implementation costs", "", implementation_table(rows), "",
              "## Protocol or library?", "", *_paragraph(library_lines(rows, s.get("groups"))),
              *protocol_or_library(rows), "",
              "## The seed lab's table", "", seed_lab_table(rows), ""]
    phases = curl_phase_check(rows)
    if phases:
        parts += ["## libcurl's own phase timings", "",
                  "The harness stamps the first response byte when its engine hands it over; "
                  "libcurl stamps it inside the transfer. They should agree within tens of "
                  "microseconds:", "", *phases, ""]
    claims = claims_section(rows, s["name"])
    if s["name"] == "claims" or any("| **" in line for line in claims):
        parts += claims
    if thresholds:
        parts += ["## Thresholds", "", *thresholds, ""]
    found = notes(rows)
    if found:
        parts += ["## Notes", "", *found, ""]
    parts += ["## Definitions", ""] + [f"- `{k}`: {v}" for k, v in FORMULAS.items()] + [""]
    return "\n".join(parts)
