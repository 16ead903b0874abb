"""Scenario schema: parsing, the first problem reported with its path, derived scenarios."""

import copy
import pickle
import random
from collections import Counter

import pytest

from harness.scenario import (
    PlanPoint, ScenarioError, Threshold, expand_plan, load_scenario, parse_scenario, quick,
    with_protocols,
)
from harness.scenario.model import EmbedWorkload

FULL_YAML = """\
name: embedding
description: "Embedding batches across the unary protocols"
workload:
  type: embed
  batch_size: 8
  input_words: 16
  distinct_inputs: 64
  dimensions: 1536
  encoding: base64
  compute_ms: 2
protocols: [rest-h1, rest-h2, rest-h3, grpc, ws]
load:
  mode: closed
  concurrency: [1, 4, 8, 16]
  requests: 200
  timeout_s: 30
warmup:
  requests: 20
repeats: 3
seed: 7
workers: 2
connection:
  policy: reuse
  connections: auto
tls: true
thresholds:
  - "p99 < 200ms"
  - "error_rate < 1%"
  - "throughput >= 50rps"
max_error_rate: 0.02
outputs:
  hgrm: true
  requests_csv: true
"""


def minimal(**overrides):
    data = {"name": "t", "workload": {"type": "embed"}, "load": {}}
    data.update(overrides)
    return data


def stream(**overrides):
    return minimal(**{"workload": {"type": "stream"}, **overrides})


