"""What a run concludes: protocols ranked only where the rows measure protocols.

Two questions, each answered from one run's rows:

- *Which protocol is fastest here?* Ranked within the scenario's first group of cells
  (harness.scenario.groups), at one user (p50 latency; TTFT for streams) and at the highest load
  (throughput). A row whose server, client or machine was saturated (`server_bound`,
  `client_bound`, `machine_bound`) measures a library or the machine, so it is named
  and left out of the ranking. Two
  rows differ only when their per-repeat ranges do not overlap; with one repeat the
  spread is unknown and the sentence says so.
- *Protocol or library?* Per protocol, its cell in a later group (e.g. pure Python)
  against its cell in the first group: the library's factor, set beside the spread
  between protocols in the first group. The larger one decides the conclusion, when
  the per-repeat ranges of the two ratios are apart; otherwise the run cannot say.
"""

from __future__ import annotations

from typing import Any, Iterable

from harness.measure.attribution import bound_reason as _bound
from harness.measure.attribution import larger_spread, ratio_range
from harness.scenario.groups import ONE_GROUP, group_names

Row = dict[str, Any]


def _metric(r: Row) -> tuple[str, str, str]:
    """(row field, per-repeat field, name) of the one-user figure for this row's kind."""
    if r["workload"] == "stream":
        return "ttft_p50_ms", "ttft_p50_per_repeat_ms", "TTFT p50"
    return "latency_p50_ms", "latency_p50_per_repeat_ms", "p50"


def _range(r: Row) -> tuple[float, float] | None:
    field, per_repeat, _ = _metric(r)
    values = [v for v in (r.get(per_repeat) or ()) if v is not None]
    if len(values) >= 2:
        return min(values), max(values)
    return None


def _show(r: Row) -> str:
    field, _, name = _metric(r)
    rng = _range(r)
    spread = f" [{rng[0]:.2f}-{rng[1]:.2f} over {len(r[_metric(r)[1]])} repeats]" if rng else ""
    return f"{r['cell']} {name} {r[field]:.2f} ms{spread}"


def _one_user_rows(rows: Iterable[Row]) -> list[Row]:
    """Closed-loop rows at each cell's lowest concurrency, with a figure."""
    best: dict[str, Row] = {}
    for r in rows:
        if r["mode"] != "closed" or not r["n"] or r[_metric(r)[0]] is None:
            continue
        if r["cell"] not in best or r["concurrency"] < best[r["cell"]]["concurrency"]:
            best[r["cell"]] = r
    return list(best.values())


def _top_load_rows(rows: Iterable[Row]) -> list[Row]:
    best: dict[str, Row] = {}
    for r in rows:
        if r["mode"] != "closed" or not r["n"] or not r.get("throughput_rps"):
            continue
        if r["cell"] not in best or r["concurrency"] > best[r["cell"]]["concurrency"]:
            best[r["cell"]] = r
    return list(best.values())


def _first_group(rows: list[Row], groups: Any) -> tuple[str, list[Row]]:
    """The scenario's first group that has rows (groups as the scenario gives them)."""
    present = {r.get("group", ONE_GROUP) for r in rows}
    first = next((g for g in group_names(groups) if g in present), ONE_GROUP)
    return first, [r for r in rows if r.get("group", ONE_GROUP) == first]


def _separated(a: Row, b: Row) -> bool | None:
    """True when the per-repeat ranges do not overlap; None when spread is unknown."""
    ra, rb = _range(a), _range(b)
    if ra is None or rb is None:
        return None
    return ra[1] < rb[0] or rb[1] < ra[0]


def latency_ranking(rows: list[Row], groups: Any = None) -> list[str]:
    """One sentence per workload kind: who is fastest at one user, and is it real."""
    group, mine = _first_group(rows, groups)
    out = []
    for kind in ("embed", "stream"):
        cand = [r for r in _one_user_rows(mine) if r["workload"] == kind]
        if not cand:
            continue
        bound = [r for r in cand if _bound(r)]
        ok = sorted((r for r in cand if not _bound(r)), key=lambda r: r[_metric(r)[0]])
        where = f" (group {group!r})" if group != ONE_GROUP else ""
        load = f"c={ok[0]['concurrency']}" if ok else "one user"
        if len(ok) >= 2:
            first, second = ok[0], ok[1]
            field = _metric(first)[0]
            factor = second[field] / first[field] if first[field] else float("nan")
            sep = _separated(first, second)
            if sep is None:
                how = ("one repeat, so the run-to-run spread is unknown: treat a gap under "
                       "about 20% as undecided")
            elif sep:
                how = "their per-repeat ranges do not overlap, so the gap is real in this run"
            else:
                how = ("their per-repeat ranges overlap: **no difference** this run can "
                       "resolve")
            out.append(f"- Lowest {kind} latency at {load}{where}: **{_show(first)}**, then "
                       f"{_show(second)} ({factor:.2f}x); {how}. Order: "
                       + " < ".join(f"{r['cell']} {r[field]:.2f}" for r in ok) + " ms.")
        elif ok:
            out.append(f"- Lowest {kind} latency at {load}{where}: only {_show(ok[0])} ran "
                       "unsaturated, so nothing is ranked.")
        for r in bound:
            out.append(f"- {r['cell']} c={r['concurrency']} is left out of the ranking: "
                       f"{_bound(r)}; it measures its library, not its protocol.")
    return out


