"""The blocking client path (clients.blocking.rest, http1_sync, curl_sync; harness.run.load.loadgen's
closed loop of one user) against the real servers and small in-test servers.

It must measure what the asyncio path measures: the same vectors, the same ordered
stamps, the same error classes, the request timeout, connection reuse as the policy
says; and LoadRunner must choose it exactly when a worker has one user on one
keep-alive connection (for libcurl, also above one user: tests/integration/test_multi_path.py),
and say so in its result.
"""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from clients import open_client
from clients.base import (ConnectError, ConnectionLost, FallbackError, ProtocolViolation,
                          ServerError, Target)
from clients.blocking.rest import blocking_client
from clients.transport.wire import METER
from harness.run.job import LoadJob
from harness.scenario.model import Workload
from harness.run.load.loadgen import LoadRunner
from harness.measure.recorder import Recorder
from servers import core

EMBED = {"input": ["the quick brown fox", "jumps over"], "dimensions": 256,
         "model": "wirebench-embed-1", "wirebench": {"seed": 7}}
OK = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
      b"server-timing: app;dur=0.250\r\ncontent-length: %d\r\n\r\n%s")
BODY = orjson.dumps({"object": "list", "data": [
    {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}]})

# (engine, cell): cell as in test_curl_engine (h2 = TLS, h2c = cleartext prior knowledge)
PATHS = [("python", "h1"), ("python", "h2"), ("python", "h2c"), ("curl", "h1"), ("curl", "h2"),
         ("curl", "h2c")]


def real_target(servers, tls_files, cell: str) -> Target:
    kind = "h1" if cell == "h1" else "h2"
    srv = servers.start(kind, extra=[] if kind == "h1" else ["--h2c-port", "0"])
    port = srv.info["h2c_port"] if cell == "h2c" else srv.port
    return Target(port=port, ca=tls_files.ca, **({"tls": False} if cell == "h2c" else {}))


def protocol(cell: str) -> str:
    return "rest-h1" if cell == "h1" else "rest-h2"


