import subprocess

import pytest

from harness.netlab.netns import namespaces_possible

WHY_NOT = namespaces_possible()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/network/" in str(item.fspath) and WHY_NOT:
            item.add_marker(pytest.mark.skip(reason=f"network tier: {WHY_NOT}"))


def _lab_leftovers() -> str:
    """Named namespaces, and TUN devices or lab links in the root namespace (the lab
    makes its own in unnamed namespaces that die with their holders)."""
    named = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    ours = [line for line in links.splitlines() if " tun" in line or "wbc0" in line
            or "wbs0" in line]
    return "\n".join(x for x in (named.strip(), *ours) if x)


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After every network test: no namespace, TUN device or lab link remains."""
    yield
    if not WHY_NOT:
        assert _lab_leftovers() == "", "the lab left something behind"


def run_lab_scenario(tmp, scenario: str, timeout: float = 120):
    """Run `python bench.py` on a scenario text; (summary.json as a dict, result dir)."""
    import json

    from tests.integration.test_bench_cli import result_dir, run_bench, write
    out = tmp / "out"
    proc = run_bench([write(tmp / "s.yaml", scenario), "--out", out], tmp / "tls",
                     timeout=timeout)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = result_dir(out)
    return json.loads((run / "summary.json").read_text()), run
