"""The report's figures: one function per figure, rows (and the run's .hgrm files) in,
an inline SVG string out (None when the run has nothing to draw).

A saturated or failed row is drawn dashed and labelled "[saturated]" / "[failed]": it
measures a library, not a protocol, and must not read as a protocol's curve.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")       # no display; figures are written, never shown
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from harness.measure.recorder import PHASES  # noqa: E402
from harness.measure.saturation import is_bound  # noqa: E402

Row = dict[str, Any]
plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True,
                     "grid.alpha": 0.3, "figure.dpi": 96})


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]          # no XML prolog inside HTML


def flag(r: Row) -> str:
    if r.get("failed"):
        return " [failed]"
    return " [saturated]" if is_bound(r) else ""


def _style(r: Row) -> dict[str, Any]:
    return {"linestyle": "--", "alpha": 0.6} if flag(r) else {}


def read_hgrm(path: Path) -> list[tuple[float, float]]:
    """(value ms, cumulative fraction) pairs of an .hgrm percentile distribution."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()       # the last line (percentile 1.0) has no 4th column
        if len(parts) in (3, 4) and not line.lstrip().startswith("#"):
            try:
                out.append((float(parts[0]), float(parts[1])))
            except ValueError:
                continue                      # the header line
    return out


def _load_key(r: Row) -> str:
    """The load point a figure is drawn for: users or rate, and the emulated link if any
    (TLS versions and connection policies share one figure, told apart by label)."""
    rate = r.get("rate_offered_rps") or 0
    load = f"c={r['concurrency']}" if r["mode"] == "closed" else \
        f"{rate:,.0f} req/s" if rate >= 10 else f"{rate:g} req/s"
    net = r.get("network")
    return load if net in (None, "veth", "loopback", "remote") else f"{load}, {net}"


def _label(r: Row, rows: list[Row]) -> str:
    """The cell, with what tells its rows apart at one load point (policy, TLS)."""
    extra = [str(r[k]) for k in ("connections_policy", "tls_version")
             if len({str(x.get(k)) for x in rows if x["cell"] == r["cell"]}) > 1]
    return " ".join([r["cell"], *extra]) + flag(r)


def _log_x(ax: Any) -> None:
    """A log x axis labelled in plain numbers (1, 2, 5, 10 ms), not 6.04x10^1."""
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    lo, hi = ax.get_xlim()
    if hi / max(lo, 1e-9) < 30:      # within about a decade the minor ticks need labels
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=6)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Any) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def cdf_figures(rows: list[Row], out_dir: Path, metric: str, title: str) -> list[str]:
    """One CDF per load point: every cell's `metric` distribution from its .hgrm."""
    by_load: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if (r.get("hgrm_files") or {}).get(metric):
            by_load[_load_key(r)].append(r)
    figures = []
    for load, mine in by_load.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        drawn = 0
        for r in sorted(mine, key=lambda r: _label(r, mine)):
            path = out_dir / r["hgrm_files"][metric]
            if not path.is_file():
                continue
            points = read_hgrm(path)
            if points:
                ax.step([v for v, _ in points], [p for _, p in points], where="post",
                        label=_label(r, mine), **_style(r))
                drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        _log_x(ax)
        ax.set_xlabel(f"{title} (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{title} CDF at {load}")
        _legend(ax)
        figures.append(_svg(fig))
    return figures


def _load_x(r: Row) -> float | None:
    return r["concurrency"] if r["mode"] == "closed" else r.get("rate_offered_rps")


def _series(rows: list[Row]) -> dict[str, list[Row]]:
    """One line per cell (and policy / TLS version / link, where those vary)."""
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.get("n") and _load_x(r) is not None:
            key = _label({**r, "failed": None, "server_bound": None, "client_bound": None,
                          "machine_bound": None},
                         rows)
            net = r.get("network")
            if net not in (None, "veth", "loopback", "remote"):
                key += f" {net}"
            out[key].append(r)
    return {c: sorted(rs, key=_load_x) for c, rs in out.items()}


def versus_load(rows: list[Row], stream: bool) -> list[str]:
    """Latency (p50 solid, p99 dotted) and throughput against the offered load, one line
    per cell; only when the scenario has more than one load point."""
    series = _series(rows)
    if not series or max(len(rs) for rs in series.values()) < 2:
        return []
    closed = all(r["mode"] == "closed" for rs in series.values() for r in rs)
    xlabel = "concurrent users" if closed else "offered rate (req/s)"
    p50, p99, name = (("ttft_p50_ms", "ttft_p99_ms", "TTFT") if stream
                      else ("latency_p50_ms", "latency_p99_ms", "latency"))
    fig_l, ax_l = plt.subplots(figsize=(6.4, 3.4))
    fig_t, ax_t = plt.subplots(figsize=(6.4, 3.4))
    for cell, rs in sorted(series.items()):
        xs = [_load_x(r) for r in rs]
        label = cell + flag(rs[-1])
        line, = ax_l.plot(xs, [r.get(p50) for r in rs], marker="o", label=label, **_style(rs[-1]))
        ax_l.plot(xs, [r.get(p99) for r in rs], linestyle=":", color=line.get_color())
        ax_t.plot(xs, [r.get("throughput_rps") for r in rs], marker="o", label=label,
                  **_style(rs[-1]))
    ax_l.set(xlabel=xlabel, ylabel="ms", title=f"{name} vs load (p50 solid, p99 dotted)")
    ax_t.set(xlabel=xlabel, ylabel="req/s", title="throughput vs load")
    values = [v for rs in series.values() for r in rs for v in (r.get(p50), r.get(p99)) if v]
    if values and max(values) / min(values) > 20:
        ax_l.set_yscale("log")      # one slow stack would flatten every other line
    for ax in (ax_l, ax_t):
        _legend(ax)
    return [_svg(fig_l), _svg(fig_t)]


