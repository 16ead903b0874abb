"""The python engine's blocking HTTP/2 transport (clients/blocking/http2.py) against small
in-test HTTP/2 servers built on the h2 library: the frames a real server may send
that hypercorn does not (padding, interim responses, trailers, header blocks split
into CONTINUATION frames, a reset stream, a closed idle connection), and a server
that does not speak HTTP/2 at all."""

from __future__ import annotations

import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import orjson
import pytest

from clients.base import ConnectionLost, FallbackError, Target
from clients.blocking.rest import blocking_client

BODY = orjson.dumps({"object": "list", "data": [
    {"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 1.0]}]})
EMBED = {"input": "x", "dimensions": 3, "model": "wirebench-embed-1"}


class H2Server:
    """One thread, one connection at a time; `answer(conn, stream_id, n)` answers the
    n-th request (over all connections); returning False closes the connection."""

    def __init__(self, answer, early=None, delay_s: float = 0.0) -> None:
        self.answer = answer
        self.early, self.delay_s = early, delay_s   # frames sent at once, then a pause
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.connections = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._serve(conn)

    def _serve(self, sock: socket.socket) -> None:
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        sock.sendall(h2c.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for ev in h2c.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):      # credit the body
                    h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, h2.events.StreamEnded):
                    if self.early is not None:
                        self.early(h2c, ev.stream_id)
                        sock.sendall(h2c.data_to_send())
                        time.sleep(self.delay_s)
                    n, self.requests = self.requests, self.requests + 1
                    if self.answer(h2c, ev.stream_id, n) is False:
                        sock.sendall(h2c.data_to_send())
                        return
            sock.sendall(h2c.data_to_send())

    def close(self) -> None:
        self.sock.close()


def ok(h2c, sid: int, *, pad: int = 0, trailers: bool = False, interim: bool = False,
       big_header: bool = False) -> None:
    if interim:
        h2c.send_headers(sid, [(":status", "103"), ("link", "</x>; rel=preload")])
    headers = [(":status", "200"), ("content-type", "application/json"),
               ("server-timing", "app;dur=0.5")]
    if big_header:      # larger than the frame size: HEADERS + CONTINUATION frames
        headers.append(("x-big", "v" * 40_000))
        h2c.streams[sid].max_outbound_frame_size = 16_384
    h2c.send_headers(sid, headers)
    h2c.send_data(sid, BODY, end_stream=not trailers, pad_length=pad or None)
    if trailers:
        h2c.send_headers(sid, [("x-trailer", "1")], end_stream=True)


@pytest.fixture
def h2_server():
    made: list[H2Server] = []

    def make(answer, **kw) -> H2Server:
        made.append(H2Server(answer, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def client(port: int):
    c = blocking_client("rest-h2", "python", Target(port=port, tls=False), reuse=True,
                        timeout_s=5)
    assert c is not None and c.path_name.startswith("blocking: blocking socket, HTTP/2")
    return c


def test_padding_interim_trailers_and_continuation(h2_server):
    variants = [{}, {"pad": 17}, {"interim": True}, {"trailers": True},
                {"big_header": True}, {"pad": 3, "interim": True, "trailers": True}]
    srv = h2_server(lambda h2c, sid, n: ok(h2c, sid, **variants[n % len(variants)]))
    c = client(srv.port)
    try:
        for kw in variants:
            r = c.embed_sync(EMBED)
            assert r.vectors.tolist() == [[0.5, -0.25, 1.0]], kw
            assert r.payload_down == len(BODY) and r.server_time_us == 500, kw
    finally:
        c.close()
    assert srv.connections == 1         # every variant on the one kept connection


def test_reset_stream_fails_that_request_only(h2_server):
    def answer(h2c, sid, n):
        if n == 1:
            h2c.reset_stream(sid, error_code=2)
        else:
            ok(h2c, sid)
    c = client(h2_server(answer).port)
    try:
        c.embed_sync(EMBED)
        with pytest.raises(ConnectionLost, match="reset stream"):
            c.embed_sync(EMBED)
        assert c.embed_sync(EMBED).vectors.shape == (1, 3)
    finally:
        c.close()


def test_a_closed_idle_connection_is_retried_once_on_a_new_one(h2_server):
    def answer(h2c, sid, n):
        ok(h2c, sid)
        return n != 0                   # close after the first response

    srv = h2_server(answer)
    c = client(srv.port)
    try:
        first, second = c.embed_sync(EMBED), c.embed_sync(EMBED)
    finally:
        c.close()
    assert first.new_connection and second.new_connection and srv.connections == 2


def test_a_server_that_is_not_http2_is_a_fallback(servers):
    srv = servers.start("h1")           # uvicorn, HTTP/1.1 only
    c = client(srv.port)
    try:
        with pytest.raises(FallbackError, match="HTTP/1"):
            c.embed_sync(EMBED)
    finally:
        c.close()


def test_response_waiting_counts_response_frames_not_window_updates(h2_server):
    """The overlapped loop asks whether the next response already arrived: a
    WINDOW_UPDATE on that stream (the server crediting the request body) is no
    response; its HEADERS are."""
    srv = h2_server(lambda h2c, sid, n: ok(h2c, sid), delay_s=0.3,
                    early=lambda h2c, sid: h2c.increment_flow_control_window(1000, sid))
    c = client(srv.port)
    try:
        sent = c.send(EMBED)
        time.sleep(0.1)                 # the WINDOW_UPDATE is in, the response is not
        assert not c.response_waiting()
        time.sleep(0.4)
        assert c.response_waiting()
        assert c.complete(c.receive(sent)).vectors.shape == (1, 3)
    finally:
        c.close()


def test_a_body_larger_than_the_windows_waits_for_window_updates(h2_server):
    """A request body past the server's 65,535-byte stream and connection windows is
    sent as the server credits it (WINDOW_UPDATE), in frames of its size."""
    srv = h2_server(lambda h2c, sid, n: ok(h2c, sid))
    c = client(srv.port)
    big = {**EMBED, "input": ["word " * 40_000]}        # ~200 KB of JSON
    try:
        for _ in range(2):
            assert c.embed_sync(big).vectors.shape == (1, 3)
    finally:
        c.close()
    assert srv.requests == 2
