"""Cells: a protocol id plus the server implementation and client engine that run it.

Protocol and implementation are two axes (DESIGN.md section 2). A cell is written
`protocol[@server][+client]`, defaults omitted: `rest-h1` (uvicorn, the Python engine),
`rest-h1@granian`, `rest-h3+curl`, `rest-h2@granian+curl`, `sse-h1+browser`. The same
string names the cell in scenarios, on the command line (`--protocols`) and in result
files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from base.protocols import PROTOCOLS

# server kind -> server implementations, the default first
SERVERS: dict[str, tuple[str, ...]] = {
    "h1": ("uvicorn", "granian", "caddy", "fastapi"),
    "h2": ("hypercorn", "granian", "caddy", "fastapi"),
    "h3": ("hypercorn", "caddy", "fastapi"),
    "grpc": ("grpc.aio",),
    "ws": ("websockets",),
}
# server kind -> client engines, the default first ("python": wirebench's own clients)
CLIENTS: dict[str, tuple[str, ...]] = {
    "h1": ("python", "curl", "browser"),
    "h2": ("python", "curl", "browser"),
    "h3": ("python", "curl"),
    "grpc": ("python",),
    "ws": ("python", "browser"),
}
# Engines that drive only some of their server kind's protocols (clients/browser/).
ENGINE_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "browser": ("sse-h1", "sse-h2", "ws-stream"),
}

_CELL_RE = re.compile(r"(?P<protocol>[a-z0-9-]+)(?:@(?P<server>[a-z0-9.]+))?"
                      r"(?:\+(?P<client>[a-z0-9.]+))?")


@dataclass(frozen=True)
class Cell:
    protocol: str
    server: str
    client: str

    @property
    def kind(self) -> str:
        """The protocol's server kind (h1 h2 h3 grpc ws)."""
        return PROTOCOLS[self.protocol].server

    @property
    def server_kind(self) -> str:
        """What `python -m servers` starts for this cell: h1, granian-h2, ..."""
        return self.kind if self.server == SERVERS[self.kind][0] else f"{self.server}-{self.kind}"

    @property
    def label(self) -> str:
        text = self.protocol
        if self.server != SERVERS[self.kind][0]:
            text += f"@{self.server}"
        if self.client != CLIENTS[self.kind][0]:
            text += f"+{self.client}"
        return text


def make_cell(protocol: str, server: str | None = None, client: str | None = None) -> Cell:
    """A validated cell; ValueError says what is wrong and what is possible."""
    if protocol not in PROTOCOLS:
        raise ValueError(f'unknown protocol "{protocol}"; known: {", ".join(PROTOCOLS)}')
    kind = PROTOCOLS[protocol].server
    server = server or SERVERS[kind][0]
    client = client or CLIENTS[kind][0]
    if server not in SERVERS[kind]:
        raise ValueError(f'{protocol} has no server "{server}"; known: {", ".join(SERVERS[kind])}')
    if client not in CLIENTS[kind]:
        raise ValueError(f'{protocol} has no client engine "{client}"; known: '
                         f'{", ".join(CLIENTS[kind])}')
    if protocol not in ENGINE_PROTOCOLS.get(client, (protocol,)):
        raise ValueError(f'{protocol} has no client engine "{client}": it drives only '
                         f'{", ".join(ENGINE_PROTOCOLS[client])}')
    return Cell(protocol, server, client)


def parse_cell(text: str) -> Cell:
    match = _CELL_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'"{text}" is not a protocol cell: write protocol[@server][+client], '
                         "e.g. rest-h1@granian or rest-h3+curl")
    return make_cell(match["protocol"], match["server"], match["client"])
