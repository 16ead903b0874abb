"""A summary left `running` by a runner that is gone reads `killed`."""

import json
import subprocess
import sys

from harness.run.status import boot_id, effective_status, mark_killed_runs, runner_identity


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()                         # reaped: the pid names no process now
    return proc.pid


def test_a_running_summary_whose_runner_is_gone_is_killed():
    assert effective_status({"status": "running", "runner_pid": dead_pid(),
                             "boot_id": boot_id()}) == "killed"


def test_a_running_summary_whose_runner_lives_is_running():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            assert effective_status({"status": "running", "runner_pid": proc.pid,
                                     "boot_id": boot_id()}) == "running"
        finally:
            proc.kill()
    assert effective_status({"status": "running", **runner_identity()}) == "running"


def test_a_summary_from_before_a_reboot_is_killed():
    assert effective_status({"status": "running", "runner_pid": 1,
                             "boot_id": "another boot"}) == "killed"


def test_finished_statuses_are_kept():
    for status in ("complete", "aborted", "failed"):
        assert effective_status({"status": status, "runner_pid": dead_pid()}) == status


def test_killed_runs_are_rewritten_and_named(tmp_path):
    for name, pid in (("gone", dead_pid()), ("mine", runner_identity()["runner_pid"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"status": "running", "runner_pid": pid, "boot_id": boot_id(), "rows": []}))
    assert mark_killed_runs(tmp_path) == [tmp_path / "gone"]
    assert json.loads((tmp_path / "gone" / "summary.json").read_text())["status"] == "killed"
    assert json.loads((tmp_path / "mine" / "summary.json").read_text())["status"] == "running"


def test_the_cluster_line_says_where_the_load_workers_ran():
    from harness.report.markdown import cluster_lines
    worker = {"host": "vm", "node": "c6d79650 (192.0.2.2)", "pid": 1, "offset_ms": 0.1,
              "offset_error_ms": 0.5, "requests": 10, "cpu_s": 0.1, "points": 1}
    line = lambda address: cluster_lines({"address": address, "workers": [worker],  # noqa: E731
                                          "one_way_delay": "kept"})[0]
    assert "1 Ray actor on a one-host Ray cluster started for this run" in line("local")
    assert "on the Ray cluster found from this host" in line("auto")
    assert "on the Ray cluster at 10.0.0.2:6379" in line("10.0.0.2:6379")
