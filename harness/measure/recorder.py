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

from harness.measure.stats import Histogram
from harness.measure.saturation import RULES as SATURATION_RULES

FORMULAS = {
    "server_bound / client_bound": SATURATION_RULES,
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
    "e2e": "start -> end of stream received (pipeline: of the whole user request)",
    "pipeline_ms": "pipeline user requests: mean ms per request by bucket along the critical "
                   "path (in each stage, the lane that ended last): dns; tcp_handshake; "
                   "tls_handshake (TLS, QUIC or WebSocket upgrade); round_trips = send + "
                   "wait for the first byte (streams: the last) - model; transfer = first -> "
                   "last byte; model = the server's own time; client = decoding and time "
                   "between calls; teardown = response end -> the client call returned "
                   "(closing a connection); unattributed = calls without phase stamps. "
                   "They sum to "
                   "the mean e2e",
    "owd": "token receive time - server emit stamp (same host clock)",
    "payload": "serialized request/response message bytes (no transport framing)",
    "late_start": "open loop: request started > 1 ms after its intended time",
    "ttfb": "start -> first response byte (headers / first frame), as the harness sees it",
    "phase_*_cold|warm": "the request lifecycle, curl -w style, for requests that opened "
                         "a connection (cold) or reused one (warm): dns = name lookup; tcp = "
                         "TCP connect; tls = TLS handshake (QUIC: the whole QUIC handshake; "
                         "WebSocket: the upgrade); send = until the request was written; "
                         "wait = request written -> first response byte; transfer = first "
                         "-> last byte; total = start -> last byte. QUIC 0-RTT: tls = 0 (the "
                         "request went in the first flight, not after the handshake)",
    "handshakes": "with resumption asked for: new connections by how their handshake went, "
                  "as the TLS stack reported it (full; session = resumed; 0rtt = resumed "
                  "and the request accepted as early data)",
    "curl_*": "libcurl's own phase times for the same request (connect, appconnect = TLS "
              "or QUIC done, starttransfer = first byte, total), from its start",
}

