"""HTTP/2 framing for one request at a time, without I/O: frames in, events and bytes to
send out.

The blocking transport (clients.blocking.http2) reads and writes; this holds what the
connection knows and decides what each frame means. What it does of RFC 9113:
- Opening (`OPENING`): the preface, SETTINGS (no server push; the largest stream window
  and frame size, so a response never waits for a WINDOW_UPDATE and comes in few frames)
  and a connection WINDOW_UPDATE to the largest window, re-opened as data is consumed.
- Requests: HEADERS with the header block as HPACK literals without indexing (the same
  bytes every time, no table state), then DATA with END_STREAM, split at the server's
  frame size and held to its flow-control windows (`Session.request_frames`).
- Frames in: `frame_header` checks a frame's 9 bytes (the first must be SETTINGS; a
  server answering in HTTP/1.x is a FallbackError). `Session.control` handles the
  connection's frames (SETTINGS acknowledged, PING answered, WINDOW_UPDATE applied,
  GOAWAY remembered) and returns what to send. `Response.frame` assembles the request's
  stream: HEADERS and CONTINUATION decoded by hpack (the server indexes its headers),
  checked as the asyncio client checks them, 1xx skipped, trailers dropped, DATA with
  padding removed; RST_STREAM is a ConnectionLost.
No socket, clock or event loop: tests feed frames as byte strings
(tests/unit/test_framing_h2.py).
"""

from __future__ import annotations

import struct

import hpack

from clients.base import ConnectionLost, FallbackError, ProtocolViolation
from clients.transport.http2 import header_block_error

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_WINDOW = 2**31 - 1
MAX_FRAME = 2**24 - 1                   # the largest frame size we accept
REOPEN_AT = 2**30                       # consumed bytes before the window is re-opened
RESPONSE_FRAMES = (DATA, HEADERS, RST_STREAM)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + \
        struct.pack(">I", stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


OPENING = (PREFACE
           + frame(SETTINGS, 0, 0, struct.pack(">HIHIHI", 2, 0, 4, MAX_WINDOW, 5, MAX_FRAME))
           + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))
SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def frame_header(head: bytes | bytearray | memoryview, first: bool) -> tuple[int, int, int, int]:
    """(type, flags, stream, payload length) of a frame's first 9 bytes; `first` for
    the connection's first frame, which must be the server's SETTINGS."""
    length = int.from_bytes(head[:3], "big")
    kind, flags = head[3], head[4]
    stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
    if first and (kind != SETTINGS or stream):
        if bytes(head[:5]) == b"HTTP/":
            raise FallbackError(f"asked for HTTP/2, the server answered in "
                                f"{bytes(head[:8]).decode('ascii', 'replace')}")
        raise ProtocolViolation("HTTP/2 server did not start with SETTINGS")
    # (no length check: we advertise the largest frame size 24 bits can express)
    return kind, flags, stream, length


def unpad(payload: bytes, flags: int) -> bytes:
    if not flags & PADDED:
        return payload
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolViolation("HTTP/2 padding longer than its frame")
    return payload[1:len(payload) - pad]


