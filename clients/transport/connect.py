"""Opening TCP, then TLS over it, as two timed steps; and naming what failed.

The HTTP/1.1 and HTTP/2 transports connect the TCP socket first (`sock_connect`), stamp
it, then hand the connected socket to `create_connection(sock=..., ssl=ctx)`, which
runs only the TLS handshake: curl's time_connect and time_appconnect, apart. The
SSLContext is the transport's own (base.client_tls.client_context), so whatever is done to
it (session resumption) applies. Measured on loopback, the split costs nothing
noticeable against one `create_connection(host, port, ssl=ctx)` (benchmarks/tls_split.py).

Failures become the ConnectError subclasses of clients.base, counted by kind: refused,
phase_timeout, tls_untrusted, tls_expired, tls_name_mismatch, tls (other handshake
failures), connect (anything else); every message names host:port and the step.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from typing import Callable, TypeVar

from clients.base import (ConnectError, PhaseTimeout, Refused, TlsError, TlsExpired,
                   TlsNameMismatch, TlsUntrusted, clock_ns)
from clients.transport.phases import ConnectStamps

P = TypeVar("P", bound=asyncio.BaseProtocol)

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) by the error class they mean.
_UNTRUSTED = {2, 18, 19, 20, 21, 27}    # no issuer / self-signed / not trusted
_DATES = {9, 10}                        # not yet valid / expired
_NAME = {62, 64}                        # host name / IP address mismatch
# The same conditions as other TLS stacks word them (aioquic, grpc-core, pyOpenSSL).
_TEXTS = ((TlsExpired, ("expired", "no longer valid", "not valid yet", "not yet valid")),
          (TlsNameMismatch, ("doesn't match", "does not match", "hostname mismatch",
                             "not valid for")),
          (TlsUntrusted, ("unable to get local issuer", "self-signed", "self signed",
                          "unable to get issuer", "unable to verify", "untrusted",
                          "unknown ca")))


def tls_error(exc: ssl.SSLError, where: str, label: str) -> TlsError:
    """The error class of a failed handshake, from OpenSSL's verify code."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, reason = exc.verify_code, exc.verify_message
        cls = (TlsUntrusted if code in _UNTRUSTED else TlsExpired if code in _DATES
               else TlsNameMismatch if code in _NAME else TlsError)
        return cls(f"{label} to {where}: TLS handshake failed: {_what(cls)} ({reason})")
    return tls_error_text(getattr(exc, "reason", None) or str(exc), where, label)


def tls_class(reason: str) -> type[TlsError]:
    """The error class of a handshake failure known only by its text (aioquic, gRPC)."""
    low = reason.lower()
    return next((c for c, words in _TEXTS if any(w in low for w in words)), TlsError)


def tls_error_text(reason: str, where: str, label: str) -> TlsError:
    cls = tls_class(reason)
    return cls(f"{label} to {where}: TLS handshake failed: {_what(cls)} ({reason})")


def _what(cls: type[TlsError]) -> str:
    return {TlsUntrusted: "the server's certificate is not signed by a CA the client "
                          "trusts",
            TlsExpired: "the server's certificate is expired or not yet valid",
            TlsNameMismatch: "the server's certificate is for another name"}.get(
                cls, "handshake error")


def os_error(exc: OSError, where: str, step: str, label: str) -> ConnectError:
    if isinstance(exc, ConnectionRefusedError):
        return Refused(f"{label} to {where}: {step} refused (nothing listens on that port)")
    return ConnectError(f"{label} to {where}: {step} failed: {exc}")


async def tcp_connect(address: str, port: int, where: str, timeout_s: float,
                      label: str) -> socket.socket:
    """A connected non-blocking TCP socket (TCP_NODELAY, as asyncio's own)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        async with asyncio.timeout(timeout_s):
            await _connect(sock, (address, port))
    except TimeoutError:
        sock.close()
        raise PhaseTimeout(f"{label} to {where}: TCP connect timed out after "
                           f"{timeout_s:g} s (no SYN-ACK)") from None
    except OSError as exc:
        sock.close()
        raise os_error(exc, where, "TCP connect", label) from None
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect(sock: socket.socket, addr: tuple[str, int]) -> None:
    """connect() and wait for writability. Not loop.sock_connect: uvloop's resolves even
    a numeric address through getaddrinfo in its thread pool, ~0.1-0.5 ms (more under
    load) inside the TCP phase that curl does not spend (benchmarks/curl_phases.py)."""
    err = sock.connect_ex(addr)
    if err == errno.EINPROGRESS:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = sock.fileno()
        loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_writer(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))    # OSError picks the subclass (Refused...)


async def open_connection(factory: Callable[[], P], address: str, port: int, *,
                          ctx: ssl.SSLContext | None, server_name: str,
                          stamps: ConnectStamps, timeout_s: float, label: str,
                          host: str) -> P:
    """TCP, stamped in `stamps.tcp`, then TLS when `ctx` is given (`stamps.handshake`).
    The protocol's connection_made runs once the connection is usable (after TLS).
    `host` is the name asked for, `address` what it resolved to (messages give both)."""
    where = f"{host}:{port}" + (f" ({address})" if address != host else "")
    sock = await tcp_connect(address, port, where, timeout_s, label)
    stamps.tcp = clock_ns()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            # The loop's own handshake timeout stays above ours: ours names the step.
            _, protocol = await loop.create_connection(
                factory, sock=sock, ssl=ctx, server_hostname=server_name if ctx else None,
                **({"ssl_handshake_timeout": timeout_s + 5} if ctx else {}))
    except TimeoutError:
        raise PhaseTimeout(f"{label} to {where}: TLS handshake timed out after "
                           f"{timeout_s:g} s (TCP connected, no ServerHello: the server "
                           "does not accept or answer)") from None
    except ssl.SSLError as exc:
        raise tls_error(exc, where, label) from None
    except OSError as exc:
        raise os_error(exc, where, "TLS handshake" if ctx else "connection setup",
                       label) from None
    # (On failure the loop's transport already owns the socket and closes it.)
    if ctx is not None:
        stamps.handshake = clock_ns()
    return protocol
