"""The `browser` client engine: token streams as headless Chromium sees them.

The seeds stream tokens over SSE and WebSocket to a frontend, so this engine measures
what a browser sees: cells `sse-h1+browser`, `sse-h2+browser` and `ws-stream+browser`.

How it works. Each client launches one headless Chromium (Debian's /usr/bin/chromium,
or $WIREBENCH_CHROMIUM), reused for all its requests, and drives it over the DevTools
protocol (CDP) on `--remote-debugging-pipe`: JSON messages over two pipes, no port, no
Node.js. The browser opens `GET /bench.html` *from the server under test*
(servers/http/browser_page.py; same origin as the API, so no CORS). Each request is one
`Runtime.evaluate` of the page's `wb.sse(...)` / `wb.ws(...)`, which runs the request
with the browser's own stack and times it there with `performance.now()`:

- SSE: `fetch()` POSTs the request and reads the streamed body with a ReadableStream
  reader, splitting `data:` events (the default: the Python clients' request, with
  bytes and the HTTP version seen); or, with sse_mode "eventsource" (or "auto", where
  the server has it), `EventSource` on the GET form of /v1/chat/completions
  (servers/http/query.py), parameters and key in the query string.
- WebSocket: the browser's `WebSocket` speaking docs/websocket-protocol.md, one
  connection per page shared by the client's requests.

The page returns every event (or message) with the arrival time of the chunk that
completed it; Python decodes them with the Python clients' own code (ChunkReader, the
WebSocket message shapes), so tokens, indices, usage and server times mean exactly what
they mean for the Python engine. TTFT, ITL and E2E are differences of page times alone.

Clock: Chromium's performance.now() runs on base::TimeTicks, CLOCK_MONOTONIC on Linux,
the clock of `clock_ns()` and of the server's emit stamps, from an origin Python cannot
read. At page load the engine asks for `performance.now()` 30 times and keeps the
answer with the shortest round trip (about 0.1 ms over the pipe), taking its midpoint
as the offset: page times then map onto clock_ns within half that round trip
(`extra["clock_error_us"]`), which is what the one-way token delay (recv - emit) relies
on. The page is cross-origin isolated, so performance.now() has 5 us resolution.

TLS (sse-h2): Python first connects to the server, verifies it against the target's CA
with SNI exactly as the Python clients do, and passes the SHA-256 of that certificate's
public key to `--ignore-certificate-errors-spki-list`: Chromium accepts that one key,
and nothing else, without installing the CA in a system store. Browsers speak HTTP/2
only over TLS (no h2c) and negotiate it by ALPN; the protocol the browser actually used
(`nextHopProtocol`) is checked on the page load and on every request, and a fallback is
a FallbackError, never a result.

Why raw CDP rather than Playwright: tried both here; Playwright (1.63, with its Node
driver process) took 1.3 s to launch and 1.1-1.4 ms per evaluate round trip, raw CDP
0.25 s and 0.13-0.16 ms, with one process fewer on a 2-core machine and no new
dependency. The round trip sets the clock mapping's error, so shorter is better too.

Client CPU: Chromium's processes (one session) are read from /proc around the measured
phase and added to the worker's own CPU (`child_cpu_s`).

Limits: connection.policy `reuse` only (the browser pools its connections itself); no
DNS step, resumption or h3. An API key goes where a page would put it: Authorization on
fetch() (Network.setExtraHTTPHeaders), ?api_key= for EventSource, and the subprotocol
wirebench.bearer.<key> on the WebSocket (a page cannot set headers on an upgrade).
"""

from clients.browser.chromium import browser_unavailable, engine_version
from clients.browser.clients import ENGINES

__all__ = ["ENGINES", "browser_unavailable", "engine_version"]
