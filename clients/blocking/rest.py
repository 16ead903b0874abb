"""Blocking REST clients: the "blocking" client path for a closed loop of one user.

At concurrency 1 a closed loop runs client and server in turn, so every microsecond
the client spends per request is in series with the server's and lowers throughput
(benchmarks/README.md has the arithmetic). When a worker has exactly one user on one
keep-alive connection, nothing runs concurrently in it, and an event loop is pure
cost: harness.run.load.loadgen then runs that user's requests through one of these instead,
in a thread, each request a blocking call:

  engine "python", rest-h1 (cleartext, no DNS step): clients.blocking.http1, one socket
  engine "python", rest-h2 (TLS or h2c, no DNS step): clients.blocking.http2, one socket
  engine "curl",   rest-h1, rest-h2 (TLS or h2c) and rest-h3: clients.curl.sync,
                   libcurl easy (a CurlMulti when overlapped)

Both can send a request and read its response in two calls (`send`, `receive`, then
`complete` to decode and build the result), which harness.run.load.blocking_loop uses to decode
response N while request N+1 is with the server.

Above one user, the curl engine has one more (`multi_client`): C users' transfers on one
CurlMulti in one thread (clients.curl.multi_sync, driven by harness.run.load.multi_loop),
where the asyncio path would pay Python callbacks per socket event and a task step per
request.

`embed_sync` is `RestClient.embed` (clients.http_api) line for line, over a blocking
transport: the same request bytes, the same t_start (just before the transport call),
the same decode inside the latency (`decode_embeddings`, timed: t_decoded is
t_received plus the decode's duration), the same UnaryResult with the same lifecycle
phases, the same error classes; so every metric keeps its definition (DESIGN.md
section 4). `blocking_client` says which protocol / engine / target /
policy combinations have such a path (None: the asyncio path runs).
"""

from __future__ import annotations

from typing import Any

import orjson

from clients.base import Target, UnaryResult, auth_header, clock_ns
from clients.http_api import _POST_JSON
from clients.openai_codec import decode_embeddings, error_from_body, parse_server_timing
from clients.transport.phases import curl_style


# The curl engine's HTTP version per REST cell: each has a blocking path, so the three
# versions compared in one scenario run on the same kind of client loop.
CURL_VERSIONS = {"rest-h1": "1.1", "rest-h2": "2", "rest-h3": "3"}


class BlockingRestClient:
    """POST /v1/embeddings over a blocking transport; latency runs to the decoded vectors."""

    streaming = False

    def __init__(self, protocol: str, engine: str, transport: Any, target: Target) -> None:
        self.protocol = protocol
        self.engine = engine
        self.transport = transport
        self.target = target
        self._headers = _POST_JSON + auth_header(target)
        self._embeddings = target.base_path.encode() + b"/embeddings"

    @property
    def path_name(self) -> str:
        """What ran, for the results: e.g. 'blocking: libcurl easy'."""
        return f"blocking: {self.transport.path_name}"

    @property
    def can_overlap(self) -> bool:
        """Whether the request can be sent and its response read in two calls."""
        return hasattr(self.transport, "send_sync")

    def embed_sync(self, request: dict[str, Any]) -> UnaryResult:
        body = orjson.dumps(request)
        t_start = clock_ns()
        got = self.transport.fetch_sync(b"POST", self._embeddings, self._headers, body)
        return self.complete((t_start, len(body), got))

    # The same request in three steps, for the overlapped loop (harness.run.load.blocking_loop):
    # send, receive, and complete (decode and result), which may run after the next
    # request was sent.

    def send(self, request: dict[str, Any]) -> tuple[int, int, Any]:
        body = orjson.dumps(request)
        t_start = clock_ns()
        return t_start, len(body), self.transport.send_sync(
            b"POST", self._embeddings, self._headers, body)

    def receive(self, sent: tuple[int, int, Any]) -> tuple:
        t_start, up, pending = sent
        return t_start, up, self.transport.receive_sync(pending)

    def response_waiting(self) -> bool:
        return self.transport.response_waiting()

    def complete(self, got: tuple) -> UnaryResult:
        """Decode a received response into its result. The decode is timed on its own
        (t_decoded = t_received + its duration), so the latency means the same whether
        it ran at once or while the next request was on the wire."""
        t_start, up, received = got
        # A transport may hand over a received response before building its result (the
        # libcurl one: settle_sync, so that work runs after the next request was sent).
        resp, raw, t_received, phases = (received if isinstance(received, tuple)
                                         else self.transport.settle_sync(received))
        if resp.status != 200:
            raise error_from_body(resp.status, bytes(raw))
        t0 = clock_ns()
        vectors = decode_embeddings(raw)
        t_decoded = t_received + clock_ns() - t0
        result = UnaryResult(vectors, t_start, resp.t_first_byte_ns, t_received, t_decoded,
                             up, len(raw), parse_server_timing(resp.header(b"server-timing")),
                             resp.new_connection, resp.connect_ns)
        if resp.t_sent_ns:              # a transport that stamps the lifecycle (ours)
            result.extra["phases"] = curl_style(t_start, resp.opened, resp.t_sent_ns,
                                                resp.t_first_byte_ns, t_received)
        if phases is not None:          # libcurl's own phase times, in microseconds
            result.extra["curl_phases"] = phases
        return result

    def close(self) -> None:
        self.transport.close()


