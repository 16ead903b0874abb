"""The scenario's `network:` key and connection sweeps: parsing, sweeps, plan, errors."""

import pytest

from harness.scenario.linkspec import Bernoulli, DropRule, GilbertElliott
from harness.scenario import ScenarioError, expand_plan, load_scenario, parse_scenario, quick


def stream(**overrides):
    data = {"name": "t", "workload": {"type": "stream", "itl_ms": 20}, "load": {"concurrency": 8},
            "protocols": ["sse-h2", "sse-h1"]}
    data.update(overrides)
    return data


def net(**link):
    return {"seed": 3, "link": link}


def test_single_link_both_directions_and_override():
    s = parse_scenario(stream(network=net(both={"delay_ms": 10, "rate_mbit": 50},
                                          down={"delay_ms": 15, "loss": "1%"})))
    (link,) = s.network.links
    assert link.up.delay_ms == 10 and link.down.delay_ms == 15
    assert link.up.rate_mbit == link.down.rate_mbit == 50
    assert link.down.loss == Bernoulli(0.01) and link.up.loss == Bernoulli(0.0)
    assert link.seed == 3 and link.rtt_ms == 25
    assert s.network.backend == "auto" and s.network.congestion_control == "reno"


def test_rtt_shorthand_and_loss_sweep_expand_in_order():
    s = parse_scenario(stream(network=net(rtt_ms=40, down={"loss": [0, "0.5%", 0.02]})))
    links = s.network.links
    assert [l.down.loss.p for l in links] == [0, 0.005, 0.02]
    assert all(l.up.delay_ms == l.down.delay_ms == 20 for l in links)
    assert [l.name for l in links] == ["link down.loss=0%", "link down.loss=0.5%",
                                       "link down.loss=2%"]


def test_two_swept_values_give_the_cartesian_product():
    s = parse_scenario(stream(network=net(rtt_ms=[20, 60], both={"loss": [0, 0.01]})))
    # rtt x up.loss x down.loss
    assert len(s.network.links) == 8
    assert {(l.rtt_ms, l.up.loss.p, l.down.loss.p) for l in s.network.links} == {
        (r, u, d) for r in (20, 60) for u in (0, 0.01) for d in (0, 0.01)}


def test_gilbert_elliott_drops_and_blackholes():
    s = parse_scenario(stream(network=net(down={
        "loss": {"model": "gilbert_elliott", "p": 0.01, "r": 0.25},
        "drops": [{"nth": [5, 9], "min_size": 100, "proto": "tcp"}],
        "blackholes": [{"start_ms": 500, "duration_ms": 200}]})))
    d = s.network.links[0].down
    assert d.loss == GilbertElliott(0.01, 0.25, 1.0, 0.0)
    assert d.loss.mean_loss == pytest.approx(0.01 / 0.26)
    assert d.drops == (DropRule((5, 9), 100, 65535, "tcp"),)
    assert d.blackholes[0].start_ms == 500 and d.blackholes[0].duration_ms == 200


def test_links_list_and_quick_keeps_sweep_ends():
    s = parse_scenario(stream(network={"links": [
        {"name": "loss", "rtt_ms": 40, "down": {"loss": [0, "1%", "2%", "5%"]}},
        {"name": "one-drop", "rtt_ms": 40, "down": {"drops": [{"nth": 150}]}}]}))
    assert len(s.network.links) == 5
    q = quick(s)
    assert [l.name for l in q.network.links] == ["loss down.loss=0%", "loss down.loss=5%",
                                                 "one-drop"]


def test_plan_links_outer_connections_swept_http1_only_per_stream():
    s = parse_scenario(stream(connection={"connections": [1, "per_stream"]},
                              network=net(rtt_ms=40, down={"loss": [0, 0.02]})))
    plan = expand_plan(s)
    assert [p.link.down.loss.p for p in plan[:3]] == [0, 0, 0]
    h2 = [p.connection for p in plan if p.protocol == "sse-h2" and p.link.down.loss.p == 0]
    h1 = [p.connection for p in plan if p.protocol == "sse-h1" and p.link.down.loss.p == 0]
    assert [c.connections for c in h2] == [1, "per_stream"]
    assert [c.connections_for("sse-h2", 8) for c in h2] == [1, 8]
    # HTTP/1.1 cannot carry 8 streams on one connection: only one per stream runs.
    assert [c.connections for c in h1] == ["per_stream"]
    assert len(plan) == 2 * 3


