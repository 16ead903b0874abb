"""The WebSocket connection both `ws` and `ws-stream` use, and their shared client base.

One connection carries many requests at once (docs/websocket-protocol.md): each request
frame gets an id from a counter, and one reader task routes every incoming frame to
its request's inbox by that id, stamping its receive time before any JSON parsing.
The reader reads only the id (the server puts it first); the caller decodes, so decode
time is measured where the request is.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (ConnectionClosed, InvalidHandshake, InvalidStatus,
                                   NegotiationError)

from clients.base import (Client, ClientError, ConnectError, ConnectionLost, FallbackError,
                   ProtocolViolation, ServerError, Target, clock_ns)
from clients.base import PhaseTimeout
from clients.transport.connect import tcp_connect
from clients.transport.phases import ConnectStamps, HostResolver
from clients.transport.wire import METER

_loads = orjson.loads
_ID_PREFIX = b'{"id":"'


def _frame_id(raw: bytes) -> bytes | None:
    """The request id a server frame answers, without parsing the whole frame."""
    if raw.startswith(_ID_PREFIX):
        return raw[7:raw.find(b'"', 7)]
    try:   # not our server's layout: parse it all (rare, so the cost is fine)
        rid = _loads(raw).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(rid).encode() if isinstance(rid, (str, int)) else None


def server_error(msg: dict[str, Any]) -> ServerError:
    error = msg.get("error") or {}
    return ServerError(msg.get("status", "error"), error.get("message", str(msg)), msg)


async def _handshake(target: Target, hosts: HostResolver,
                     stamps: ConnectStamps) -> ClientConnection:
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else None
    try:
        ip = await hosts.address(stamps)
        where = f"{target.host}:{target.port}" + (f" ({ip})" if ip != target.host else "")
        # Refused / silent peer: their own error classes (clients.transport.connect).
        sock = await tcp_connect(ip, target.port, where, target.connect_timeout_s,
                                 "WebSocket")
        stamps.tcp = clock_ns()
        # compression=None: permessage-deflate costs ~80x throughput (ANCHORS.md).
        # proxy=None: an environment proxy would silently change what is measured.
        # max_size=None: payload size is the scenario's choice, not a client limit.
        try:
            ws = await connect(f"ws://{target.host}:{target.port}/", sock=sock,
                               compression=None, proxy=None, max_size=None,
                               ping_interval=None, additional_headers=headers,
                               open_timeout=target.connect_timeout_s)
        except TimeoutError:
            raise PhaseTimeout(f"WebSocket to {where}: upgrade timed out after "
                               f"{target.connect_timeout_s:g} s (TCP connected, no HTTP "
                               "101 answer)") from None
        stamps.handshake = clock_ns()
        return ws
    except InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode("utf-8", "replace").strip()
        if status < 400:   # a plain HTTP answer: the peer did not speak WebSocket
            raise FallbackError(f"server answered HTTP {status} instead of upgrading to "
                                "WebSocket") from exc
        raise ServerError(status, body or str(exc)) from exc
    except NegotiationError as exc:   # e.g. an extension we never offered
        raise FallbackError(f"WebSocket handshake negotiated something unasked: {exc}") from exc
    except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
        raise ConnectError(f"WebSocket connect to {target.host}:{target.port} failed: "
                           f"{exc}") from exc


def _check_negotiated(ws: ClientConnection) -> None:
    """A WebSocket upgrade with no extension, or FallbackError: never a result."""
    status = ws.response.status_code
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    if status != 101 or extensions or ws.protocol.extensions:
        raise FallbackError(f"WebSocket handshake gave HTTP {status}, extensions "
                            f"{extensions or ws.protocol.extensions!r}; wanted 101 and none")


class WsConnection:
    """One WebSocket connection, shared by concurrent requests."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sock = ws.transport.get_extra_info("socket")
        self.local_port: int = self.sock.getsockname()[1]   # matches the lab's packet log
        self.stamps: ConnectStamps | None = None            # how opening it went
        METER.track(self.sock)
        self.inboxes: dict[bytes, asyncio.Queue] = {}
        self.ids = itertools.count(1)
        self.failure: tuple[type[ClientError], str] | None = None
        self.cancels: set[asyncio.Task] = set()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, target: Target, hosts: HostResolver | None = None) -> WsConnection:
        stamps = ConnectStamps(clock_ns())
        ws = await _handshake(target, hosts or HostResolver(target), stamps)
        try:
            _check_negotiated(ws)
        except FallbackError:
            await ws.close()
            raise
        conn = cls(ws)
        conn.stamps = stamps
        return conn

    @property
    def usable(self) -> bool:
        return self.failure is None

    def exchange(self, kind: bytes, body: Any = None) -> Exchange:
        return Exchange(self, kind, body)

    async def _read(self) -> None:
        ws, inboxes = self.ws, self.inboxes
        try:
            while True:
                raw = await ws.recv(decode=False)
                recv_ns = clock_ns()
                inbox = inboxes.get(_frame_id(raw))
                if inbox is not None:   # else: a request abandoned by its caller
                    inbox.put_nowait((recv_ns, raw))
                elif raw.startswith(b'{"id":null'):
                    self._fail(ProtocolViolation, "server refused a message it could not "
                               f"attribute to a request: {raw[:300]!r}")
                    await ws.close()
                    return
        except ConnectionClosed as exc:
            self._fail(ConnectionLost, f"WebSocket connection closed: {exc}")

    def _fail(self, kind: type[ClientError], message: str) -> None:
        """Ends every pending request with its own exception instance."""
        self.failure = (kind, message)
        for inbox in self.inboxes.values():
            inbox.put_nowait(kind(message))
        self.inboxes.clear()

    def cancel(self, rid: bytes) -> None:
        """Tell the server to stop work nobody waits for (fire and forget)."""
        task = asyncio.create_task(self.ws.send(b'{"id":"%s","type":"cancel"}' % rid,
                                                text=True))
        self.cancels.add(task)
        task.add_done_callback(self._cancel_sent)

    def _cancel_sent(self, task: asyncio.Task) -> None:
        self.cancels.discard(task)
        if not task.cancelled():
            task.exception()   # a closed connection needs no cancel: nothing to report

    async def close(self) -> None:
        METER.closing(self.sock)
        await self.ws.close()
        await self.reader


