"""The `remote:` section: every cell against wirebench servers started elsewhere.

On host B, one `python -m servers KIND --host ADDR --port N` per server kind the
scenario needs; on host A, a scenario names B's address and each kind's port:

    remote:
      host: 10.0.0.2
      ca: certs/ca.pem            # python -m servers ... --export-ca certs/ca.pem
      ports: {h1: 9001, h2: 9002, h3: 9003, grpc: 9004, ws: 9005, caddy-h2: 9006}

Unlike `target:` (any OpenAI-style endpoint, REST and SSE only), the far side is a
wirebench server: every protocol runs, and the simulated model times (ttft_ms, itl_ms,
compute_ms) pass through to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.cells import parse_cell
from base.protocols import SERVER_KINDS
from harness.scenario.schema import Field, Invalid, Section, integer, optional, show, string

ENV_NAME = string(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name")


@dataclass(frozen=True)
class Remote:
    host: str                                  # the servers' host name or address
    ports: tuple[tuple[str, int], ...]         # (server kind, port), as given
    ca: str | None = None                      # the CA their certificates chain to
    server_name: str | None = None             # the TLS name to verify (default: host)
    api_key_env: str | None = None             # the servers' --api-key, from this variable

    def port(self, server_kind: str) -> int | None:
        return dict(self.ports).get(server_kind)

    @property
    def tls_name(self) -> str:
        return self.server_name or self.host


def _ports(v: Any, path: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, dict) or not v:
        raise Invalid(path, f"expected a mapping of server kind to port such as "
                            f"{{h1: 9001, grpc: 9004}}, got {show(v)}")
    port = integer(1, 65535)
    out = []
    for kind, number in v.items():
        if kind not in SERVER_KINDS:
            raise Invalid(f"{path}.{kind}", f"not a server kind; one of "
                                            f"{', '.join(SERVER_KINDS)}")
        out.append((kind, port(number, f"{path}.{kind}")))
    return tuple(out)


def _ca(v: Any, path: str) -> str:
    text = string(expected="the path of a CA certificate (PEM)")(v, path)
    if not Path(text).expanduser().is_file():
        raise Invalid(path, f"{text}: no such file (on the server's host: "
                            f"python -m servers KIND --export-ca PATH writes it)")
    return str(Path(text).expanduser())


REMOTE = Section(Remote, (
    Field("host", string(r"[A-Za-z0-9.:_\[\]-]+", "a host name or address")),
    Field("ports", _ports),
    Field("ca", optional(_ca), None),
    Field("server_name", optional(string()), None),
    Field("api_key_env", optional(ENV_NAME), None),
))


def check_remote(values: dict, uses_tls: Any) -> None:
    """What a scenario with `remote:` cannot also ask for, and a port for every cell.
    `uses_tls(cell)` says whether a cell runs over TLS in this scenario."""
    remote: Remote | None = values["remote"]
    if remote is None:
        return
    for key, why in (("target", "target is a foreign endpoint, remote wirebench servers; "
                                "give one of them"),
                     ("network", "the network lab runs the built-in servers behind an "
                                 "emulated link on this machine"),
                     ("dns", "the DNS step serves the built-in servers' name"),
                     ("cors", "cors configures the built-in servers (start the remote ones "
                              "with --cors)")):
        if values[key] is not None:
            raise Invalid(key, f"{why}; remove remote or {key}")
    tls_cells = []
    for i, label in enumerate(values["protocols"]):
        cell = parse_cell(label)
        kind = cell.server_kind
        if remote.port(kind) is None:
            raise Invalid("remote.ports", f"no port for server kind {kind!r} ({label}); on "
                                          f"{remote.host} start `python -m servers {kind} "
                                          f"--host {remote.host} --port N` and add {kind}: N")
        if uses_tls(label):
            tls_cells.append(label)
    if tls_cells and remote.ca is None:
        raise Invalid("remote.ca", f"{', '.join(tls_cells)} run over TLS and verify the "
                                   f"server's certificate: start the servers with "
                                   f"--export-ca PATH and give PATH here")
