"""Protocol or library? Separating what a protocol costs from what its implementation costs.

Wire figures (bytes, packets, framing) should barely depend on the implementation;
CPU per request, saturation throughput and latency at concurrency 1 mostly do. Every
statement here is computed from the rows of one run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from base.protocols import PROTOCOLS

Row = dict[str, Any]
WIRE_TOLERANCE = 0.05


def per_cell(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """One summary per cell over its load points (saturation = best throughput seen)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = out.setdefault(r["cell"], {"cell": r["cell"], "protocol": r["protocol"],
                                       "server": r["server_impl"], "client": r["client_engine"],
                                       "rows": []})
        c["rows"].append(r)
    for c in out.values():
        rs = c["rows"]
        done = [r for r in rs if r["n"]]
        c["saturation_rps"] = max((r["throughput_rps"] or 0 for r in done), default=None)
        c1 = [r for r in done if r["mode"] == "closed" and r["concurrency"] == 1]
        c["c1_p50_ms"] = c1[0]["latency_p50_ms"] if c1 else None
        c["client_us"] = _weighted(done, "client_cpu_ms_per_req", 1000)
        c["server_us"] = _weighted(done, "server_cpu_ms_per_req", 1000)
        tokens = sum((r.get("tokens_per_request") or 0) * r["n"] for r in done)
        reqs = sum(r["n"] for r in done)
        c["tokens_per_req"] = tokens / reqs if tokens and reqs else None
        for k in ("payload_up_bytes", "payload_down_bytes", "wire_up_bytes", "wire_down_bytes",
                  "packets_up", "packets_down"):
            c[k] = _weighted(done, k, 1)
        c["wire_source"] = rs[0].get("wire_source")
    return out


def _weighted(rows: list[Row], key: str, scale: float) -> float | None:
    pairs = [(r[key], r["n"]) for r in rows if r.get(key) is not None and r["n"]]
    if not pairs:
        return None
    return scale * sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return max(a, b) / min(a, b)


def wire_comparison(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two implementations of one protocol: do their wire figures agree within 5%?"""
    wa, wb = a["wire_down_bytes"], b["wire_down_bytes"]
    if not wa or not wb:
        return (f"wire bytes were not measured for both ({a['wire_source']}), so only "
                "payloads can be compared")
    up_a, up_b = a["wire_up_bytes"] or 0, b["wire_up_bytes"] or 0
    total_a, total_b = wa + up_a, wb + up_b
    diff = abs(total_a - total_b) / min(total_a, total_b)
    text = (f"wire bytes per request {total_a:,.0f} B ({a['cell']}) vs {total_b:,.0f} B "
            f"({b['cell']}), {diff:.1%} apart")
    if diff <= WIRE_TOLERANCE:
        return text + ": the same protocol on the wire, as it should be"
    # Name where the difference sits: payload, packets (segmentation / ACKs / frame
    # sizes), or the bytes that are neither (headers, framing, control frames).
    reasons = []
    pay_a = (a["payload_up_bytes"] or 0) + (a["payload_down_bytes"] or 0)
    pay_b = (b["payload_up_bytes"] or 0) + (b["payload_down_bytes"] or 0)
    if pay_a and pay_b and abs(pay_a - pay_b) / min(pay_a, pay_b) > 0.01:
        reasons.append(f"the payloads differ ({pay_a:,.0f} vs {pay_b:,.0f} B)")
    pk_a = (a["packets_up"] or 0) + (a["packets_down"] or 0)
    pk_b = (b["packets_up"] or 0) + (b["packets_down"] or 0)
    if pk_a and pk_b and abs(pk_a - pk_b) / min(pk_a, pk_b) > WIRE_TOLERANCE:
        reasons.append(f"packets per request differ ({pk_a:,.1f} vs {pk_b:,.1f}: segment, "
                       "frame or datagram sizes and ACK or WINDOW_UPDATE patterns differ)")
    extra_a, extra_b = total_a - pay_a, total_b - pay_b
    reasons.append(f"non-payload bytes (IP/TCP or UDP headers, HTTP headers, framing, "
                   f"control frames) are {extra_a:,.0f} vs {extra_b:,.0f} B per request")
    return text + ": over 5%, because " + "; ".join(reasons)


def protocol_or_library(rows: list[Row]) -> list[str]:
    """Pair by pair: is the implementation spread or the protocol spread larger?"""
    cells = per_cell(rows)
    by_protocol: dict[str, list[dict]] = defaultdict(list)
    for c in cells.values():
        by_protocol[c["protocol"]].append(c)
    # A protocol's reference is its default cell (label == protocol id) when it ran.
    defaults = {p: next((c for c in cs if c["cell"] == p), cs[0])
                for p, cs in by_protocol.items()}
    lines = []
    for proto, impls in by_protocol.items():
        if len(impls) < 2:
            continue
        for i, a in enumerate(impls):
            for b in impls[i + 1:]:
                lines += _pair(proto, a, b, defaults)
    if not lines:
        lines.append("Each protocol ran with one implementation only, so this run cannot "
                     "separate protocol from library: add cells such as rest-h2@granian or "
                     "rest-h3+curl (see scenarios/protocol_vs_library.yaml).")
    return lines


def _pair(proto: str, a: dict, b: dict, defaults: dict[str, dict]) -> list[str]:
    out = [f"**{a['cell']} vs {b['cell']}** ({proto}: {a['server']} / {a['client']} vs "
           f"{b['server']} / {b['client']}; figures below in that order unless named)"]
    impl = _ratio(a["saturation_rps"], b["saturation_rps"])
    fast, slow = (a, b) if (a["saturation_rps"] or 0) >= (b["saturation_rps"] or 0) else (b, a)
    if impl:
        out.append(f"- implementation: best throughput {fast['cell']} "
                   f"{fast['saturation_rps']:,.0f} vs {slow['cell']} "
                   f"{slow['saturation_rps']:,.0f} req/s ({impl:.2f}x); server CPU "
                   f"{_us(a['server_us'])} vs {_us(b['server_us'])} per request, client CPU "
                   f"{_us(a['client_us'])} vs {_us(b['client_us'])}; p50 at c=1 "
                   f"{_ms(a['c1_p50_ms'])} vs {_ms(b['c1_p50_ms'])}")
    out.append(f"- wire: {wire_comparison(a, b)}")
    for other, d in defaults.items():
        # Only protocols doing the same job: a stream's rate says nothing about an embed's.
        if other == proto or PROTOCOLS[other].streaming != PROTOCOLS[proto].streaming:
            continue
        prot = _ratio(defaults[proto]["saturation_rps"], d["saturation_rps"])
        if not (impl and prot):
            continue
        verdict = ("the implementation difference is the larger" if impl > prot else
                   "the protocol difference is the larger")
        out.append(f"- against {d['cell']} ({d['saturation_rps']:,.0f} req/s): protocol "
                   f"spread {prot:.2f}x vs implementation spread {impl:.2f}x — {verdict}")
    return out + [""]


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} us"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f} ms"
