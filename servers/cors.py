"""CORS for the HTTP apps: an ASGI middleware with an allow-list of origins (--cors).

Without --cors nothing is wrapped (same-origin only: no Access-Control-* header is ever
sent, and a browser's cross-origin preflight fails). With an allow-list, `wrap` puts
`Cors` around the app (the bare ASGI app or FastAPI, directly or behind Caddy):

- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here,
  before the app and so before its API-key check (browsers never send credentials on a
  preflight): 204, `Vary: Origin`, and when the origin is allowed Allow-Origin (the
  origin itself, or `*` for the list `*`), Allow-Methods (GET, POST, OPTIONS),
  Allow-Headers (authorization, content-type and the requested ones among SAFE_HEADERS)
  and Max-Age. A refused origin gets the 204 without any allow header.
- Every other request from an allowed origin goes to the app, and its response, whatever
  it is (errors, 401, SSE streams), carries Allow-Origin, Expose-Headers (the timing
  header, Server-Timing) and `Vary: Origin`. No Allow-Credentials: the API key travels
  in an Authorization header the page sets (or, for EventSource, in the URL), never in
  a cookie.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

ALLOW_METHODS = b"GET, POST, OPTIONS"
MAX_AGE_S = 600
# Request headers a preflight may ask for: the API's own and what OpenAI's JS SDK and
# EventSource send (x-stainless-* by prefix). Anything else is left out of the answer.
SAFE_HEADERS = frozenset({"authorization", "content-type", "accept", "accept-language",
                          "content-language", "cache-control", "last-event-id",
                          "x-requested-with", "openai-organization", "openai-project",
                          "openai-beta"})
SAFE_PREFIXES = ("x-stainless-",)
EXPOSE_HEADERS = b"server-timing"
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def parse_origins(value: str | None) -> tuple[str, ...] | None:
    """The --cors value: None (no CORS), ("*",) or a tuple of normalised origins.
    Raises ValueError for an entry that is not scheme://host[:port]."""
    if value is None:
        return None
    entries = [v.strip() for v in value.split(",") if v.strip()]
    if not entries:
        raise ValueError("expected '*' or a comma-separated list of origins")
    if "*" in entries:
        if len(entries) > 1:
            raise ValueError("'*' cannot be combined with other origins")
        return ("*",)
    out = []
    for entry in entries:
        origin = entry.rstrip("/")
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"{entry!r} is not an origin (http(s)://host[:port])")
        out.append(f"{scheme.lower()}://{rest.lower()}")
    return tuple(dict.fromkeys(out))


def wrap(app: Any, origins: Iterable[str] | None) -> Any:
    """`app` itself without an allow-list (no cost per request), else Cors(app)."""
    return app if origins is None else Cors(app, origins)


class Cors:
    def __init__(self, app: Any, origins: Iterable[str]) -> None:
        self.app = app
        origins = tuple(origins)
        self.any = origins == ("*",)
        self.origins = frozenset(o.encode() for o in origins)

    def allowed(self, origin: bytes) -> bytes | None:
        """The Access-Control-Allow-Origin value for this Origin, or None."""
        if self.any:
            return b"*"
        return origin if origin.lower() in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = requested_method = requested_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                requested_method = value
            elif name == b"access-control-request-headers":
                requested_headers = value
        if origin is None:
            await self.app(scope, receive, send)
            return
        allow = self.allowed(origin)
        if scope["method"] == "OPTIONS" and requested_method is not None:
            await self._preflight(receive, send, allow, requested_headers)
            return
        extra = [(b"vary", b"origin")]      # the answer depends on the Origin (caches)
        if allow is not None:
            extra += [(b"access-control-allow-origin", allow),
                      (b"access-control-expose-headers", EXPOSE_HEADERS)]

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, receive: Receive, send: Send, allow: bytes | None,
                         requested: bytes | None) -> None:
        while True:         # a preflight has no body, but read whatever came
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        headers = [(b"vary", b"origin")]
        if allow is not None:
            headers += [(b"access-control-allow-origin", allow),
                        (b"access-control-allow-methods", ALLOW_METHODS),
                        (b"access-control-allow-headers", allow_headers(requested)),
                        (b"access-control-max-age", b"%d" % MAX_AGE_S)]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def allow_headers(requested: bytes | None) -> bytes:
    """authorization, content-type, and the requested headers that are SAFE."""
    names = ["authorization", "content-type"]
    for raw in (requested or b"").split(b","):
        name = raw.strip().lower()
        if not name or not set(name) <= _TOKEN:
            continue
        text = name.decode()
        if (text in SAFE_HEADERS or text.startswith(SAFE_PREFIXES)) and text not in names:
            names.append(text)
    return ", ".join(names).encode()
