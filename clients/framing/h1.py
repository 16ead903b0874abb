"""HTTP/1.1 response framing without I/O: bytes in, a head and a body plan out.

The blocking transport (clients.blocking.http1) reads; this decides what the bytes
are. `next_head` finds the next final response head in a buffer (1xx heads skipped),
`parse_head` reads a head's status and framing headers, `body_plan` says how its body
is delimited (none, Content-Length, chunked, until the connection closes), and
`ChunkedDecoder` takes a chunked body in pieces of any size. No socket, clock or event
loop here: tests feed byte strings split at every boundary (tests/unit/test_framing_h1.py).

Heads are parsed with C-level searches only: a loop over header lines in Python (and
`bytes in bytes`, which raises and clears a TypeError inside CPython each time) cost
~10,000 instructions per response on the one-user latency path.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.base import FallbackError, ProtocolViolation

_LENGTH, _TE, _CONNECTION = b"\r\ncontent-length:", b"\r\ntransfer-encoding:", b"\r\nconnection:"
NONE, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "until close"


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    raw: bytes                  # the head without its blank line
    low: bytes                  # lowercased, for header lookups
    length: int | None          # Content-Length (None with chunked or absent)
    chunked: bool
    close: bool                 # Connection: close


def value(head: bytes, low: bytes, key: bytes) -> bytes | None:
    """The first value of the header `key` (b"\\r\\nname:", lowercase) in a head."""
    i = low.find(key)
    if i < 0:
        return None
    i += len(key)
    j = head.find(b"\r\n", i)
    return head[i:j].strip() if j >= 0 else head[i:].strip()


def parse_head(head: bytes) -> Head:
    """A response head (without its blank line): FallbackError when the server speaks
    another HTTP version, ProtocolViolation when it is not a head."""
    if not head.startswith(b"HTTP/1.1 "):
        line = head.split(b"\r\n", 1)[0]
        if head.startswith(b"HTTP/"):
            raise FallbackError(f"server answered {line[:8].decode(errors='replace')}")
        raise ProtocolViolation(f"bad HTTP/1.1 status line {line[:80]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ProtocolViolation(f"bad HTTP/1.1 status line {head[:80]!r}") from None
    low = head.lower()
    length = None
    text = value(head, low, _LENGTH)
    if text is not None:
        try:
            length = int(text)
        except ValueError:
            raise ProtocolViolation(f"bad content-length {text[:40]!r}") from None
        if length < 0:
            raise ProtocolViolation(f"bad content-length {text[:40]!r}")
    chunked = close = False
    if low.find(_TE) >= 0:
        chunked = value(low, low, _TE).find(b"chunked") >= 0      # type: ignore[union-attr]
        if chunked:
            length = None               # RFC 9112: transfer-encoding wins
    if low.find(_CONNECTION) >= 0:
        close = value(low, low, _CONNECTION).find(b"close") >= 0  # type: ignore[union-attr]
    return Head(status, head, low, length, chunked, close)


def next_head(buf: bytes | bytearray, pos: int, have: int) -> tuple[Head | None, int]:
    """The next final (>= 200) head in buf[pos:have]: (head, where its body starts), or
    (None, where to look again once more bytes arrived); interim 1xx heads are skipped."""
    while True:
        end = buf.find(b"\r\n\r\n", pos, have) if have > pos else -1
        if end < 0:
            return None, pos
        head = parse_head(bytes(buf[pos:end]))
        pos = end + 4
        if head.status >= 200:
            return head, pos


def body_plan(head: Head, method: bytes) -> str:
    """How the body after `head` is delimited (RFC 9112 section 6.3)."""
    if method == b"HEAD" or head.status in (204, 304):
        return NONE
    if head.length is not None:
        return LENGTH
    return CHUNKED if head.chunked else UNTIL_CLOSE


class ChunkedDecoder:
    """A chunked body fed in pieces of any size: `feed` returns the body bytes it could
    decode; `done` once the last chunk and its trailers are in, then `leftover` says
    whether bytes followed them (the server spoke out of turn)."""

    __slots__ = ("_data", "_i", "_size", "done", "leftover")

    def __init__(self) -> None:
        self._data = b""
        self._i = 0                 # where the next chunk-size line starts
        self._size: int | None = None   # the current chunk's size, once its line is read
        self.done = False
        self.leftover = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.leftover = self.leftover or bool(data)
            return []
        self._data = self._data[self._i:] + data if self._i else self._data + data
        self._i = 0
        out: list[bytes] = []
        d = self._data
        while True:
            i = self._i
            if self._size is None:
                eol = d.find(b"\r\n", i)
                if eol < 0:
                    return out
                try:
                    self._size = int(d[i:eol].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolViolation(f"bad chunk size line {d[i:eol][:40]!r}") \
                        from None
                self._i = i = eol + 2
            if self._size == 0:     # the last chunk: trailer lines, then a blank line
                if d.startswith(b"\r\n", i):
                    end = i + 2
                else:
                    tail = d.find(b"\r\n\r\n", i)
                    if tail < 0:
                        return out
                    end = tail + 4
                self.done, self.leftover = True, len(d) > end
                return out
            end = i + self._size
            if len(d) < end + 2:
                return out
            if d[end:end + 2] != b"\r\n":
                raise ProtocolViolation("chunk not followed by CRLF")
            out.append(d[i:end])
            self._i, self._size = end + 2, None
