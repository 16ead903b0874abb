"""The runs benchmarks/fidelity.py times: the native tools (wrk and h2load, as they are or
slowed per request; libcurl alone through pycurl and in C) and the harness's own worker
process, each inside a CPU window."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from base.lifetime import child_env, pdeathsig_prefix
from clients.base import Target
from harness.measure.recorder import Recorder
from harness.run.events import Failure, Result, Warm, decode
from harness.run.job import LoadJob
from harness.run.load.loadgen import CLIENT_PATHS
from servers.launcher import ServerProcess

from fidelity_measure import Pinning, Run, Window, children_cpu_s, percentile, pin_process
from fidelity_setup import LIBCURL_REFERENCES, ROOT, SEED, reference_label, scenario

# ---------------------------------------------------------------- native tools

# Both tools send the harness's request headers (clients/http_api.py, _POST_JSON).
WRK_LUA = """\
wrk.method = "POST"
local f = assert(io.open(%(body)s, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "*/*"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WIREBENCH-WRK {"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "mean_us": %%.1f, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Native:
    def __init__(self, workdir: Path, pin: Pinning) -> None:
        self.dir = workdir
        self.pin = pin
        self.wrap: list[str] = []   # a command each tool runs under (client_cost.py's counters)

    def _run(self, cmd: list[str], timeout: float, added_us: int = 0) -> tuple[str, float]:
        env = None
        if added_us:            # the tool slowed by added_us per request (slowed_native.c)
            env = dict(os.environ, LD_PRELOAD=str(self._compiled("slowed_native", shared=True)),
                       WIREBENCH_ADDED_US=str(added_us))
        cpu0 = children_cpu_s()
        out = subprocess.run(self.pin.client_prefix() + self.wrap + cmd, capture_output=True,
                             text=True, timeout=timeout, env=env)
        cpu = children_cpu_s() - cpu0
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out.stdout, cpu

    def wrk(self, url: str, body_file: Path, conc: int, duration_s: int,
            server: ServerProcess, added_us: int = 0) -> Run:
        lua = self.dir / f"post-{body_file.stem}.lua"
        lua.write_text(WRK_LUA % {"body": _lua_string(str(body_file))})
        cmd = ["wrk", "-t1", f"-c{conc}", f"-d{duration_s}s", "--timeout", "30s",
               "-s", str(lua), url]
        win = Window(server, self.pin)
        win.start()
        stdout, cpu = self._run(cmd, duration_s + 60, added_us)
        win.stop()
        m = re.search(r"^WIREBENCH-WRK (\{.*\})$", stdout, re.M)
        if not m:
            raise RuntimeError(f"wrk printed no summary:\n{stdout}")
        r = orjson.loads(m.group(1))
        n, wall = r["requests"], r["duration_us"] / 1e6
        errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
        return Run(_tool("wrk", added_us), n / wall, r["p50_us"] / 1000, n, wall, errors,
                   cpu / n * 1e6 if n else None, cpu / wall, **win.fields(n, wall),
                   extra={"p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                          "mean_ms": r["mean_us"] / 1000,
                          "response_bytes_per_req": r["bytes"] / n if n else None,
                          **_slowed_path("wrk", added_us)})

    def h2load(self, url: str, body_file: Path, conc: int, duration_s: int,
               server: ServerProcess, added_us: int = 0) -> Run:
        log = self.dir / "h2load.log"
        log.unlink(missing_ok=True)
        # -c1 -m C: one connection, C concurrent streams, as the harness multiplexes.
        cmd = ["h2load", "-t1", "-c1", f"-m{conc}", "-D", str(duration_s),
               "-d", str(body_file), "-H", "content-type: application/json",
               "-H", "accept: */*", "--log-file", str(log), url]
        win = Window(server, self.pin)
        win.start()
        stdout, cpu = self._run(cmd, duration_s + 60, added_us)
        win.stop()
        if "Application protocol: h2c" not in stdout:
            raise RuntimeError(f"h2load did not speak h2c:\n{stdout}")
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", stdout)
        req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout", stdout)
        codes = re.search(r"status codes: (\d+) 2xx", stdout)
        traffic = re.search(r"\((\d+)\) data", stdout)
        if not (m and req):
            raise RuntimeError(f"cannot parse h2load output:\n{stdout}")
        wall = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        done, ok = int(req.group(3)), int(req.group(4))
        # Per-request log: start (us since epoch), status, microseconds to response end.
        times = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines()
                       if line.count("\t") == 2)
        p50 = percentile(times, 50) / 1000 if times else float("nan")
        errors = done - ok + int(req.group(6)) + int(req.group(7))
        if codes is not None and int(codes.group(1)) < ok:
            errors += ok - int(codes.group(1))
        return Run(_tool("h2load", added_us), ok / wall, p50, ok, wall, errors,
                   cpu / ok * 1e6 if ok else None, cpu / wall, **win.fields(ok, wall),
                   extra={"p90_ms": percentile(times, 90) / 1000 if times else None,
                          "p99_ms": percentile(times, 99) / 1000 if times else None,
                          "h2load_rps": float(m.group(3)), "logged": len(times),
                          "response_bytes_per_req":
                              int(traffic.group(1)) / ok if traffic and ok else None,
                          **_slowed_path("h2load", added_us)})

    def libcurl(self, engine: str, url: str, body_file: Path, conc: int, duration_s: int,
                server: ServerProcess, version: str) -> Run:
        """libcurl with nothing of wirebench around it: through pycurl (engine "libcurl",
        benchmarks/curl_alone.py) or in C (engine "libcurl-c", benchmarks/libcurl_loop.c
        on the libcurl pycurl loads)."""
        if engine == "libcurl-c":
            cmd = [str(self._compiled("libcurl_loop")), str(bundled_libcurl()), url, str(body_file),
                   version, str(conc), str(duration_s)]
            path = "C: easy perform() loop" if conc == 1 else "C: multi loop"
        else:
            cmd = [sys.executable, str(ROOT / "benchmarks" / "curl_alone.py"), url,
                   str(body_file), "--http", version, "--concurrency", str(conc),
                   "--duration", str(duration_s)]
            path = "pycurl: easy perform() loop" if conc == 1 else "pycurl: CurlMulti loop"
        proc = subprocess.Popen(self.pin.client_prefix() + self.wrap + cmd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        win, warm = Window(server, self.pin), False
        try:
            warm = proc.stdout.readline().strip() == "warm"     # the measured loop starts
            win.start()
            stdout, stderr = proc.communicate(timeout=duration_s + 60)
            win.stop()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0 or not warm:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{stderr}")
        r = orjson.loads(stdout.strip().splitlines()[-1])
        n, wall = r["requests"], r["wall_s"]
        p50 = r["p50_us"] / 1000 if r["p50_us"] is not None else float("nan")
        # Its own CPU over the measured loop (the process's start-up is not in it).
        return Run(LIBCURL_REFERENCES[engine], n / wall if wall else 0.0, p50, n, wall,
                   r["errors"], r["cpu_s"] / n * 1e6 if n else None,
                   r["cpu_s"] / wall if wall else None, **win.fields(n, wall),
                   extra={"last_byte_p50_ms": p50, "client_path": path})

    def _compiled(self, name: str, shared: bool = False) -> Path:
        """benchmarks/<name>.c (libcurl_loop, slowed_native), compiled once per run into
        the work directory: a program, or with `shared` a library to preload."""
        out = self.dir / (f"{name}.so" if shared else name)
        if not out.exists():
            cc = shutil.which("cc") or shutil.which("gcc")
            if cc is None:
                raise SystemExit(f"fidelity: benchmarks/{name}.c needs a C compiler "
                                 "(Debian/Ubuntu: apt-get install -y gcc)")
            flags = ["-shared", "-fPIC"] if shared else []
            subprocess.run([cc, "-O2", *flags, "-o", str(out),
                            str(ROOT / "benchmarks" / f"{name}.c"), "-ldl"], check=True)
        return out


def _tool(name: str, added_us: int) -> str:
    return f"{name} +{added_us} us" if added_us else name


def _slowed_path(name: str, added_us: int) -> dict[str, str]:
    return {"client_path": f"{name}, +{added_us} us busy per socket write"} if added_us else {}


def bundled_libcurl() -> Path:
    """The libcurl pycurl runs on: the copy its wheel bundles (pycurl.libs/), else the
    system's, which a pycurl built from source links."""
    import ctypes.util

    import pycurl
    libs = Path(pycurl.__file__).resolve().parent.parent / "pycurl.libs"
    found = sorted(libs.glob("libcurl-*.so*")) if libs.is_dir() else []
    if found:
        return found[0]
    name = ctypes.util.find_library("curl")
    if name is None:
        raise SystemExit("fidelity: cannot find the libcurl pycurl uses")
    return Path(name)


# ---------------------------------------------------------------- the harness

def split_engine(spec: str) -> tuple[str, str | None]:
    """'curl' -> ('curl', None); 'python:async' -> ('python', 'async'): an engine, and
    the client path forced for it (LoadJob.client_path; None: the harness's default)."""
    engine, _, path = spec.partition(":")
    return engine, path or None


def engine_field(spec: str) -> dict[str, str]:
    """LoadJob's `engine` (and `client_path`) arguments, where this version of the
    harness has them."""
    engine, path = split_engine(spec)
    if engine.startswith("native") and reference_label(engine) is None:
        raise SystemExit(f"fidelity: {engine!r}: write native+N, N the microseconds of "
                         "client CPU to add per request (e.g. native+30)")
    if reference_label(engine) is not None:
        if path is not None:
            raise SystemExit(f"fidelity: the {engine} comparator has no client paths")
        return {}
    names = {f.name for f in dataclasses.fields(LoadJob)}
    out = {}
    if "engine" in names:
        out["engine"] = engine
    elif engine != "python":
        raise SystemExit(f"fidelity: this harness has no client engine {engine!r} "
                         "(LoadJob has no `engine` field)")
    if path is not None:
        if path not in CLIENT_PATHS:
            raise SystemExit(f"fidelity: client path must be one of {', '.join(CLIENT_PATHS)}, "
                             f"not {path!r}")
        if "client_path" in names:
            out["client_path"] = path
        elif path != "async":           # a harness without the choice runs asyncio only
            raise SystemExit(f"fidelity: this harness has no client path {path!r} "
                             "(LoadJob has no `client_path` field)")
    return out


def has_path(spec: str, protocol: str, target: Target, concurrency: int) -> bool:
    """Whether the client path ENGINE:PATH forces exists for this point (a blocking
    path is for one user of rest-h1, or of rest-h2 with libcurl, and for libcurl's
    users above one); points without it are left out, with a line saying so."""
    engine, path = split_engine(spec)
    if path not in ("blocking", "sequential"):
        return True
    from clients.blocking.rest import blocking_client, multi_client
    if concurrency == 1:
        client = blocking_client(protocol, engine, target, reuse=True, timeout_s=1)
    else:               # the runner's policy: HTTP/1.1 a client per user, HTTP/2 one
        client = multi_client(protocol, engine, target, users=concurrency,
                              clients=concurrency if protocol == "rest-h1" else 1,
                              reuse=True, timeout_s=1)
    if client is None:
        print(f"  {spec}: no blocking client path for {protocol} at concurrency "
              f"{concurrency}; left out", file=sys.stderr)
        return False
    client.close()
    return True


def harness_label(engine: str, variant: str = "") -> str:
    if (label := reference_label(engine)) is not None:
        return label
    engine, path = split_engine(engine)
    label = "harness" if engine == "python" else f"harness+{engine}"
    if path:
        label += f":{path}"
    return f"{label}[{variant}]" if variant else label


def cell_label(client: str, spec: str) -> str:
    """rest-h1, rest-h1+curl, 'rest-h2+curl (async)' for a forced client path."""
    if (label := reference_label(spec)) is not None:
        return label
    engine, path = split_engine(spec)
    label = client if engine == "python" else f"{client}+{engine}"
    return f"{label} ({path})" if path else label


class Harness:
    """One `python -m harness.run.worker` per measurement, driven as harness.run.runner does."""

    def __init__(self, pin: Pinning, root: Path = ROOT, variant: str = "") -> None:
        self.pin = pin
        self.root = root            # the tree whose harness.run.worker runs
        self.variant = variant      # its label ("" for this tree)
        self.wrap: list[str] = []   # a command the worker runs under (client_cost.py)

    def run(self, protocol: str, target: Target, size: str, conc: int,
            duration_s: float, server: ServerProcess, engine: str = "python") -> Run:
        sc = scenario(size)
        job = LoadJob(**engine_field(engine),
                      protocol=protocol, target=target, workload=sc.workload,
                      mode="closed", concurrency=conc, duration_s=duration_s,
                      warmup=max(50, 4 * conc), timeout_s=sc.load.timeout_s,
                      reuse=sc.connection.policy == "reuse",
                      connections=sc.connection.connections_for(protocol, conc), seed=SEED)
        # stderr to a file, not a pipe nobody reads until the end (a chatty worker would
        # block on a full pipe); the worker sets its own PDEATHSIG (child_env). Under a
        # wrapper that forks (strace) its parent is not this process, so the wrapper gets
        # that fate instead (setpriv), and the worker ends with its duration or its stdin.
        err = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "harness.run.worker"]
        if self.wrap:
            cmd, env = [*pdeathsig_prefix(), *self.wrap, *cmd], None
        else:
            env = child_env()
        proc = subprocess.Popen(cmd, cwd=self.root, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=env)
        if self.pin.client is not None:
            pin_process(proc.pid, self.pin.client)   # before the job: threads come later
        try:
            proc.stdin.write(job.to_json() + b"\n")
            proc.stdin.flush()
            warm = self._until(proc, Warm, err)
            if warm.errors:
                raise RuntimeError(f"{protocol} warmup had {warm.errors} errors: "
                                   f"{warm.sample}")
            win = Window(server, self.pin)
            win.start()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            result = self._until(proc, Result, err)
            win.stop()
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
            err.close()
        rec = Recorder.from_json(result.recorder)
        wall, cpu = result.wall_s, result.client_cpu_s
        lat = rec.hist["latency"].summary_ms() or {}
        dec = rec.hist["decode"].summary_ms() or {}
        srv_t = rec.hist["server_time"].summary_ms() or {}
        # start -> last response byte (curl -w's time_total), what the native tools time
        last = rec.hist["phase_total_warm"].summary_ms() or {}
        n = rec.n
        return Run(harness_label(engine, self.variant), n / wall if wall else 0.0,
                   lat.get("p50", float("nan")), n, wall, rec.error_count,
                   cpu / n * 1e6 if n else None, cpu / wall if wall else None,
                   **win.fields(n, wall),
                   extra={"p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"),
                          "decode_p50_ms": dec.get("p50"), "decode_mean_ms": dec.get("mean"),
                          "last_byte_p50_ms": last.get("p50"),
                          "server_reported_p50_ms": srv_t.get("p50"),
                          "response_bytes_per_req": rec.payload_down / n if n else None,
                          "connections": job.connections, "errors": dict(rec.errors),
                          # which client path the worker ran (harness.run.load.loadgen)
                          "client_path": result.client_path or "asyncio",
                          "late_reads": rec.late_reads})

    @staticmethod
    def _until(proc: subprocess.Popen, event: type, err: Any) -> Any:
        while True:
            line = proc.stdout.readline()
            if not line:
                proc.wait(10)
                err.seek(0)
                tail = err.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"harness worker exited early ({proc.returncode}):\n{tail}")
            ev = decode(line)
            if isinstance(ev, Failure):
                raise RuntimeError(ev.message + "\n" + ev.traceback)
            if isinstance(ev, event):
                return ev
