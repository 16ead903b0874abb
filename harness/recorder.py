"""What one worker measured at one load point: histograms and counters, mergeable.

Every formula lives here once (DESIGN.md section 4); result files repeat them:
- latency: request start (open loop: the *intended* start) to response received and
  decoded; service_time: actual start to the same end (open loop only differs).
- overhead: latency - server-reported time. decode: received -> decoded.
- ttft: start -> first token received; ttst: start -> second token; e2e: start -> end;
  itl: gaps between successive received chunks (pooled over requests);
  tpot: (e2e - ttft) / (tokens - 1); owd: token receive - server emit stamp (one host,
  one CLOCK_MONOTONIC); tokens_per_chunk: tokens that arrived in one read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clients.base import StreamResult, UnaryResult

from .stats import Histogram

FORMULAS = {
    "latency": "intended start (open loop) or start (closed loop) -> response received and decoded",
    "service_time": "actual start -> response received and decoded",
    "overhead": "latency - server time (Server-Timing / trailing metadata / WS field)",
    "decode": "response fully received -> decoded into vectors",
    "server_time": "server: request received -> response ready (as it reports it)",
    "connect": "connection setup incl. TLS/QUIC handshake, on requests that opened one",
    "ttft": "start -> first content token received",
    "ttst": "start -> second token received",
    "itl": "gap between successive received chunks (pooled)",
    "tpot": "(e2e - ttft) / (tokens - 1)",
    "e2e": "start -> end of stream received",
    "owd": "token receive time - server emit stamp (same host clock)",
    "payload": "serialized request/response message bytes (no transport framing)",
    "late_start": "open loop: request started > 1 ms after its intended time",
    "ttfb": "start -> first response byte (headers / first frame), as the harness sees it",
    "phase_*_cold|warm": "the request lifecycle, curl -w style, for requests that opened "
                         "a connection (cold) or reused one (warm): dns = name lookup; tcp = "
                         "TCP connect; tls = TLS handshake (QUIC: the whole QUIC handshake; "
                         "WebSocket: the upgrade); send = until the request was written; "
                         "wait = request written -> first response byte; transfer = first "
                         "-> last byte; total = start -> last byte",
    "curl_*": "libcurl's own phase times for the same request (connect, appconnect = TLS "
              "or QUIC done, starttransfer = first byte, total), from its start",
}

# Request lifecycle phases (durations), for requests that opened a connection ("cold")
# and those that reused one ("warm"), from the client's curl -w style stamps.
PHASES = ("dns", "tcp", "tls", "send", "wait", "transfer", "total")
PHASE_HISTOGRAMS = tuple(f"phase_{p}_{w}" for w in ("cold", "warm") for p in PHASES)

HISTOGRAMS = ("latency", "service_time", "overhead", "decode", "server_time", "connect",
              "ttft", "ttst", "itl", "tpot", "e2e", "owd", "ttfb",
              "curl_connect", "curl_appconnect", "curl_starttransfer",
              "curl_total") + PHASE_HISTOGRAMS
LATE_NS = 1_000_000


@dataclass
class Recorder:
    hist: dict[str, Histogram] = field(default_factory=lambda: {k: Histogram() for k in HISTOGRAMS})
    n: int = 0
    errors: Counter = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    payload_up: int = 0
    payload_down: int = 0
    new_connections: int = 0
    tokens: int = 0
    chunks: int = 0
    late_starts: int = 0
    rows: list[tuple] | None = None       # per-request rows when asked
    traces: list[dict] | None = None      # per-stream token traces when asked (hol.StreamTrace)

    def unary(self, r: UnaryResult, intended_ns: int | None) -> None:
        self.n += 1
        intended_ns = r.t_start_ns if intended_ns is None else intended_ns
        end = r.t_decoded_ns
        self.hist["latency"].record_ns(end - intended_ns)
        self.hist["service_time"].record_ns(end - r.t_start_ns)
        self.hist["decode"].record_ns(r.decode_ns)
        if r.server_time_us is not None:
            st = int(r.server_time_us * 1000)
            self.hist["server_time"].record_ns(st)
            self.hist["overhead"].record_ns(end - r.t_start_ns - st)
        self._common(r, intended_ns, end)

    def stream(self, r: StreamResult, intended_ns: int | None) -> None:
        self.n += 1
        intended_ns = r.t_start_ns if intended_ns is None else intended_ns
        toks = r.tokens
        self.hist["latency"].record_ns(r.t_end_ns - intended_ns)
        self.hist["service_time"].record_ns(r.t_end_ns - r.t_start_ns)
        self.hist["e2e"].record_ns(r.t_end_ns - r.t_start_ns)
        if r.server_time_us is not None:
            st = int(r.server_time_us * 1000)
            self.hist["server_time"].record_ns(st)
            self.hist["overhead"].record_ns(r.t_end_ns - r.t_start_ns - st)
        if toks:
            ttft = toks[0].recv_ns - r.t_start_ns
            self.hist["ttft"].record_ns(ttft)
            if len(toks) > 1:
                self.hist["ttst"].record_ns(toks[1].recv_ns - r.t_start_ns)
                self.hist["tpot"].record_ns((toks[-1].recv_ns - r.t_start_ns - ttft)
                                            // (len(toks) - 1))
            prev = None
            for t in toks:
                if t.emit_ns is not None:
                    self.hist["owd"].record_ns(t.recv_ns - t.emit_ns)
                if t.recv_ns != prev:
                    if prev is not None:
                        self.hist["itl"].record_ns(t.recv_ns - prev)
                    self.chunks += 1
                    prev = t.recv_ns
            self.tokens += len(toks)
        self._common(r, intended_ns, r.t_end_ns)

    def trace(self, r: StreamResult, connection: str) -> None:
        """Keep one stream's tokens as the head-of-line analysis reads them."""
        self.traces.append({"connection": connection,
                            "client_port": r.extra.get("local_port"),
                            "t_start_ns": r.t_start_ns,
                            "tokens": [(t.index, t.emit_ns, t.recv_ns) for t in r.tokens],
                            "error": None})

    def _phases(self, stamps: dict[str, int | None], cold: bool) -> None:
        """Durations from cumulative us stamps since the request start (curl -w names:
        namelookup, connect, appconnect, pretransfer, starttransfer, total)."""
        def at(name: str) -> int:
            return stamps.get(name) or 0
        dns, tcp_done = at("namelookup"), at("connect")
        tls_done = at("appconnect") or tcp_done
        sent = at("pretransfer") or tls_done
        first, total = at("starttransfer"), at("total")
        which = "cold" if cold else "warm"
        for name, us in (("dns", dns), ("tcp", tcp_done - dns if tcp_done else 0),
                         ("tls", tls_done - tcp_done), ("send", sent - tls_done),
                         ("wait", first - sent), ("transfer", total - first),
                         ("total", total)):
            self.hist[f"phase_{name}_{which}"].record_ns(max(0, us) * 1000)

    def _common(self, r: Any, intended_ns: int, end_ns: int) -> None:
        self.hist["ttfb"].record_ns(r.t_first_byte_ns - r.t_start_ns)
        stamps = r.extra.get("phases") or r.extra.get("curl_phases")
        if stamps:
            self._phases(stamps, r.new_connection)
        phases = r.extra.get("curl_phases")
        if phases:
            for name in ("starttransfer", "total"):
                self.hist[f"curl_{name}"].record_ns(phases[name] * 1000)
            if phases["connect"]:          # only requests that opened a connection
                self.hist["curl_connect"].record_ns(phases["connect"] * 1000)
                if phases["appconnect"]:
                    self.hist["curl_appconnect"].record_ns(phases["appconnect"] * 1000)
        self.payload_up += r.payload_up
        self.payload_down += r.payload_down
        if r.new_connection:
            self.new_connections += 1
            if r.connect_ns is not None:
                self.hist["connect"].record_ns(r.connect_ns)
        if r.t_start_ns - intended_ns > LATE_NS:
            self.late_starts += 1
        if self.rows is not None:
            self.rows.append((intended_ns, r.t_start_ns, end_ns, r.payload_up, r.payload_down,
                              r.server_time_us, int(r.new_connection), ""))

    def error(self, kind: str, message: str, intended_ns: int | None, start_ns: int,
              end_ns: int) -> None:
        self.errors[kind] += 1
        intended_ns = start_ns if intended_ns is None else intended_ns
        self.error_samples.setdefault(kind, message[:300])
        if start_ns - intended_ns > LATE_NS:
            self.late_starts += 1
        if self.rows is not None:
            self.rows.append((intended_ns, start_ns, end_ns, 0, 0, None, 0, kind))

    # ---------------------------------------------------------------- transport

    def to_json(self) -> dict[str, Any]:
        return {"hist": {k: h.encode() for k, h in self.hist.items() if h.count},
                "n": self.n, "errors": dict(self.errors), "error_samples": self.error_samples,
                "payload_up": self.payload_up, "payload_down": self.payload_down,
                "new_connections": self.new_connections, "tokens": self.tokens,
                "chunks": self.chunks, "late_starts": self.late_starts,
                "rows": self.rows, "traces": self.traces}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Recorder":
        rec = cls()
        for k, enc in data["hist"].items():
            rec.hist[k] = Histogram.decode(enc)
        rec.errors = Counter(data["errors"])
        rec.error_samples = dict(data["error_samples"])
        for k in ("n", "payload_up", "payload_down", "new_connections", "tokens", "chunks",
                  "late_starts"):
            setattr(rec, k, data[k])
        rec.rows = data.get("rows")
        rec.traces = data.get("traces")
        return rec

    def merge(self, other: "Recorder") -> None:
        for k, h in other.hist.items():
            self.hist[k].merge(h)
        self.errors.update(other.errors)
        for k, v in other.error_samples.items():
            self.error_samples.setdefault(k, v)
        for k in ("n", "payload_up", "payload_down", "new_connections", "tokens", "chunks",
                  "late_starts"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        if other.rows is not None:
            self.rows = (self.rows or []) + other.rows
        if other.traces is not None:
            self.traces = (self.traces or []) + other.traces

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())
