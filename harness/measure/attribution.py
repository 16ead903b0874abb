"""Protocol or library? Separating what a protocol costs from what its implementation costs.

Wire figures (bytes, packets, framing) should barely depend on the implementation;
CPU per request, saturation throughput and latency at concurrency 1 mostly do. Every
statement here is computed from the rows of one run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from base.protocols import PROTOCOLS
from harness.measure.saturation import bound_words, near_busy

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
        c["saturation_flags"] = bound_words(_best_row(c))
        c1 = [r for r in done if r["mode"] == "closed" and r["concurrency"] == 1]
        c["c1_p50_ms"] = c1[0]["latency_p50_ms"] if c1 else None
        c["c1_flags"] = bound_words(c1[0]) if c1 else ""
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
    """Pair by pair: is the implementation spread or the protocol spread larger? The
    protocol spread comes from unsaturated rows only, at a load point both protocols
    ran."""
    cells = per_cell(rows)
    by_protocol: dict[str, list[dict]] = defaultdict(list)
    for c in cells.values():
        by_protocol[c["protocol"]].append(c)
    lines = []
    for proto, impls in by_protocol.items():
        if len(impls) < 2:
            continue
        for i, a in enumerate(impls):
            for b in impls[i + 1:]:
                lines += _pair(proto, a, b, list(cells.values()))
    if not lines:
        lines.append("Each protocol ran with one implementation only, so this run cannot "
                     "separate protocol from library: add cells such as rest-h2@granian or "
                     "rest-h3+curl (see scenarios/protocol_vs_library.yaml).")
    return lines


def _pair(proto: str, a: dict, b: dict, cells: list[dict]) -> list[str]:
    out = [f"**{a['cell']} vs {b['cell']}** ({proto}: {a['server']} / {a['client']} vs "
           f"{b['server']} / {b['client']}; figures below in that order unless named)"]
    impl = _ratio(a["saturation_rps"], b["saturation_rps"])
    fast, slow = (a, b) if (a["saturation_rps"] or 0) >= (b["saturation_rps"] or 0) else (b, a)
    if impl:
        # A saturated row's figure is its library's ceiling: the comparison stands (it
        # is between libraries), and the figure says it is one.
        out.append(f"- implementation: best throughput {fast['cell']} "
                   f"{fast['saturation_rps']:,.0f} req/s{_flag(fast['saturation_flags'])} vs "
                   f"{slow['cell']} {slow['saturation_rps']:,.0f} req/s"
                   f"{_flag(slow['saturation_flags'])} ({impl:.2f}x); server CPU "
                   f"{_us(a['server_us'])} vs {_us(b['server_us'])} per request, client CPU "
                   f"{_us(a['client_us'])} vs {_us(b['client_us'])}; p50 at c=1 "
                   f"{_ms(a['c1_p50_ms'])}{_flag(a['c1_flags'])} vs "
                   f"{_ms(b['c1_p50_ms'])}{_flag(b['c1_flags'])}")
    out.append(f"- wire: {wire_comparison(a, b)}")
    if not impl:
        return out + [""]
    impl_range = ratio_range(_best_row(fast).get("throughput_per_repeat_rps"),
                             _best_row(slow).get("throughput_per_repeat_rps"))
    mine = [c for c in cells if c["protocol"] == proto]
    for other in dict.fromkeys(c["protocol"] for c in cells):
        # Only protocols doing the same job: a stream's rate says nothing about an embed's.
        if other == proto or PROTOCOLS[other].streaming != PROTOCOLS[proto].streaming:
            continue
        theirs = [c for c in cells if c["protocol"] == other]
        point = _common_unbound_point(mine, theirs)
        if point is None:
            out.append(f"- against {other}: no load point at which both protocols ran "
                       "unsaturated, so this run does not measure the protocol spread "
                       "(a saturated row's throughput is its library's ceiling)")
            continue
        conc, x, y = point
        hi, lo = (x, y) if x["throughput_rps"] >= y["throughput_rps"] else (y, x)
        prot = hi["throughput_rps"] / lo["throughput_rps"]
        prot_range = ratio_range(hi.get("throughput_per_repeat_rps"),
                                 lo.get("throughput_per_repeat_rps"))
        near = [f"{r['cell']} ({near_busy(r)})" for r in (hi, lo) if near_busy(r)]
        if near:
            # Not flagged, but a row this busy may be measuring its library already.
            verdict = (f"this run cannot say which is larger: near saturation, "
                       f"{'; '.join(near)}, so a library may set this protocol spread")
        else:
            verdict = larger_spread(impl, impl_range, prot, prot_range,
                                    "the implementation difference is the larger",
                                    "the protocol difference is the larger",
                                    ("implementation", "protocol"))
        hop = ""
        if carries_hop(hi) != carries_hop(lo):
            front = hi if carries_hop(hi) else lo
            effect = ("without it the gap would be wider" if front is hi
                      else "part of this protocol spread is the hop")
            plain = lo if front is hi else hi
            hop = (f"; {front['cell']} crosses Caddy's hop to the backend and "
                   f"{plain['cell']} does not: {effect}")
        out.append(f"- against {other} at c={conc}, unsaturated rows only: protocol spread "
                   f"{prot:.2f}x ({hi['cell']} {hi['throughput_rps']:,.0f} vs {lo['cell']} "
                   f"{lo['throughput_rps']:,.0f} req/s) vs implementation spread "
                   f"{impl:.2f}x — {verdict}{hop}")
    return out + [""]


def carries_hop(r: Row) -> bool:
    """Whether the row's requests cross the Caddy front's local hop to the backend."""
    return "@caddy" in r["cell"]


def bound_reason(r: Row) -> str:
    """Why a row is not a protocol result: saturated (server or client), or a failed
    (partial) point; "" for a row that measures its protocol."""
    return "; ".join(x for x in (r.get("server_bound"), r.get("client_bound"),
                                 r.get("machine_bound"),
                                 r.get("failed") and f"failed: {r['failed']}") if x)


def _best_row(c: dict) -> Row:
    done = [r for r in c["rows"] if r["n"] and r.get("throughput_rps")]
    return max(done, key=lambda r: r["throughput_rps"]) if done else {}


def _common_unbound_point(mine: list[dict], theirs: list[dict]
                          ) -> tuple[int, Row, Row] | None:
    """The highest closed-loop concurrency at which each protocol has an unsaturated row,
    with each protocol's fastest such row there."""
    def fastest(cells: list[dict]) -> dict[int, Row]:
        best: dict[int, Row] = {}
        for c in cells:
            for r in c["rows"]:
                if (r["mode"] != "closed" or not r["n"] or not r.get("throughput_rps")
                        or bound_reason(r)):
                    continue
                k = r["concurrency"]
                if k not in best or r["throughput_rps"] > best[k]["throughput_rps"]:
                    best[k] = r
        return best
    a, b = fastest(mine), fastest(theirs)
    common = sorted(set(a) & set(b))
    return (common[-1], a[common[-1]], b[common[-1]]) if common else None


