"""Targets on another host: where the clients connect, and whether one clock serves both
ends (a token's one-way delay is only kept when it does)."""

from __future__ import annotations

from base.cells import parse_cell
from harness.run.targets import off_host, remote_target
from harness.scenario.remote import Remote

REMOTE = Remote("127.0.0.2", (("h2", 9002), ("grpc", 9004)), ca="/tmp/ca.pem",
                api_key_env="NO_SUCH_VARIABLE_HERE")


def test_each_cell_connects_to_its_kinds_port_verified_against_the_ca():
    t = remote_target(REMOTE, parse_cell("rest-h2"), True, "1.3")
    assert (t.host, t.port, t.tls, t.server_name, str(t.ca), t.tls_version) == (
        "127.0.0.2", 9002, True, "127.0.0.2", "/tmp/ca.pem", "1.3")
    g = remote_target(REMOTE, parse_cell("grpc"), False, "1.3")
    assert (g.port, g.tls, g.tls_version, g.api_key) == (9004, False, None, None)


def test_one_way_delay_needs_the_servers_on_this_hosts_clock():
    assert not off_host(None)
    assert not off_host(REMOTE)                         # 127.0.0.0/8: this host
    assert off_host(Remote("10.20.30.40", (("h1", 1),)))
    assert off_host(Remote("no-such-host.invalid", (("h1", 1),)))   # unknown: not assumed
