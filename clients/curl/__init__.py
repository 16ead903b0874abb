"""The libcurl engine (pycurl): HTTP/1.1, HTTP/2 and HTTP/3 through a native stack, driven
by the running asyncio loop (transport.py; easy.py per request), or blocking from one
thread for closed loops of unary requests (sync.py one user, multi_sync.py several:
harness.run.load's blocking paths pick those; the notes below are the asyncio path's).

A C engine next to the pure-Python transports (clients.transport.http1, http2, http3), behind the
same `HttpTransport` contract, so a cell can be measured with the protocol work done in
C (ANCHORS.md: a plain CurlMulti loop reached 1.02x h2load and 0.88x wrk).

Event-loop integration is libcurl's multi-socket API, with no threads and no polling:
CURLMOPT_SOCKETFUNCTION maps onto loop.add_reader / add_writer / remove_*,
CURLMOPT_TIMERFUNCTION onto loop.call_later (call_soon for "now"), and every readiness
event or timer runs one `socket_action`; completed transfers are collected with
`info_read` only when the running count says one finished. Works under uvloop and the
stdlib selector loop. A request added while nothing else is in flight runs libcurl at
once (lowest latency at concurrency 1); otherwise libcurl's "due now" timer sends every
request added in one loop iteration in a single socket_action.

libcurl stops watching a connection's socket whenever it goes idle, i.e. after every
request; with reuse the loop's reader is kept ("lingering") so the next request on it
costs no epoll_ctl pair. libcurl does not say when it closes a socket it is not
watching (an aged or dead idle connection), and a loop registration must never outlive
its fd (the next file with that number would inherit it; uvloop aborts the process).
So lingering fds are dropped when they turn readable (peer closed or sent), checked
with one select() after every socket_action that started or ended a transfer (the only
times libcurl closes idle connections), and cleared when libcurl opens a new socket
with the same number (CURLOPT_SOCKOPTFUNCTION).

Per request: a pooled easy handle (creating one costs far more than resetting a few
options), one exchange object, and the header lines the response carries. The unary
path, `fetch()`, gives libcurl the handle's own `list.append` methods as header and
write callbacks (C calls: no Python frame per header line or body piece) and wakes its
caller once, when the transfer ended; `request()` streams through Python callbacks.

Receive times: one clock_ns() per header-block start and per body piece, in the
callback libcurl hands it over in (the completion reuses the last piece's stamp when it
came in the same call). Not the time the loop reported the event: one socket_action
can both send a request and read its response (on loopback, sendto() often returns only after the server, woken on
the same core, has answered), and a stamp taken before the call would then precede the
request itself (seen: 20 us "latencies" against 120 us of server time). The stamp is
therefore a few microseconds after the bytes arrived (libcurl's recv, TLS decryption,
framing), where the Python transports stamp right after the loop's recv. fetch() has no
Python callback to stamp in: its first-byte and end times are one clock_ns() taken right
after the socket_action in which its first header line (its end) arrived, the same
"after libcurl read it" point, later by the rest of that call (for a small response at
concurrency 1, headers, body and end come in one call and share the stamp).

Timings: `exchange.curl_phases` holds libcurl's own phase times in microseconds, each
measured by libcurl from the start of the transfer (when the handle was added, curl's
clock): namelookup, connect, appconnect (TLS / QUIC handshake done; 0 on cleartext),
pretransfer (request about to be sent), starttransfer (first response byte read) and
total (transfer done). On a reused connection the first three are 0 (or tiny). The
harness's own t_start is taken before `request()` (so it includes building the request
in Python, a few microseconds earlier than curl's zero), and t_first_byte is the loop's
stamp of the first header line, taken in the callback, just after libcurl read it
(curl's starttransfer is taken when it read the first byte, slightly earlier). So, per
request, (t_first_byte - t_start) ~ starttransfer + a few microseconds of Python request
set-up, and (t_received - t_start) ~ total likewise.

Wire accounting: libcurl owns its sockets. CURLOPT_SOCKOPTFUNCTION shows each new TCP
socket; it is tracked in clients.transport.wire.METER through a small adapter that reads TCP_INFO
by file descriptor (checking the fd still names the same socket) and keeps the last
reading, which stands for the socket once libcurl has closed it. Readings: at every
METER snapshot, when a reuse=False connection ends (POLL_REMOVE comes just before
libcurl closes it), when an idle connection turns readable (peer closing), and at
close(). What can escape: the final FIN/ACK of a connection, and the bytes since the
last snapshot of an idle connection libcurl closed on its own (older than
MAXAGE_CONN, 118 s idle). CURLOPT_CLOSESOCKETFUNCTION would be the
natural hook but is unsafe with pycurl: libcurl calls it through the easy handle that
opened the connection, and when that handle is not attached to the multi at that moment
(an idle connection found dead, the multi closing), pycurl cannot take the GIL, warns
"closesocket_callback failed to acquire thread" and never closes the fd.
HTTP/3 runs over UDP inside ngtcp2: its datagrams are not counted at socket level here
(namespace interface counters cover it).

TLS: verified against `target.ca` with SNI `target.server_name`; the URL names
server_name and CURLOPT_CONNECT_TO sends the socket to target.host. TLS session
resumption is off, so each new connection does a full handshake, as the Python
transports do. HTTP/2 over TLS offers ALPN h2 and http/1.1 (libcurl cannot offer h2
alone): a server that picks http/1.1 is caught at the response headers (FallbackError),
after it has served the request. h2c uses prior knowledge.

On the wire, libcurl's HTTP/2 differs from the Python transport and from h2load: it
opens each stream with a 64 KiB window and raises it with WINDOW_UPDATE frames, two per
request, which costs a Python server (hypercorn) measurably more per request. A reused
connection that the server closed while idle (libcurl was not watching it) fails the
next request before any response byte; that request is retried once on a new
connection, as libcurl does itself for HTTP/1.1 and as the Python transports avoid by
seeing the close.
"""
