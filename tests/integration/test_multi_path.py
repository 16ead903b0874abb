"""libcurl's users on one blocking CurlMulti (clients.curl.multi_sync, clients.blocking.rest's
multi_client, harness.run.load.multi_loop): the curl engine's closed loop above one user.

It must measure what the asyncio path measures: each user's own response, ordered
stamps, exactly `users` requests in flight (never more, and really that many at once),
the connection policy (HTTP/1.1 one connection per user, HTTP/2 one for all), errors
recorded while the other users go on, the request timeout and the stale-connection
retry.
"""

from __future__ import annotations

import threading
import time

import pytest

from clients.base import Target
from clients.blocking.rest import multi_client
from harness.measure.recorder import Recorder
from harness.run.load.multi_loop import MultiLoop
from servers import core
from tests.integration import test_blocking_path as blocking
from tests.integration.test_blocking_path import (
    BODY,
    EMBED,
    OK,
    answering,
    protocol,
    read_request,
    real_target,
    run_job,
)

raw_server = blocking.raw_server        # the fixture: small in-test HTTP/1.1 servers


class Collected(Recorder):
    """A Recorder that also keeps every result and error, in completion order."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list = []
        self.failures: list[tuple[str, str]] = []

    def unary(self, result, intended_ns):               # type: ignore[no-untyped-def]
        self.results.append(result)
        super().unary(result, intended_ns)

    def error(self, kind, message, intended_ns, start_ns, end_ns):   # type: ignore[no-untyped-def]
        self.failures.append((kind, message))
        super().error(kind, message, intended_ns, start_ns, end_ns)


def run_loop(client, requests, rec=None, overlap=True, duration_s=None):
    """Run the loop over `requests` (a list, handed out in order); the recorder."""
    rec = rec or Collected()
    feed = iter(requests)
    loop = MultiLoop(client, lambda: next(feed), rec, lambda: None, overlap=overlap)
    try:
        loop.run(len(requests), duration_s)
    finally:
        client.close()
    return rec


def raw_client(port: int, users: int, timeout_s: float = 5.0):
    c = multi_client("rest-h1", "curl", Target(port=port), users=users, clients=users,
                     reuse=True, timeout_s=timeout_s)
    assert c is not None
    return c


def target_of(servers, tls_files, cell: str) -> Target:
    if cell != "h3":
        return real_target(servers, tls_files, cell)
    return Target(port=servers.start("h3").port, ca=tls_files.ca)     # QUIC: aioquic


@pytest.mark.parametrize("cell", ["h1", "h2", "h2c", "h3"])
@pytest.mark.parametrize("overlap", [True, False])
def test_every_user_gets_its_own_response_with_ordered_stamps(servers, tls_files, cell,
                                                              overlap):
    target = target_of(servers, tls_files, cell)
    requests = [{**EMBED, "input": [f"request {i}"]} for i in range(24)]
    expected = {core.embed_batch(core.parse_embed_request(r)).tobytes() for r in requests}
    client = multi_client("rest-h3" if cell == "h3" else protocol(cell), "curl", target, users=4,
                          clients=4 if cell == "h1" else 1, reuse=True, timeout_s=10)
    assert client is not None and client.path_name == "blocking: libcurl multi, 4 users"
    rec = run_loop(client, requests, overlap=overlap)
    assert not rec.failures and rec.n == 24
    assert {r.vectors.tobytes() for r in rec.results} == expected
    for r in rec.results:
        assert r.t_start_ns < r.t_first_byte_ns <= r.t_received_ns <= r.t_decoded_ns
        assert r.server_time_us is not None and r.server_time_us > 0
        ph = r.extra["curl_phases"]
        assert ph["pretransfer"] <= ph["starttransfer"] <= ph["total"]
    # HTTP/1.1: one connection per user; HTTP/2: every transfer on one connection
    assert sum(r.new_connection for r in rec.results) == (4 if cell == "h1" else 1)


def test_exactly_users_requests_in_flight_at_once(raw_server):
    """Each user waits for its own response, and the users really run together: the
    server sees 3 requests at once, never 4 (a server that holds every answer 50 ms)."""
    lock = threading.Lock()
    now = {"in": 0, "max": 0}

    def slow(conn, n):
        while read_request(conn):
            with lock:
                now["in"] += 1
                now["max"] = max(now["max"], now["in"])
            time.sleep(0.05)
            with lock:
                now["in"] -= 1
            conn.sendall(OK % (len(BODY), BODY))

    srv = raw_server(slow)
    rec = run_loop(raw_client(srv.port, users=3), [EMBED] * 12)
    assert rec.n == 12 and not rec.failures
    assert now["max"] == 3 and srv.accepted == 3


def test_a_failed_transfer_is_recorded_and_the_other_users_go_on(raw_server):
    """The first connection's second answer breaks off mid-body: that request is a
    ConnectionLost; every other request is answered, the failed user's next included."""
    def handle(conn, n):
        answers = 0
        while read_request(conn):
            answers += 1
            if n == 0 and answers == 2:
                conn.sendall(OK[:-2] % len(BODY) + BODY[:10])
                conn.close()
                return
            conn.sendall(OK % (len(BODY), BODY))

    srv = raw_server(handle)
    rec = run_loop(raw_client(srv.port, users=2), [EMBED] * 10)
    assert [kind for kind, _ in rec.failures] == ["connection_lost"], rec.failures
    assert rec.n + len(rec.failures) == 10
    assert srv.accepted == 3            # the failed user went on, on a new connection
    assert all(r.vectors.tolist() == [[0.5, -0.25]] for r in rec.results)


