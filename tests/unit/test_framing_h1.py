"""The HTTP/1.1 framing core on byte strings only: heads, body plans, chunked bodies
split at every byte boundary, and the errors a bad head is."""

from __future__ import annotations

import pytest

from clients.base import FallbackError, ProtocolViolation
from clients.framing.h1 import (CHUNKED, LENGTH, NONE, UNTIL_CLOSE, ChunkedDecoder, body_plan,
                                next_head, parse_head)

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello"


def test_a_head_is_found_only_once_complete():
    for cut in range(len(OK)):
        head, pos = next_head(OK[:cut], 0, cut)
        end = OK.index(b"\r\n\r\n") + 4
        if cut < end:
            assert head is None and pos == 0
        else:
            assert head.status == 200 and head.length == 5 and pos == end


def test_interim_heads_are_skipped():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n" + OK
    head, pos = next_head(data, 0, len(data))
    assert head.status == 200 and data[pos:] == b"hello"
    # Only the interim heads so far: look again after them.
    part = data[:data.index(b"HTTP/1.1 200")]
    head, pos = next_head(part, 0, len(part))
    assert head is None and pos == len(part)


@pytest.mark.parametrize("raw,method,plan", [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 3", b"POST", LENGTH),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3", b"GET",
     CHUNKED),
    (b"HTTP/1.1 200 OK\r\nconnection: close", b"GET", UNTIL_CLOSE),
    (b"HTTP/1.1 204 No Content", b"GET", NONE),
    (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10", b"GET", NONE),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10", b"HEAD", NONE),
])
def test_body_plans_follow_rfc_9112(raw, method, plan):
    assert body_plan(parse_head(raw), method) == plan


def test_connection_close_and_header_case():
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close")
    assert head.close and head.length == 0


@pytest.mark.parametrize("raw,error", [
    (b"HTTP/1.0 200 OK", FallbackError),
    (b"HTTP/2 200", FallbackError),
    (b"SSH-2.0-OpenSSH", ProtocolViolation),
    (b"HTTP/1.1 2x0 OK", ProtocolViolation),
    (b"HTTP/1.1 200 OK\r\ncontent-length: -1", ProtocolViolation),
    (b"HTTP/1.1 200 OK\r\ncontent-length: ten", ProtocolViolation),
])
def test_bad_heads_are_named(raw, error):
    with pytest.raises(error):
        parse_head(raw)


CHUNKED_BODY = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\ntrailer: x\r\n\r\n"


def test_a_chunked_body_decodes_the_same_split_anywhere():
    for cut in range(len(CHUNKED_BODY) + 1):
        d = ChunkedDecoder()
        parts = d.feed(CHUNKED_BODY[:cut]) + d.feed(CHUNKED_BODY[cut:])
        assert b"".join(parts) == b"hello world" and d.done and not d.leftover


def test_a_chunked_body_byte_by_byte_and_with_bytes_after_it():
    d, parts = ChunkedDecoder(), []
    for i in range(len(CHUNKED_BODY)):
        parts += d.feed(CHUNKED_BODY[i:i + 1])
    assert b"".join(parts) == b"hello world" and d.done
    d = ChunkedDecoder()
    d.feed(b"0\r\n\r\nHTTP/1.1 200")
    assert d.done and d.leftover


@pytest.mark.parametrize("bad", [b"zz\r\nhello\r\n", b"5\r\nhelloXX0\r\n\r\n"])
def test_a_bad_chunk_is_a_protocol_violation(bad):
    with pytest.raises(ProtocolViolation):
        ChunkedDecoder().feed(bad)
