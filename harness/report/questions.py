"""The verdict block: per question the scenario can answer, who wins, by how much, and
whether the gap is real.

Questions: latency at one user (p50; TTFT and ITL for streams), throughput at the highest
load, bytes per request, and behaviour under loss where the run has a network lab. Each
is answered within the scenario's first group of cells (harness.scenario.groups), as
the conclusions are; a saturated or failed row measures a library and is never a winner
(it is named as excluded).

Intervals: each figure's 95% interval (harness.report.intervals, shared with the
conclusions). The margin's interval is the ratio of the two intervals' far ends, so
"real" means the intervals do not overlap. Pure: rows in, lines out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

from harness.measure.attribution import carries_hop
from harness.measure.hol_stats import drop_stats
from harness.measure.saturation import near_busy
from harness.report.conclusion import Row, _bound, _bytes_per_request, _first_group, measured_hop
from harness.report.hol.section import HolPoint, mechanism_text
from harness.report.intervals import Estimate, p50_estimate, throughput_estimate

THIN_N = 100            # fewer requests than this: the interval itself is rough


VARIANTS = ("connections_policy", "tls_version")    # what tells one cell's rows apart


def _variant(r: Row) -> tuple:
    return (r["cell"], *(str(r.get(k)) for k in VARIANTS))


def _name(r: Row, rows: list[Row]) -> str:
    """The cell, with the policy / TLS version where the scenario sweeps them."""
    extra = [f"{k.split('_')[0]}={r.get(k)}" for k in VARIANTS
             if len({str(x.get(k)) for x in rows if x["cell"] == r["cell"]}) > 1]
    return " ".join([r["cell"], *extra])


def _pick(rows: list[Row], lowest: bool) -> list[Row]:
    """Closed-loop rows with a figure: per cell (and variant), its lowest (or highest)
    concurrency."""
    best: dict[tuple, Row] = {}
    for r in rows:
        if r["mode"] != "closed" or not r["n"]:
            continue
        key, c = _variant(r), r["concurrency"]
        if key not in best or (c < best[key]["concurrency"] if lowest
                               else c > best[key]["concurrency"]):
            best[key] = r
    return list(best.values())


def lowest_load(rows: list[Row]) -> list[Row]:
    return _pick(rows, True)


def highest_load(rows: list[Row]) -> list[Row]:
    return _pick(rows, False)


def baseline(rows: list[Row]) -> list[Row]:
    """In a link sweep, the questions are answered on one link, the first without loss
    or drops (behaviour under loss has its own line)."""
    if not any(r.get("link") for r in rows):
        return rows
    clean = [r for r in rows if not any(h.get("loss") or h.get("single_drop")
                                        for h in r.get("hol") or ())]
    net = (clean or rows)[0].get("network")
    return [r for r in rows if r.get("network") == net]


@dataclass(frozen=True)
class Question:
    title: str                               # e.g. "Latency at c={c} (p50)"
    kind: str                                # workload kind: embed / stream
    rows: Callable[[list[Row]], list[Row]]   # which rows answer it (one per cell)
    estimate: Callable[[Row], Estimate | None]
    lower_is_better: bool
    unit: str
    hop_adds: bool = False                   # the Caddy hop adds to this figure (p50, TTFT)


def questions(kinds: set[str]) -> list[Question]:
    out = []
    if "embed" in kinds:
        out += [Question("Latency at c={c} (p50)", "embed", lowest_load,
                         p50_estimate("latency", "latency_p50_per_repeat_ms"), True, "ms",
                         hop_adds=True),
                Question("Throughput at c={c}", "embed", highest_load,
                         throughput_estimate, False, "req/s")]
    if "stream" in kinds:
        out += [Question("TTFT at c={c} (p50)", "stream", lowest_load,
                         p50_estimate("ttft", "ttft_p50_per_repeat_ms"), True, "ms",
                         hop_adds=True),
                Question("ITL at c={c} (p50)", "stream", lowest_load,
                         p50_estimate("itl", None), True, "ms")]
    return out


def _fmt(v: float, unit: str) -> str:
    return f"{v:,.0f}" if unit == "req/s" else f"{v:.3g}" if v < 10 else f"{v:.1f}"


def _hop_caveat(best: Estimate, rest: list[Estimate], all_rows: list[Row],
                hop_adds: bool) -> list[str]:
    """Where the Caddy front's hop can decide the answer. The winner crosses it and the
    runner-up does not: its size. The winner does not: where the hop adds to the figure
    (p50 latency, TTFT: what it is measured on), the first row behind the front that,
    less the hop, is not behind the winner (the order then rests on the setup); else, if
    the runner-up crosses it, its size."""
    second = rest[0]
    if carries_hop(best.row) and not carries_hop(second.row):
        return [f"{best.cell} crosses Caddy's hop to the backend, {_hop_size(best, all_rows)}"]
    if carries_hop(best.row):
        return []
    for e in rest if hop_adds else ():
        hop = measured_hop(all_rows, e.row["concurrency"], e.row["workload"])
        if not carries_hop(e.row) or hop is None:
            continue
        hop_lo, hop_hi = hop.range_ms or (hop.ms, hop.ms)
        lo, hi = e.lo - hop_hi, e.hi - hop_lo
        if lo > best.hi:
            continue                        # behind the winner even without the hop
        where = "ahead of" if hi < best.lo else "not apart from"
        return [(f"{e.cell} less Caddy's hop ({hop.ms:+.2f} ms in this run) would be "
                 f"{_fmt(e.value - hop.ms, 'ms')} ms [{_fmt(lo, 'ms')}-{_fmt(hi, 'ms')}]: "
                 f"{where} {best.cell}")]
    if carries_hop(second.row):
        return [(f"{second.cell} crosses Caddy's hop to the backend, "
                 f"{_hop_size(second, all_rows)}")]
    return []


def _hop_size(front: Estimate, all_rows: list[Row]) -> str:
    hop = measured_hop(all_rows, front.row["concurrency"], front.row["workload"])
    return f"{hop.ms:+.2f} ms p50 in this run" if hop is not None else "not measured in this run"


def _caveats(best: Estimate, rest: list[Estimate], excluded: list[Row],
             all_rows: list[Row], hop_adds: bool) -> list[str]:
    second = rest[0]
    out = _hop_caveat(best, rest, all_rows, hop_adds)
    n = min(best.row.get("n") or 0, second.row.get("n") or 0)
    if n < THIN_N:
        out.append(f"n={n}")
    if not any(len(e.row.get("latency_p50_per_repeat_ms") or ()) >= 2 for e in (best, second)):
        out.append("1 repeat: the spread between runs is unknown")
    for e in (best, second):
        policy = str(e.row.get("connections_policy") or "reuse")   # None: the default
        if (not policy.startswith("new")
                and (e.row.get("new_connections") or 0) > e.row.get("concurrency", 1)):
            out.append(f"{e.cell}: cold connections measured")
        near = near_busy(e.row)
        if near:
            out.append(f"{e.cell} near saturation: {near}")
        if e.row.get("host_noisy"):     # the hypervisor slowed it for a while: see Notes
            out.append(f"{e.cell} measured under {e.row['host_steal']:.0%} host steal")
    if excluded:
        out.append("excluded (saturated/failed): " + ", ".join(r["cell"] for r in excluded))
    return out


def answer(q: Question, rows: list[Row], all_rows: list[Row] | None = None) -> str | None:
    """One line: the winner, its margin over the runner-up with the margin's interval,
    and whether that gap is real; or why nothing can be said. `all_rows` (every group's)
    is where a Caddy hop is measured (default: `rows`)."""
    cand = [r for r in q.rows(rows) if r["workload"] == q.kind]
    if not cand:
        return None
    title = q.title.format(c=min(r["concurrency"] for r in cand) if q.lower_is_better
                           else max(r["concurrency"] for r in cand))
    excluded = [r for r in cand if _bound(r)]
    est = [replace(e, cell=_name(e.row, cand))
           for e in (q.estimate(r) for r in cand if not _bound(r)) if e is not None]
    if len(est) < 2:
        who = f"only {est[0].cell}" if est else "no row"
        tail = f"; excluded: {', '.join(r['cell'] for r in excluded)}" if excluded else ""
        return f"{title}: not ranked ({who} unsaturated{tail})"
    est.sort(key=lambda e: e.value if q.lower_is_better else -e.value)
    best, second = est[0], est[1]
    if q.lower_is_better:      # how many times slower the runner-up is
        ratio, lo, hi = (second.value / best.value, second.lo / best.hi,
                         second.hi / best.lo if best.lo > 0 else math.inf)
    else:                      # how many times more the winner does
        ratio, lo, hi = (best.value / second.value, best.lo / second.hi, best.hi / second.lo)
    u = q.unit
    if lo > 1 and math.isinf(hi):
        # The winner's figure is at the 1 us recording floor: only a lower bound holds.
        head = (f"{best.cell} {_fmt(best.value, u)} {u}, at least {lo:.1f}x below "
                f"{second.cell}: real (under the 1 us the histogram resolves, so how many "
                f"times is not measured)")
    elif lo > 1:
        # Close margins get a third decimal: "1.00x [1.00-1.01]: real" would read as a tie.
        d = 3 if ratio < 1.1 else 2
        small = " (under 1%: resolved in this run, small in practice)" if ratio < 1.01 else ""
        head = (f"{best.cell} {_fmt(best.value, u)} {u}, {ratio:.{d}f}x [{lo:.{d}f}-{hi:.{d}f}] "
                f"vs {second.cell}: real{small}")
    else:
        head = (f"no difference: {best.cell} {_fmt(best.value, u)} "
                f"[{_fmt(best.lo, u)}-{_fmt(best.hi, u)}] vs {second.cell} "
                f"{_fmt(second.value, u)} [{_fmt(second.lo, u)}-{_fmt(second.hi, u)}] {u}")
    caveats = _caveats(best, est[1:], excluded, rows if all_rows is None else all_rows,
                       q.hop_adds)
    return f"{title}: {head}" + (f" ({'; '.join(caveats)})" if caveats else "")


def bytes_answer(rows: list[Row], kind: str) -> str | None:
    """Bytes per request barely vary between requests, so the ratio needs no interval;
    wire and payload figures are never ranked together, nor is a saturated row (its
    packets and ACKs follow its library's pace too)."""
    rows_here = [r for r in lowest_load(rows) if r["workload"] == kind]
    cand = [(r, _bytes_per_request(r)) for r in rows_here if not _bound(r)]
    excluded = [r["cell"] for r in rows_here if _bound(r)]
    tail = f" (excluded (saturated/failed): {', '.join(excluded)})" if excluded else ""
    for source in ("wire", "payload"):
        ok = sorted((b[0], _name(r, rows)) for r, b in cand if b is not None and b[1] == source)
        if len(ok) >= 2:
            (least, first), (second_b, second) = ok[0], ok[1]
            unmeasured = [r["cell"] for r, b in cand if b is not None and b[1] != source]
            if unmeasured:      # a payload figure is not ranked against wire figures
                tail += f" (wire not measured, so not ranked: {', '.join(unmeasured)})"
            head = f"Bytes per {kind} request ({source}, up + down): "
            if second_b / least < 1.01:
                return (head + f"{first} {least:,.0f} B and {second} {second_b:,.0f} B, "
                        f"within 1%: no difference{tail}")
            return head + (f"{first} {least:,.0f} B, {second_b / least:.2f}x fewer than "
                           f"{second}{tail}")
    return None


def loss_answer(rows: list[Row]) -> str | None:
    """Under loss: the single-drop evidence per series, counted as the HOL section
    counts it (a stream that lost nothing stalled after the drop), with the median
    collateral delay and what the collateral stalls waited on, where measured."""
    points = [HolPoint.from_summary(r["cell"], r["protocol"], h["analysis"]["connections"], h)
              for r in rows for h in (r.get("hol") or ())
              if h.get("single_drop") and h.get("timeline") and "analysis" in h]
    stats = [d for d in drop_stats(points) if d.drops]
    if not stats:
        return None
    parts = []
    for d in stats:
        text = f"{d.series} {d.with_collateral_stall}/{d.drops}"
        if d.collateral_ms:
            text += f" (collateral delay {d.collateral_ms.text()} ms"
            why = mechanism_text([p for p in points if p.series == d.series])
            text += f"; {why.split(' of ')[0]})" if why and d.with_collateral_stall else ")"
        parts.append(text)
    return ("Under loss, one dropped packet stalled a stream that lost nothing (drops that "
            "did / drops): " + "; ".join(parts) + "; see Head-of-line blocking")


def verdict_lines(rows: list[Row], groups: Any = None) -> list[str]:
    """The verdict block, one line per question this run can answer."""
    group, mine = _first_group(rows, groups)
    mine = baseline(mine)
    kinds = {r["workload"] for r in mine}
    net = mine[0].get("network") if mine else None
    same_link = [r for r in rows if r.get("network") == net]     # where a hop is measured
    lines = [line for q in questions(kinds) if (line := answer(q, mine, same_link))]
    if lines and any(r.get("link") for r in mine):
        lines.insert(0, f"On the link {mine[0].get('network')!r} (the sweep's first point "
                        f"without loss; behaviour under loss below):")
    lines += [line for kind in ("embed", "stream") if (line := bytes_answer(mine, kind))]
    loss = loss_answer(rows)
    if loss:
        lines.append(loss)
    return lines


METHOD = ("[lo-hi]: 95% interval of the margin (p50 from the histogram's order statistics, "
          "req/s from its count), widened to cover every repeat; real = intervals apart.")
