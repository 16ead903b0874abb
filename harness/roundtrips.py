"""Round trips before the first response byte: the textbook count next to the measured
one (time to first byte over the emulated RTT), per protocol, TLS version and policy.

Textbook: a new TCP connection costs one round trip (the client's first data rides on
the handshake's last ACK), TLS 1.3 one more, TLS 1.2 two, a QUIC handshake one (TLS 1.3
inside it), QUIC 0-RTT none, a WebSocket upgrade one, and the request itself one. A
reused connection pays only the request's. DNS is counted apart (its own phase).
"""

from __future__ import annotations

from typing import Any

from .cells import parse_cell

TOLERANCE_RTT = 0.25          # flag a disagreement larger than a quarter round trip


def textbook(protocol_id: str, *, cold: bool, tls: bool, tls_version: str = "1.3",
             zero_rtt: bool = False) -> tuple[int, str]:
    """(round trips to the first byte, how they add up)."""
    kind = parse_cell(protocol_id).kind
    if not cold:
        return 1, "request"
    if kind == "h3":
        return (1, "0-RTT request") if zero_rtt else (2, "QUIC handshake + request")
    parts = [("TCP", 1)]
    if kind == "ws":
        parts.append(("WebSocket upgrade", 1))
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


def accounting(row: dict[str, Any], *, tls: bool, tls_version: str,
               zero_rtt: bool = False) -> list[dict[str, Any]]:
    """Per cold/warm: textbook vs measured round trips for one result row."""
    link, phases = row.get("link"), row.get("phases_ms")
    if not link or not phases or not link.get("rtt_ms"):
        return []
    out = []
    for which in ("cold", "warm"):
        if which not in phases:
            continue
        expected, how = textbook(row["cell"], cold=which == "cold", tls=tls,
                                 tls_version=tls_version, zero_rtt=zero_rtt and which == "cold")
        got = measured_round_trips(phases[which], link["rtt_ms"])
        if got is None:
            continue
        dns = phases[which].get("dns", {}).get("p50") or 0.0
        out.append({"cell": row["cell"], "which": which, "textbook": expected, "how": how,
                    "measured": round(got, 2), "dns_round_trips": round(dns / link["rtt_ms"], 2),
                    "agrees": abs(got - expected) <= TOLERANCE_RTT, "rtt_ms": link["rtt_ms"]})
    return out
