"""What benchmarks/fidelity.py compares: its points (protocols, request sizes), the one
request the harness and the native tools both send, and the bars a harness client is
held to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from harness.scenario import Scenario, parse_scenario
from harness.scenario.model import Workload
from harness.scenario.workload import embed_requests

ROOT = Path(__file__).resolve().parent.parent

SEED = 1
TARGET_RPS_RATIO = 0.8        # harness req/s >= 0.8 x native
TARGET_P50_RATIO = 1.2        # harness p50 <= 1.2 x native
# The floor issue 13 sets for a client engine on small requests: req/s >= 0.95x and
# p50 <= 1.05x the native tool's (stricter than the fidelity target above).
FLOOR_RPS_RATIO = 0.95
FLOOR_P50_RATIO = 1.05
SATURATED_UTIL = 0.9          # a worker busy >= 90% of wall time had no CPU to spare

SIZES: dict[str, dict[str, Any]] = {
    # 1 input x 8 dims: a ~270 B response, so the protocol engine is all there is.
    "small": {"batch_size": 1, "dimensions": 8},
    # 8 inputs x 1536 float32 as JSON floats: ~154 KB per response.
    "embed": {"batch_size": 8, "dimensions": 1536},
}
PROTOCOLS = {
    # key: (harness protocol id, server kind, native tool)
    "http/1.1": ("rest-h1", "h1", "wrk"),
    "h2c": ("rest-h2", "h2", "h2load"),
    # The native front of the default scenario's first group (Caddy, Go), cleartext so
    # TLS stays out of the comparison as on the direct servers: the same backend behind it.
    "caddy-http/1.1": ("rest-h1", "caddy-h1", "wrk"),
    "caddy-h2c": ("rest-h2", "caddy-h2", "h2load"),
}
DEFAULT_PROTOCOLS = ("http/1.1", "h2c")
# Not harness engines: libcurl with nothing of wirebench around it, run beside the others
# with `--engines curl,libcurl,libcurl-c`: how far libcurl itself is from wrk / h2load, so
# the harness's libcurl engine can be read against libcurl's own cost. "libcurl" is plain
# pycurl (benchmarks/curl_alone.py); "libcurl-c" the same loop in C on the same libcurl
# (benchmarks/libcurl_loop.c), so not even pycurl's call overhead is in it.
LIBCURL_ALONE = "libcurl alone"
LIBCURL_IN_C = "libcurl in C"
LIBCURL_REFERENCES = {"libcurl": LIBCURL_ALONE, "libcurl-c": LIBCURL_IN_C}
# Nor is "native+N" (`--engines native+15,native+30`): the native tool itself with N us of
# busy client CPU added to each of its socket writes (benchmarks/slowed_native.c,
# preloaded), once per request at one user. It shows what any client N us slower per
# request than wrk / h2load reaches against the same server: the price of client
# turnaround here, which libcurl's own cost can be read against.
SLOWED_NATIVE = re.compile(r"native\+(\d+)")


def added_client_us(spec: str) -> int | None:
    """'native+30' -> 30; None for anything else."""
    m = SLOWED_NATIVE.fullmatch(spec)
    return int(m.group(1)) if m else None


def reference_label(spec: str) -> str | None:
    """The row label of a comparator that is not a harness engine; None for an engine."""
    if spec in LIBCURL_REFERENCES:
        return LIBCURL_REFERENCES[spec]
    us = added_client_us(spec)
    return None if us is None else f"native +{us} us"


H2C_KINDS = ("h2", "caddy-h2")          # served as h2c with --h2c-port
INSTALL_HINT = ("wrk and h2load are needed (nothing is installed by this script).\n"
                "  Debian/Ubuntu: apt-get install -y wrk nghttp2-client\n"
                "  macOS:         brew install wrk nghttp2")


def scenario(size: str) -> Scenario:
    """The scenario a user would write for this point, parsed by the product's own parser.

    Its defaults fill any workload field this script does not name, and its connection
    policy ("reuse", "auto": HTTP/1.1 one connection per user, HTTP/2 one for all) is
    the runner's. distinct_inputs == batch_size: every request is the same batch, so the
    harness sends, request after request, exactly the bytes the native tools send.
    """
    sz = SIZES[size]
    return parse_scenario({
        "name": f"fidelity-{size}",
        "workload": {"type": "embed", "batch_size": sz["batch_size"],
                     "dimensions": sz["dimensions"], "input_words": 16,
                     "distinct_inputs": sz["batch_size"], "encoding": "float",
                     "compute_ms": 0},
        "protocols": sorted({spec[0] for spec in PROTOCOLS.values()}),
        "load": {"mode": "closed", "concurrency": [1], "duration_s": 1},
        "seed": SEED})


def workload_of(size: str) -> Workload:
    return scenario(size).workload              # what harness.run.runner puts in a LoadJob


def request_body(size: str) -> bytes:
    """The exact JSON body the harness client sends (it is `orjson.dumps(request)`)."""
    gen = embed_requests(workload_of(size), SEED)
    first, second = orjson.dumps(next(gen)), orjson.dumps(next(gen))
    assert first == second, "fidelity needs one identical request, repeated"
    return first