def error_of(data, source="s.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, source)
    return info.value


def assert_error(data, field, *fragments):
    err = error_of(data)
    assert err.field == field, str(err)
    assert str(err).startswith(f"s.yaml: {field}: "), str(err)
    for fragment in fragments:
        assert fragment in err.message, str(err)
    return err


# ----------------------------------------------------------------- valid scenarios

def test_full_scenario_parses_and_round_trips(tmp_path):
    path = tmp_path / "embedding.yaml"
    path.write_text(FULL_YAML)
    s = load_scenario(path)
    assert s.source == str(path)
    assert s.name == "embedding"
    assert s.workload.encoding == "base64" and s.workload.compute_ms == 2.0
    assert isinstance(s.workload, EmbedWorkload)    # one class per kind:
    assert not hasattr(s.workload, "max_tokens")    # stream fields are not there
    assert s.protocols == ("rest-h1", "rest-h2", "rest-h3", "grpc", "ws")
    assert s.load.concurrency == (1, 4, 8, 16) and s.load.rate is None
    assert s.warmup.requests == 20 and s.repeats == 3 and s.seed == 7 and s.workers == 2
    assert [t.value for t in s.thresholds] == [200.0, 0.01, 50.0]
    assert s.outputs.requests_csv is True
    again = parse_scenario(s.to_dict(), s.source)
    assert again == s
    assert again.to_dict() == s.to_dict()


def test_defaults_fill_everything_and_round_trip():
    s = parse_scenario(minimal())
    assert s.source == "<string>"
    assert s.protocols == ("rest-h1", "rest-h2", "rest-h3", "grpc", "ws")   # "all" that fit
    assert (s.workload.batch_size, s.workload.input_words, s.workload.distinct_inputs,
            s.workload.dimensions, s.workload.encoding) == (8, 16, 64, 1536, "float")
    assert s.load.mode == "closed" and s.load.concurrency == (1,)
    assert s.load.requests == 200 and s.load.duration_s is None and s.load.timeout_s == 30
    assert s.warmup.requests == 10 and s.repeats == 1 and s.seed == 1 and s.workers == 1
    assert s.connection.policy == "reuse" and s.connection.connections == "auto"
    assert s.tls is True and s.thresholds == () and s.max_error_rate == 0.01
    assert s.outputs.hgrm is True and s.outputs.requests_csv is False and s.target is None
    assert parse_scenario(s.to_dict()) == s


def test_open_loop_stream_with_target_round_trips():
    s = parse_scenario(stream(
        protocols="streaming",
        load={"mode": "open", "rate": [200, 50.5], "arrival": "gamma", "gamma_shape": 2,
              "duration_s": 5},
        target={"base_url": "http://localhost:8000/v1", "model": "m", "api_key_env": "KEY"},
        thresholds=["ttft_p99 < 1s", "itl_p99 <= 500us"],
    ))
    assert s.protocols == ("sse-h1", "sse-h2")        # the group, narrowed to what a target speaks
    assert s.load.rate == (50.5, 200.0) and s.load.concurrency is None
    assert s.load.requests is None and s.load.duration_s == 5.0
    assert s.load.gamma_shape == 2.0 and s.load.max_in_flight == 1024
    assert [t.value for t in s.thresholds] == [1000.0, 0.5]
    assert s.workload.max_tokens == 64 and not hasattr(s.workload, "batch_size")
    assert parse_scenario(s.to_dict()) == s
    assert not s.uses_tls("sse-h2")                   # http:// URL


def test_bare_numbers_become_one_point_lists():
    assert parse_scenario(minimal(load={"concurrency": 8})).load.concurrency == (8,)
    s = parse_scenario(minimal(load={"mode": "open", "rate": 100}))
    assert s.load.rate == (100.0,) and s.load.arrival == "poisson"
    assert s.load.gamma_shape is None                 # only with arrival gamma


def test_group_names_resolve_by_workload_and_tls():
    assert parse_scenario(minimal(protocols="unary")).protocols == (
        "rest-h1", "rest-h2", "rest-h3", "grpc", "ws")
    s = parse_scenario(stream(protocols="all", tls=False))
    assert s.protocols == ("sse-h1", "sse-h2", "grpc-stream", "ws-stream")   # no h3 in clear
    assert s.uses_tls("sse-h1") is False and s.uses_tls("sse-h2") is False


def test_uses_tls_follows_each_protocols_modes():
    s = parse_scenario(stream())
    assert [s.uses_tls(p) for p in s.protocols] == [False, True, True, False, False]


def test_connections_for():
    auto = parse_scenario(minimal()).connection
    assert auto.connections_for("rest-h1", 8) == 8 and auto.connections_for("rest-h2", 8) == 1
    spc = parse_scenario(minimal(connection={"streams_per_connection": 3})).connection
    assert spc.connections_for("grpc", 8) == 3
    fixed = parse_scenario(minimal(connection={"connections": 2})).connection
    assert fixed.connections_for("rest-h1", 8) == 2
    new = parse_scenario(minimal(connection={"policy": "new"})).connection
    assert new.connections is None and new.connections_for("ws", 5) == 5


def test_threshold_check_and_units():
    t = parse_scenario(minimal(thresholds=["p99<=2s", "error_rate < 0.5%", "mean > 1500us"]))
    p99, errors, mean = t.thresholds
    assert isinstance(p99, Threshold) and p99.text == "p99<=2s"
    assert p99.check(2000.0) and not p99.check(2000.1)
    assert errors.value == pytest.approx(0.005) and errors.check(0.004)
    assert mean.value == 1.5 and mean.check(1.6) and not mean.check(1.5)
    assert not p99.check(float("nan"))                # no data never passes


# ----------------------------------------------------------------- first problem, full path

def test_error_str_names_source_field_expected_and_got():
    err = assert_error(minimal(load={"concurrency": [1, 4, -3]}), "load.concurrency[2]")
    assert str(err) == "s.yaml: load.concurrency[2]: expected an integer in 1..4096, got -3"
    assert err.source == "s.yaml"


def test_error_pickles_with_its_attributes():
    err = pickle.loads(pickle.dumps(error_of(minimal(seed=-1))))
    assert (err.source, err.field) == ("s.yaml", "seed") and "got -1" in str(err)


@pytest.mark.parametrize("data, field, expected_got", [
    (minimal(workload={"type": "embed", "batch_size": "8"}), "workload.batch_size", 'got "8"'),
    (minimal(workload={"type": "embed", "batch_size": True}), "workload.batch_size", "got true"),
    (minimal(workload={"type": "embed", "dimensions": 1536.0}), "workload.dimensions",
     "got 1536.0"),
    (minimal(tls="yes"), "tls", 'expected true or false, got "yes"'),
    (minimal(name=5), "name", "got 5"),
    (minimal(name="Bad Name"), "name", 'got "Bad Name"'),
    (minimal(load=[1]), "load", "expected a mapping, got [1]"),
    (minimal(thresholds="p99 < 1ms"), "thresholds", "expected a list"),
    (minimal(max_error_rate=True), "max_error_rate", "got true"),
    (minimal(load={"timeout_s": float("inf")}), "load.timeout_s", "got Infinity"),
    (minimal(workload={"type": "embedding"}), "workload.type", '"embed", "stream"'),
    (minimal(connection={"connections": "many"}), "connection.connections",
     'expected "auto", "per_stream" or an integer >= 1'),
    (minimal(outputs={"hgrm": 1}), "outputs.hgrm", "got 1"),
])
def test_wrong_type(data, field, expected_got):
    assert_error(data, field, "expected", expected_got)


@pytest.mark.parametrize("data, field", [
    (minimal(colour="blue"), "colour"),
    (minimal(load={"concurency": [1]}), "load.concurency"),
    (minimal(workload={"type": "embed", "batch": 8}), "workload.batch"),
    (minimal(connection={"streams": 2}), "connection.streams"),
    (minimal(target={"base_url": "http://h", "model": "m", "key": "x"}), "target.key"),
    (minimal(warmup={"requests": 1, "seconds": 2}), "warmup.seconds"),
])
def test_unknown_key(data, field):
    assert_error(data, field, "unknown key")


def test_unknown_key_suggests_the_near_one_and_wins_over_later_problems():
    err = assert_error(minimal(load={"concurency": [1], "requests": -1}), "load.concurency")
    assert 'did you mean "concurrency"?' in err.message


def test_unknown_protocol_id():
    assert_error(minimal(protocols=["rest-h1", "http4"]), "protocols[1]",
                 'unknown protocol "http4"', "rest-h1")


@pytest.mark.parametrize("data, field, fragment", [
    (minimal(protocols=["rest-h1", "sse-h1"]), "protocols[1]", '"sse-h1" cannot run a embed'),
    (stream(protocols=["grpc"]), "protocols[0]", '"grpc" cannot run a stream'),
    (stream(protocols="unary"), "protocols", "cannot run a stream"),
    (minimal(protocols="streaming"), "protocols", "cannot run a embed"),
])
def test_protocol_of_wrong_kind(data, field, fragment):
    assert_error(data, field, fragment)


@pytest.mark.parametrize("data, field, fragment", [
    (minimal(load={"concurrency": 0}), "load.concurrency", "an integer in 1..4096, got 0"),
    (minimal(load={"concurrency": []}), "load.concurrency", "non-empty"),
    (minimal(load={"concurrency": [4, 2, 4]}), "load.concurrency[2]",
     "duplicate of load.concurrency[0]"),
    (minimal(load={"mode": "open", "rate": -1}), "load.rate", "a number > 0, got -1"),
    (minimal(load={"mode": "open", "rate": [5, 0]}), "load.rate[1]", "got 0"),
    (minimal(workload={"type": "embed", "dimensions": 9000}), "workload.dimensions",
     "an integer in 1..8192, got 9000"),
    (stream(workload={"type": "stream", "max_tokens": 100_001}), "workload.max_tokens",
     "1..100000"),
    (minimal(workers=65), "workers", "1..64"),
    (minimal(max_error_rate=1.5), "max_error_rate", "0..1"),
    (minimal(load={"requests": 10, "duration_s": 5}), "load.duration_s", "not both"),
    (minimal(connection={"connections": 2, "streams_per_connection": 4}),
     "connection.streams_per_connection", "not both"),
    (minimal(protocols=["rest-h1", "grpc", "grpc"]), "protocols[2]", "duplicate of protocols[1]"),
    (minimal(protocols=[]), "protocols", "got []"),
    (minimal(tls=False, protocols=["rest-h2", "rest-h3"]), "protocols[1]", "tls: false"),
])
def test_impossible_value(data, field, fragment):
    assert_error(data, field, fragment)


@pytest.mark.parametrize("data, field, fragment", [
    (minimal(load={"rate": [100]}), "load.rate", 'load.mode is "open" (it is "closed")'),
    (minimal(load={"arrival": "poisson"}), "load.arrival", "open"),
    (minimal(load={"max_in_flight": 8}), "load.max_in_flight", "open"),
    (minimal(load={"mode": "open", "rate": 1, "concurrency": 4}), "load.concurrency", "closed"),
    (minimal(load={"mode": "open", "rate": 1, "gamma_shape": 2}), "load.gamma_shape",
     'load.arrival is "gamma"'),
    (minimal(load={"mode": "open"}), "load.rate", 'required when load.mode is "open"'),
    (stream(workload={"type": "stream", "dimensions": 8}), "workload.dimensions", "embed"),
    (minimal(workload={"type": "embed", "itl_ms": 8}), "workload.itl_ms", "stream"),
    (minimal(connection={"policy": "new", "streams_per_connection": 2}),
     "connection.streams_per_connection", "reuse"),
])
def test_key_that_does_not_apply_in_this_mode(data, field, fragment):
    assert_error(data, field, fragment)


@pytest.mark.parametrize("text", ["p99 << 200ms", "p99 200ms", "< 200ms", "p99 < fast",
                                  "p99 < -5ms", "p99 == 5"])
def test_bad_threshold_syntax(text):
    assert_error(minimal(thresholds=["p50 < 1s", text]), "thresholds[1]",
                 "metric op value[unit]", text)


@pytest.mark.parametrize("text, fragment", [
    ("p98 < 3ms", 'unknown metric "p98"'),
    ("latency < 3ms", 'unknown metric "latency"'),
    ("p99 < 3rps", 'unit "rps" does not fit p99'),
    ("throughput > 5ms", 'unit "ms" does not fit throughput'),
    ("error_rate < 5", "fraction"),
    ("ttft_p99 < 5ms", "needs a stream workload"),
])
def test_bad_threshold_metric_or_unit(text, fragment):
    assert_error(minimal(thresholds=[text]), "thresholds[0]", fragment)


@pytest.mark.parametrize("missing", ["name", "workload", "load"])
def test_missing_required(missing):
    data = minimal()
    del data[missing]
    assert_error(data, missing, "required field missing")


def test_missing_required_nested():
    assert_error(minimal(workload={}), "workload.type", "required")
    assert_error(minimal(target={"base_url": "https://api.example.com/v1"}), "target.model",
                 "required")


@pytest.mark.parametrize("target, protocols, field, fragment", [
    ({"base_url": "ftp://x/v1", "model": "m"}, "unary", "target.base_url", "http(s) URL"),
    ({"base_url": "http://x/v1", "model": "m", "api_key_env": "MY KEY"}, "unary",
     "target.api_key_env", "environment variable"),
    ({"base_url": "http://x/v1", "model": "m"}, ["rest-h1", "rest-h3"], "protocols[1]",
     "cannot be used with target"),
])
def test_target_rules(target, protocols, field, fragment):
    assert_error(minimal(target=target, protocols=protocols), field, fragment)


def test_target_refuses_simulated_model_time_and_https_without_tls():
    https = {"base_url": "https://api.example.com/v1", "model": "m"}
    assert_error(minimal(target=https, workload={"type": "embed", "compute_ms": 5}),
                 "workload.compute_ms", "built-in servers")
    assert_error(minimal(target=https, tls=False), "target.base_url", "tls is false")


def test_top_level_not_a_mapping():
    err = error_of(["name"])
    assert err.field == ""
    assert str(err) == 's.yaml: expected a mapping at the top level, got ["name"]'


# ----------------------------------------------------------------- files

def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nload: {concurrency: [1, 2}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.source == str(path) and (err.line, err.column) == (2, 26)
    assert str(err).startswith(f"{path}: line 2, column 26: YAML error")


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nworkload: {type: embed}\nload: {}\nname: b\n")
    with pytest.raises(ScenarioError, match=r"line 4, column 1: .*duplicate key \"name\""):
        load_scenario(path)


def test_validation_error_from_file_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(FULL_YAML.replace("concurrency: [1, 4, 8, 16]", "concurrency: [1, 4, -3]"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(info.value) == f"{path}: load.concurrency[2]: expected an integer in 1..4096, got -3"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ScenarioError, match=r"nope\.yaml: file not found$"):
        load_scenario(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ScenarioError, match=r"empty\.yaml: the file is empty$"):
        load_scenario(tmp_path / "empty.yaml")


# ----------------------------------------------------------------- derived scenarios

def test_quick_keeps_the_ends_and_shrinks_the_run():
    s = parse_scenario(minimal(load={"concurrency": [16, 1, 4, 8], "requests": 500},
                               warmup={"requests": 50}, repeats=5, workers=4))
    q = quick(s)
    assert q.load.concurrency == (1, 16) and q.load.requests == 30
    assert (q.warmup.requests, q.repeats, q.workers) == (3, 1, 1)
    assert q.name == s.name and q.protocols == s.protocols
    assert parse_scenario(q.to_dict()) == q


def test_quick_open_loop_duration_and_stream_tokens():
    s = parse_scenario(stream(workload={"type": "stream", "max_tokens": 500},
                              load={"mode": "open", "rate": [10, 20, 30], "duration_s": 60},
                              warmup={"requests": 0}))
    q = quick(s)
    assert q.load.rate == (10.0, 30.0)
    assert q.load.requests == 30 and q.load.duration_s is None
    assert q.workload.max_tokens == 16
    assert q.warmup.requests == 0                      # a cold-start scenario stays cold
    assert parse_scenario(q.to_dict()) == q


def test_quick_keeps_small_values():
    q = quick(parse_scenario(stream(workload={"type": "stream", "max_tokens": 4},
                                    load={"concurrency": 2, "requests": 5})))
    assert q.load.concurrency == (2,) and q.load.requests == 5 and q.workload.max_tokens == 4


def test_with_protocols_subset_and_errors():
    s = parse_scenario(minimal(protocols=["rest-h1", "grpc", "ws"]), "x.yaml")
    assert with_protocols(s, ["ws", "rest-h1"]).protocols == ("rest-h1", "ws")
    with pytest.raises(ScenarioError) as info:
        with_protocols(s, ["grpc", "http4"])
    assert str(info.value).startswith('x.yaml: protocols: unknown protocol "http4"')
    with pytest.raises(ScenarioError, match=r'"rest-h2" is not in this scenario'):
        with_protocols(s, ["rest-h2"])
    with pytest.raises(ScenarioError, match="no protocol"):
        with_protocols(s, [])


def test_scenarios_are_immutable_and_inputs_untouched():
    data = minimal(load={"concurrency": [8, 1]})
    before = copy.deepcopy(data)
    s = parse_scenario(data)
    assert data == before
    with pytest.raises(AttributeError):
        s.name = "other"


# ----------------------------------------------------------------- plan

def plan_of(**overrides):
    return parse_scenario(minimal(**overrides))


def test_plan_has_every_point_once_per_repeat_ascending():
    s = plan_of(protocols="unary", load={"concurrency": [8, 1, 4]}, repeats=3, seed=11)
    plan = expand_plan(s)
    assert len(plan) == 3 * 5 * 3
    assert Counter((p.repeat, p.protocol, p.concurrency) for p in plan) == Counter(
        (r, pid, c) for r in range(3) for pid in s.protocols for c in (1, 4, 8))
    assert all(p.load_kind == "closed" and p.rate is None for p in plan)
    assert [p.repeat for p in plan] == sorted(p.repeat for p in plan)
    for r in range(3):
        rows = [p for p in plan if p.repeat == r]
        for i in range(0, len(rows), 3):                # one protocol's block
            block = rows[i:i + 3]
            assert len({p.protocol for p in block}) == 1
            assert [p.concurrency for p in block] == [1, 4, 8]


def order_by_repeat(plan):
    orders = {}
    for p in plan:
        order = orders.setdefault(p.repeat, [])
        if p.protocol not in order:
            order.append(p.protocol)
    return [orders[r] for r in sorted(orders)]


def test_plan_order_is_shuffled_per_repeat_and_deterministic_by_seed():
    s = plan_of(protocols="unary", repeats=8, seed=3)
    orders = order_by_repeat(expand_plan(s))
    assert orders == order_by_repeat(expand_plan(s))
    assert len({tuple(o) for o in orders}) > 1          # not the same order every repeat
    other = order_by_repeat(expand_plan(plan_of(protocols="unary", repeats=8, seed=4)))
    assert orders != other
    for r, order in enumerate(orders):
        expected = list(s.protocols)
        random.Random(3 + r).shuffle(expected)
        assert order == expected


def test_open_loop_plan_points():
    s = plan_of(protocols=["grpc"], load={"mode": "open", "rate": [50, 10]})
    assert expand_plan(s) == [PlanPoint(0, "grpc", "open", None, 10.0),
                              PlanPoint(0, "grpc", "open", None, 50.0)]


@pytest.mark.parametrize("concurrency, requests, message", [
    (100_000_000, 20, "1..4096"),
    (30, 20, "30 users for 20 requests"),
])
def test_concurrency_is_bounded(concurrency, requests, message):
    data = {"name": "x", "workload": {"type": "embed"},
            "load": {"mode": "closed", "concurrency": concurrency, "requests": requests}}
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_cors_is_the_servers_flag_normalised():
    assert parse_scenario(minimal()).cors is None
    s = parse_scenario(minimal(cors=["HTTP://Localhost:8000/", "http://a.test"]))
    assert s.cors == "http://localhost:8000,http://a.test"
    assert parse_scenario(s.to_dict()) == s
    assert parse_scenario(minimal(cors="*")).cors == "*"
    assert "cors" in str(error_of(minimal(cors="localhost:8000")))
    assert "cors" in str(error_of(minimal(cors=["*", "http://a.test"])))
    assert "cors" in str(error_of(minimal(cors=7)))
    assert "cors" in str(error_of(minimal(cors="*", target={
        "base_url": "https://api.example.com/v1", "model": "m"})))
