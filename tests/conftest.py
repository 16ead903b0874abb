"""Shared fixtures: real servers in their own processes, on ports the OS picks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clients.base import Target  # noqa: E402
from servers.launcher import ServerGroup  # noqa: E402
from servers.tls import ensure_tls_files  # noqa: E402


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    # A CA of the test session's own, so tests never depend on a user's cache.
    directory = tmp_path_factory.mktemp("tls")
    os.environ["WIREBENCH_TLS_DIR"] = str(directory)
    return ensure_tls_files(directory)


@pytest.fixture(scope="session")
def servers(tls_files):
    """`servers.start(kind, extra=[...])`: one process per (kind, flags), stopped at the end."""
    group = ServerGroup()
    yield group
    group.stop_all()


def target_for(server, tls_files, **kw) -> Target:
    return Target(port=server.port, ca=tls_files.ca, **kw)
