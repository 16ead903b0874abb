import pytest

from base.cells import make_cell, parse_cell
from harness.scenario import ScenarioError, parse_scenario, with_protocols


@pytest.mark.parametrize("text, server, client, kind", [
    ("rest-h1", "uvicorn", "python", "h1"),
    ("rest-h1@granian", "granian", "python", "granian-h1"),
    ("rest-h3+curl", "hypercorn", "curl", "h3"),
    ("sse-h2@granian+curl", "granian", "curl", "granian-h2"),
])
def test_parse(text, server, client, kind):
    cell = parse_cell(text)
    assert (cell.server, cell.client, cell.server_kind, cell.label) == (server, client, kind, text)


def test_defaults_written_out_normalize_away():
    assert parse_cell("rest-h2@hypercorn+python").label == "rest-h2"


@pytest.mark.parametrize("text, words", [
    ("rest-h4", "unknown protocol"),
    ("grpc@granian", 'no server "granian"'),
    ("ws+curl", 'no client engine "curl"'),
    ("rest h1", "not a protocol cell"),
])
def test_bad_cells_say_what_is_possible(text, words):
    with pytest.raises(ValueError, match=words):
        parse_cell(text)


def scenario(protocols):
    return parse_scenario({"name": "x", "workload": {"type": "embed"}, "load": {},
                           "protocols": protocols}, "x.yaml")


def test_scenario_accepts_strings_and_mappings_and_refuses_duplicates():
    s = scenario(["rest-h1", {"protocol": "rest-h1", "server": "granian"}, "rest-h3+curl"])
    assert s.protocols == ("rest-h1", "rest-h1@granian", "rest-h3+curl")
    with pytest.raises(ScenarioError, match=r"protocols\[1\]: duplicate"):
        scenario(["rest-h1@granian", {"protocol": "rest-h1", "server": "granian"}])
    with pytest.raises(ScenarioError, match=r"protocols\[0\]: .*no server"):
        scenario(["grpc@uvicorn"])


def test_subset_by_cell():
    s = scenario(["rest-h1", "rest-h1@granian"])
    assert with_protocols(s, ["rest-h1@granian"]).protocols == ("rest-h1@granian",)
    assert make_cell("rest-h1").label == "rest-h1"


def stream_scenario(protocols, **extra):
    return parse_scenario({"name": "x", "workload": {"type": "stream"}, "load": {},
                           "protocols": protocols, **extra}, "x.yaml")


def test_browser_cells_and_their_limits():
    assert parse_cell("sse-h2@caddy+browser").label == "sse-h2@caddy+browser"
    with pytest.raises(ValueError, match=r'rest-h1 has no client engine "browser": it '
                                         r"drives only sse-h1, sse-h2, ws-stream"):
        parse_cell("rest-h1+browser")
    with pytest.raises(ValueError, match='no client engine "browser"'):
        parse_cell("grpc-stream+browser")
    s = stream_scenario(["sse-h1", "sse-h1+browser", "ws-stream+browser"])
    assert s.protocols == ("sse-h1", "sse-h1+browser", "ws-stream+browser")
    with pytest.raises(ScenarioError, match=r"connection\.policy: .*browser's own connection"):
        stream_scenario(["sse-h1+browser"], connection={"policy": "new"})
    with pytest.raises(ScenarioError, match=r"tls: browsers speak HTTP/2 only over TLS"):
        stream_scenario(["sse-h2+browser"], tls=False)
    with pytest.raises(ScenarioError, match=r"dns: the browser resolves names itself"):
        stream_scenario(["sse-h1+browser"], dns={"cache": True})
    with pytest.raises(ScenarioError, match=r"target: .*loads its page"):
        stream_scenario(["sse-h1+browser"], target={"base_url": "http://h:1/v1", "model": "m"})
