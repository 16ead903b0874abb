"""The client side of TLS: a verifying context for the local CA, and session resumption.

Every client transport (asyncio, blocking, HTTP/3) builds its context here; the server
side (the CA and certificates it verifies against) lives in servers.tls.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca: Path | None, alpn: list[str] | None = None,
                   version: str | None = None, resume: bool = False) -> ssl.SSLContext:
    """A verifying client context for the local CA, optionally offering ALPN ids and
    exactly one TLS version ("1.2" / "1.3"; None: whatever both sides support).

    resume: a `ResumingContext`, which offers each new connection the session of the
    latest earlier one (TLS session resumption)."""
    if resume:
        ctx: ssl.SSLContext = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca:
            ctx.load_verify_locations(cafile=str(ca))
        else:
            ctx.load_default_certs()
    else:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)  # None: system CAs
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        pinned = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
        ctx.minimum_version = ctx.maximum_version = pinned
    return ctx


class _VersionNotingSSLObject(ssl.SSLObject):
    """Keeps the negotiated version: once its connection is closed, version() says None,
    and the next connection needs it to know whether a ticketless session can resume."""

    tls_version: str | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        self.tls_version = self.version()


class ResumingContext(ssl.SSLContext):
    """A client context that resumes TLS sessions across connections by itself.

    asyncio's create_connection / start_tls (and uvloop's) take no `session=`, but they
    build every connection's SSLObject through `context.wrap_bio`: this override hands
    the new SSLObject the session of the most recent earlier connection that has a
    resumable one, so a transport needs no change to resume. TLS 1.2: the session ID
    or RFC 5077 ticket known at the end of the handshake; TLS 1.3: a NewSessionTicket,
    which arrives after the handshake (OpenSSL's servers send two), so a session
    without a ticket yet is skipped. Whether a handshake really resumed is the
    SSLObject's `session_reused` (transports report it per connection).
    """

    KEEP = 16       # recent SSLObjects searched for a session (concurrent handshakes)
    sslobject_class = _VersionNotingSSLObject       # what wrap_bio builds

    def __init__(self, protocol: int = ssl.PROTOCOL_TLS_CLIENT) -> None:
        super().__init__()
        self._recent: list[ssl.SSLObject] = []
        self._session: ssl.SSLSession | None = None

    def latest_session(self) -> ssl.SSLSession | None:
        """The newest resumable session any connection of this context received."""
        for obj in reversed(self._recent):
            session = obj.session
            # TLS 1.3 returns a session before any ticket came: it cannot resume. A
            # TLS 1.2 one resumes by its ID too (servers without tickets: rustls).
            if session is not None and (session.has_ticket or (
                    getattr(obj, "tls_version", None) == "TLSv1.2" and session.id)):
                self._session = session
                del self._recent[:self._recent.index(obj)]   # older ones: superseded
                break
        return self._session

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None,
                 session=None):
        if session is None and not server_side:
            session = self.latest_session()
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self._recent.append(obj)
        if len(self._recent) > self.KEEP:
            del self._recent[0]
        return obj


def resumption_outcome(ctx: ssl.SSLContext | None, transport) -> str | None:
    """A new connection's handshake under a ResumingContext: "session" (resumed) or
    "full"; None when the context does not resume (resumption not asked for)."""
    if not isinstance(ctx, ResumingContext):
        return None
    obj = transport.get_extra_info("ssl_object")
    return "session" if obj is not None and obj.session_reused else "full"
