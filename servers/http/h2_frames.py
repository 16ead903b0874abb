"""h2 checks a frame's length only once the whole announced frame has arrived, so a peer
that sends garbage after the preface (a 4 MB "length" read from "GET / HTTP/1.1") holds
the connection open waiting for bytes that never come, and gets no GOAWAY. Checking the
length as soon as the 9-byte header is there makes h2 answer at once with GOAWAY
(FRAME_SIZE_ERROR) and hypercorn close the connection, as RFC 9113 section 4.2 asks.
"""

from __future__ import annotations

import h2.connection
from h2.frame_buffer import FrameBuffer

_HEADER = 9


class EarlyLengthFrameBuffer(FrameBuffer):
    def __next__(self):  # type: ignore[override]
        if len(self._data) >= _HEADER:
            self._validate_frame_length(int.from_bytes(self._data[:3], "big"))
        return super().__next__()


def install() -> None:
    """Make every h2 connection of this process use the early check (hypercorn's h2)."""
    h2.connection.FrameBuffer = EarlyLengthFrameBuffer   # type: ignore[misc]
