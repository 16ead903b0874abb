"""Servers start with a readiness check and never outlive their launcher."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.processes import gone
from base.paths import PACKAGE_ROOT as ROOT
from servers.launcher import ServerGroup, ServerStartError, start_server

KINDS = ["h1", "h2", "h3", "grpc", "ws"]


def test_every_kind_starts_reports_a_port_and_stops(tls_files):
    with ServerGroup() as group:
        pids = [group.start(kind).pid for kind in KINDS]
        for srv in group.servers.values():
            assert srv.port > 0 and srv.alive()
    assert all(gone(pid) for pid in pids)


def test_stop_all_gives_every_server_one_shared_grace_then_kills(tls_files):
    # Two servers that cannot act on SIGTERM (stopped): each would use the whole grace
    # if they were stopped one after the other; signalled together they share it.
    group = ServerGroup()
    try:
        pids = [group.start(kind).pid for kind in ("h1", "ws")]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        group.stop_all(grace_s=2.0)
        elapsed = time.monotonic() - started
    finally:
        group.stop_all(grace_s=0)
    assert all(gone(pid) for pid in pids)
    assert 1.9 <= elapsed < 3.5, elapsed     # one grace (2 s), not two (4 s)
    assert not group.servers


def test_loopback_is_the_default_bind(tls_files):
    with start_server("h1") as srv:
        with pytest.raises(OSError):
            # Not reachable on any other local address than 127.0.0.1.
            other = socket.gethostbyname(socket.gethostname())
            if other.startswith("127."):
                raise OSError("host has no non-loopback address to check")
            socket.create_connection((other, srv.port), timeout=1)


def test_start_failure_names_the_cause(tls_files):
    with start_server("h1") as srv:
        with pytest.raises(ServerStartError, match="Address already in use"):
            start_server("h1", port=srv.port, timeout_s=10)


def test_servers_die_with_a_sigkilled_launcher(tls_files, tmp_path):
    # A launcher process starts two servers, prints their pids, and is then SIGKILLed.
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from servers.launcher import start_server\n"
              "a = start_server('h1'); b = start_server('ws')\n"
              "print(a.pid, b.pid, flush=True)\n"
              "import time; time.sleep(60)\n") % str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert all(gone(pid) for pid in pids)
