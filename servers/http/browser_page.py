"""GET /bench.html: the static page the `browser` client engine (clients/browser/) runs in.

Served by the server under test itself (the bare ASGI app, the FastAPI app and, through
websockets' `process_request` hook, the WebSocket server), so the page is same-origin
with the API and needs no CORS. The page does nothing by itself: the engine calls
`wb.sse(...)`, `wb.ws(...)` and `wb.abort(...)` over the DevTools protocol, and each
call returns what the browser saw, timed with `performance.now()` (ms, page clock):

    {start, first_byte, end, events: [[t_ms, data], ...], bytes_down, mode, protocol,
     error?: {kind, message, status?, body?}}

`events` are the SSE `data:` payloads (or WebSocket messages) in arrival order, each
with the arrival time of the chunk (message) that completed it; the engine decodes them
with the Python client's own code, so token counts, indices and emit stamps mean the
same on both engines. Nothing is parsed more than a frontend would (one JSON.parse per
event, to see the end of the stream).

The page is cross-origin isolated (COOP/COEP headers): Chromium then times
`performance.now()` to 5 us instead of 100 us.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

PATH = "/bench.html"

_JS = r"""
"use strict";
const wb = (() => {
  const now = () => performance.now();
  const inflight = new Map();        // request id -> abort function
  let sseMode = null;                // "fetch" | "eventsource", probed once
  let sock = null, sockOpen = null;  // the page's one WebSocket (reused by every request)
  const wsInbox = new Map();         // request id -> handler(t, data)
  let nextId = 1;

  function hopProtocol(url) {
    const e = performance.getEntriesByName(url, "resource");
    return e.length ? e[e.length - 1].nextHopProtocol : null;
  }

  // POST + fetch() + ReadableStream: the stream a frontend reads with the SDK's fetch.
  async function sseFetch(rid, path, body, headers) {
    const ctl = new AbortController();
    inflight.set(rid, () => ctl.abort());
    const rec = {mode: "fetch", events: [], bytes_down: 0};
    const url = new URL(path, location.href).href;
    rec.start = now();
    let resp;
    try {
      resp = await fetch(url, {method: "POST", body, signal: ctl.signal, cache: "no-store",
                               headers: {"content-type": "application/json", ...headers}});
    } catch (e) {
      rec.end = now();
      rec.error = {kind: e.name === "AbortError" ? "aborted" : "network", message: String(e)};
      return rec;
    }
    rec.first_byte = now();
    rec.status = resp.status;
    if (resp.status !== 200) {
      rec.error = {kind: "status", status: resp.status, body: await resp.text()};
      rec.end = now();
      return rec;
    }
    rec.content_type = resp.headers.get("content-type");
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "", data = [];
    try {
      for (;;) {
        const {value, done} = await reader.read();
        const t = now();
        if (done) { rec.end = t; break; }
        rec.bytes_down += value.byteLength;
        buf += dec.decode(value, {stream: true});
        // WHATWG event-stream parsing: lines end in LF, CR or CRLF; a blank line
        // dispatches; data lines join with LF; comments and other fields are skipped.
        let i;
        while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (buf[i] === "\r" && i === buf.length - 1) break;   // maybe the CR of a CRLF
          const line = buf.slice(0, i);
          buf = buf.slice(buf[i] === "\r" && buf[i + 1] === "\n" ? i + 2 : i + 1);
          if (line === "") {
            if (data.length) { rec.events.push([t, data.join("\n")]); data = []; }
          } else if (line.startsWith("data:")) {
            data.push(line.slice(line[5] === " " ? 6 : 5));
          }
        }
      }
    } catch (e) {
      rec.end = now();
      rec.error = {kind: e.name === "AbortError" ? "aborted" : "network", message: String(e)};
    }
    rec.protocol = hopProtocol(url);
    return rec;
  }

  // GET + EventSource: the browser's own SSE client (no body, no headers).
  function sseEventSource(rid, path, query) {
    return new Promise(resolve => {
      const rec = {mode: "eventsource", events: [], bytes_down: null};
      const url = new URL(path + "?" + new URLSearchParams(query), location.href).href;
      rec.start = now();
      const es = new EventSource(url);
      const finish = (error) => {
        es.close();
        rec.end = rec.end || now();
        if (error) rec.error = error;
        inflight.delete(rid);
        rec.protocol = hopProtocol(url);
        resolve(rec);
      };
      inflight.set(rid, () => finish({kind: "aborted", message: "aborted"}));
      es.onopen = () => { rec.first_byte = now(); };
      es.onmessage = (ev) => {
        const t = now();
        rec.events.push([t, ev.data]);
        if (ev.data === "[DONE]") { rec.end = t; finish(null); }
      };
      es.onerror = () => finish({kind: "network", message:
        "EventSource failed (readyState " + es.readyState + ") before data: [DONE]"});
    });
  }

  // Does the server take GET /v1/chat/completions?... (an EventSource stream)?
  async function probeEventSource(path, query) {
    try {
      const r = await fetch(path + "?" + new URLSearchParams(query), {cache: "no-store"});
      const ok = r.status === 200 &&
        (r.headers.get("content-type") || "").startsWith("text/event-stream");
      await r.text();
      return ok;
    } catch (e) { return false; }
  }

  function wsConnect(url, protocols) {
    if (sockOpen) return sockOpen;
    sockOpen = new Promise((resolve, reject) => {
      const t0 = now();
      const s = new WebSocket(url, protocols || []);
      s.onopen = () => { sock = s; resolve(now() - t0); };
      s.onerror = () => reject(new Error("WebSocket to " + url + " failed"));
      s.onclose = (ev) => {
        sock = null; sockOpen = null;
        for (const h of wsInbox.values()) h(now(), null, ev);
        wsInbox.clear();
      };
      s.onmessage = (ev) => {
        const t = now();
        const data = ev.data;
        // The server puts "id" first: route by it without parsing the whole frame.
        const m = /^\{"id":(?:"([^"]*)"|(-?\d+)|null)/.exec(data);
        const h = m && wsInbox.get(m[1] !== undefined ? m[1] : m[2]);
        if (h) h(t, data, null);
      };
    });
    sockOpen.catch(() => { sockOpen = null; });
    return sockOpen;
  }

  return {
    // One streamed chat completion over SSE. opts: {path, headers, query, mode}.
    async sse(rid, body, opts) {
      try {
        let mode = opts.mode;
        if (mode === "auto") {
          if (sseMode === null)
            sseMode = (await probeEventSource(opts.path, opts.probe)) ? "eventsource" : "fetch";
          mode = sseMode;
        }
        return mode === "eventsource" ? await sseEventSource(rid, opts.path, opts.query)
                                      : await sseFetch(rid, opts.path, body, opts.headers);
      } finally { inflight.delete(rid); }
    },

    // One generation over the page's WebSocket (docs/websocket-protocol.md).
    async ws(rid, body, url, protocols) {
      const rec = {mode: "websocket", events: [], bytes_down: 0, protocol: "websocket"};
      try {
        const opened = !sock;
        const connect_ms = await wsConnect(url, protocols);
        if (opened) rec.connect_ms = connect_ms;
      } catch (e) {
        rec.start = rec.end = now();
        rec.error = {kind: "connect", message: String(e)};
        return rec;
      }
      const id = String(nextId++);
      return await new Promise(resolve => {
        const done = (error) => {
          wsInbox.delete(id); inflight.delete(rid);
          if (error) rec.error = error;
          resolve(rec);
        };
        wsInbox.set(id, (t, data, closed) => {
          if (closed) { rec.end = t; done({kind: "closed", message: "WebSocket closed: code " +
                                          closed.code + " " + closed.reason}); return; }
          if (!rec.events.length) rec.first_byte = t;
          rec.events.push([t, data]);
          rec.bytes_down += data.length;
          const type = JSON.parse(data).type;
          if (type !== "token") { rec.end = t; done(null); }
        });
        inflight.set(rid, () => {
          if (sock) sock.send(JSON.stringify({id, type: "cancel"}));
          rec.end = now();
          done({kind: "aborted", message: "aborted"});
        });
        const frame = JSON.stringify({id, type: "generate", body});
        rec.bytes_up = new TextEncoder().encode(frame).length;
        rec.start = now();
        sock.send(frame);
      });
    },

    abort(rid) { const f = inflight.get(rid); if (f) f(); return !!f; },
    closeSocket() { if (sock) sock.close(1000); },
  };
})();
"""

PAGE = (b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wirebench</title>"
        b"</head><body><p>wirebench browser engine page</p><script>" + _JS.encode()
        + b"</script></body></html>\n")

# Cross-origin isolation: performance.now() at 5 us resolution instead of 100 us.
HEADERS = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
           (b"cross-origin-opener-policy", b"same-origin"),
           (b"cross-origin-embedder-policy", b"require-corp"),
           (b"content-length", b"%d" % len(PAGE))]


async def asgi_handler(scope: dict[str, Any], receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
    """ASGI: the page, whatever the request (route it at GET PATH)."""
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PAGE})


def ws_process_request(inner: Callable | None = None) -> Callable:
    """websockets' `process_request` hook: GET PATH answers the page (200 text/html);
    anything else goes on to `inner` (e.g. the API-key check), then to the upgrade."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    def process(connection: Any, request: Any) -> Any:
        if request.path.split("?", 1)[0] == PATH:
            headers = Headers([(k.decode(), v.decode()) for k, v in HEADERS])
            return Response(200, "OK", headers, PAGE)
        return inner(connection, request) if inner is not None else None

    return process