def bytes_figure(rows: list[Row]) -> str | None:
    """Bytes per request, up + down, at each cell's first load point: payload, and the
    protocol overhead on top where the run counted wire bytes."""
    first: dict[str, Row] = {}
    for r in rows:
        if r.get("n") and r.get("payload_down_bytes") is not None and r["cell"] not in first:
            first[r["cell"]] = r
    if not first:
        return None
    cells = sorted(first, key=lambda c: -(first[c]["payload_up_bytes"] +
                                          first[c]["payload_down_bytes"]))
    payload = [first[c]["payload_up_bytes"] + first[c]["payload_down_bytes"] for c in cells]
    overhead = []
    for c, p in zip(cells, payload):
        r = first[c]
        wire = (None if r.get("wire_up_bytes") is None or r.get("wire_down_bytes") is None
                else r["wire_up_bytes"] + r["wire_down_bytes"])
        overhead.append(max(0.0, wire - p) if wire is not None else 0.0)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(cells)))
    ax.barh(cells, payload, label="payload (request + response bodies)", color="#4c72b0")
    if any(overhead):
        ax.barh(cells, overhead, left=payload, color="#dd8452",
                label="protocol overhead (wire - payload: headers, framing, TCP/IP, TLS)")
    ax.set_xlabel("bytes per request, up + down")
    ax.set_title("bytes per request" + ("" if any(overhead) else " (payload only: wire "
                                                                 "bytes not counted here)"))
    _legend(ax)
    return _svg(fig)


def waterfall_figure(rows: list[Row]) -> str | None:
    """Connection lifecycle per cell: the cold requests' median phases laid end to end."""
    cells: dict[str, dict[str, float]] = {}
    for r in rows:
        cold = ((r.get("phases_ms") or {}).get("cold") or {})
        phases = {p: cold[p]["p50"] for p in PHASES if p != "total" and p in cold
                  and cold[p].get("p50") is not None}
        if phases and r["cell"] not in cells:
            cells[r["cell"]] = phases
    if not cells:
        return None
    colors = dict(zip(PHASES, ("#8172b3", "#4c72b0", "#55a868", "#ccb974", "#c44e52",
                               "#64b5cd")))
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.36 * len(cells)))
    labelled = set()
    for i, (cell, phases) in enumerate(sorted(cells.items())):
        start = 0.0
        for p in PHASES:
            if p in phases:
                ax.barh(i, phases[p], left=start, color=colors[p],
                        label=p if p not in labelled else None)
                labelled.add(p)
                start += phases[p]
    ax.set_yticks(range(len(cells)), sorted(cells))
    ax.set_xlabel("ms from the request's start (medians of cold requests)")
    ax.set_title("connection lifecycle: a new connection's request, phase by phase")
    ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _svg(fig)


def capacity_figures(capacity: dict[str, dict[str, Any]], goodput: float) -> list[str]:
    """A sweep: each cell's probes (goodput vs offered rate, the target dashed) and the
    capacity per cell (hatched: a lower bound, the client's or the range's limit)."""
    if not capacity:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for cell, result in sorted(capacity.items()):
        probes = sorted(result["probes"], key=lambda p: p["rate"])
        ax.plot([p["rate"] for p in probes], [(p["goodput"] or 0) * 100 for p in probes],
                marker="o", label=cell)
        bound = [p for p in probes if p.get("client_bound")]
        ax.scatter([p["rate"] for p in bound], [(p["goodput"] or 0) * 100 for p in bound],
                   marker="x", color="black", zorder=3)
    ax.axhline(goodput * 100, linestyle="--", color="grey")
    ax.set_xscale("log")
    ax.set(xlabel="offered rate (req/s, log scale)", ylabel="% of requests within the SLO",
           title="goodput of each probe (x: client bound, says nothing of the cell)")
    _legend(ax)
    cells = sorted(capacity, key=lambda c: capacity[c].get("capacity_rps") or 0)
    fig2, ax2 = plt.subplots(figsize=(6.4, 0.9 + 0.35 * len(cells)))
    for i, cell in enumerate(cells):
        r = capacity[cell]
        ax2.barh(i, r.get("capacity_rps") or 0, color="#4c72b0",
                 hatch="//" if r["kind"] != "bracketed" else None,
                 edgecolor="white" if r["kind"] == "bracketed" else "#1b2a49")
    ax2.set_yticks(range(len(cells)), cells)
    ax2.set(xlabel="highest rate that kept the SLO (req/s)",
            title="capacity within the SLO (hatched: a lower bound)")
    return [_svg(fig), _svg(fig2)]
