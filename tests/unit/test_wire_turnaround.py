"""benchmarks/wire_turnaround.py's split: a capture's data segments into per-connection
client and server turnarounds, on segments whose answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "wire_turnaround.py"
_spec = importlib.util.spec_from_file_location("wire_turnaround", _PATH)
wire_turnaround = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire_turnaround)

SERVER = 8080
US = 1e-6


def exchanges(client_port, t0, n, client_us, server_us, segments_down=2):
    """n request/response exchanges on one connection: the request, then after
    server_us the response in `segments_down` segments 5 us apart, then the next
    request client_us after the response's last segment."""
    out, t = [], t0
    for _ in range(n):
        out.append((t, client_port, SERVER))
        t += server_us * US
        for k in range(segments_down):
            out.append((t + 5 * k * US, SERVER, client_port))
        t += (5 * (segments_down - 1) + client_us) * US
    return out


def test_each_connection_gets_its_own_turnarounds_in_opening_order():
    a = exchanges(40001, 10.0, 50, client_us=20, server_us=400)
    b = exchanges(40002, 5.0, 80, client_us=45, server_us=430, segments_down=1)
    rows = wire_turnaround.split(sorted(a + b), SERVER)
    assert [r["client_port"] for r in rows] == [40002, 40001]     # b opened first
    second, first = rows[1], rows[0]
    assert second["exchanges"] == 50 and first["exchanges"] == 80
    # the response's last segment, not its first, starts the client's turnaround
    assert second["client_p50_us"] == pytest.approx(20, abs=0.01)
    assert second["server_p50_us"] == pytest.approx(400, abs=0.01)
    assert first["client_p50_us"] == pytest.approx(45, abs=0.01)
    assert first["server_p50_us"] == pytest.approx(430, abs=0.01)
    assert second["cycle_us"] == pytest.approx(425, rel=0.02)


def test_a_connection_with_no_full_exchange_is_left_out():
    lone_request = [(1.0, 40003, SERVER)]
    assert wire_turnaround.split(lone_request, SERVER) == []