class Exchange:
    """One request on a connection: `async with` sends it, `receive()` yields its frames.

    Leaving the block before the final frame (caller cancelled, error) sends `cancel`.
    """

    __slots__ = ("conn", "frame", "rid", "inbox", "payload_up", "payload_down",
                 "t_first_ns", "t_sent_ns", "finished")

    def __init__(self, conn: WsConnection, kind: bytes, body: Any) -> None:
        self.conn = conn
        self.rid = str(next(conn.ids)).encode()
        tail = b"}" if body is None else b',"body":' + orjson.dumps(body) + b"}"
        self.frame = b"".join((_ID_PREFIX, self.rid, b'","type":"', kind, b'"', tail))
        self.payload_up = len(self.frame)
        self.payload_down = 0
        self.t_first_ns = 0
        self.t_sent_ns = 0
        self.finished = False

    async def __aenter__(self) -> Exchange:
        conn = self.conn
        if conn.failure:
            kind, message = conn.failure
            raise kind(message)
        self.inbox = conn.inboxes[self.rid] = asyncio.Queue()
        try:
            await conn.ws.send(self.frame, text=True)
            self.t_sent_ns = clock_ns()
        except ConnectionClosed as exc:
            conn.inboxes.pop(self.rid, None)
            raise ConnectionLost(f"WebSocket connection closed: {exc}") from exc
        except BaseException:   # cancelled mid-send: the server may run it anyway
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn = self.conn
        if conn.inboxes.pop(self.rid, None) is not None and not self.finished:
            conn.cancel(self.rid)

    async def receive(self) -> tuple[int, dict[str, Any]]:
        """(receive time, decoded message) of this request's next frame."""
        item = await self.inbox.get()
        if isinstance(item, ClientError):
            self.finished = True
            raise item
        recv_ns, raw = item
        if not self.payload_down:
            self.t_first_ns = recv_ns
        self.payload_down += len(raw)
        try:
            msg = _loads(raw)
            kind = msg["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ProtocolViolation(f"malformed WebSocket message: {raw[:200]!r}") from exc
        self.finished = kind != "token"
        if kind == "error":
            raise server_error(msg)
        return recv_ns, msg


class WsClientBase(Client):
    """Connection policy shared by `ws` and `ws-stream`.

    reuse=True: one connection, opened by the first call that needs it (that call
    reports new_connection and connect_ns) and shared by all concurrent calls; opened
    again after it is lost. reuse=False: a connection per call, closed after it.
    """

    def __init__(self, target: Target, *, reuse: bool = True) -> None:
        super().__init__(target, reuse=reuse)
        self._conn: WsConnection | None = None
        self._opening = asyncio.Lock()
        self._hosts = HostResolver(target)

    async def _acquire(self) -> tuple[WsConnection, int | None]:
        """(connection, connect_ns if this call opened it)."""
        conn = self._conn
        if self.reuse and conn is not None and conn.usable:
            return conn, None
        if not self.reuse:
            return await self._open()
        async with self._opening:   # concurrent first calls share one new connection
            if self._conn is not None and self._conn.usable:
                return self._conn, None
            self._conn, connect_ns = await self._open()
            return self._conn, connect_ns

    async def _open(self) -> tuple[WsConnection, int]:
        t = clock_ns()
        conn = await WsConnection.open(self.target, self._hosts)
        return conn, clock_ns() - t

    async def _release(self, conn: WsConnection) -> None:
        if not self.reuse:
            await conn.close()

    async def server_stats(self) -> dict[str, int]:
        """The server's counters (requests, errors, streams), over this client's policy."""
        conn, _ = await self._acquire()
        try:
            async with conn.exchange(b"stats") as ex:
                _, msg = await ex.receive()
                return msg["stats"]
        finally:
            await self._release(conn)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