class Session:
    """One connection's state: the server's settings and windows, the HPACK decoder,
    GOAWAY, the next stream id and the DATA consumed since the window was re-opened."""

    __slots__ = ("decoder", "next_stream", "send_window", "peer_window", "peer_frame",
                 "consumed", "goaway", "first")

    def __init__(self) -> None:
        self.decoder = hpack.Decoder()
        self.next_stream = 1
        self.send_window = 65535        # the connection's, for our DATA
        self.peer_window = 65535        # a new stream's, from the server's SETTINGS
        self.peer_frame = 16384
        self.consumed = 0
        self.goaway: int | None = None  # the last stream the server will answer
        self.first = True               # no frame read yet

    def new_stream(self) -> int:
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        return stream

    def control(self, kind: int, flags: int, payload: bytes, stream_in_flight: int
                ) -> bytes | None:
        """A frame of stream 0: what to send back (None: nothing). GOAWAY that leaves
        the request in flight unanswered is a ConnectionLost."""
        if kind == SETTINGS:
            if flags & ACK:
                return None
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack_from(">HI", payload, i)
                if ident == 4:
                    self.peer_window = value
                elif ident == 5:
                    self.peer_frame = value
            return SETTINGS_ACK
        if kind == PING:
            return None if flags & ACK else frame(PING, ACK, 0, payload)
        if kind == WINDOW_UPDATE:
            self.send_window += int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        elif kind == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(payload[4:8], "big")
            self.goaway = last
            if stream_in_flight > last:
                raise ConnectionLost(f"server sent GOAWAY (error code {code}) before "
                                     f"stream {stream_in_flight}")
        return None

    def window_reopen(self) -> bytes | None:
        """A connection WINDOW_UPDATE once enough DATA was consumed, else None."""
        if self.consumed < REOPEN_AT:
            return None
        out = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.consumed))
        self.consumed = 0
        return out


def stream_frame(kind: int, flags: int, stream: int, payload: bytes, in_flight: int
                 ) -> tuple[int, int, bytes] | None:
    """A frame of a stream: the request's as (type, flags, payload; a HEADERS' priority
    fields removed), None for an earlier stream's leftovers; PUSH_PROMISE is refused."""
    if stream != in_flight:
        if kind == PUSH_PROMISE:
            raise ProtocolViolation("PUSH_PROMISE although push is disabled")
        return None
    if kind == HEADERS and flags & PRIORITY_FLAG:
        payload = unpad(payload, flags)[5:]
        flags &= ~PADDED
    return kind, flags, payload


class Response:
    """The request's stream, frame by frame: `frame` says whether the stream ended.
    Then `status`, `headers` (without :status) and `parts` (the body) are set."""

    __slots__ = ("session", "stream", "status", "headers", "parts", "_block", "_ends",
                 "head_done")

    def __init__(self, session: Session, stream: int) -> None:
        self.session, self.stream = session, stream
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self._block: list[bytes] = []   # a header block's fragments until END_HEADERS
        self._ends = False              # the block's HEADERS carried END_STREAM
        self.head_done = False          # a final (>= 200) head was decoded by this frame

    def frame(self, kind: int, flags: int, payload: bytes) -> bool:
        self.head_done = False
        if kind == DATA:
            if not self.status or self._block:
                raise ProtocolViolation("HTTP/2 DATA before the response's headers")
            self.session.consumed += len(payload)
            data = unpad(payload, flags)
            if data:
                self.parts.append(data)
            return bool(flags & END_STREAM)
        if kind == HEADERS:
            if self._block:
                raise ProtocolViolation("HTTP/2 HEADERS inside a header block")
            self._block.append(unpad(payload, flags))
            self._ends = bool(flags & END_STREAM)
            return self._end_block() if flags & END_HEADERS else False
        if kind == CONTINUATION:
            if not self._block:
                raise ProtocolViolation("HTTP/2 CONTINUATION without HEADERS")
            self._block.append(payload)
            return self._end_block() if flags & END_HEADERS else False
        if kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big")
            raise ConnectionLost(f"server reset stream {self.stream} (error code {code})")
        return False                    # PRIORITY, the stream's WINDOW_UPDATE, unknown

    def _end_block(self) -> bool:
        block, self._block = b"".join(self._block), []
        try:
            headers = self.session.decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise ProtocolViolation(f"HTTP/2 header block: {exc}") from None
        trailers = bool(self.status)
        problem = header_block_error(headers, trailers)
        if problem:
            raise ProtocolViolation(f"HTTP/2 response: {problem}")
        if not trailers:
            status = int(headers[0][1])
            if status >= 200:           # an interim (1xx) head: the final one follows
                self.status, self.headers, self.head_done = status, headers[1:], True
        if self._ends and not self.status:
            raise ProtocolViolation("HTTP/2 stream ended without a response")
        return self._ends
