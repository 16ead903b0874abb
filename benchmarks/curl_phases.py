"""Do the harness's phase times agree with `curl -w`? Same server, same emulated link.

    python benchmarks/curl_phases.py [--requests 15] [--rtt-ms 20]   (root: the lab)

Issue 5's check: the system `curl` binary and the harness's own HTTP/1.1 (`rest-h1`,
cleartext, uvicorn) and HTTP/2 (`rest-h2`, TLS 1.3 + ALPN h2, hypercorn) clients each
make N requests, a new connection each, from the client namespace to the project's
servers in the server namespace over the user-space link emulator at an RTT. Both
resolve `wirebench.test` through the lab's DNS server on every request (no cache):
this curl has no c-ares (`--dns-servers` is unavailable), so it runs in a mount
namespace of its own whose /etc/resolv.conf names the lab's DNS server (port 53), and
glibc's stub asks it (`-4`: one A query, as the harness's resolver sends). The table
gives the p50 of time_namelookup, time_connect, time_appconnect and time_starttransfer
(cumulative ms from the request's start) for each, and the difference.

tests/network/test_curl_phases.py runs it and asserts |diff| <= 1 ms at p50.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # runnable as `python benchmarks/curl_phases.py`
    sys.path.insert(0, str(ROOT))

HOST = "wirebench.test"
PHASES = ("namelookup", "connect", "appconnect", "starttransfer", "total")
BODY = {"model": "wirebench-embed-1", "input": ["phase check"], "dimensions": 8}
CURL_W = "%{time_namelookup} %{time_connect} %{time_appconnect} %{time_starttransfer} " \
         "%{time_total} %{http_version} %{response_code}\n"


# ------------------------------------------------------------------ in the client namespace

def curl_runs(url: str, n: int, http: str, ca: str | None) -> list[dict[str, float]]:
    """n `curl -w` runs (one process, one new connection each); phases in ms."""
    cmd = ["curl", "-4", "--noproxy", "*", "-s", "-o", "/dev/null", "--max-time", "10",
           "-w", CURL_W, f"--http{http}", "-H", "content-type: application/json",
           "--data-binary", json.dumps(BODY)]
    if ca:
        cmd += ["--cacert", ca]
    out = []
    for _ in range(n):
        proc = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=20)
        fields = proc.stdout.split()
        if proc.returncode != 0 or len(fields) != 7 or fields[6] != "200":
            raise RuntimeError(f"curl failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
        want = "2" if http == "2" else "1.1"
        if fields[5] != want:
            raise RuntimeError(f"curl spoke HTTP/{fields[5]}, not {want}")
        out.append({p: float(v) * 1000 for p, v in zip(PHASES, fields[:5])})
    return out


def libcurl_runs(url: str, n: int, http: str, ca: str | None) -> list[dict[str, float]]:
    """The same through the pycurl wheel's libcurl 8.x: a second curl reference, whose
    HTTP/2 time_starttransfer is the first response byte (curl 7.88's is not, see
    `table`). A fresh handle per request: no connection or DNS cache carries over."""
    import io
    import pycurl
    out = []
    for _ in range(n):
        c = pycurl.Curl()
        try:
            c.setopt(c.URL, url)
            c.setopt(c.IPRESOLVE, c.IPRESOLVE_V4)
            c.setopt(c.PROXY, "")       # never an environment proxy
            c.setopt(c.HTTP_VERSION, c.CURL_HTTP_VERSION_2_0 if http == "2"
                     else c.CURL_HTTP_VERSION_1_1)
            c.setopt(c.HTTPHEADER, ["content-type: application/json"])
            c.setopt(c.POSTFIELDS, json.dumps(BODY))
            c.setopt(c.WRITEDATA, io.BytesIO())
            c.setopt(c.TIMEOUT, 10)
            if ca:
                c.setopt(c.CAINFO, ca)
            c.perform()
            if c.getinfo(c.RESPONSE_CODE) != 200:
                raise RuntimeError(f"libcurl got HTTP {c.getinfo(c.RESPONSE_CODE)}")
            out.append({p: c.getinfo(k) * 1000 for p, k in zip(PHASES, (
                c.NAMELOOKUP_TIME, c.CONNECT_TIME, c.APPCONNECT_TIME, c.STARTTRANSFER_TIME,
                c.TOTAL_TIME))})
        finally:
            c.close()
    return out


async def python_runs(protocol: str, port: int, n: int, ca: str | None,
                      dns: tuple[str, int]) -> list[dict[str, float]]:
    from clients import open_client
    from clients.base import Target
    target = Target(host=HOST, port=port, server_name=HOST, ca=Path(ca) if ca else None,
                    dns=dns, dns_cache=False)
    out = []
    async with open_client(protocol, target, reuse=False) as client:
        for _ in range(n):
            r = await client.embed(dict(BODY))
            if not r.new_connection:
                raise RuntimeError("expected a new connection per request")
            out.append({p: r.extra["phases"][p] / 1000 for p in PHASES})
    return out


def measure(cfg: dict) -> dict:
    """Interleaved curl / python rounds (drift of a shared machine hits both alike)."""
    import uvloop
    results: dict = {}
    for case in cfg["cases"]:
        # One discarded request each first: lazy imports, library initialisation.
        curl_runs(case["url"], 1, case["http"], case["ca"])
        libcurl_runs(case["url"], 1, case["http"], case["ca"])
        uvloop.run(python_runs(case["protocol"], case["port"], 1, case["ca"], tuple(cfg["dns"])))
        curl, lib, py = [], [], []
        for _ in range(cfg["rounds"]):
            k = cfg["requests"] // cfg["rounds"]
            curl += curl_runs(case["url"], k, case["http"], case["ca"])
            lib += libcurl_runs(case["url"], k, case["http"], case["ca"])
            py += uvloop.run(python_runs(case["protocol"], case["port"], k, case["ca"],
                                         tuple(cfg["dns"])))
        results[case["protocol"]] = {"curl": curl, "libcurl": lib, "python": py}
    return results


# ------------------------------------------------------------------ the lab around it

def run(requests: int = 15, rtt_ms: float = 20.0, rounds: int = 5) -> dict:
    """Set up the lab, measure, tear it down; per protocol the runs and p50s (ms)."""
    from harness.scenario.linkspec import DirectionSpec, LinkSpec
    from harness.netlab.netns import SERVER_IP, Topology
    from servers.launcher import ServerGroup
    from servers.tls import ensure_tls_files

    if shutil.which("curl") is None:
        raise RuntimeError("needs the curl command")
    half = DirectionSpec(delay_ms=rtt_ms / 2)
    tmp = Path(tempfile.mkdtemp(prefix="wirebench-curl-phases-"))
    try:
        tls = ensure_tls_files(Path(os.environ.get("WIREBENCH_TLS_DIR", tmp / "tls")))
        resolv = tmp / "resolv.conf"
        resolv.write_text(f"nameserver {SERVER_IP}\noptions attempts:1 timeout:2\n")
        with Topology(backend="tun", spec=LinkSpec(up=half, down=half, name="rtt")) as topo, \
                ServerGroup() as servers:
            where = {"host": SERVER_IP, "wrap": topo.wrap("server"),
                     "env": {"WIREBENCH_TLS_DIR": str(tls.ca.parent)}}
            # Port 53: glibc's stub (curl's resolver) knows no other.
            dns = servers.start("dns", port=53, extra=["--name", HOST, "--address", SERVER_IP],
                                **where)
            h1 = servers.start("h1", **where)
            h2 = servers.start("h2", extra=["--tls-version", "1.3"], **where)
            cfg = {"requests": requests, "rounds": rounds, "dns": [SERVER_IP, dns.port],
                   "cases": [
                       {"protocol": "rest-h1", "http": "1.1", "port": h1.port, "ca": None,
                        "url": f"http://{HOST}:{h1.port}/v1/embeddings"},
                       {"protocol": "rest-h2", "http": "2", "port": h2.port,
                        "ca": str(tls.ca), "url": f"https://{HOST}:{h2.port}/v1/embeddings"}]}
            # The measuring child: client namespace, plus a mount namespace of its own
            # whose resolv.conf points at the lab's DNS server (the host's is untouched).
            script = f"mount --bind {resolv} /etc/resolv.conf && exec \"$@\""
            cmd = topo.wrap("client") + [
                "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                "sh", sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"measuring child failed:\n{proc.stderr[-3000:]}")
            runs = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {}
    for protocol, both in runs.items():
        p50 = {who: {p: statistics.median(r[p] for r in rs) for p in PHASES}
               for who, rs in both.items()}
        out[protocol] = {"runs": both, "p50": p50,
                         "diff": {p: p50["python"][p] - p50[curl_reference(protocol, p)][p]
                                  for p in PHASES}}
    return {"rtt_ms": rtt_ms, "requests": requests, "protocols": out,
            "curl_version": subprocess.run(["curl", "-V"], capture_output=True,
                                           text=True).stdout.split("\n")[0]}


# Debian 12's curl 7.88 differs from libcurl 8 (the pycurl wheel's) in two ways that
# are curl's, not the path's:
# - HTTP/2 time_starttransfer is stamped when the first bytes after the handshake arrive
#   (the server's SETTINGS), not the response: ~0.1 ms after pretransfer even when the
#   server takes 50 ms (libcurl 8 and wirebench stamp the response's HEADERS); so after
#   the handshake, HTTP/2 is compared with libcurl 8;
# - its TLS step includes building an SSL_CTX and loading the CA for every connection
#   (OpenSSL 3.0: 0.4-0.6 ms in-process, more in a fresh CLI), which wirebench, as any
#   long-lived client, does once per client; libcurl 8 runs OpenSSL 3.6, whose handshake
#   costs less CPU than the OpenSSL 3.0 wirebench's ssl module links. The HTTP/2
#   appconnect must lie between the two curls, within 1 ms of either bound.
def curl_reference(protocol: str, phase: str) -> str:
    """Which curl a phase is compared with: 'curl' (the system binary) or 'libcurl'."""
    return "libcurl" if protocol == "rest-h2" and phase in ("appconnect", "starttransfer",
                                                            "total") else "curl"


def checks(result: dict, bound_ms: float = 1.0) -> list[tuple[str, float, bool]]:
    """(what, wirebench - reference in ms, within the bound?) for every compared figure."""
    out = []
    for protocol, r in result["protocols"].items():
        p50 = r["p50"]
        w, c, lib = p50["python"], p50["curl"], p50["libcurl"]
        if protocol == "rest-h2":
            for p in ("namelookup", "connect"):
                out.append((f"{protocol} {p} vs curl", w[p] - c[p], abs(w[p] - c[p]) <= bound_ms))
            lo, hi = min(lib["appconnect"], c["appconnect"]), max(lib["appconnect"],
                                                                  c["appconnect"])
            off = (w["appconnect"] - hi if w["appconnect"] > hi else
                   w["appconnect"] - lo if w["appconnect"] < lo else 0.0)
            out.append((f"{protocol} appconnect outside [libcurl 8, curl]", off,
                        abs(off) <= bound_ms))
            for p, since in (("starttransfer", "appconnect"), ("total", "starttransfer")):
                d = (w[p] - w[since]) - (lib[p] - lib[since])
                out.append((f"{protocol} {since} -> {p} vs libcurl 8", d, abs(d) <= bound_ms))
        else:
            for p in PHASES:
                out.append((f"{protocol} {p} vs curl", w[p] - c[p], abs(w[p] - c[p]) <= bound_ms))
    return out


def table(result: dict) -> str:
    lines = [f"p50 of {result['requests']} new-connection requests each, RTT "
             f"{result['rtt_ms']:g} ms, DNS through the lab's server (ms from the start)",
             f"curl: {result['curl_version']}", "",
             "| protocol | phase | curl -w | libcurl 8 | wirebench | diff vs reference |",
             "|---|---|---:|---:|---:|---:|"]
    for protocol, r in result["protocols"].items():
        for p in PHASES:
            c, lib, w = (r["p50"][who][p] for who in ("curl", "libcurl", "python"))
            mark = " (libcurl 8)" if curl_reference(protocol, p) == "libcurl" else ""
            lines.append(f"| {protocol} | {p} | {c:.3f} | {lib:.3f} | {w:.3f} | "
                         f"{r['diff'][p]:+.3f}{mark} |")
    lines += ["", "reference: the system curl, or libcurl 8 where marked (curl_reference() "
              "says why)", "", "| check (p50, ms) | wirebench - reference | ok |",
              "|---|---:|---|"]
    lines += [f"| {what} | {d:+.3f} | {'yes' if ok else 'NO'} |"
              for what, d, ok in checks(result)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=15)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--json", action="store_true", help="print the raw result as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(json.loads(a.child))))
        return
    result = run(a.requests, a.rtt_ms)
    print(json.dumps(result, indent=1) if a.json else table(result))


if __name__ == "__main__":
    main()
