"""Clients for every protocol id, behind one interface (clients.base.Client).

    async with open_client("rest-h2", Target(port=8443, ca=...)) as client:
        result = await client.embed({"input": ["hello"], "dimensions": 1536})
"""

from __future__ import annotations

import importlib

from base.protocols import spec

from clients.base import Client, Target


def client_class(protocol_id: str, engine: str = "python") -> type[Client]:
    """The Client subclass for a protocol id and engine (imports only that stack).

    engine "python": wirebench's own clients; "curl": libcurl through pycurl (HTTP only);
    "browser": headless Chromium (sse-h1, sse-h2, ws-stream; clients.browser).
    """
    if engine == "browser":
        from clients.browser import ENGINES as BROWSER
        try:
            return BROWSER[protocol_id]
        except KeyError:
            raise KeyError(f"no browser engine for {protocol_id!r}; it has: "
                           f"{', '.join(BROWSER)}") from None
    if engine == "curl":
        from clients.curl.engine import ENGINES
        try:
            return ENGINES[protocol_id]
        except KeyError:
            raise KeyError(f"no curl engine for {protocol_id!r}; it has: "
                           f"{', '.join(ENGINES)}") from None
    if engine != "python":
        raise KeyError(f"unknown client engine {engine!r}: python, curl or browser")
    module = importlib.import_module(f"clients.{spec(protocol_id).client_module}")
    return module.CLIENT


def open_client(protocol_id: str, target: Target, *, reuse: bool = True,
                engine: str = "python", **options: object) -> Client:
    """options: per-engine settings, e.g. max_connections for the HTTP/1.1 pool."""
    return client_class(protocol_id, engine)(target, reuse=reuse, **options)
