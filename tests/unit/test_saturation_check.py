"""benchmarks/saturation_check.py: its sampler's CPU over a row's window (interpolated
at the window's edges, ended threads held) and its verdict against the row's flags."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from saturation_check import compare, window_use
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def samples(*readings):
    """[(t, {pid: (role, {tid: cpu s})})] -> the sampler's snapshots."""
    return [{"t": t, "procs": procs} for t, procs in readings]


def test_a_thread_busy_only_inside_the_window_counts_over_the_window_not_the_samples():
    # Samples every 0.1 s; the server thread ran all of [1.0, 1.1] and idled around it.
    # The window [0.95, 1.15] holds 0.1 s of CPU in 0.2 s: 50%, where the inner samples
    # alone (1.0 and 1.1) would say 100%.
    s = samples((0.9, {1: ("server", {"a": 5.0})}), (1.0, {1: ("server", {"a": 5.0})}),
                (1.1, {1: ("server", {"a": 5.1})}), (1.2, {1: ("server", {"a": 5.1})}))
    use = window_use(s, 0.95, 1.15)
    assert use["server"] == pytest.approx(0.5)
    assert use["cores"] == pytest.approx(0.5)


def test_a_worker_counts_all_its_threads_and_a_new_thread_from_zero():
    s = samples((0.0, {2: ("client", {"main": 1.0})}),
                (1.0, {2: ("client", {"main": 1.2, "loop": 0.6})}))
    use = window_use(s, 0.0, 1.0)
    assert use["client"] == pytest.approx(0.8)
    assert use["server"] == 0.0


def test_no_figure_for_a_window_the_samples_do_not_cover():
    s = samples((1.0, {}), (2.0, {}))
    assert window_use(s, 0.5, 1.5) is None
    assert window_use(s, 1.5, 2.5) is None


def row(server_bound="", client_bound="", machine_bound="", window=(0.0, 1.0)):
    return {"cell": "rest-h1", "concurrency": 1, "windows_unix_s": [list(window)],
            "server_bound": server_bound, "client_bound": client_bound,
            "machine_bound": machine_bound}


BUSY_SERVER = samples((0.0, {1: ("server", {"a": 0.0}), 2: ("client", {"m": 0.0})}),
                      (1.0, {1: ("server", {"a": 0.95}), 2: ("client", {"m": 0.3})}))


def test_an_unflagged_row_whose_server_thread_was_busy_is_a_disagreement(capsys):
    assert compare([row()], BUSY_SERVER, cpus=2) == 1
    assert "rest-h1 c=1: server 95% sampled, run says not bound" in capsys.readouterr().out


def test_flags_that_match_the_sampler_agree(capsys):
    flagged = row(server_bound="python[1]'s busiest thread used 95% of a core")
    assert compare([flagged], BUSY_SERVER, cpus=2) == 0
    assert "agrees" in capsys.readouterr().out


def test_a_client_flagged_for_late_starts_alone_is_not_judged_by_its_cpu():
    late = row(server_bound="python[1]'s busiest thread used 95% of a core",
               client_bound="9 of 60 requests started late")
    assert compare([late], BUSY_SERVER, cpus=2) == 0
