"""The `browser` client engine: token streams as headless Chromium sees them.

The seeds stream tokens over SSE and WebSocket to a frontend, so this engine measures
what a browser sees: cells `sse-h1+browser`, `sse-h2+browser` and `ws-stream+browser`.

How it works. Each client launches one headless Chromium (Debian's /usr/bin/chromium,
or $WIREBENCH_CHROMIUM), reused for all its requests, and drives it over the DevTools
protocol (CDP) on `--remote-debugging-pipe`: JSON messages over two pipes, no port, no
Node.js. The browser opens `GET /bench.html` *from the server under test*
(servers/browser_page.py; same origin as the API, so no CORS). Each request is one
`Runtime.evaluate` of the page's `wb.sse(...)` / `wb.ws(...)`, which runs the request
with the browser's own stack and times it there with `performance.now()`:

- SSE: `fetch()` POSTs the request and reads the streamed body with a ReadableStream
  reader, splitting `data:` events; or, when the server has the GET form of
  /v1/chat/completions (probed once per page, see `_probe_eventsource`), `EventSource`.
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

Limits: connection.policy `reuse` only (the browser pools its connections itself); an
API key is sent as an extra header on every request of the page
(Network.setExtraHTTPHeaders), WebSocket upgrade included; no DNS step, resumption or h3.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from typing import Any, ClassVar

import orjson

from .base import (Client, ClientError, ConnectError, ConnectionLost, FallbackError,
                   ProtocolViolation, Refused, StreamResult, StreamToken, Target,
                   TlsError, TlsUntrusted, clock_ns)
from .openai_codec import ChunkReader, error_from_body
from .sse import SSEDecoder
from .ws_common import server_error

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "chromium",
              "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium (or set WIREBENCH_CHROMIUM to a Chromium binary)"
PAGE_PATH = "/bench.html"
SSE_MODES = ("auto", "fetch", "eventsource")
CALIBRATION_SAMPLES = 30


class BrowserUnavailable(RuntimeError):
    """No Chromium binary (or it cannot start): the engine cannot run at all."""


def find_chromium() -> str:
    """The Chromium binary to run, or BrowserUnavailable naming what to install."""
    explicit = os.environ.get("WIREBENCH_CHROMIUM")
    for name in ([explicit] if explicit else CANDIDATES):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserUnavailable(
        f"the browser engine needs headless Chromium and found none "
        f"({explicit or ', '.join(CANDIDATES)}): {INSTALL_HINT}")


def browser_unavailable() -> str | None:
    """Why the engine cannot run here (for tests' skip reasons), or None."""
    try:
        find_chromium()
    except BrowserUnavailable as exc:
        return str(exc)
    return None


def engine_version() -> str:
    """e.g. 'Chromium 156.0.8078.114 (headless, CDP pipe)'."""
    try:
        out = subprocess.run([find_chromium(), "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (BrowserUnavailable, OSError, subprocess.SubprocessError):
        return "Chromium ? (headless, CDP pipe)"
    words = out.split()
    version = next((w for w in words if w[:1].isdigit()), "?")
    return f"Chromium {version} (headless, CDP pipe)"


# ------------------------------------------------------------------ the browser process

class Chromium:
    """One headless Chromium, driven over CDP on --remote-debugging-pipe (fds 3 and 4:
    NUL-terminated JSON). `call()` sends a command to the page's session."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.profile: str | None = None
        self.stderr = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.session: str | None = None
        self.reader_task: asyncio.Task | None = None
        self.writer: asyncio.WriteTransport | None = None
        self.dead: str | None = None

    async def launch(self, flags: list[str], timeout_s: float) -> None:
        binary = find_chromium()
        self.profile = tempfile.mkdtemp(prefix="wirebench-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        args = [binary, "--headless", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--no-proxy-server", "--mute-audio",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows", "--disable-gpu",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                *flags, "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")   # Chromium refuses to run as root with it
        # The pipes must be fds 3 and 4 in Chromium: a tiny exec trampoline puts them
        # there (no preexec_fn: see servers.lifetime; sh cannot name fds above 9), and
        # setpriv kills Chromium with us.
        from servers.lifetime import pdeathsig_prefix
        prefix = pdeathsig_prefix() if shutil.which("setpriv") else []
        trampoline = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); "
                      "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w); "
                      "os.execvp(sys.argv[3], sys.argv[3:])")
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen([sys.executable, "-S", "-c", trampoline,
                                          str(to_browser_r), str(from_browser_w),
                                          *prefix, *args],
                                         pass_fds=(to_browser_r, from_browser_w),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self.stderr, start_new_session=True)
        except OSError as exc:
            raise BrowserUnavailable(f"cannot start {binary}: {exc}; {INSTALL_HINT}") from exc
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(from_browser_r, "rb", 0))
        self.writer, _ = await loop.connect_write_pipe(asyncio.Protocol,
                                                       os.fdopen(to_browser_w, "wb", 0))
        self.reader_task = asyncio.create_task(self._read(reader))
        try:
            async with asyncio.timeout(timeout_s):
                targets = await self.call("Target.getTargets", session=False)
                page = next(t["targetId"] for t in targets["targetInfos"] if t["type"] == "page")
                attached = await self.call("Target.attachToTarget",
                                           {"targetId": page, "flatten": True}, session=False)
        except (TimeoutError, StopIteration, ClientError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or "no page"
            raise BrowserUnavailable(f"{binary} did not start ({why}): "
                                     f"{self.stderr_tail()}") from None
        self.session = attached["sessionId"]

    def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "no output"

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\0")
                msg = orjson.loads(raw[:-1])
                fut = self.pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self.dead = f"Chromium exited ({type(exc).__name__}); stderr: {self.stderr_tail()}"
        except asyncio.LimitOverrunError as exc:
            self.dead = f"CDP message too large: {exc}"
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(self.dead))
        self.pending.clear()

    async def call(self, method: str, params: dict | None = None, *,
                   session: bool = True) -> dict:
        if self.dead:
            raise ConnectionLost(self.dead)
        i = next(self.ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        self.writer.write(orjson.dumps(msg) + b"\0")
        try:
            reply = await fut
        finally:
            self.pending.pop(i, None)
        if "error" in reply:
            raise ProtocolViolation(f"CDP {method}: {reply['error'].get('message')}")
        return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (awaited if a promise), or ProtocolViolation."""
        result = await self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise ProtocolViolation(f"page script failed: {text}")
        return result["result"].get("value")

    def fire(self, expression: str) -> None:
        """Evaluate without waiting for the answer (abort a request)."""
        if self.dead or self.writer is None or self.writer.is_closing():
            return
        msg = {"id": next(self.ids), "method": "Runtime.evaluate", "sessionId": self.session,
               "params": {"expression": expression}}
        self.writer.write(orjson.dumps(msg) + b"\0")

    def cpu_s(self) -> float:
        """CPU seconds of every process of this Chromium (its session: browser, zygotes,
        renderer, network and GPU services), from /proc, reaped children included."""
        if self.proc is None:
            return 0.0
        sid, ticks = self.proc.pid, 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:            # state ppid pgrp session ... utime stime
                ticks += sum(int(x) for x in fields[11:15])   # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None and not self.dead:
            try:
                async with asyncio.timeout(2):
                    await self.call("Browser.close", session=False)
            except (TimeoutError, ClientError):
                pass
        if self.proc is not None:
            for _ in range(40):                  # Browser.close: it exits on its own
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)   # its own group, from Popen
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self.reader_task is not None:
            self.reader_task.cancel()
        if self.writer is not None:
            self.writer.close()
        if self.stderr is not None:
            self.stderr.close()
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)


# ------------------------------------------------------------------ TLS

async def _spki_pin(target: Target) -> str:
    """base64 SHA-256 of the server certificate's public key, once the certificate is
    verified against target.ca for target.server_name (the Python clients' check)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ctx = ssl.create_default_context(cafile=str(target.ca) if target.ca else None)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    where = f"{target.host}:{target.port}"
    try:
        async with asyncio.timeout(target.connect_timeout_s):
            _, writer = await asyncio.open_connection(target.host, target.port, ssl=ctx,
                                                      server_hostname=target.server_name)
    except ssl.SSLCertVerificationError as exc:
        raise TlsUntrusted(f"TLS to {where}: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise TlsError(f"TLS to {where}: {exc}") from None
    except ConnectionRefusedError:
        raise Refused(f"nothing listens on {where}") from None
    except (OSError, TimeoutError) as exc:
        raise ConnectError(f"TLS connect to {where} failed: {exc!r}") from None
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


# ------------------------------------------------------------------ the clients

_NAV_ERRORS = {"net::ERR_CONNECTION_REFUSED": Refused,
               "net::ERR_CERT_AUTHORITY_INVALID": TlsUntrusted}


class BrowserClient(Client):
    """A streaming client whose requests run in a headless Chromium page."""

    streaming = True
    http_version: ClassVar[str]          # nextHopProtocol expected: "http/1.1", "h2"
    scheme: ClassVar[str]

    def __init__(self, target: Target, *, reuse: bool = True, sse_mode: str = "auto") -> None:
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
        if t.api_key:
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
                               "(servers/browser_page.py)")
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
            flags.append(f"--ignore-certificate-errors-spki-list={await _spki_pin(t)}")
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
        """Whether GET {base}/chat/completions?model=..&content=..&max_tokens=..
        &wirebench=<JSON> streams, honouring the wirebench knobs (two tokens asked 30 ms
        apart must be emitted >= 25 ms apart): EventSource can only send a GET."""
        if self.sse_mode == "fetch" or self.target.api_key:
            return False                     # EventSource cannot send Authorization
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

    @staticmethod
    def _query(request: dict[str, Any]) -> dict[str, str]:
        messages = request.get("messages") or [{}]
        query = {"model": request.get("model", ""),
                 "content": str(messages[-1].get("content", "")),
                 "max_tokens": str(request.get("max_tokens", ""))}
        if request.get("wirebench"):
            query["wirebench"] = orjson.dumps(request["wirebench"]).decode()
        return query

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

    async def generate(self, request: dict[str, Any]) -> StreamResult:
        browser = await self._page()
        url = f"ws://{self.target.host}:{self.target.port}/"
        body = orjson.dumps(request).decode()
        rec = await self._run(browser, f"wb.ws($RID, {body}, {orjson.dumps(url).decode()})")
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
