"""A sans-I/O Server-Sent Events decoder (WHATWG event-stream parsing).

Feed it body bytes as they arrive, in any split; it returns the complete events.
Lines end in LF, CR or CRLF; `data` lines of one event join with LF; comment lines
(starting with ':') and unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]           # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buf = self._buf + chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._buf = buf.split(b"\n")
        events = []
        for raw in lines:
            event = self._line(raw.decode("utf-8"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if not line:                    # blank line dispatches
            if not self._data:
                self._event = ""
                return None
            event = Event("\n".join(self._data), self._event or "message", self._id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