def ratio_range(hi: list[float] | None, lo: list[float] | None
                ) -> tuple[float, float] | None:
    """The range of hi/lo over every pairing of two rows' repeats (None under 2 each)."""
    hi = [v for v in hi or () if v]
    lo = [v for v in lo or () if v]
    if len(hi) < 2 or len(lo) < 2:
        return None
    return min(hi) / max(lo), max(hi) / min(lo)


def larger_spread(a: float, a_range: tuple[float, float] | None, b: float,
                  b_range: tuple[float, float] | None, a_larger: str, b_larger: str,
                  names: tuple[str, str]) -> str:
    """Which of two ratios (named `names`) is larger, decided only when their per-repeat
    ranges are apart."""
    if a_range is None or b_range is None:
        return (f"{a_larger if a > b else b_larger} (one repeat, so the spread between "
                "runs is unknown: indicative only)")
    if a_range[0] > b_range[1]:
        return a_larger
    if b_range[0] > a_range[1]:
        return b_larger
    return (f"their per-repeat ranges overlap ({names[0]} {a_range[0]:.2f}-{a_range[1]:.2f}x, "
            f"{names[1]} {b_range[0]:.2f}-{b_range[1]:.2f}x): this run cannot say which is "
            "larger")


def _flag(words: str) -> str:
    return f" ({words})" if words else ""


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} us"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f} ms"