def test_to_dict_keeps_the_network_as_written():
    raw = net(rtt_ms=40, down={"loss": [0, "2%"]})
    s = parse_scenario(stream(network=raw))
    assert s.to_dict()["network"] == raw
    assert parse_scenario(s.to_dict()) == s


@pytest.mark.parametrize("network, field, fragment", [
    (net(down={"loss": 2}), "network.link.down.loss", "above 1"),
    (net(down={"loss": "two%"}), "network.link.down.loss", "percent"),
    (net(down={"loss": []}), "network.link.down.loss", "empty list"),
    (net(down={"loss": {"model": "markov"}}), "network.link.down.loss.model", "gilbert_elliott"),
    (net(down={"loss": {"model": "gilbert_elliott", "p": 0.1}}), "network.link.down.loss.r",
     "required"),
    (net(down={"delay": 5}), "network.link.down.delay", "delay_ms"),
    (net(rtt_ms=40, down={"delay_ms": 5}), "network.link.down.delay_ms", "not both"),
    (net(down={"drops": [{"nth": 0}]}), "network.link.down.drops[0].nth[0]", ">= 1"),
    (net(down={"rate_mbit": 0}), "network.link.down.rate_mbit", "> 0"),
    ({"backend": "ns3", "link": {}}, "network.backend", "tun"),
    ({"seed": 1}, "network.links", "exactly one"),
    ({"links": [{"name": "a"}, {"name": "a"}]}, "network.links[1].name", "duplicate"),
])
def test_errors_name_the_field(network, field, fragment):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(stream(network=network), "s.yaml")
    assert info.value.field == field, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_network_with_external_target_is_refused():
    data = stream(target={"base_url": "http://api.example.com/v1", "model": "m"},
                  network=net(rtt_ms=10), workload={"type": "stream"})
    with pytest.raises(ScenarioError, match="network lab runs the built-in servers"):
        parse_scenario(data, "s.yaml")


def test_connections_sweep_errors():
    with pytest.raises(ScenarioError, match="per_stream"):
        parse_scenario(stream(connection={"connections": ["many"]}), "s.yaml")
    with pytest.raises(ScenarioError, match="duplicate"):
        parse_scenario(stream(connection={"connections": [1, 1]}), "s.yaml")


def test_hol_scenario_file_parses():
    s = load_scenario("scenarios/hol.yaml")
    assert s.network is not None and s.load.stagger_ms == 2.5
    names = {l.name for l in s.network.links}
    assert "loss down.loss=2%" in names
    drops = [l for l in s.network.links if l.name.startswith("one-drop down.drop=")]
    assert len(drops) >= 10                              # ten single drops per cell
    assert all(len(l.down.drops) == 1 and len(l.down.drops[0].nth) == 1 for l in drops)
    assert len({l.down.drops[0].nth for l in drops}) == len(drops)   # positions varied
    assert all(l.rtt_ms == 40 for l in s.network.links)
    quick = [l for l in s.network.ends().links if l.name.startswith("one-drop")]
    assert len(quick) == 3                               # --quick keeps three


def test_one_per_run_drops_expand_into_one_variant_per_position():
    from harness.scenario.network import network_section
    n = network_section({"link": {"name": "d", "down": {"drops": [
        {"nth": [5, 9], "one_per_run": True}, {"nth": [2, 3]}]}}}, "network")
    assert [l.name for l in n.links] == ["d down.drop=5", "d down.drop=9"]
    # The fixed rule rides along in every variant; the swept one is a single packet.
    assert [[r.nth for r in l.down.drops] for l in n.links] == [[(2, 3), (5,)], [(2, 3), (9,)]]


def test_policy_sweep_runs_cold_and_warm():
    s = parse_scenario(stream(connection={"policy": ["new", "reuse"], "connections": 1}))
    h2 = [p.connection for p in expand_plan(s) if p.protocol == "sse-h2"]
    h1 = [p.connection for p in expand_plan(s) if p.protocol == "sse-h1"]
    assert [c.label for c in h2] == ["new", "1"]
    # HTTP/1.1 at one connection for 8 users would queue: only the cold points run.
    assert [c.label for c in h1] == ["new"]
    assert h2[0].connections_for("sse-h2", 8) == 8 and h2[1].connections_for("sse-h2", 8) == 1