def blocking_client(protocol: str, engine: str, target: Target, *, reuse: bool,
                    timeout_s: float) -> BlockingRestClient | None:
    """The blocking client for this cell and policy, or None where there is none
    (streams, other protocols, a new connection per request, TLS or a DNS step on the
    python engine's HTTP/1.1, a DNS step on its HTTP/2)."""
    if not reuse or getattr(target, "resumption", None):
        return None         # new connections per request / session resumption: asyncio
    if engine == "python" and protocol == "rest-h1":
        if target.tls or target.dns is not None:
            return None
        from clients.blocking.http1 import BlockingH1Transport
        return BlockingRestClient(protocol, engine,
                                  BlockingH1Transport(target, timeout_s=timeout_s), target)
    if engine == "python" and protocol == "rest-h2":
        if target.dns is not None:
            return None
        from clients.blocking.http2 import BlockingH2Transport
        return BlockingRestClient(protocol, engine,
                                  BlockingH2Transport(target, timeout_s=timeout_s), target)
    if engine == "curl" and protocol in CURL_VERSIONS:
        from clients.curl.sync import CurlEasyTransport
        version = CURL_VERSIONS[protocol]
        return BlockingRestClient(protocol, engine,
                                  CurlEasyTransport(target, version=version,
                                                    timeout_s=timeout_s), target)
    return None


class MultiRestClient(BlockingRestClient):
    """C users' POST /v1/embeddings through one blocking multi transport
    (clients.curl.multi_sync): `send_user` adds user u's request, the transport's
    `drive` sends every request added, `wait` / `finish` hand back the ended ones, and
    `complete` (BlockingRestClient's) decodes one into its result."""

    can_overlap = True

    @property
    def users(self) -> int:
        return self.transport.users

    def send_user(self, user: int, request: dict[str, Any]) -> tuple[int, int]:
        """(t_start, request bytes): stamped just before the transport takes it, as
        `send` stamps."""
        body = orjson.dumps(request)
        t_start = clock_ns()
        self.transport.start(user, b"POST", self._embeddings, self._headers, body)
        return t_start, len(body)


def multi_client(protocol: str, engine: str, target: Target, *, users: int, clients: int,
                 reuse: bool, timeout_s: float, max_connections: int | None = None
                 ) -> MultiRestClient | None:
    """The blocking client for `users` concurrent users of this cell, where the asyncio
    path would run them on `clients` clients (each `max_connections` at most), or None
    where there is none. Only the curl engine's REST cells on kept connections have
    one, and only for the policies one CurlMulti reproduces: one client (HTTP/2's or
    HTTP/3's one connection; HTTP/1.1's pool of one per user, or of max_connections),
    or HTTP/1.1 with one single-connection client per user (the same number of
    connections, each carrying one request at a time)."""
    if engine != "curl" or protocol not in CURL_VERSIONS or not reuse \
            or getattr(target, "resumption", None):
        return None
    if clients > 1:
        if protocol != "rest-h1" or clients != users or max_connections not in (None, 1):
            return None
        max_connections = None          # the pool: one connection per user
    elif protocol != "rest-h1":
        max_connections = None
    from clients.curl.multi_sync import CurlMultiUsers
    version = CURL_VERSIONS[protocol]
    return MultiRestClient(protocol, engine,
                           CurlMultiUsers(target, version=version, users=users,
                                          timeout_s=timeout_s,
                                          max_connections=max_connections), target)
