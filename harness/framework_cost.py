"""What FastAPI costs per request: each `X@fastapi` row beside the bare ASGI app's row on
the same HTTP server library, client engine, load point and workload, as a markdown table.

The bare row for each HTTP version (servers.fastapi_server serves FastAPI on the same
library the bare cell uses, so the two rows differ by the framework alone):
  h1: uvicorn + httptools, bare cell `rest-h1` / `sse-h1`
  h2: hypercorn, bare cell `rest-h2` / `sse-h2`
  h3: Caddy in front of uvicorn, bare cell `rest-h3@caddy` / `sse-h3@caddy`
Pure: rows in (dicts as harness.results writes them), text out.
"""

from __future__ import annotations

from typing import Any, Iterable

Row = dict[str, Any]

FRAMEWORK = "@fastapi"
BARE_SERVER = {"h1": "", "h2": "", "h3": "@caddy"}     # what replaces "@fastapi" per version


def bare_cell(cell: str, protocol: str) -> str:
    """The bare ASGI app's cell on the same server library as FastAPI cell `cell`."""
    version = protocol.rsplit("-", 1)[-1]
    if version not in BARE_SERVER:
        raise ValueError(f"no bare server known for {cell!r}: its protocol {protocol!r} "
                         f"is not HTTP/1.1, /2 or /3")
    return cell.replace(FRAMEWORK, BARE_SERVER[version])


def pairs(rows: Iterable[Row]) -> list[tuple[Row, Row]]:
    """(FastAPI row, bare row) for every FastAPI row whose bare twin ran at the same point."""
    rows = [r for r in rows if r.get("n")]
    key = lambda r: (r["cell"], r.get("mode"), r["concurrency"], r.get("workload"))  # noqa: E731
    by_key = {key(r): r for r in rows}
    out = []
    for r in sorted(rows, key=lambda r: (r["cell"], r["concurrency"])):
        if FRAMEWORK not in r["cell"]:
            continue
        twin = by_key.get((bare_cell(r["cell"], r["protocol"]), r.get("mode"), r["concurrency"],
                           r.get("workload")))
        if twin is not None:
            out.append((r, twin))
    return out


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _diff(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    ratio = f" ({a / b:.2f}x)" if b > 0 else ""
    return f"{a - b:+.3f}{ratio}"


def _flags(*rows: Row) -> str:
    marks = []
    for r in rows:
        why = "; ".join(x for x in (r.get("server_bound"), r.get("client_bound")) if x)
        if why:
            marks.append(f"{r['cell']}: {why}")
    return "; ".join(marks)


def table(rows: Iterable[Row]) -> str:
    """Markdown table of server CPU per request and p50 (TTFT p50 for streams), FastAPI
    against the bare app, with the difference; empty when no pair ran."""
    found = pairs(rows)
    if not found:
        return ""
    lines = ["| FastAPI cell | bare cell | c | server CPU ms/req FastAPI | bare | difference "
             "| p50 ms FastAPI | bare | difference | bound |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for fast, bare in found:
        metric = "ttft_p50_ms" if fast.get("workload") == "stream" else "latency_p50_ms"
        cpu_f, cpu_b = fast.get("server_cpu_ms_per_req"), bare.get("server_cpu_ms_per_req")
        p_f, p_b = fast.get(metric), bare.get(metric)
        lines.append(f"| {fast['cell']} | {bare['cell']} | {fast['concurrency']} | {_ms(cpu_f)} "
                     f"| {_ms(cpu_b)} | {_diff(cpu_f, cpu_b)} | {_ms(p_f)} | {_ms(p_b)} "
                     f"| {_diff(p_f, p_b)} | {_flags(fast, bare)} |")
    if any(f.get("workload") == "stream" for f, _ in found):
        lines.append("")
        lines.append("For stream rows the p50 columns are TTFT p50.")
    return "\n".join(lines)
