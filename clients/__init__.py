"""Clients for every protocol id, behind one interface (clients.base.Client).

    async with open_client("rest-h2", Target(port=8443, ca=...)) as client:
        result = await client.embed({"input": ["hello"], "dimensions": 1536})
"""

from __future__ import annotations

import importlib

from harness.protocols import spec

from .base import Client, Target


def client_class(protocol_id: str) -> type[Client]:
    """The Client subclass for a protocol id (imports only that protocol's stack)."""
    module = importlib.import_module(f"clients.{spec(protocol_id).client_module}")
    return module.CLIENT


def open_client(protocol_id: str, target: Target, *, reuse: bool = True,
                **options: object) -> Client:
    """options: per-engine settings, e.g. max_connections for the HTTP/1.1 pool."""
    return client_class(protocol_id)(target, reuse=reuse, **options)
