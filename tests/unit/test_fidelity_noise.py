"""benchmarks/fidelity.py says when the machine, not the clients, moved its ratios: other
processes on the client core, or the hypervisor taking the pinned CPUs (steal)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from fidelity_measure import Window
    from fidelity_report import noise_warning
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def point(foreign=0.0, steal=0.0, conc=1):
    return {"protocol": "http/1.1", "size": "small", "concurrency": conc,
            "foreign_client_core": foreign, "steal": steal}


def test_a_quiet_run_has_no_warning():
    assert noise_warning([point(0.02, 0.01), point(None, None, 16)]) == ""


def test_steal_on_the_pinned_cpus_is_named_with_its_points():
    text = noise_warning([point(steal=0.22), point(steal=0.01, conc=16)])
    assert text.startswith("**Host noise**: the hypervisor took up to 22%")
    assert "during 1 of 2 points (http/1.1 small c=1)" in text
    assert "Noisy run" not in text


def test_points_that_differ_by_client_are_told_apart():
    a, b = point(steal=0.06, conc=16), point(steal=0.07, conc=16)
    a["harness_client"], b["harness_client"] = "rest-h2@caddy+curl", "libcurl in C"
    assert ("(http/1.1 small c=16 rest-h2@caddy+curl, http/1.1 small c=16 libcurl in C)"
            in noise_warning([a, b]))


def test_other_processes_and_steal_are_two_warnings():
    text = noise_warning([point(foreign=0.3), point(steal=0.06, conc=16)])
    assert "**Noisy run**: other processes took up to 30%" in text
    assert "**Host noise**" in text and "(http/1.1 small c=16)" in text


class _Pin:
    client, server = 1, 0


def test_the_window_s_steal_is_the_pinned_cpus_share():
    w = Window(server=None, pin=_Pin())
    # (processes, busy, total, steal) ticks per CPU, as _proc_stat reads them
    w.p0 = {"cpu0": (0, 0, 1000, 10), "cpu1": (0, 0, 1000, 0), "cpu": (0, 0, 2000, 10)}
    w.p1 = {"cpu0": (0, 0, 2000, 110), "cpu1": (0, 0, 2000, 300), "cpu": (0, 0, 4000, 410)}
    assert w._steal([1, 0]) == 0.2         # 400 of 2,000 ticks
    assert w._steal([]) == 0.2             # unpinned: every CPU
    assert w._steal([5]) is None
