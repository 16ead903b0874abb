"""report.md's pipeline section: where a user request's seconds go, and which
connection policy (and DNS cache) removes them. Reads the rows' `pipeline_ms` (mean ms
per user request by bucket, along the critical path: harness/run/load/pipeline.py)."""

from __future__ import annotations

from typing import Any

from harness.run.load.pipeline import BUCKETS
from harness.report.tables import fmt, table

_NAMES = {"dns": "DNS", "tcp_handshake": "TCP handshake", "tls_handshake": "TLS/QUIC/upgrade",
          "round_trips": "round trips", "transfer": "transfer", "model": "model",
          "teardown": "connection close",
          "client": "client", "unattributed": "unattributed"}
# What reusing connections can remove: setting them up and closing them.
_SETUP = ("dns", "tcp_handshake", "tls_handshake", "teardown")


def _policy(r: dict[str, Any]) -> str:
    conn = r.get("connections_policy")
    text = "new connection per call" if conn == "new" else (
        "reused connections" if conn in (None, "auto") else f"reused, {conn} connections")
    if r.get("dns_cache") is not None:
        text += ", DNS cache " + ("on" if r["dns_cache"] else "off")
    return text


def _mean_e2e(r: dict[str, Any]) -> float | None:
    e2e = (r.get("distributions_ms") or {}).get("e2e")
    return e2e["mean"] if e2e else None


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    used = [b for b in BUCKETS if any((r["pipeline_ms"].get(b) or 0) > 0 for r in rows)]
    lines = []
    for r in rows:
        parts, e2e = r["pipeline_ms"], _mean_e2e(r)
        total = sum(parts.values())
        lines.append([r["cell"], r["network"], _policy(r), fmt(r["n"]),
                      fmt(r["calls_per_request"], 0), fmt(r["latency_p50_ms"], 1),
                      fmt(e2e, 1)] + [fmt(parts.get(b), 1) for b in used]
                     + [f"{total / e2e:.1%}" if e2e else "-"])
    return table(["protocol", "link", "policy", "user requests", "calls each", "e2e p50 ms",
                  "e2e mean ms", *(f"{_NAMES[b]} ms" for b in used), "sum / e2e"], lines)


def stage_table(rows: list[dict[str, Any]]) -> str:
    stages = list(dict.fromkeys(s for r in rows for s in r.get("pipeline_stages_ms") or {}))
    return table(["protocol", "link", "policy", *(f"{s} ms" for s in stages)],
                 [[r["cell"], r["network"], _policy(r)]
                  + [fmt((r.get("pipeline_stages_ms") or {}).get(s), 1) for s in stages]
                  for r in rows])


def policy_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per protocol and link: the costliest policy against the cheapest, in words."""
    out = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if _mean_e2e(r):
            groups.setdefault((r["cell"], r["network"]), []).append(r)
    for (cell, network), mine in groups.items():
        if len(mine) < 2:
            continue
        worst = max(mine, key=_mean_e2e)
        best = min(mine, key=_mean_e2e)
        w, b = worst["pipeline_ms"], best["pipeline_ms"]
        setup_w = sum(w.get(k) or 0 for k in _SETUP)
        setup_b = sum(b.get(k) or 0 for k in _SETUP)
        e2e_w, e2e_b = _mean_e2e(worst), _mean_e2e(best)
        trips = ((w.get("round_trips") or 0) - (b.get("round_trips") or 0)) / 1000
        text = (f"- **{cell}**, {network}: with {_policy(worst)} a user request takes "
                f"{e2e_w / 1000:.2f} s, {setup_w / 1000:.2f} s of it DNS, handshakes and "
                f"closes ({w.get('dns') or 0:.0f} ms DNS); with {_policy(best)} it takes "
                f"{e2e_b / 1000:.2f} s ({e2e_w / e2e_b:.1f}x faster: "
                f"{(e2e_w - e2e_b) / 1000:.2f} s saved, {(setup_w - setup_b) / 1000:.2f} s "
                f"of them DNS, handshakes and closes"
                + (f", {trips:.2f} s round trips" if abs(trips) >= 0.01 else "") + ").")
        cached = [r for r in mine if r.get("dns_cache") and r.get("connections_policy") == "new"]
        uncached = [r for r in mine if r.get("dns_cache") is False
                    and r.get("connections_policy") == "new"]
        if cached and uncached:
            dns_saved = (uncached[0]["pipeline_ms"].get("dns") or 0) - (
                cached[0]["pipeline_ms"].get("dns") or 0)
            text += (f" A DNS cache alone, still opening a connection per call, removes "
                     f"{dns_saved:.0f} ms of DNS.")
        out.append(text)
    return out


def closure_line(rows: list[dict[str, Any]]) -> str:
    """Do the components add up, and how much time fell outside every call's phases?"""
    gaps = []
    for r in rows:
        e2e = _mean_e2e(r)
        if not e2e:
            continue
        parts = r["pipeline_ms"]
        gaps.append((abs(sum(parts.values()) - e2e) / e2e,
                     ((parts.get("client") or 0) + (parts.get("unattributed") or 0)) / e2e,
                     r["cell"]))
    if not gaps:
        return ""
    worst_sum = max(gaps)
    worst_client = max(gaps, key=lambda g: g[1])
    blind = sorted({r["cell"] for r in rows
                    if (r["pipeline_ms"].get("unattributed") or 0) > 0.05 * (_mean_e2e(r) or 1)})
    caveat = (f" Calls of {', '.join(blind)} carry no phase stamps, so their time is "
              f"unattributed: those rows show totals only." if blind else "")
    return (f"The components add up: their sum is within {worst_sum[0]:.2%} of the mean "
            f"end-to-end time in every row. Time not explained by a call's network or model "
            f"phases (decoding, scheduling between calls, calls without phase stamps) is at "
            f"most {worst_client[1]:.1%} of a user request ({worst_client[2]}).{caveat}")


def render_pipeline_section(rows: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in rows if r.get("pipeline_ms")]
    if not rows:
        return []
    return ["## Where a user request's seconds go", "",
            "Each user request runs the pipeline's stages in order, each stage's calls with "
            "bounded parallel fan-out. Mean ms per user request along the critical path (in "
            "every stage, the in-flight slot that finished last), split by each call's own "
            "lifecycle stamps; `model` is the server's own time, `round trips` what the "
            "network added to the request and response beyond it.", "",
            breakdown_table(rows), "", closure_line(rows), "",
            "### Which policy removes them", "", *policy_lines(rows), "",
            "### By stage (mean ms per user request)", "", stage_table(rows), ""]
