"""Two fixes to hypercorn's HTTP/2 server, installed in every process that serves it.

1. h2 checks a frame's length only once the whole announced frame has arrived, so a
   peer that sends garbage after the preface (a 4 MB "length" read from "GET /
   HTTP/1.1") holds the connection open waiting for bytes that never come, and gets no
   GOAWAY. Checking the length as soon as the 9-byte header is there makes h2 answer at
   once with GOAWAY (FRAME_SIZE_ERROR) and hypercorn close the connection, as RFC 9113
   section 4.2 asks.
2. A response that ends before its request body did (a 413 on an oversized upload, a
   401 before the body is read) left the stream open for the client's DATA, and the
   next DATA frame for it raised KeyError in hypercorn, which dropped the whole
   connection; a client with a large upload also went on sending all of it. Now, once
   such a response's END_STREAM is out, the stream is reset with NO_ERROR (RFC 9113
   section 8.1: the client stops sending, the request is not in error), and DATA still
   in flight for it is acknowledged and dropped (h2 does so for a reset stream).
"""

from __future__ import annotations

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from h2.stream import StreamState

_HEADER = 9


class EarlyLengthFrameBuffer(FrameBuffer):
    def __next__(self):  # type: ignore[override]
        if len(self._data) >= _HEADER:
            self._validate_frame_length(int.from_bytes(self._data[:3], "big"))
        return super().__next__()


def _patch_early_responses() -> None:
    from hypercorn.protocol.h2 import H2Protocol

    if getattr(H2Protocol, "_wirebench_early_responses", False):
        return
    send_data, handle_events = H2Protocol._send_data, H2Protocol._handle_events
    from hypercorn.protocol.events import Body  # noqa: PLC0415 (hypercorn is optional here)

    async def _data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            await stream.handle(Body(stream_id=event.stream_id, data=event.data))
        try:
            self.connection.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
        except h2.exceptions.StreamClosedError:
            # Reset meanwhile (its response ended first): credit the connection's
            # window for the dropped bytes, or the whole connection would stall.
            if event.flow_controlled_length:
                self.connection.increment_flow_control_window(event.flow_controlled_length)

    async def _send_data(self, stream_id: int) -> None:
        await send_data(self, stream_id)
        if stream_id in self.stream_buffers:
            return                          # the response is still being sent
        stream = self.connection.streams.get(stream_id)
        if stream is not None and stream.state_machine.state == StreamState.HALF_CLOSED_LOCAL:
            self.connection.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            await self._flush()

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # DATA is handled here, the rest by hypercorn in runs between: the stream may be
        # gone by the time its DATA comes up (its app answered while an earlier event of
        # the same batch was awaited), where hypercorn raised KeyError.
        run: list[h2.events.Event] = []
        for event in events:
            if not isinstance(event, h2.events.DataReceived):
                run.append(event)
                continue
            if run:
                await handle_events(self, run)
                run = []
            await _data(self, event)
        await handle_events(self, run)       # also flushes what the DATA produced

    H2Protocol._send_data = _send_data                  # type: ignore[method-assign]
    H2Protocol._handle_events = _handle_events          # type: ignore[method-assign]
    H2Protocol._wirebench_early_responses = True        # type: ignore[attr-defined]


def install() -> None:
    """Both fixes, for every h2 connection of this process (hypercorn's HTTP/2)."""
    h2.connection.FrameBuffer = EarlyLengthFrameBuffer   # type: ignore[misc]
    _patch_early_responses()
