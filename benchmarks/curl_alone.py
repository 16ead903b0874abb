"""libcurl with nothing around it: what libcurl itself reaches, as a reference for the engine.

    python benchmarks/curl_alone.py URL BODY_FILE --http 1.1|2 --concurrency C --duration S

A closed loop of C users POSTing BODY_FILE to URL through pycurl and nothing else (no
wirebench import, no recording beyond libcurl's own total time per transfer):

  C = 1   one easy handle, `perform()` in a loop: one C call per request, the handle's
          connection kept (the fastest way pycurl drives one transfer at a time)
  C > 1   one CurlMulti with C easy handles, re-added as each finishes; HTTP/1.1 on up to
          C connections, HTTP/2 multiplexed on one (prior knowledge, cleartext)

Prints "warm" when the warm-up (0.5 s) is over, then one JSON line: requests, wall_s,
p50_us (libcurl's TOTAL_TIME_T, its own start to last byte), errors, cpu_s (this
process, over the measured loop). benchmarks/fidelity.py runs it as the
"libcurl alone" row beside wrk / h2load and the harness's libcurl engine: what remains
between this row and the native tool is libcurl's own per-transfer work, not the
harness's. It is a reference, not a bound: the engine's loop can beat it where its
traffic suits the server better (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pycurl

WARMUP_S = 0.5
HTTP = {"1.1": pycurl.CURL_HTTP_VERSION_1_1, "2": pycurl.CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE}


def easy(url: str, body: bytes, version: str) -> pycurl.Curl:
    c = pycurl.Curl()
    c.setopt(pycurl.URL, url)
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.PROXY, "")         # never an environment proxy (as the engine)
    c.setopt(pycurl.HTTP_VERSION, HTTP[version])
    c.setopt(pycurl.POSTFIELDS, body)
    # The request the harness sends (clients/http_api.py), without pycurl's User-Agent.
    c.setopt(pycurl.HTTPHEADER, [b"content-type: application/json", b"accept: */*",
                                 b"User-Agent:", b"Expect:"])
    c.setopt(pycurl.WRITEFUNCTION, lambda data: None)
    if version == "2":
        c.setopt(pycurl.PIPEWAIT, 1)
    return c


def run_one(c: pycurl.Curl, deadline: float, totals: list[int]) -> int:
    errors = 0
    while time.monotonic() < deadline:
        try:
            c.perform()
        except pycurl.error:
            errors += 1
            continue
        totals.append(c.getinfo(pycurl.TOTAL_TIME_T))
    return errors


def run_many(handles: list[pycurl.Curl], version: str, deadline: float,
             totals: list[int]) -> int:
    m = pycurl.CurlMulti()
    if version == "2":
        m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        m.setopt(pycurl.M_MAX_HOST_CONNECTIONS, 1)
    else:
        m.setopt(pycurl.M_PIPELINING, pycurl.PIPE_NOTHING)
        m.setopt(pycurl.M_MAXCONNECTS, len(handles))
    for c in handles:
        m.add_handle(c)
    errors, running = 0, len(handles)
    while running:
        while m.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        _, ok, failed = m.info_read()
        again = time.monotonic() < deadline
        for c in ok:
            totals.append(c.getinfo(pycurl.TOTAL_TIME_T))
        errors += len(failed)
        for c in ok + [f[0] for f in failed]:
            m.remove_handle(c)
            if again:
                m.add_handle(c)
            else:
                running -= 1
        if ok or failed:
            continue
        m.select(1.0)
    return errors


def measure(url: str, body: bytes, version: str, conc: int, duration_s: float) -> dict:
    handles = [easy(url, body, version) for _ in range(conc)]
    drive = ((lambda d, t: run_one(handles[0], d, t)) if conc == 1
             else (lambda d, t: run_many(handles, version, d, t)))
    drive(time.monotonic() + WARMUP_S, [])          # connections open, caches warm
    print("warm", flush=True)       # fidelity.py starts its server CPU window here
    totals: list[int] = []
    cpu0, t0 = time.process_time(), time.monotonic()
    errors = drive(t0 + duration_s, totals)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    for c in handles:
        c.close()
    return {"requests": len(totals), "wall_s": wall, "errors": errors, "cpu_s": cpu,
            "p50_us": statistics.median(totals) if totals else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("body", type=Path)
    p.add_argument("--http", choices=sorted(HTTP), default="1.1")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    a = p.parse_args()
    print(json.dumps(measure(a.url, a.body.read_bytes(), a.http, a.concurrency,
                             a.duration)))


if __name__ == "__main__":
    main()
