"""The browser engine's clients: sse-h1, sse-h2 and ws-stream run in a Chromium page
(the package docstring says how)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, ClassVar

import orjson

from clients.base import (Client, ClientError, ConnectError, ConnectionLost, FallbackError,
                   ProtocolViolation, Refused, StreamResult, StreamToken, Target,
                   TlsUntrusted, clock_ns)
from clients.browser.chromium import (CALIBRATION_SAMPLES, PAGE_PATH, SSE_MODES, Chromium,
                                      find_chromium, spki_pin)
from clients.openai_codec import ChunkReader, error_from_body
from clients.sse import SSEDecoder
from clients.ws.common import server_error


# ------------------------------------------------------------------ the clients

_NAV_ERRORS = {"net::ERR_CONNECTION_REFUSED": Refused,
               "net::ERR_CERT_AUTHORITY_INVALID": TlsUntrusted}


class BrowserClient(Client):
    """A streaming client whose requests run in a headless Chromium page."""

    streaming = True
    http_version: ClassVar[str]          # nextHopProtocol expected: "http/1.1", "h2"
    scheme: ClassVar[str]
    key_in_header: ClassVar[bool] = True  # the API key as Authorization on fetch()

    def __init__(self, target: Target, *, reuse: bool = True, sse_mode: str = "fetch") -> None:
        """sse_mode: "fetch" (default: the same POST as the Python clients, with bytes and
        the HTTP version the browser used), "eventsource" (the GET form, as a page's
        EventSource reads it) or "auto" (EventSource where the server has the GET form)."""
        super().__init__(target, reuse=reuse)
        if not reuse:
            raise ValueError(f"{self.protocol}+browser runs with connection.policy reuse "
                             "only: the browser pools its connections itself")
        if sse_mode not in SSE_MODES:
            raise ValueError(f"sse_mode must be one of {', '.join(SSE_MODES)}")
        find_chromium()                      # fail now, with the install hint
        self.sse_mode = sse_mode
        self._browser: Chromium | None = None
        self._opening = asyncio.Lock()
        self._rids = itertools.count(1)
        self._offset_ns = 0
        self.clock_error_us = 0.0
        self.page_protocol: str | None = None
        self._fresh = True                   # the next request is the first on the page

    # -------------------------------------------------------------- set-up

    @property
    def origin(self) -> str:
        t = self.target
        return f"{self.scheme}://{t.server_name if self.scheme == 'https' else t.host}:{t.port}"

    async def _flags(self) -> list[str]:
        return []

    async def _page(self) -> Chromium:
        browser = self._browser
        if browser is not None and not browser.dead:
            return browser
        async with self._opening:
            if self._browser is not None and not self._browser.dead:
                return self._browser
            if self._browser is not None:
                await self._browser.close()
            self._browser = None
            browser = Chromium()
            try:
                await browser.launch(await self._flags(), max(10.0, self.target.connect_timeout_s))
                await self._load(browser)
            except BaseException:
                await browser.close()
                raise
            self._browser, self._fresh = browser, True
            return browser

    async def _load(self, browser: Chromium) -> None:
        t = self.target
        if t.api_key and self.key_in_header:
            await browser.call("Network.enable")
            await browser.call("Network.setExtraHTTPHeaders",
                               {"headers": {"Authorization": f"Bearer {t.api_key}"}})
        url = self.origin + PAGE_PATH
        nav = await browser.call("Page.navigate", {"url": url})
        if nav.get("errorText"):
            kind = _NAV_ERRORS.get(nav["errorText"], ConnectError)
            raise kind(f"the browser could not load {url}: {nav['errorText']}")
        ready = ("document.readyState === 'complete' && "
                 "[typeof wb, performance.getEntriesByType('navigation')[0]?.responseStatus,"
                 " performance.getEntriesByType('navigation')[0]?.nextHopProtocol, "
                 "self.crossOriginIsolated]")
        deadline = clock_ns() + int(t.connect_timeout_s * 1e9)
        while True:
            state = await browser.evaluate(ready)
            if state:
                break
            if clock_ns() > deadline:
                raise ConnectError(f"the browser did not finish loading {url} within "
                                   f"{t.connect_timeout_s:g} s")
            await asyncio.sleep(0.02)
        kind, status, protocol, _isolated = state
        if kind != "object":
            raise ConnectError(f"{url} answered HTTP {status} without the browser engine's "
                               "page: the server must serve GET /bench.html "
                               "(servers/http/browser_page.py)")
        self.page_protocol = protocol
        if protocol != self.http_version:
            raise FallbackError(f"the browser loaded {url} over {protocol!r}, not "
                                f"{self.http_version!r}")
        await self._calibrate(browser)

    async def _calibrate(self, browser: Chromium) -> None:
        """Offset of the page clock against clock_ns (module docstring)."""
        best = None
        for _ in range(CALIBRATION_SAMPLES):
            a = clock_ns()
            page_ms = await browser.evaluate("performance.now()")
            b = clock_ns()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) // 2 - round(page_ms * 1e6))
        self._offset_ns = best[1]
        self.clock_error_us = best[0] / 2e3

    def child_cpu_s(self) -> float:
        """CPU seconds the browser's processes used so far (the harness adds it to the
        worker's own client CPU)."""
        return self._browser.cpu_s() if self._browser is not None else 0.0

    def _ns(self, page_ms: float) -> int:
        return self._offset_ns + round(page_ms * 1e6)

    # -------------------------------------------------------------- requests

    async def _run(self, browser: Chromium, call: str) -> dict[str, Any]:
        """Evaluate one `wb.<call>` request; a cancelled caller aborts it in the page."""
        rid = next(self._rids)
        try:
            return await browser.evaluate(call.replace("$RID", str(rid)))
        except asyncio.CancelledError:
            browser.fire(f"wb.abort({rid})")
            raise

    def _failure(self, rec: dict[str, Any]) -> ClientError:
        err = rec["error"]
        if err.get("kind") == "status":
            return error_from_body(err["status"], (err.get("body") or "").encode())
        if err.get("kind") == "connect":
            return ConnectError(err.get("message", "connect failed"))
        return ConnectionLost(f"browser: {err.get('message')}")

    def _check_protocol(self, rec: dict[str, Any]) -> None:
        got = rec.get("protocol")
        if got is not None and got != self.http_version:
            raise FallbackError(f"the browser ran the request over {got!r}, not "
                                f"{self.http_version!r}")

    def _extra(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {"browser_mode": rec.get("mode"), "wire_protocol": rec.get("protocol"),
                "clock_error_us": round(self.clock_error_us, 1)}

    async def close(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            await browser.close()


class BrowserSseClient(BrowserClient):
    """SSE in the browser: fetch() streaming (POST), or EventSource (GET) if served."""

    _eventsource: bool | None = None

    async def _flags(self) -> list[str]:
        t = self.target
        flags = []
        if self.scheme == "https":
            flags.append(f"--ignore-certificate-errors-spki-list={await spki_pin(t)}")
            if t.tls_version in ("1.2", "1.3"):
                v = "tls" + t.tls_version
                flags += [f"--ssl-version-min={v}", f"--ssl-version-max={v}"]
        if t.server_name != t.host and self.scheme == "https":
            flags.append(f"--host-resolver-rules=MAP {t.server_name} {t.host}")
        return flags

    @property
    def _path(self) -> str:
        return self.target.base_path + "/chat/completions"

    async def _probe_eventsource(self, browser: Chromium, request: dict[str, Any]) -> bool:
        """Whether GET {base}/chat/completions?model=..&content=..&max_tokens=..&itl_ms=..
        streams, honouring the wirebench knobs (two tokens asked 30 ms apart must be
        emitted >= 25 ms apart): EventSource can only send a GET."""
        if self.sse_mode == "fetch":
            return False
        query = self._query({**request, "max_tokens": 2,
                             "wirebench": {"itl_ms": 30, "seed": 1}})
        probe = await browser.evaluate(
            f"fetch({orjson.dumps(self._path).decode()} + '?' + new URLSearchParams("
            f"{orjson.dumps(query).decode()}), {{cache: 'no-store'}}).then(async r => "
            "[r.status, r.headers.get('content-type') || '', await r.text()])"
            ".catch(e => [0, '', String(e)])")
        status, ctype, text = probe
        ok = status == 200 and ctype.startswith("text/event-stream")
        if ok:
            reader = ChunkReader()
            try:
                for event in SSEDecoder().feed(text.encode()):
                    if event.data != "[DONE]":
                        reader.add(orjson.loads(event.data), 0)
                emits = [tok.emit_ns for tok in reader.tokens]
                ok = len(emits) == 2 and None not in emits and emits[1] - emits[0] >= 25e6
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ClientError):
                ok = False
        if self.sse_mode == "eventsource" and not ok:
            raise ProtocolViolation(f"sse_mode eventsource: GET {self._path}?... does not "
                                    f"stream with the wirebench knobs (HTTP {status})")
        return ok

    def _query(self, request: dict[str, Any]) -> dict[str, str]:
        """The GET form of a chat stream (servers/http/query.py): the user message, the
        model, max_tokens and the wirebench knobs as query parameters; the API key as
        ?api_key= (EventSource cannot send headers)."""
        messages = request.get("messages") or [{}]
        query = {"model": str(request.get("model", "")),
                 "content": str(messages[-1].get("content", "")),
                 "max_tokens": str(request.get("max_tokens", ""))}
        if (request.get("stream_options") or {}).get("include_usage"):
            query["include_usage"] = "true"
        for knob, value in (request.get("wirebench") or {}).items():
            if knob in ("ttft_ms", "itl_ms", "seed") and value is not None:
                query[knob] = str(value)
        if self.target.api_key:
            query["api_key"] = self.target.api_key
        return {k: v for k, v in query.items() if v != ""}

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        browser = await self._page()
        if self._eventsource is None:
            self._eventsource = await self._probe_eventsource(browser, request)
        if not request.get("stream"):
            request = {**request, "stream": True}
        body = orjson.dumps(request)
        opts = {"path": self._path, "mode": "eventsource" if self._eventsource else "fetch",
                "headers": {}, "query": self._query(request)}
        rec = await self._run(browser, f"wb.sse($RID, {orjson.dumps(body.decode()).decode()}, "
                                       f"{orjson.dumps(opts).decode()})")
        if rec.get("error"):
            raise self._failure(rec)
        if rec["mode"] == "fetch" and not (rec.get("content_type") or "").startswith(
                "text/event-stream"):
            raise ProtocolViolation(f"expected text/event-stream, got {rec.get('content_type')!r}")
        self._check_protocol(rec)
        reader, ns = ChunkReader(), self._ns
        try:
            for t, data in rec["events"]:
                if data == "[DONE]":
                    reader.done = True
                    continue
                reader.add(orjson.loads(data), ns(t))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise ProtocolViolation(f"bad SSE chunk: {exc}") from None
        if not reader.done:
            raise ProtocolViolation("stream ended without 'data: [DONE]'")
        down = rec["bytes_down"]
        if down is None:                     # EventSource does not show bytes: rebuild
            down = sum(len(d.encode()) + 8 for _, d in rec["events"])   # "data: " + "\n\n"
        first = self._fresh
        self._fresh = False
        return StreamResult(reader.tokens, ns(rec["start"]), ns(rec.get("first_byte", rec["end"])),
                            ns(rec["end"]), len(body), down, reader.server_time_us, reader.usage,
                            first, None, extra=self._extra(rec))


class BrowserSseH1Client(BrowserSseClient):
    protocol = "sse-h1"
    http_version = "http/1.1"
    scheme = "http"


class BrowserSseH2Client(BrowserSseClient):
    protocol = "sse-h2"
    http_version = "h2"
    scheme = "https"

    def __init__(self, target: Target, **kw: Any) -> None:
        if target.tls is False:
            raise ValueError("sse-h2+browser needs TLS: browsers speak HTTP/2 only over "
                             "TLS (no h2c); remove tls: false")
        super().__init__(target, **kw)


class BrowserWsStreamClient(BrowserClient):
    """ws-stream in the browser: the WebSocket API, one connection per page."""

    protocol = "ws-stream"
    http_version = "http/1.1"               # the page load; the upgrade is HTTP/1.1 too
    scheme = "http"
    key_in_header = False     # a page cannot set headers on an upgrade: a subprotocol


    async def generate(self, request: dict[str, Any]) -> StreamResult:
        browser = await self._page()
        url = f"ws://{self.target.host}:{self.target.port}/"
        body = orjson.dumps(request).decode()
        # With a key, the browser's way: the subprotocol wirebench.bearer.<key>
        # (docs/websocket-protocol.md), which the server selects in its answer.
        protocols = [f"wirebench.bearer.{self.target.api_key}"] if self.target.api_key else []
        rec = await self._run(browser, f"wb.ws($RID, {body}, {orjson.dumps(url).decode()}, "
                                       f"{orjson.dumps(protocols).decode()})")
        if rec.get("error"):
            raise self._failure(rec)
        tokens: list[StreamToken] = []
        ns, msg, down = self._ns, {}, 0
        for t, data in rec["events"]:
            down += len(data.encode())
            try:
                msg = orjson.loads(data)
                kind = msg["type"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise ProtocolViolation(f"malformed WebSocket message: {data[:200]!r}") from exc
            if kind == "token":
                tokens.append(StreamToken(msg["index"], msg["text"], msg["emit_ns"], ns(t)))
            elif kind == "error":
                raise server_error(msg)
        if msg.get("type") != "done":
            raise ProtocolViolation(f"expected a token or done message, got {msg.get('type')!r}")
        connect_ms = rec.get("connect_ms")
        up = rec["bytes_up"]
        return StreamResult(tokens, ns(rec["start"]), ns(rec.get("first_byte", rec["end"])),
                            ns(rec["end"]), up, down, msg.get("server_time_us"),
                            msg.get("usage"), connect_ms is not None,
                            round(connect_ms * 1e6) if connect_ms is not None else None,
                            extra=self._extra(rec))

    async def close(self) -> None:
        if self._browser is not None and not self._browser.dead:
            try:
                async with asyncio.timeout(1):
                    await self._browser.evaluate("wb.closeSocket()")
            except (TimeoutError, ClientError):
                pass
        await super().close()


ENGINES: dict[str, type[Client]] = {c.protocol: c for c in (
    BrowserSseH1Client, BrowserSseH2Client, BrowserWsStreamClient)}
