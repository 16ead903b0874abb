"""Round trips before the first response byte: the textbook count next to the measured
one (time to first byte over the emulated RTT), per protocol, TLS version and policy.

Textbook: a new TCP connection costs one round trip (the client's first data rides on
the handshake's last ACK), TLS 1.3 one more, TLS 1.2 two, a QUIC handshake one (TLS 1.3
inside it), QUIC 0-RTT none, a WebSocket upgrade one, and the request itself one. A
reused connection pays only the request's. DNS is counted apart (its own phase).

Resumed sessions (the scenario's `resumption`): TLS 1.2's abbreviated handshake is one
round trip instead of two (the server's Finished comes in its first flight); TLS 1.3
resumed is still one (a PSK saves certificates and CPU, not a round trip); a resumed
QUIC handshake is still one, and with 0-RTT the request rides in the first flight:
1 in total. These assume every new connection resumed: the row's `handshakes` counts
say whether each did, and a row where some did not is flagged.
"""

from __future__ import annotations

from typing import Any

from base.cells import parse_cell

TOLERANCE_RTT = 0.25          # flag a disagreement larger than a quarter round trip


def textbook(protocol_id: str, *, cold: bool, tls: bool, tls_version: str = "1.3",
             zero_rtt: bool = False, resumption: str | None = None) -> tuple[int, str]:
    """(round trips to the first byte, how they add up). resumption: None, "session"
    (the TLS session resumed) or "0rtt" (QUIC: resumed, the request as early data);
    zero_rtt=True is resumption="0rtt"."""
    kind = parse_cell(protocol_id).kind
    if not cold:
        return 1, "request"
    if zero_rtt:
        resumption = "0rtt"
    if kind == "h3":
        if resumption == "0rtt":
            return 1, "0-RTT request"
        if resumption == "session":
            return 2, "resumed QUIC handshake + request"
        return 2, "QUIC handshake + request"
    parts = [("TCP", 1)]
    if kind == "ws":
        parts.append(("WebSocket upgrade", 1))
    elif tls and resumption is not None:
        parts.append((f"TLS {tls_version} resumed", 1))
    elif tls:
        parts.append((f"TLS {tls_version}", 1 if tls_version == "1.3" else 2))
    parts.append(("request", 1))
    return sum(n for _, n in parts), " + ".join(p for p, _ in parts)


def measured_round_trips(phases: dict[str, dict[str, float]], rtt_ms: float) -> float | None:
    """Time from the request start to the first byte, DNS left out, in round trips
    (medians of the phases: tcp + tls + send + wait)."""
    if rtt_ms <= 0:
        return None
    parts = [phases.get(p, {}).get("p50") for p in ("tcp", "tls", "send", "wait")]
    if parts[-1] is None:
        return None
    return sum(v or 0.0 for v in parts) / rtt_ms


def resumption_shortfall(row: dict[str, Any], resumption: str | None) -> str | None:
    """With resumption asked for: why the new connections' handshakes do not all match
    it ("2 of 20 new connections did a full handshake"), else None."""
    if resumption is None:
        return None
    counts = row.get("handshakes") or {}
    total = sum(counts.values())
    if not total:
        return "no new connection reported how its handshake went"
    short = {k: n for k, n in counts.items() if k != resumption}
    if not short:
        return None
    return ", ".join(f"{n} of {total} new connections "
                     f"{'did a full handshake' if k == 'full' else 'resumed without 0-RTT'}"
                     for k, n in sorted(short.items()))


def accounting(row: dict[str, Any], *, tls: bool, tls_version: str,
               zero_rtt: bool = False, resumption: str | None = None) -> list[dict[str, Any]]:
    """Per cold/warm: textbook vs measured round trips for one result row. A resumed
    row's cold entry also says (`resumed`) whether every handshake resumed as asked;
    if not, the textbook count does not apply to all of them and it is flagged."""
    link, phases = row.get("link"), row.get("phases_ms")
    if not link or not phases or not link.get("rtt_ms"):
        return []
    if zero_rtt:
        resumption = "0rtt"
    out = []
    for which in ("cold", "warm"):
        if which not in phases:
            continue
        cold = which == "cold"
        expected, how = textbook(row["cell"], cold=cold, tls=tls, tls_version=tls_version,
                                 resumption=resumption if cold else None)
        got = measured_round_trips(phases[which], link["rtt_ms"])
        if got is None:
            continue
        dns = phases[which].get("dns", {}).get("p50") or 0.0
        shortfall = resumption_shortfall(row, resumption) if cold else None
        out.append({"cell": row["cell"], "which": which, "textbook": expected, "how": how,
                    "measured": round(got, 2), "dns_round_trips": round(dns / link["rtt_ms"], 2),
                    "agrees": abs(got - expected) <= TOLERANCE_RTT and shortfall is None,
                    "rtt_ms": link["rtt_ms"],
                    "resumption": resumption if cold else None, "shortfall": shortfall})
    return out


def dns_accounting(row: dict[str, Any], delay_ms: float) -> dict[str, Any] | None:
    """The DNS step of one row: queries the clients sent against the requests, and what
    one query cost (its share of the summed dns phase) against the textbook: one round
    trip plus the resolver's configured delay. With the cache off every new connection
    queries; with it on, only a client's first lookup (per TTL) does."""
    link, phases = row.get("link"), row.get("phases_ms")
    if row.get("dns_cache") is None or not phases:
        return None
    requests = sum(phases[w]["dns"]["n"] for w in phases if "dns" in phases[w])
    total_ms = sum(phases[w]["dns"]["mean"] * phases[w]["dns"]["n"]
                   for w in phases if "dns" in phases[w])
    queries = row.get("dns_queries") or 0
    rtt = (link or {}).get("rtt_ms") or 0.0
    expected_ms = rtt + delay_ms
    per_query = total_ms / queries if queries else None
    cold = phases.get("cold", {}).get("dns", {}).get("n", 0)
    if row["dns_cache"]:
        queries_ok = queries <= max(1, row.get("concurrency") or 1)
        expect_queries = "the first lookup only"
    else:
        queries_ok = queries == cold
        expect_queries = "one per new connection"
    cost_ok = per_query is None or not rtt or abs(per_query - expected_ms) <= TOLERANCE_RTT * rtt
    return {"cell": row["cell"], "cache": row["dns_cache"], "requests": requests,
            "new_connections": cold, "queries": queries, "expect_queries": expect_queries,
            "per_query_ms": per_query, "expected_ms": expected_ms, "rtt_ms": rtt,
            "delay_ms": delay_ms, "per_request_ms": total_ms / requests if requests else None,
            "agrees": queries_ok and cost_ok}