# Request lifecycle phases (durations), for requests that opened a connection ("cold")
# and those that reused one ("warm"), from the client's curl -w style stamps.
PHASES = ("dns", "tcp", "tls", "send", "wait", "transfer", "total")
PHASE_HISTOGRAMS = tuple(f"phase_{p}_{w}" for w in ("cold", "warm") for p in PHASES)
_PHASE_COLD = PHASE_HISTOGRAMS[:len(PHASES)]
_PHASE_WARM = PHASE_HISTOGRAMS[len(PHASES):]

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
    # With resumption asked for: new connections by how their handshake went
    # ("full", "session", "0rtt"; clients put it in extra["resumed"]).
    handshakes: Counter = field(default_factory=Counter)
    calls: int = 0                        # pipeline: calls made by the user requests
    dns_queries: int = 0                  # DNS queries the clients sent (the DNS step)
    late_reads: int = 0                   # one-user overlapped loop (harness.run.load.blocking_loop)
    pipeline_ns: dict[str, int] = field(default_factory=dict)   # bucket -> summed ns
    stages_ns: dict[str, int] = field(default_factory=dict)     # stage -> summed wall ns
    # Per-request SLO, metric -> limit in ns (latency, ttft, tpot, itl: the request's
    # largest gap): `good` counts the requests that kept every limit (goodput).
    slo_ns: dict[str, int] | None = None
    good: int = 0
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
        if self.slo_ns is not None:
            self.good += self.slo_ns.get("latency", end) >= end - intended_ns
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
        if self.slo_ns is not None:
            self.good += _stream_meets(self.slo_ns, r, intended_ns)
        self._common(r, intended_ns, r.t_end_ns)

    def pipeline(self, r: Any, intended_ns: int | None) -> None:
        """One pipeline user request (harness.run.load.pipeline.PipelineResult): its end-to-end
        time is the latency; its calls' phases, bytes and connections are recorded as
        the calls' own; its time by bucket and by stage is summed (means are additive,
        percentiles are not)."""
        self.n += 1
        intended_ns = r.t_start_ns if intended_ns is None else intended_ns
        self.hist["latency"].record_ns(r.t_end_ns - intended_ns)
        if self.slo_ns is not None:
            self.good += self.slo_ns.get("latency", r.t_end_ns) >= r.t_end_ns - intended_ns
        self.hist["service_time"].record_ns(r.e2e_ns)
        self.hist["e2e"].record_ns(r.e2e_ns)
        for bucket, ns in r.components_ns.items():
            self.pipeline_ns[bucket] = self.pipeline_ns.get(bucket, 0) + ns
        for stage, ns in r.stages_ns.items():
            self.stages_ns[stage] = self.stages_ns.get(stage, 0) + ns
        for call in r.calls:
            stamps = call.extra.get("phases") or call.extra.get("curl_phases")
            if stamps:
                self._phases(stamps, call.new_connection)
            self._bytes_and_connection(call)
        self.calls += len(r.calls)
        if r.t_start_ns - intended_ns > LATE_NS:
            self.late_starts += 1
        if self.rows is not None:
            self.rows.append((intended_ns, r.t_start_ns, r.t_end_ns,
                              sum(c.payload_up for c in r.calls),
                              sum(c.payload_down for c in r.calls), None,
                              sum(int(c.new_connection) for c in r.calls), ""))

    def trace(self, r: StreamResult, connection: str) -> None:
        """Keep one stream's tokens as the head-of-line analysis reads them."""
        self.traces.append({"connection": connection,
                            "client_port": r.extra.get("local_port"),
                            "t_start_ns": r.t_start_ns,
                            "tokens": [(t.index, t.emit_ns, t.recv_ns) for t in r.tokens],
                            "error": None})

    def _phases(self, stamps: dict[str, int | None], cold: bool) -> None:
        """Durations from cumulative us stamps since the request start (curl -w names:
        namelookup, connect, appconnect, pretransfer, starttransfer, total). Runs for
        every request, warm ones at concurrency 1 included: no closures or f-strings."""
        get = stamps.get
        dns, tcp_done = get("namelookup") or 0, get("connect") or 0
        tls_done = get("appconnect") or tcp_done
        sent = get("pretransfer") or tls_done
        first, total = get("starttransfer") or 0, get("total") or 0
        hist = self.hist
        n = _PHASE_COLD if cold else _PHASE_WARM     # dns tcp tls send wait transfer total
        hist[n[0]].record_ns(dns * 1000)
        hist[n[1]].record_ns(max(0, tcp_done - dns) * 1000 if tcp_done else 0)
        hist[n[2]].record_ns(max(0, tls_done - tcp_done) * 1000)
        hist[n[3]].record_ns(max(0, sent - tls_done) * 1000)
        hist[n[4]].record_ns(max(0, first - sent) * 1000)
        hist[n[5]].record_ns(max(0, total - first) * 1000)
        hist[n[6]].record_ns(total * 1000)

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
        self._bytes_and_connection(r)
        if r.t_start_ns - intended_ns > LATE_NS:
            self.late_starts += 1
        if self.rows is not None:
            self.rows.append((intended_ns, r.t_start_ns, end_ns, r.payload_up, r.payload_down,
                              r.server_time_us, int(r.new_connection), ""))

    def _bytes_and_connection(self, r: Any) -> None:
        """A request's payload bytes, and the connection it opened, if it opened one."""
        self.payload_up += r.payload_up
        self.payload_down += r.payload_down
        if r.new_connection:
            self.new_connections += 1
            if r.connect_ns is not None:
                self.hist["connect"].record_ns(r.connect_ns)
            resumed = r.extra.get("resumed")
            if resumed is not None:
                self.handshakes[resumed] += 1

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
                "handshakes": dict(self.handshakes),
                "calls": self.calls, "dns_queries": self.dns_queries,
                "late_reads": self.late_reads, "good": self.good,
                "pipeline_ns": self.pipeline_ns,
                "stages_ns": self.stages_ns, "rows": self.rows, "traces": self.traces}

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
        rec.calls = data.get("calls", 0)
        rec.dns_queries = data.get("dns_queries", 0)
        rec.late_reads = data.get("late_reads", 0)
        rec.good = data.get("good", 0)
        rec.pipeline_ns = dict(data.get("pipeline_ns") or {})
        rec.stages_ns = dict(data.get("stages_ns") or {})
        rec.handshakes = Counter(data.get("handshakes") or {})
        rec.rows = data.get("rows")
        rec.traces = data.get("traces")
        return rec

    def merge(self, other: "Recorder") -> None:
        for k, h in other.hist.items():
            self.hist[k].merge(h)
        self.errors.update(other.errors)
        self.handshakes.update(other.handshakes)
        for k, v in other.error_samples.items():
            self.error_samples.setdefault(k, v)
        for k in ("n", "payload_up", "payload_down", "new_connections", "tokens", "chunks",
                  "late_starts", "calls", "dns_queries", "late_reads", "good"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for mine, theirs in ((self.pipeline_ns, other.pipeline_ns),
                             (self.stages_ns, other.stages_ns)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        if other.rows is not None:
            self.rows = (self.rows or []) + other.rows
        if other.traces is not None:
            self.traces = (self.traces or []) + other.traces

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _stream_meets(slo_ns: dict[str, int], r: StreamResult, intended_ns: int) -> bool:
    """Whether one stream kept every per-request limit (a stream without tokens kept
    none of the token ones)."""
    if slo_ns.get("latency", r.t_end_ns) < r.t_end_ns - intended_ns:
        return False
    toks = r.tokens
    token_limits = ("ttft", "tpot", "itl")
    if not toks:
        return not any(k in slo_ns for k in token_limits)
    ttft = toks[0].recv_ns - r.t_start_ns
    if "ttft" in slo_ns and ttft > slo_ns["ttft"]:
        return False
    if len(toks) > 1:
        if "tpot" in slo_ns and (toks[-1].recv_ns - toks[0].recv_ns) // (len(toks) - 1) \
                > slo_ns["tpot"]:
            return False
        if "itl" in slo_ns and max(b.recv_ns - a.recv_ns for a, b in zip(toks, toks[1:])) \
                > slo_ns["itl"]:
            return False
    return True
