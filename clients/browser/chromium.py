"""Headless Chromium driven over the DevTools protocol (a pipe): finding the binary,
launching it, calling CDP methods, and the TLS pin for the test CA."""

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
from typing import Any

import orjson

from clients.base import (ClientError, ConnectError, ConnectionLost, ProtocolViolation, Refused, Target,
                   TlsError, TlsUntrusted)


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
        # there (no preexec_fn: see base.lifetime; sh cannot name fds above 9), and
        # setpriv kills Chromium with us.
        from base.lifetime import pdeathsig_prefix
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

async def spki_pin(target: Target) -> str:
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