def throughput_ranking(rows: list[Row], groups: Any = None) -> list[str]:
    group, mine = _first_group(rows, groups)
    out = []
    for kind in ("embed", "stream"):
        cand = [r for r in _top_load_rows(mine) if r["workload"] == kind]
        ok = sorted((r for r in cand if not _bound(r)), key=lambda r: -r["throughput_rps"])
        bound = [r["cell"] for r in cand if _bound(r)]
        if len(ok) >= 2:
            spread = _rps_range(ok[0]), _rps_range(ok[1])
            real = (None if None in spread else
                    spread[0][0] > spread[1][1] or spread[1][0] > spread[0][1])
            how = {None: "spread unknown (one repeat)", True: "ranges apart: a real gap",
                   False: "ranges overlap: no difference this run can resolve"}[real]
            out.append(f"- Highest {kind} throughput at c={ok[0]['concurrency']}: "
                       f"**{ok[0]['cell']} {ok[0]['throughput_rps']:,.0f} req/s**, then "
                       f"{ok[1]['cell']} {ok[1]['throughput_rps']:,.0f} ({how}).")
        if bound:
            out.append(f"- Not ranked for throughput (saturated, so a library's ceiling): "
                       f"{', '.join(bound)}.")
    return out


def _bytes_per_request(r: Row) -> tuple[float, str] | None:
    """(bytes up + down per request, "wire" or "payload"): wire bytes where the run
    counted them (IP headers and framing included), else the payload alone."""
    up, down = r.get("wire_up_bytes"), r.get("wire_down_bytes")
    if up is not None and down is not None:
        return up + down, "wire"
    up, down = r.get("payload_up_bytes"), r.get("payload_down_bytes")
    if up is not None and down is not None:
        return up + down, "payload"
    return None


def bytes_ranking(rows: list[Row], groups: Any = None) -> list[str]:
    """Per workload kind, at one user in the first group: the fewest bytes per request.
    Bytes barely vary between repeats, so the order needs no noise verdict; rows
    measured differently (wire vs payload) are not ranked together, nor saturated ones."""
    group, mine = _first_group(rows, groups)
    out = []
    for kind in ("embed", "stream"):
        here = [r for r in _one_user_rows(mine) if r["workload"] == kind]
        cand = [(r, _bytes_per_request(r)) for r in here if not _bound(r)]
        cand = [(r, b) for r, b in cand if b is not None and b[0]]
        for source in ("wire", "payload"):
            ok = sorted((b[0], r["cell"]) for r, b in cand if b[1] == source)
            if len(ok) < 2:
                continue
            (least, first), (second_b, second) = ok[0], ok[1]
            out.append(f"- Fewest bytes per {kind} request ({source}, up + down): "
                       f"**{first} {least:,.0f} B**, then {second} {second_b:,.0f} B "
                       f"({second_b / least:.2f}x); most: {ok[-1][1]} {ok[-1][0]:,.0f} B.")
        bound = [r["cell"] for r in here if _bound(r)]
        if bound and cand:
            out.append(f"- Not ranked for bytes (saturated, its packets follow its library's "
                       f"pace): {', '.join(bound)}.")
    return out


def _rps_range(r: Row) -> tuple[float, float] | None:
    values = r.get("throughput_per_repeat_rps") or []
    return (min(values), max(values)) if len(values) >= 2 else None


def protocol_or_library(rows: list[Row], groups: Any = None) -> list[str]:
    """Per protocol: the library factor (later group vs first) against the protocol spread."""
    group, mine = _first_group(rows, groups)
    if group == ONE_GROUP:
        return []
    firsts = {r["protocol"]: r for r in _one_user_rows(mine)}
    clean = [r for r in firsts.values() if not _bound(r)]
    out = []
    for kind in ("embed", "stream"):
        ref = [r for r in clean if r["workload"] == kind]
        if len(ref) < 2:
            continue
        field = _metric(ref[0])[0]
        lo, hi = min(ref, key=lambda r: r[field]), max(ref, key=lambda r: r[field])
        per_repeat = _metric(ref[0])[1]
        protocol_spread = hi[field] / lo[field]
        spread_range = ratio_range(hi.get(per_repeat), lo.get(per_repeat))
        out.append(f"- Protocol spread ({kind}, group {group!r}, unsaturated rows at one "
                   f"user): {protocol_spread:.2f}x{_ratio_text(spread_range)}, from "
                   f"{lo['cell']} {lo[field]:.2f} ms to {hi['cell']} {hi[field]:.2f} ms.")
        for r in _one_user_rows(rows):
            if r.get("group") == group or r["workload"] != kind:
                continue
            base = firsts.get(r["protocol"])
            if base is None or base["cell"].replace("@caddy", "") == r["cell"]:
                continue        # no counterpart, or the same stack without the front (hop_cost)
            if not base[field] or not r[field]:
                continue
            slow, quick = (r, base) if r[field] >= base[field] else (base, r)
            factor = slow[field] / quick[field]
            factor_range = ratio_range(slow.get(per_repeat), quick.get(per_repeat))
            verdict = larger_spread(
                factor, factor_range, protocol_spread, spread_range,
                "**the library decides**: it costs more than the protocols differ",
                "the protocols differ more than these two stacks do",
                ("library", "protocols"))
            note = f" ({r['cell']} saturated: {_bound(r)})" if _bound(r) else ""
            out.append(f"- {r['protocol']}: {r['cell']} {r[field]:.2f} ms vs {base['cell']} "
                       f"{base[field]:.2f} ms, {quick['cell']} faster by {factor:.2f}x"
                       f"{_ratio_text(factor_range)}, against a "
                       f"{protocol_spread:.2f}x spread between protocols: {verdict}{note}.")
    return out


