"""The HTTP/3 servers' recovery state for the HOL mechanism split: aioquic (through
servers.http.qlog) and quic-go in Caddy write qlog where QLOGDIR says; the harness
reads each connection's congestion-window steps by the client's port."""

from __future__ import annotations

import time

import pytest

from clients.base import Target
from clients.transport.http3 import Http3Transport
from harness.measure.mechanism.sender import qlog_states
from servers.launcher import start_server
from servers.tls import ensure_tls_files


async def one_request(port: int) -> None:
    """A GET /health on a fresh connection, closed when done."""
    transport = Http3Transport(Target(port=port, ca=ensure_tls_files().ca), reuse=False)
    try:
        exchange = await transport.request(b"GET", b"/health", [], b"")
        await exchange.read_body()
        await exchange.aclose()
    finally:
        await transport.close()


def states_when_written(qlog, timeout_s: float = 5.0) -> dict:
    """quic-go writes its file as the connection closes: wait for it."""
    deadline = time.monotonic() + timeout_s
    while not (states := qlog_states(qlog)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return states


@pytest.mark.parametrize("kind", ["h3", "caddy-h3"])
async def test_each_connection_writes_its_window_steps_by_client_port(tmp_path, kind):
    qlog = tmp_path / "qlog"
    qlog.mkdir()
    (qlog / "on").touch()             # aioquic traces only while the lab says so
    with start_server(kind, env={"QLOGDIR": str(qlog)}) as srv:
        await one_request(srv.port)
        states = states_when_written(qlog)
    assert len(states) == 1, sorted(p.name for p in qlog.iterdir())
    ((port, state),) = states.items()
    assert 1024 <= port < 65536      # the client's port, from the connection's first packet
    assert state.stack == ("aioquic" if kind == "h3" else "quic-go")
    assert len(state.t_ns) >= 2 and state.t_ns == sorted(state.t_ns)
    assert not any(state.full)        # one small request never fills the initial window


async def test_aioquic_traces_nothing_without_the_flag(tmp_path):
    qlog = tmp_path / "qlog"
    with start_server("h3", env={"QLOGDIR": str(qlog)}) as srv:
        await one_request(srv.port)
    assert qlog.is_dir() and not any(qlog.glob("*.jsonl"))
