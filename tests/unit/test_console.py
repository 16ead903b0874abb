"""The terminal table: a saturated row carries its flag, and a payload-only byte figure
is marked as such beside the wire figures."""

from rich.console import Console

from harness.report.console import final_table


def row(cell, wire, payload, bound=""):
    return {"cell": cell, "protocol": cell.split("@")[0].split("+")[0], "mode": "closed",
            "concurrency": 1, "rate_offered_rps": None, "network": "loopback", "n": 600,
            "errors": 0, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "overhead_p50_ms": 0.5,
            "throughput_rps": 900.0, "client_cpu_ms_per_req": 0.3,
            "server_cpu_ms_per_req": 0.8, "wire_down_bytes": wire,
            "payload_down_bytes": payload, "server_bound": bound, "client_bound": "",
            "failed": ""}


def render(rows):
    console = Console(width=140, record=True)
    console.print(final_table(rows, False))
    return console.export_text()


def test_payload_only_bytes_are_marked_and_explained():
    text = render([row("rest-h1", 159_852, 154_129), row("rest-h3@caddy+curl", None, 154_129)])
    assert "154,129p" in text and "159,852p" not in text
    assert "p: payload bytes only" in text


def test_saturated_row_is_flagged_and_the_flag_explained():
    text = render([row("rest-h1", 159_852, 154_129, bound="python[1] used 96% of a core")])
    assert "SRV" in text and "never ranked" in text
    assert "p: payload bytes only" not in render([row("rest-h1", 159_852, 154_129)])


def test_machine_bound_row_is_flagged_cpu():
    text = render([{**row("rest-h1@caddy+curl", 160_040, 154_129),
                    "machine_bound": "client and server processes together used 1.80 of "
                                     "the machine's 2 cores"}])
    assert " CPU " in text and "machine saturated" in text
