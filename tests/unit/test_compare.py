"""`bench.py compare`: matched rows, refused unsafe comparisons."""

import json

from harness.report.compare import main

ROW = {"protocol": "rest-h1", "mode": "closed", "concurrency": 1, "rate_offered_rps": None,
       "network": "loopback", "latency_p50_ms": 2.0, "latency_p99_ms": 4.0,
       "throughput_rps": 400.0, "ttft_p50_ms": None, "client_cpu_ms_per_req": 1.0,
       "server_cpu_ms_per_req": 1.0}
ENV = {"cpu": "x", "cores": 2, "kernel": "k", "python": "3.11", "tcp_congestion_control": "reno",
       "packages": {"uvicorn": "1"}}


def write(tmp_path, name, rows, workload=None, env=ENV):
    d = tmp_path / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "status": "complete", "scenario": {"workload": workload or {"type": "embed"}},
        "environment": env, "rows": rows}))
    return str(d)


def test_matching_rows_are_compared_with_ratios(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [{**ROW, "latency_p50_ms": 3.0}])
    assert main([a, b]) == 0
    out = capsys.readouterr().out
    assert "rest-h1" in out and "1.50x" in out


def test_different_workloads_are_refused_unless_forced(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [ROW], workload={"type": "embed", "dimensions": 8})
    assert main([a, b]) == 2
    assert "workloads differ" in capsys.readouterr().out
    assert main([a, b, "--force"]) == 0


def test_environment_differences_are_shown(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [ROW], env={**ENV, "packages": {"uvicorn": "2"}})
    assert main([a, b]) == 0
    assert "uvicorn: 1 vs 2" in capsys.readouterr().out


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    from harness.cli import main as cli_main
    assert cli_main(["compare", a, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no summary.json" in err and len(err.strip().splitlines()) == 1
