"""The harness's HTTP/1.1 and HTTP/2 phase times agree with curl's own (`curl -w`), run
against the same servers through the same emulated 20 ms RTT link, DNS included, a new
connection per request: p50s within 1 ms (benchmarks/curl_phases.py says which curl is
the reference for which phase, and why)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.integration.test_bench_cli import ROOT

pytestmark = pytest.mark.network


def _script():
    spec = importlib.util.spec_from_file_location("curl_phases",
                                                  ROOT / "benchmarks" / "curl_phases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_phase_times_agree_with_curl_within_1ms_at_p50(tls_files):
    cp = _script()
    result = cp.run(requests=30, rtt_ms=20.0)   # ~25 s
    table = cp.table(result)
    for protocol in ("rest-h1", "rest-h2"):
        p50 = result["protocols"][protocol]["p50"]
        for who in ("curl", "libcurl", "python"):
            # Sanity of the setup itself: one RTT for DNS and for TCP, TLS 1.3 one more.
            assert 20 <= p50[who]["namelookup"] < 30, (who, table)
            assert 40 <= p50[who]["connect"] < 50, (who, table)
        assert (p50["python"]["appconnect"] > 60) is (protocol == "rest-h2"), table
    failed = [(what, round(d, 3)) for what, d, ok in cp.checks(result) if not ok]
    assert not failed, f"{failed}\n{table}"
