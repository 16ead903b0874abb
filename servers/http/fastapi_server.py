"""FastAPI serving the same backend: kinds fastapi-h1, fastapi-h2, fastapi-h3.

- fastapi-h1: uvicorn + httptools, as servers.http.http_server serves the bare app.
- fastapi-h2: hypercorn over TLS (ALPN h2), optional h2c on --h2c-port: the same server
  as the bare app's rest-h2, so the two rows differ by the framework alone.
- fastapi-h3: Caddy's HTTP/3 in front of uvicorn + FastAPI (servers.http.caddy_server), as
  rest-h3@caddy is in front of the bare app.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from typing import Callable

from servers import cors

from servers.http import caddy_server, http_server
from servers.http.fastapi_app import make_app
from servers.options import ServerOptions

FACTORY = "servers.http.fastapi_app:make_app"


def implementation_name(kind: str) -> str:
    framework = f"FastAPI {version('fastapi')} + pydantic {version('pydantic')}"
    if kind == "h1":
        return f"uvicorn {version('uvicorn')} + httptools + {framework}"
    if kind == "h2":
        return f"hypercorn {version('hypercorn')} + {framework}"
    return caddy_server.implementation_name(kind, backend=framework)


async def serve(opts: ServerOptions, ready: Callable[[dict], None]) -> None:
    version_ = opts.kind.rsplit("-", 1)[-1]
    if version_ == "h3":
        await caddy_server.serve(opts, ready, app_factory=FACTORY)
        return
    app = cors.wrap(make_app(opts.limits, opts.api_key), opts.cors_origins)
    plain = dataclasses.replace(opts, kind=version_)      # h1 / h2 as http_server knows them
    if version_ == "h1":
        await http_server._serve_uvicorn(app, plain, ready)
    else:
        await http_server._serve_hypercorn(app, plain, ready)