class RawServer:
    """A threaded TCP server: `handle(conn, n)` serves the n-th connection."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            n, self.accepted = self.accepted, self.accepted + 1
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket, n: int) -> None:
        try:
            self.handle(conn, n)
        except OSError:
            pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(2)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")]
    while length and len(rest) < length[0]:
        rest += conn.recv(65536)
    return head


def answering(*answers: bytes, close_after: bool = False):
    """A handler that answers each request on a connection with the next answer."""
    def handle(conn: socket.socket, n: int) -> None:
        for answer in answers:
            if not read_request(conn):
                return
            conn.sendall(answer)
            if close_after:
                time.sleep(0.02)
                conn.close()
                return
    return handle


@pytest.fixture
def raw_server():
    made: list[RawServer] = []

    def make(handle) -> RawServer:
        made.append(RawServer(handle))
        return made[-1]

    yield make
    for s in made:
        s.close()


async def run_job(job: LoadJob) -> tuple[str, Recorder]:
    """Warm up and measure one LoadJob: (the client path it ran, its Recorder)."""
    runner = LoadRunner(job)
    try:
        await runner.warmup()
        result = await runner.measure()
    finally:
        await runner.close()
    return result.client_path, Recorder.from_json(result.recorder)


def client_for(engine: str, port: int, timeout_s: float = 5.0, cell: str = "h1"):
    c = blocking_client(protocol(cell), engine,
                        Target(port=port, **({"tls": False} if cell == "h2c" else {})),
                        reuse=True, timeout_s=timeout_s)
    assert c is not None
    return c


# ------------------------------------------------------------------ real servers

@pytest.mark.parametrize("engine,cell", PATHS)
async def test_same_vectors_and_ordered_stamps_as_the_async_path(servers, tls_files,
                                                                 engine, cell):
    target = real_target(servers, tls_files, cell)
    expected = core.embed_batch(core.parse_embed_request(EMBED)).tobytes()
    async with open_client(protocol(cell), target, engine=engine) as ac:
        ref = await ac.embed(EMBED)
    c = blocking_client(protocol(cell), engine, target, reuse=True, timeout_s=10)
    assert c is not None and c.path_name.startswith("blocking: ")
    wire0 = METER.snapshot()
    try:
        first, second = c.embed_sync(EMBED), c.embed_sync(EMBED)
    finally:
        c.close()
    wire = {k: v - wire0[k] for k, v in METER.snapshot().items()}
    for r in (first, second):
        assert r.vectors.dtype.str == "<f4" and r.vectors.tobytes() == expected
        assert r.vectors.tobytes() == ref.vectors.tobytes()
        assert r.payload_up == ref.payload_up and r.payload_down == ref.payload_down
        assert r.server_time_us is not None and r.server_time_us > 0
        assert r.t_start_ns < r.t_first_byte_ns <= r.t_received_ns <= r.t_decoded_ns
        # causality on one clock: the server's own time fits inside the first byte
        assert r.t_first_byte_ns - r.t_start_ns >= r.server_time_us * 1000 * 0.5
        assert (r.extra.get("curl_phases") is not None) == (engine == "curl")
    # keep-alive: one connection for both requests
    assert first.new_connection and first.connect_ns > 0
    assert not second.new_connection and second.connect_ns is None
    # lifecycle phases (curl -w style, cumulative us): the python path stamps its own,
    # libcurl hands over curl's; cold ones include the connect, warm ones none
    for r, cold in ((first, True), (second, False)):
        ph = r.extra.get("phases") or r.extra["curl_phases"]
        assert (ph["connect"] > 0) is cold, ph
        assert ph["connect"] <= ph["pretransfer"] <= ph["starttransfer"] <= ph["total"]
        assert ph["total"] <= (r.t_received_ns - r.t_start_ns) // 1000 + 1
    # the socket-level wire counters saw both requests and responses
    assert wire["up"] > 2 * first.payload_up and wire["down"] > 2 * first.payload_down


@pytest.mark.parametrize("engine,cell", [("curl", "h1"), ("curl", "h2"), ("python", "h1")])
async def test_environment_proxies_do_not_reroute_the_measured_traffic(servers, tls_files,
                                                                       monkeypatch, engine, cell):
    # libcurl honours these by default: the run would measure (or fail on) the proxy.
    # Its lookup happens per transfer, so setting them now reaches the engine.
    with socket.socket() as dead:               # bound, never listening: refuses
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for var in ("http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(var, proxy)
        target = real_target(servers, tls_files, cell)
        async with open_client(protocol(cell), target, engine=engine) as ac:
            first = await ac.embed(EMBED)
        c = blocking_client(protocol(cell), engine, target, reuse=True, timeout_s=10)
        try:
            second = c.embed_sync(EMBED)
        finally:
            c.close()
    for r in (first, second):
        assert r.vectors.shape == (2, 256) and r.server_time_us > 0


@pytest.mark.parametrize("engine,cell", [("curl", "h1"), ("curl", "h2c"), ("python", "h1")])
def test_overlapped_steps_pair_each_response_with_its_request(servers, tls_files, engine,
                                                              cell):
    """send N+1 before N is completed (as the overlapped loop does; the libcurl client
    alternates two handles and builds N's result only then): every result is its own
    request's, and all of them share the one kept connection."""
    target = real_target(servers, tls_files, cell)
    requests = [{**EMBED, "input": [f"request {i}"]} for i in range(12)]
    expected = [core.embed_batch(core.parse_embed_request(r)).tobytes() for r in requests]
    c = blocking_client(protocol(cell), engine, target, reuse=True, timeout_s=10)
    assert c is not None and c.can_overlap
    results = []
    try:
        got = c.receive(c.send(requests[0]))
        for req in requests[1:]:
            sent = c.send(req)                  # N+1 out, N not yet completed
            results.append(c.complete(got))
            got = c.receive(sent)
        results.append(c.complete(got))
        results.append(c.embed_sync(requests[0]))      # the one-call path after it
    finally:
        c.close()
    assert [r.vectors.tobytes() for r in results] == expected + expected[:1]
    assert [r.new_connection for r in results] == [True] + [False] * 12
    for r in results:
        assert r.t_start_ns < r.t_first_byte_ns <= r.t_received_ns <= r.t_decoded_ns
    for before, after in zip(results, results[1:-1]):
        assert after.t_start_ns >= before.t_received_ns     # one request on the wire


@pytest.mark.parametrize("engine,cell", PATHS)
async def test_load_runner_chooses_and_records_the_path(servers, tls_files, engine, cell):
    target = real_target(servers, tls_files, cell)
    tdict = Target(host=target.host, port=target.port, ca=target.ca,
                   **({"tls": False} if cell == "h2c" else {}))
    workload = {"type": "embed", "batch_size": 1, "dimensions": 8, "input_words": 4,
                "distinct_inputs": 1, "encoding": "float", "compute_ms": 0,
                "server_cache": False}

    async def run(**kw) -> tuple[str, Recorder]:
        return await run_job(LoadJob(protocol=protocol(cell), target=tdict,
                                     workload=Workload.from_dict(workload), mode="closed",
                                     engine=engine, requests=30, warmup=3, **kw))

    path, rec = await run(concurrency=1)
    assert path.startswith("blocking: ") and rec.n == 30 and not rec.errors
    assert ", decode overlapped" in path, path     # "(N late reads)" on a busy machine
    assert rec.hist["latency"].count == 30 and rec.hist["server_time"].count == 30
    assert rec.new_connections == 0          # the warmup opened the one connection
    path, rec = await run(concurrency=1, client_path="sequential")
    assert path.startswith("blocking: ") and "overlapped" not in path and rec.n == 30
    path, rec = await run(concurrency=1, client_path="async")
    assert path == "asyncio" and rec.n == 30 and not rec.errors
    path, rec = await run(concurrency=2)        # libcurl's users share one multi
    assert rec.n == 30 and not rec.errors
    assert path == ("blocking: libcurl multi, 2 users, decode overlapped" if engine == "curl"
                    else "asyncio"), path
    path, rec = await run(concurrency=2, stagger_ms=1)      # staggered starts: asyncio
    assert path == "asyncio" and rec.n == 30
    path, rec = await run(concurrency=1, reuse=False)      # new connection per request
    assert path == "asyncio" and rec.new_connections == 30
    with pytest.raises(ValueError, match="no blocking client path"):
        LoadRunner(LoadJob(protocol=protocol(cell), target=tdict, workload=Workload.from_dict(workload),
                           mode="closed", engine=engine, concurrency=2, requests=1,
                           reuse=False, client_path="blocking"))


async def test_server_error_status_is_a_server_error(servers, tls_files):
    for engine, cell in (("python", "h1"), ("python", "h2"), ("python", "h2c"),
                         ("curl", "h2c")):
        c = blocking_client(protocol(cell), engine, real_target(servers, tls_files, cell),
                            reuse=True, timeout_s=5)
        try:
            with pytest.raises(ServerError) as err:
                c.embed_sync({"input": "a", "dimensions": 0})
            assert err.value.status == 400
            assert c.embed_sync(EMBED).vectors.shape == (2, 256)   # connection still good
        finally:
            c.close()


# ------------------------------------------------------------------ in-test servers

@pytest.mark.parametrize("engine", ["python", "curl"])
def test_errors_are_classed(raw_server, engine):
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    c = client_for(engine, port)
    with pytest.raises(ConnectError):
        c.embed_sync(EMBED)
    c.close()
    cases = [
        (answering(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}"), FallbackError),
        (answering(b"NONSENSE\r\n\r\n"), ProtocolViolation),
        (answering(OK[:-2] % len(BODY) + BODY[:10], close_after=True), ConnectionLost),
    ]
    for handle, exc in cases:
        srv = raw_server(handle)
        c = client_for(engine, srv.port)
        with pytest.raises(exc):
            c.embed_sync(EMBED)
        c.close()


def test_h2c_against_an_http1_server_is_a_fallback(raw_server):
    srv = raw_server(answering(OK % (len(BODY), BODY)))
    c = client_for("curl", srv.port, cell="h2c")
    try:
        with pytest.raises((FallbackError, ProtocolViolation, ConnectionLost)) as err:
            c.embed_sync(EMBED)
        assert not isinstance(err.value, ConnectionLost) or "HTTP/2" in str(err.value)
    finally:
        c.close()


@pytest.mark.parametrize("engine", ["python", "curl"])
def test_request_timeout_is_honoured(raw_server, engine):
    def silent(conn, n):
        read_request(conn)
        time.sleep(2)

    srv = raw_server(silent)
    c = client_for(engine, srv.port, timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(Exception) as err:
        c.embed_sync(EMBED)
    took = time.monotonic() - t0
    c.close()
    assert getattr(err.value, "kind", None) == "timeout", err.value
    assert 0.25 <= took < 0.8, took


@pytest.mark.parametrize("engine", ["python", "curl"])
def test_server_closing_idle_connection_is_retried_on_a_new_one(raw_server, engine):
    srv = raw_server(answering(OK % (len(BODY), BODY), close_after=True))
    c = client_for(engine, srv.port)
    try:
        first = c.embed_sync(EMBED)
        time.sleep(0.1)                     # the server closed it meanwhile
        second = c.embed_sync(EMBED)
    finally:
        c.close()
    assert first.new_connection and second.new_connection
    assert second.vectors.tolist() == [[0.5, -0.25]] and srv.accepted == 2


def test_python_blocking_h1_chunked_interim_and_connection_close(raw_server):
    chunks = BODY[:7], BODY[7:]
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
               b"server-timing: app;dur=1.5\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
    closing = (b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: %d\r\n\r\n%s"
               % (len(BODY), BODY))
    srv = raw_server(answering(chunked, OK % (len(BODY), BODY), closing, OK % (len(BODY), BODY)))
    c = client_for("python", srv.port)
    try:
        rs = [c.embed_sync(EMBED) for _ in range(4)]
    finally:
        c.close()
    assert all(r.vectors.tolist() == [[0.5, -0.25]] for r in rs)
    assert rs[0].server_time_us == 1500 and rs[1].server_time_us == 250
    assert rs[0].payload_down == len(BODY)
    # reused until the server said close, then a new connection
    assert [r.new_connection for r in rs] == [True, False, False, True]
    assert srv.accepted == 2


def test_python_blocking_h1_large_body_in_many_reads(raw_server):
    vec = [0.001 * i for i in range(60_000)]
    body = orjson.dumps({"object": "list", "data": [
        {"object": "embedding", "index": 0, "embedding": vec}]})

    def slow(conn, n):
        read_request(conn)
        msg = OK % (len(body), body)
        for i in range(0, len(msg), 100_000):
            conn.sendall(msg[i:i + 100_000])
            time.sleep(0.01)
        read_request(conn)

    srv = raw_server(slow)
    c = client_for("python", srv.port)
    try:
        r = c.embed_sync(EMBED)
    finally:
        c.close()
    assert r.payload_down == len(body) and r.vectors.shape == (1, 60_000)
    assert r.t_received_ns - r.t_first_byte_ns >= 10_000_000     # the last read's time


# ------------------------------------------------------------------ the overlapped loop

def _run_loop(port: int, requests: int, engine: str = "python"):
    """The overlapped one-user loop against a server: (loop, recorder, requests done)."""
    from harness.run.load.blocking_loop import BlockingLoop
    c, rec, done = client_for(engine, port, timeout_s=10), Recorder(), []
    loop = BlockingLoop(c, lambda: EMBED, rec, lambda: done.append(1), overlap=True)
    try:
        loop.run(requests, None)
    finally:
        c.close()
    return loop, rec, len(done)


@pytest.mark.parametrize("engine", ["python", "curl"])
def test_overlapped_loop_keeps_one_request_on_the_wire(raw_server, engine):
    """Request N+1 leaves only after response N fully arrived, and a server answering
    later than the decode takes gives no late read."""
    vec = [0.5] * 256
    body = orjson.dumps({"object": "list", "data": [
        {"object": "embedding", "index": i, "embedding": vec} for i in range(2)]})
    outstanding, worst = [0], [0]

    def handle(conn, n):
        while read_request(conn):
            outstanding[0] += 1
            worst[0] = max(worst[0], outstanding[0])
            time.sleep(0.005)               # far longer than decoding 2 x 256 floats
            outstanding[0] -= 1
            conn.sendall(OK % (len(body), body))

    loop, rec, done = _run_loop(raw_server(handle).port, 40, engine)
    assert done == rec.n == 40 and not rec.errors
    assert worst[0] == 1 and loop.late_reads == 0 and loop.overlap
    assert rec.hist["decode"].count == 40


# A server in its own process: a thread of this one would need the GIL that the
# client's decode holds, and answer only after it, whatever the timing under test.
_PROC_SERVER = """
import socket, sys, time
vec = ",".join(str(0.001 * i) for i in range(60_000))
body = ('{"object":"list","data":[{"object":"embedding","index":0,"embedding":[%s]}]}'
        % vec).encode()
resp = (b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
        b"content-length: %d\\r\\n\\r\\n" % len(body)) + body
every = int(sys.argv[1])      # answer at once 1 in `every` requests, else after 30 ms
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
data, i = b"", 0
while True:
    while b"\\r\\n\\r\\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit(0)
        data += chunk
    head, _, rest = data.partition(b"\\r\\n\\r\\n")
    n = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
    while len(rest) < n:
        rest += conn.recv(65536)
    data = rest[n:]
    if i % every:
        time.sleep(0.03)
    conn.sendall(resp)
    i += 1
"""


@pytest.fixture
def proc_server():
    import subprocess
    import sys
    made = []

    def start(every: int):
        p = subprocess.Popen([sys.executable, "-c", _PROC_SERVER, str(every)],
                             stdout=subprocess.PIPE, text=True)
        made.append(p)
        return int(p.stdout.readline())

    yield start
    for p in made:
        p.kill()
        p.wait()


@pytest.mark.parametrize("engine", ["python", "curl"])
def test_overlapped_loop_goes_sequential_when_decode_outlasts_the_server(proc_server,
                                                                          engine):
    """A big body answered at once: the next response is already waiting when the
    decode ends, so the loop counts late reads and stops overlapping after LATE_LIMIT."""
    from harness.run.load.blocking_loop import LATE_LIMIT
    loop, rec, done = _run_loop(proc_server(1), 30, engine)
    assert done == rec.n == 30 and not rec.errors
    assert loop.late_reads == LATE_LIMIT and not loop.overlap
    assert Recorder.from_json(rec.to_json()).late_reads == LATE_LIMIT    # into the row


def test_overlapped_loop_keeps_overlapping_through_rare_late_reads(proc_server,
                                                                   monkeypatch):
    """Late reads at or under LATE_SHARE of the requests (a preempted client, a GC
    pause) are counted, and the overlap goes on; over it, the loop goes sequential."""
    import harness.run.load.blocking_loop as bl
    monkeypatch.setattr(bl, "LATE_SHARE", 0.2)
    loop, rec, done = _run_loop(proc_server(10), 40)    # 1 in 10 answered at once
    assert done == rec.n == 40 and 1 <= loop.late_reads <= 8 and loop.overlap
    monkeypatch.setattr(bl, "LATE_SHARE", 0.05)
    loop, rec, done = _run_loop(proc_server(10), 60)
    assert loop.late_reads >= 3 and not loop.overlap


@pytest.mark.parametrize("engine", ["python", "curl"])
def test_overlapped_loop_records_errors_and_goes_on(raw_server, engine):
    """A server error status and a dropped connection are recorded per request; the
    loop reconnects and finishes its count."""
    vec = [0.5] * 8
    good = orjson.dumps({"object": "list", "data": [{"object": "embedding", "index": 0,
                                                     "embedding": vec}]})
    bad = b'{"error": {"message": "no", "type": "invalid_request_error"}}'
    err = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
           b"content-length: %d\r\n\r\n%s" % (len(bad), bad))

    def handle(conn, n):
        for i in range(4):
            if not read_request(conn):
                return
            if n == 0 and i == 3:
                conn.close()                # mid-exchange: no response at all
                return
            conn.sendall(err if i == 1 else OK % (len(good), good))
        while read_request(conn):
            conn.sendall(OK % (len(good), good))

    loop, rec, done = _run_loop(raw_server(handle).port, 10, engine)
    assert done == 10 and rec.n + sum(rec.errors.values()) == 10
    assert set(rec.errors) >= {"server"} and sum(rec.errors.values()) >= 2, rec.errors



@pytest.mark.parametrize("cell", ["h1", "h2c"])
def test_curl_send_after_an_unreceived_request_starts_clean(servers, tls_files, cell):
    """A request whose response was never received (its receive cut off) is dropped by
    the next send; that one gets its own, whole response."""
    target = real_target(servers, tls_files, cell)
    c = blocking_client(protocol(cell), "curl", target, reuse=True, timeout_s=10)
    assert c is not None
    try:
        c.send(EMBED)                           # never received
        result = c.complete(c.receive(c.send({**EMBED, "input": ["the second"]})))
        again = c.embed_sync(EMBED)
    finally:
        c.close()
    second = {**EMBED, "input": ["the second"]}
    assert result.vectors.tobytes() == core.embed_batch(
        core.parse_embed_request(second)).tobytes()
    assert again.vectors.tobytes() == core.embed_batch(core.parse_embed_request(EMBED)).tobytes()
