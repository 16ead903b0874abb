"""docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so
check what can be checked: structure, commands the real CLIs accept, files COPY needs."""

from pathlib import Path

import pytest
import yaml

from servers.__main__ import parse_args as server_args

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_builds_this_repo():
    assert COMPOSE["services"]
    for name, svc in COMPOSE["services"].items():
        build = svc["build"]
        assert (build if isinstance(build, str) else build["context"]) == ".", name
        assert (ROOT / "Dockerfile").exists()
        for arg, value in (build.get("args", {}) if isinstance(build, dict) else {}).items():
            assert f"ARG {arg}" in (ROOT / "Dockerfile").read_text(), (name, arg)
            if arg == "EXTRAS":       # an extra the package defines
                assert f"\n{value} = [" in (ROOT / "pyproject.toml").read_text()


def test_the_image_copies_every_package_the_distribution_installs():
    text = (ROOT / "pyproject.toml").read_text()
    packages = text.split("include = [", 1)[1].split("]", 1)[0]
    copied = (ROOT / "Dockerfile").read_text()
    for name in (p.strip().strip('"*') for p in packages.split(",")):
        assert f"COPY {name} {name}" in copied, name


def test_ray_services_run_the_cluster_scenario_on_the_head():
    services = COMPOSE["services"]
    assert services["ray-worker"]["command"][2] == "--address=ray-head:6379"
    cmd = services["bench-cluster"]["command"]
    assert (ROOT / cmd[2]).exists() and cmd[3:] == ["--cluster", "ray-head:6379"]


@pytest.mark.parametrize("name", [n for n in COMPOSE["services"] if n.startswith("server-")])
def test_server_commands_parse_and_bind_all_interfaces(name, tls_files):
    cmd = COMPOSE["services"][name]["command"]
    assert cmd[:3] == ["python", "-m", "servers"]
    opts = server_args(cmd[3:])
    assert opts.host == "0.0.0.0"          # reachable through the published port
    published = {int(p.split(":")[1].split("/")[0]) for p in COMPOSE["services"][name]["ports"]}
    assert opts.port in published


def test_bench_command_names_a_shipped_scenario():
    cmd = COMPOSE["services"]["bench"]["command"]
    assert cmd[:2] == ["python", "bench.py"] and (ROOT / cmd[2]).exists()


def test_dockerfile_copies_only_what_exists():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
