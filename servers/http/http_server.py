"""HTTP servers for the one ASGI app: uvicorn (HTTP/1.1), hypercorn (HTTP/2, HTTP/3).

Sockets are bound here, before the server library starts, so port 0 works and the real
port is known; the libraries take them over (`sockets=` for uvicorn, `fd://` binds for
hypercorn).

- h1: uvicorn + httptools, cleartext HTTP/1.1.
- h2: hypercorn over TLS (ALPN h2, http/1.1 also offered so a client that falls back is
  caught by the client's check, not hidden); optional cleartext h2c on --h2c-port.
- h3: hypercorn + aioquic on UDP, with TLS over TCP on the same port number (hypercorn
  needs a TCP bind beside the QUIC one); it issues session tickets and accepts 0-RTT
  (`_issue_session_tickets`), as the TCP servers issue theirs. `--host localhost`
  listens on 127.0.0.1 and ::1 alike, one port (bind_quic: browsers try ::1 first).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket
import ssl
from typing import Any, Callable

from servers import cors
from servers.http.asgi_app import App
from servers.http.h1_timeouts import with_header_timeout
from servers.http.qlog import logger_from_env, note_peer
from servers.options import ServerOptions

Ready = Callable[[dict], None]

# hypercorn closes every connection after 1,000 requests by default, and h2load never
# reconnects: runs silently capped (ANCHORS.md). A benchmark server must not do that.
_KEEP_ALIVE_MAX_REQUESTS = 2**31
BACKEND_IDLE_TIMEOUT_S = 75       # longer than Caddy's idle keep-alive to the backend (60 s)


def bind(host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def serve(opts: ServerOptions, ready: Ready) -> None:
    app = cors.wrap(App(opts.limits, opts.api_key), opts.cors_origins)
    if opts.kind == "h1":
        await _serve_uvicorn(app, opts, ready)
    else:
        await _serve_hypercorn(app, opts, ready)


async def _serve_uvicorn(app: App, opts: ServerOptions, ready: Ready) -> None:
    sock = bind(opts.host, opts.port)
    await serve_uvicorn(app, sock, opts, lambda: ready(
        {"port": sock.getsockname()[1], "server": "uvicorn", "http": "1.1"}))


async def serve_uvicorn(app: Any, sock: socket.socket, opts: ServerOptions,
                        started: Callable[[], None]) -> None:
    """uvicorn + httptools on a bound socket (TCP, or the unix socket behind a front);
    `started` runs once it accepts."""
    import uvicorn

    if sock.family == socket.AF_UNIX:
        # Behind a front (Caddy) that owns the client-facing timeouts: its idle
        # connections to us must outlive its own keep-alive (caddy_config.py).
        http, idle = "httptools", BACKEND_IDLE_TIMEOUT_S
    else:
        http, idle = with_header_timeout(opts.header_timeout_s), opts.idle_timeout_s
    config = uvicorn.Config(app, http=http, lifespan="off", access_log=False,
                            log_level="warning", timeout_keep_alive=idle,
                            h11_max_incomplete_event_size=opts.limits.max_body_bytes)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # the CLI owns SIGINT/SIGTERM
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task          # startup failed: raise its error
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.005)
        started()
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


def _hypercorn_config(opts: ServerOptions):
    from hypercorn.config import Config

    config = Config()
    config.certfile = str(opts.tls.cert)
    config.keyfile = str(opts.tls.key)
    config.keep_alive_max_requests = _KEEP_ALIVE_MAX_REQUESTS
    config.keep_alive_timeout = 75
    # QUIC connections linger until this runs out, so a stop always took the full 3 s.
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.loglevel = "WARNING"
    config.h11_max_incomplete_size = opts.limits.max_body_bytes
    return config


async def _serve_hypercorn(app: App, opts: ServerOptions, ready: Ready) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve

    from servers.http.h2_frames import install
    install()       # GOAWAY for garbage, early responses reset their stream (h2_frames)

    config = _hypercorn_config(opts)
    sockets: list[socket.socket] = []
    info: dict = {"server": "hypercorn"}
    if opts.kind == "h2":
        tcp = bind(opts.host, opts.port)
        sockets.append(tcp)
        config.bind = [f"fd://{tcp.fileno()}"]
        info.update(port=tcp.getsockname()[1], http="2", tls=True)
        if opts.h2c_port is not None:
            h2c = bind(opts.host, opts.h2c_port)
            sockets.append(h2c)
            config.insecure_bind = [f"fd://{h2c.fileno()}"]
            info["h2c_port"] = h2c.getsockname()[1]
    else:
        _issue_session_tickets()
        pairs = bind_quic(opts.host, opts.port)
        sockets += [s for pair in pairs for s in pair]
        config.bind = [f"fd://{tcp.fileno()}" for _, tcp in pairs]
        config.quic_bind = [f"fd://{udp.fileno()}" for udp, _ in pairs]
        info.update(port=pairs[0][0].getsockname()[1], http="3", tls=True,
                    addresses=[udp.getsockname()[0] for udp, _ in pairs])
    ssl_ctx_factory = config.create_ssl_context

    def ssl_context() -> ssl.SSLContext:
        ctx = ssl_ctx_factory()
        ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if opts.tls_version == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
        return ctx

    config.create_ssl_context = ssl_context
    for sock in sockets:
        sock.detach()   # hypercorn owns fd:// sockets from here and closes them itself
    stop = asyncio.Event()
    task = asyncio.ensure_future(hypercorn_serve(app, config, shutdown_trigger=stop.wait))
    try:
        # The sockets already listen, so connections queue until hypercorn accepts
        # them; one short pause catches a startup error (bad certificate) before ready.
        await asyncio.sleep(0.05)
        if task.done():
            await task
            raise RuntimeError("hypercorn stopped before it started")
        ready(info)
        await asyncio.shield(task)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


class SessionTicketStore:
    """The server's TLS 1.3 session tickets for QUIC resumption and 0-RTT, by ticket id.

    Tickets stay valid for reuse until they expire (aioquic: 24 h) or fall out of the
    bounded store, as the TCP servers' stateless OpenSSL tickets do, so a client that
    closed before its newest ticket arrived (0-RTT: the ticket comes after the
    response) still resumes with an older one. A production server would make 0-RTT
    tickets single-use against replay (RFC 8446 section 8); the benchmark's requests are
    idempotent and replay is not what is measured.
    """

    MAX = 4096

    def __init__(self) -> None:
        self.tickets: collections.OrderedDict[bytes, Any] = collections.OrderedDict()

    def add(self, ticket: Any) -> None:
        self.tickets[ticket.ticket] = ticket
        if len(self.tickets) > self.MAX:
            self.tickets.popitem(last=False)

    def get(self, label: bytes) -> Any:
        return self.tickets.get(label)


def _issue_session_tickets() -> None:
    """Make hypercorn's QUIC server issue session tickets and accept 0-RTT.

    hypercorn 0.18 builds each server QuicConnection (hypercorn.protocol.quic) with no
    session_ticket_fetcher/handler, so aioquic sends no NewSessionTicket and no client
    can resume or send early data. Given both, aioquic's server issues a ticket after
    each handshake allowing early data (tls.Context max_early_data) and accepts 0-RTT
    with a ticket it finds. The one patch: the module's QuicConnection name; the same
    subclass writes each connection's recovery state where QLOGDIR says (servers.http.qlog).
    """
    import hypercorn.protocol.quic as hq
    from aioquic.quic.connection import QuicConnection

    store = SessionTicketStore()
    qlog = logger_from_env()

    class TicketingQuicConnection(QuicConnection):
        def __init__(self, **kwargs: Any) -> None:
            if qlog is not None:         # QLOGDIR: the recovery state, for the HOL lab
                kwargs["configuration"].quic_logger = qlog
            super().__init__(session_ticket_fetcher=store.get,
                             session_ticket_handler=store.add, **kwargs)

        def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
            note_peer(self._quic_logger, addr)
            super().receive_datagram(data, addr, now)

    hq.QuicConnection = TicketingQuicConnection


def quic_hosts(host: str) -> list[str]:
    """Where an HTTP/3 server for `host` listens: `localhost` is both loopbacks, since
    browsers (Chromium) try ::1 first and a QUIC attempt there must not go unanswered."""
    return ["127.0.0.1", "::1"] if host == "localhost" else [host]


def bind_quic(host: str, port: int, attempts: int = 20
              ) -> list[tuple[socket.socket, socket.socket]]:
    """(UDP, TCP) pairs on one port number for each of quic_hosts(host); the first pair
    picks the port when it is 0. A machine without an IPv6 loopback serves 127.0.0.1
    alone (logged)."""
    hosts = quic_hosts(host)
    for _ in range(attempts):
        pairs = [_bind_same_port(hosts[0], port)]
        chosen = pairs[0][0].getsockname()[1]
        try:
            for other in hosts[1:]:
                try:
                    pairs.append(_bind_same_port(other, chosen))
                except OSError as exc:
                    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                        logging.getLogger("wirebench").warning(
                            "no %s here (%s): HTTP/3 listens on %s only", other, exc, hosts[0])
                        continue
                    raise
            return pairs
        except OSError:
            for pair in pairs:
                for sock in pair:
                    sock.close()
            if port:
                raise
    raise OSError(f"no port free for UDP and TCP on all of {', '.join(hosts)} "
                  f"after {attempts} tries")


def _bind_same_port(host: str, port: int, attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a TCP socket on one port number (QUIC + its TCP sibling)."""
    for _ in range(attempts):
        udp = bind(host, port, socket.SOCK_DGRAM)
        try:
            return udp, bind(host, udp.getsockname()[1])
        except OSError:
            udp.close()
            if port:
                raise
    raise OSError(f"no port free for both UDP and TCP on {host} after {attempts} tries")