def test_request_timeout_is_honoured_per_transfer(raw_server):
    def silent(conn, n):
        read_request(conn)
        time.sleep(2)

    srv = raw_server(silent)
    t0 = time.monotonic()
    rec = run_loop(raw_client(srv.port, users=2, timeout_s=0.3), [EMBED] * 2)
    took = time.monotonic() - t0
    assert [kind for kind, _ in rec.failures] == ["timeout", "timeout"], rec.failures
    assert 0.25 <= took < 0.9, took


def test_server_closing_idle_connections_is_retried_on_new_ones(raw_server):
    """The server closes every connection after one answer: each user's next request
    finds its kept connection dead and goes again, once, on a new one; no errors."""
    srv = raw_server(answering(OK % (len(BODY), BODY), close_after=True))
    client = raw_client(srv.port, users=2)
    rec = Collected()
    loop = MultiLoop(client, lambda: EMBED, rec, lambda: None, overlap=True)
    try:
        for _ in range(3):
            loop.run(2, None)                           # two requests, one per user
            time.sleep(0.1)                             # the server closed them meanwhile
    finally:
        client.close()
    assert rec.n == 6 and not rec.failures, rec.failures
    assert all(r.new_connection for r in rec.results) and srv.accepted == 6


def test_duration_bound_loop_stops_by_itself(servers, tls_files):
    target = real_target(servers, tls_files, "h2c")
    client = multi_client("rest-h2", "curl", target, users=3, clients=1, reuse=True,
                          timeout_s=5)
    rec = Collected()
    loop = MultiLoop(client, lambda: EMBED, rec, lambda: None, overlap=True)
    t0 = time.monotonic()
    try:
        loop.run(None, 0.3)
    finally:
        client.close()
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert rec.n > 3 and not rec.failures


def test_policies_one_multi_cannot_reproduce_have_no_multi_path(servers, tls_files):
    target = real_target(servers, tls_files, "h2c")
    for kw in ({"clients": 2, "users": 4},                  # HTTP/2: 2 connections
               {"clients": 1, "users": 4, "reuse": False}):  # a new connection each
        assert multi_client("rest-h2", "curl", target, **{"reuse": True, "timeout_s": 1,
                                                          **kw}) is None
    assert multi_client("rest-h1", "python", target, users=4, clients=4, reuse=True,
                        timeout_s=1) is None
    assert multi_client("rest-h1", "curl", target, users=4, clients=2, reuse=True,
                        timeout_s=1) is None             # 2 users per connection


@pytest.mark.parametrize("cell,connections", [("h1", 3), ("h1", 1), ("h2c", 1), ("h3", 1)])
async def test_load_runner_runs_libcurl_users_on_the_blocking_paths(servers, tls_files, cell,
                                                                  connections):
    """One user: the one-user path (HTTP/3 too); three: one multi, with the runner's
    connection policies (HTTP/1.1 a single-connection client per user, or one pool)."""
    from harness.run.job import LoadJob
    from harness.scenario.model import Workload

    target = target_of(servers, tls_files, cell)
    workload = Workload.from_dict({"type": "embed", "batch_size": 1, "dimensions": 8,
                                   "input_words": 4, "distinct_inputs": 1,
                                   "encoding": "float", "compute_ms": 0})
    cell_id = "rest-h3" if cell == "h3" else protocol(cell)
    for users in (1, 3):
        path, rec = await run_job(LoadJob(
            protocol=cell_id, target=target, workload=workload, mode="closed",
            engine="curl", concurrency=users, requests=30, warmup=3,
            connections=connections if users > 1 else 1))
        assert rec.n == 30 and not rec.errors and rec.new_connections == 0
        # (one user: the overlap may be given up when the server answers faster than
        # the decode; test_blocking_path covers that)
        assert path.startswith("blocking: libcurl multi, blocking, decode" if users == 1
                               else "blocking: libcurl multi, 3 users, decode"), path