def _saturated(*rows: Row) -> str:
    """A note naming the saturated rows among those compared: they measure a library, and
    above one user their latency includes queueing behind the busy core."""
    bound = [r for r in rows if _bound(r)]
    if not bound:
        return ""
    why = "; ".join(f"{r['cell']}: {_bound(r)}" for r in bound)
    queue = ", so the latency gap includes queueing" if bound[0]["concurrency"] > 1 else ""
    return f"; saturated ({why}){queue}"


def _ratio_text(rng: tuple[float, float] | None) -> str:
    return f" [{rng[0]:.2f}-{rng[1]:.2f} over repeats]" if rng else ""


def hop_cost(rows: list[Row]) -> list[str]:
    """A front (Caddy) proxying to the backend against the backend served directly, same
    protocol and client engine: what the extra local hop costs per request."""
    by_key = {(r["cell"], r["concurrency"]): r for r in rows if r["mode"] == "closed" and r["n"]}
    out = []
    for (cell, conc), front in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if "@caddy" not in cell:
            continue
        direct = by_key.get((cell.replace("@caddy", ""), conc))
        if direct is None or front["workload"] != direct["workload"]:
            continue
        field, _, name = _metric(front)
        d_cpu = ("" if front.get("server_cpu_ms_per_req") is None
                 or direct.get("server_cpu_ms_per_req") is None else
                 f", server CPU {front['server_cpu_ms_per_req'] - direct['server_cpu_ms_per_req']:+.3f}"
                 f" ms per request")
        out.append(f"- The Caddy hop at c={conc}: {cell} {name} {front[field]:.3f} ms vs "
                   f"{direct['cell']} {direct[field]:.3f} ms served directly: "
                   f"{front[field] - direct[field]:+.3f} ms{d_cpu} (every @caddy row carries "
                   f"this hop){_saturated(front, direct)}.")
    return out


# The bare ASGI app's cell on the same HTTP server as each FastAPI cell.
_BARE_SERVER = {"h1": "", "h2": "", "h3": "@caddy"}


def framework_cost(rows: list[Row]) -> list[str]:
    """FastAPI against the bare ASGI app on the same server and client: per request."""
    by_key = {(r["cell"], r["concurrency"]): r for r in rows if r["mode"] == "closed" and r["n"]}
    out = []
    for (cell, conc), fast in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if "@fastapi" not in cell:
            continue
        version = fast["protocol"].rsplit("-", 1)[-1]
        bare = by_key.get((cell.replace("@fastapi", _BARE_SERVER.get(version, "")), conc))
        if bare is None:
            continue
        field, _, name = _metric(fast)
        cpu = ("" if fast.get("server_cpu_ms_per_req") is None
               or bare.get("server_cpu_ms_per_req") is None else
               f"; server CPU {fast['server_cpu_ms_per_req']:.3f} vs "
               f"{bare['server_cpu_ms_per_req']:.3f} ms per request "
               f"({fast['server_cpu_ms_per_req'] - bare['server_cpu_ms_per_req']:+.3f})")
        out.append(f"- FastAPI's cost at c={conc}: {cell} {name} {fast[field]:.3f} ms vs the bare "
                   f"ASGI app {bare['cell']} {bare[field]:.3f} ms "
                   f"({fast[field] - bare[field]:+.3f} ms){cpu}{_saturated(fast, bare)}.")
    return out


def conclusions(rows: list[Row], groups: Any = None, rankings: bool = True) -> list[str]:
    """Every conclusion line for the report and the terminal, in that order. `groups` is
    the scenario's (its order says which group is ranked). Without `rankings`, only what
    the verdict block (harness.report.questions) does not already say."""
    ranked = (latency_ranking(rows, groups) + throughput_ranking(rows, groups)
              + bytes_ranking(rows, groups)) if rankings else []
    return (ranked + protocol_or_library(rows, groups)
            + hop_cost(rows) + framework_cost(rows))
