"""The HTTP/2 framing core on frames as byte strings: the connection's control frames,
the response's stream, and the errors each misbehaviour is."""

from __future__ import annotations

import struct

import hpack
import pytest

from clients.base import ConnectionLost, FallbackError, ProtocolViolation
from clients.framing.h2 import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY,
                                HEADERS, PADDED, PING, PUSH_PROMISE, REOPEN_AT, RST_STREAM,
                                SETTINGS, WINDOW_UPDATE, Response, Session, frame,
                                frame_header, stream_frame)


def parse(raw: bytes, first: bool = False) -> tuple[int, int, int, bytes]:
    kind, flags, stream, length = frame_header(raw[:9], first)
    return kind, flags, stream, raw[9:9 + length]


def test_frames_round_trip_through_the_header_parser():
    raw = frame(DATA, END_STREAM, 3, b"abc")
    assert parse(raw) == (DATA, END_STREAM, 3, b"abc")


def test_the_first_frame_must_be_settings():
    assert parse(frame(SETTINGS, 0, 0), first=True)[0] == SETTINGS
    with pytest.raises(ProtocolViolation):
        frame_header(frame(PING, 0, 0, bytes(8))[:9], True)
    with pytest.raises(FallbackError):
        frame_header(b"HTTP/1.1 400 Bad", True)


def test_settings_are_applied_and_acknowledged_and_pings_answered():
    s = Session()
    payload = struct.pack(">HIHI", 4, 1_000_000, 5, 32768)
    assert s.control(SETTINGS, 0, payload, 1) == frame(SETTINGS, ACK, 0)
    assert (s.peer_window, s.peer_frame) == (1_000_000, 32768)
    assert s.control(SETTINGS, ACK, b"", 1) is None
    assert s.control(PING, 0, b"12345678", 1) == frame(PING, ACK, 0, b"12345678")
    assert s.control(PING, ACK, b"12345678", 1) is None
    s.control(WINDOW_UPDATE, 0, struct.pack(">I", 100), 1)
    assert s.send_window == 65535 + 100


def test_goaway_fails_only_requests_the_server_did_not_take():
    s = Session()
    assert s.control(GOAWAY, 0, struct.pack(">II", 3, 0), 3) is None and s.goaway == 3
    with pytest.raises(ConnectionLost, match="GOAWAY"):
        Session().control(GOAWAY, 0, struct.pack(">II", 1, 2), 3)


def test_the_window_is_reopened_once_enough_data_was_consumed():
    s = Session()
    s.consumed = REOPEN_AT - 1
    assert s.window_reopen() is None
    s.consumed = REOPEN_AT
    assert parse(s.window_reopen())[0] == WINDOW_UPDATE and s.consumed == 0


def head_block(encoder: hpack.Encoder, status: bytes, extra=()) -> bytes:
    return encoder.encode([(b":status", status), *extra])


def test_a_response_with_interim_head_continuation_padding_and_trailers():
    s, enc = Session(), hpack.Encoder()
    r = Response(s, 1)
    assert not r.frame(HEADERS, END_HEADERS, head_block(enc, b"103"))
    assert r.status == 0 and not r.head_done
    block = head_block(enc, b"200", [(b"content-type", b"application/json")])
    assert not r.frame(HEADERS, 0, block[:3])                # continued
    assert not r.frame(CONTINUATION, END_HEADERS, block[3:])
    assert r.head_done and r.status == 200
    padded = bytes((2,)) + b"body" + b"\0\0"
    assert not r.frame(DATA, PADDED, padded)
    assert r.frame(HEADERS, END_HEADERS | END_STREAM, head_block(enc, b"200")[:0] +
                   enc.encode([(b"grpc-status", b"0")]))
    assert r.parts == [b"body"] and s.consumed == len(padded)


@pytest.mark.parametrize("frames,error", [
    ([(DATA, END_STREAM, b"x")], "DATA before"),
    ([(CONTINUATION, END_HEADERS, b"")], "CONTINUATION without"),
    ([(RST_STREAM, 0, struct.pack(">I", 8))], "reset stream 1"),
    ([(DATA, PADDED, b"\x05ab")], "DATA before"),
])
def test_stream_misbehaviour_is_named(frames, error):
    r = Response(Session(), 1)
    with pytest.raises((ProtocolViolation, ConnectionLost), match=error):
        for kind, flags, payload in frames:
            r.frame(kind, flags, payload)


def test_an_interim_head_that_ends_the_stream_is_no_response():
    r = Response(Session(), 1)
    with pytest.raises(ProtocolViolation, match="without a response"):
        r.frame(HEADERS, END_HEADERS | END_STREAM, hpack.Encoder().encode([(b":status",
                                                                             b"100")]))


def test_frames_of_other_streams_are_left_and_push_is_refused():
    assert stream_frame(DATA, 0, 1, b"old", in_flight=3) is None
    assert stream_frame(DATA, 0, 3, b"mine", in_flight=3) == (DATA, 0, b"mine")
    with pytest.raises(ProtocolViolation, match="PUSH_PROMISE"):
        stream_frame(PUSH_PROMISE, 0, 1, b"", in_flight=3)
