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


def test_different_requests_are_refused_unless_forced(tmp_path, capsys):
    from harness.cli import main as cli_main
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [ROW], workload={"type": "embed", "dimensions": 8})
    assert cli_main(["compare", a, b]) == 2
    assert "the requests differ: workload.dimensions" in capsys.readouterr().err
    assert main([a, b, "--force"]) == 0


def test_a_changed_backend_is_compared_and_noted(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW], workload={"type": "embed", "compute_ms": 0})
    b = write(tmp_path, "b", [ROW], workload={"type": "embed", "compute_ms": 5})
    assert main([a, b]) == 0
    assert "backend changed: workload.compute_ms 0 vs 5" in capsys.readouterr().out


def rep(p50s, rps=None, p99s=None):
    """A row with per-repeat figures (what a run with repeats writes)."""
    return {**ROW, "latency_p50_ms": sorted(p50s)[len(p50s) // 2],
            "latency_p50_per_repeat_ms": p50s,
            "latency_p99_per_repeat_ms": p99s or [4.0] * len(p50s),
            "throughput_per_repeat_rps": rps or [400.0] * len(p50s)}


def test_overlapping_repeats_are_within_noise(tmp_path, capsys):
    a = write(tmp_path, "a", [rep([2.0, 2.2, 2.1])])
    b = write(tmp_path, "b", [rep([2.15, 2.3, 2.05])])
    assert main([a, b, "--fail-on-regression", "1"]) == 0
    out = capsys.readouterr().out
    assert "within noise" in out and "worse" not in out


def test_a_change_beyond_the_repeats_is_called_and_fails_the_gate(tmp_path, capsys):
    a = write(tmp_path, "a", [rep([2.0, 2.2, 2.1], rps=[400, 410, 390])])
    b = write(tmp_path, "b", [rep([3.0, 3.1, 3.2], rps=[300, 310, 305])])
    assert main([a, b]) == 0                              # no gate: reported only
    out = capsys.readouterr().out
    assert "worse 48%" in out and "0.95-1.60x" not in out
    assert main([a, b, "--fail-on-regression", "60"]) == 0   # under the gate's 60%
    assert main([a, b, "--fail-on-regression", "10"]) == 99
    assert "regression: rest-h1 c=1 p50 ms worse 48%" in capsys.readouterr().err


def test_one_repeat_gives_no_verdict(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [{**ROW, "latency_p50_ms": 3.0}])
    assert main([a, b, "--fail-on-regression", "1"]) == 0
    assert "noise unknown" in capsys.readouterr().out


def test_markdown_and_json_output(tmp_path, capsys):
    a = write(tmp_path, "a", [rep([2.0, 2.2, 2.1])])
    b = write(tmp_path, "b", [rep([3.0, 3.1, 3.2])])
    assert main([a, b, "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "| cell | load | metric |" in md and "| rest-h1 | c=1 | p50 ms |" in md
    assert main([a, b, "--format", "json", "--fail-on-regression", "5"]) == 99
    doc = json.loads(capsys.readouterr().out)
    p50 = next(c for c in doc["changes"] if c["metric"] == "p50 ms")
    assert p50["verdict"] == "worse" and p50["low"] == round(3.0 / 2.2, 4)
    assert [r["metric"] for r in doc["regressions"]] == ["p50 ms"]


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


def test_a_row_saturated_in_either_run_is_flagged(tmp_path, capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [{**ROW, "server_bound": "python[1] used 96% of a core"}])
    assert main([a, b, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| c=1 SRV B |" in out and "measures a library" in out
    assert main([a, a, "--format", "markdown"]) == 0
    assert "SRV" not in capsys.readouterr().out


def test_runs_with_an_embed_and_a_stream_workload_compare_per_type(tmp_path, capsys):
    # protocol_vs_library.yaml gives two workloads; compare crashed on the list
    # ("unhashable type: 'dict'").
    from harness.cli import main as cli_main
    both = [{"type": "embed", "dimensions": 1536}, {"type": "stream", "max_tokens": 64}]
    a = write(tmp_path, "a", [ROW], workload=both)
    b = write(tmp_path, "b", [ROW], workload=both)
    assert main([a, b]) == 0
    out = capsys.readouterr().out
    assert "rest-h1" in out and "noise unknown (1 repeat)" in out   # never cropped
    c = write(tmp_path, "c", [ROW], workload=[both[0], {**both[1], "max_tokens": 8}])
    assert cli_main(["compare", a, c]) == 2
    assert "workload[stream].max_tokens 64 vs 8" in capsys.readouterr().err
    d = write(tmp_path, "d", [ROW], workload=[both[0]])
    assert cli_main(["compare", a, d]) == 2
    assert "the workloads differ: embed+stream vs embed" in capsys.readouterr().err


def test_a_rate_reads_in_whole_requests_and_cells_only_in_one_run_are_listed(tmp_path,
                                                                          capsys):
    a = write(tmp_path, "a", [ROW])
    b = write(tmp_path, "b", [{**ROW, "throughput_rps": 1337.48},
                              {**ROW, "protocol": "grpc", "cell": "grpc"}])
    assert main([a, b]) == 0
    out = capsys.readouterr().out
    assert "1,337" in out and "1,337.480" not in out
    assert "only in A: -; only in B: grpc" in out
