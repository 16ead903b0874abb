"""What a run concludes: protocols ranked only where the rows measure protocols.

Two questions, each answered from one run's rows:

- *Which protocol is fastest here?* Ranked within the scenario's first group of cells
  (harness.scenario.groups), at one user (p50 latency; TTFT for streams) and at the highest load
  (throughput). A row whose server, client or machine was saturated (`server_bound`,
  `client_bound`, `machine_bound`) measures a library or the machine, so it is named
  and left out of the ranking. Two
  rows differ only when their 95% intervals, each widened to cover every repeat
  (harness.report.intervals, as the verdict block decides), do not overlap; with one
  repeat the run-to-run spread is unknown and the sentence says so.
- *Protocol or library?* Per protocol, its cell in a later group (e.g. pure Python)
  against its cell in the first group: the library's factor, set beside the spread
  between protocols in the first group. The larger one decides the conclusion, when
  the per-repeat ranges of the two ratios are apart; otherwise the run cannot say.

The Caddy front's local hop to the backend is the setup's, not a protocol's. Where the
first group mixes rows behind the front with rows without it, a ranking names the hop
as measured in the same run (an @caddy cell against its Caddy-less twin) and says
whether the order survives without it, and the protocol spread is taken less the hop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from harness.measure.attribution import bound_reason as _bound
from harness.measure.attribution import carries_hop, larger_spread, ratio_range
from harness.measure.saturation import NEAR_BUSY, near_busy
from harness.report.intervals import Estimate, apart, p50_estimate, throughput_estimate
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


def _estimate(r: Row) -> Estimate:
    """The row's one-user figure with its 95% interval, widened over the repeats."""
    field, per_repeat, _ = _metric(r)
    return p50_estimate(field.removesuffix("_p50_ms"), per_repeat)(r)


def _separated(a: Row, b: Row) -> tuple[bool, bool]:
    """(whether the two one-user figures' intervals are apart, whether both rows have
    repeats: without, the intervals hold this run's sampling noise only)."""
    return apart(_estimate(a), _estimate(b)), _range(a) is not None and _range(b) is not None


def _gap_words(intervals_apart: bool, repeated: bool) -> str:
    """How a ranking sentence reads the gap between its first two rows."""
    head = "their 95% intervals (the verdict's)"
    if not intervals_apart:
        return f"{head} overlap: **no difference** this run can resolve"
    if repeated:
        return f"{head} do not overlap, so the gap is real in this run"
    return (f"{head} do not overlap, but with one repeat they hold this run's sampling "
            "noise only: whether the gap repeats is unknown")


@dataclass(frozen=True)
class Hop:
    """What the Caddy front's local hop added to one figure in this run: an @caddy cell
    against the same stack served directly, same concurrency and workload."""
    ms: float
    range_ms: tuple[float, float] | None     # over the repeats, paired in run order
    front: str
    direct: str


def _hop_pairs(rows: Iterable[Row]) -> list[tuple[Row, Row]]:
    """(front, direct) row pairs: each HTTP/1.1 @caddy closed-loop row with its Caddy-less
    twin. Only HTTP/1.1: there both sides speak plain HTTP/1.1 over TCP, so the hop is
    what differs. An h2 or h3 twin terminates TLS/QUIC in another stack (hypercorn, aioquic
    against Go's), and that difference is the stacks', not the hop's."""
    by_key = {(r["cell"], r["concurrency"]): r for r in rows if r["mode"] == "closed" and r["n"]}
    pairs = []
    for (cell, conc), front in sorted(by_key.items(), key=lambda kv: kv[0]):
        direct = (by_key.get((cell.replace("@caddy", ""), conc))
                  if carries_hop(front) and front["protocol"].endswith("-h1") else None)
        if direct is not None and front["workload"] == direct["workload"]:
            pairs.append((front, direct))
    return pairs


def measured_hop(rows: Iterable[Row], concurrency: int, workload: str) -> Hop | None:
    """The hop at this load, from the run's first front/direct pair there (None if the
    run has no such pair)."""
    for front, direct in _hop_pairs(rows):
        if front["concurrency"] != concurrency or front["workload"] != workload:
            continue
        field, per_repeat, _ = _metric(front)
        if front[field] is None or direct[field] is None:
            continue
        diffs = [f - d for f, d in zip(front.get(per_repeat) or (), direct.get(per_repeat) or ())
                 if f is not None and d is not None]
        rng = (min(diffs), max(diffs)) if len(diffs) >= 2 else None
        return Hop(front[field] - direct[field], rng, front["cell"], direct["cell"])
    return None


def _interval(r: Row) -> tuple[float, float] | None:
    """The one-user figure's interval (_estimate), or None with one repeat."""
    if _range(r) is None:
        return None
    e = _estimate(r)
    return e.lo, e.hi


def _less_hop(r: Row, hop: Hop | None) -> tuple[float, tuple[float, float] | None]:
    """The row's figure (and its interval) without the hop, where it carries one."""
    field = _metric(r)[0]
    rng = _interval(r)
    if hop is None or not carries_hop(r):
        return r[field], rng
    if rng is not None and hop.range_ms is not None:
        rng = (rng[0] - hop.range_ms[1], rng[1] - hop.range_ms[0])
    else:
        rng = None
    return r[field] - hop.ms, rng


def _hop_text(hop: Hop, conc: int) -> str:
    spread = (f" [{hop.range_ms[0]:+.2f} to {hop.range_ms[1]:+.2f}]" if hop.range_ms else "")
    return (f"{hop.ms:+.2f} ms{spread} at c={conc} in this run ({hop.front} against "
            f"{hop.direct})")


def _near_note(ok: list[Row]) -> str:
    """The rows of an order that ran near saturation (not flagged): their figure may
    already be their library's."""
    near = [f"{r['cell']} ({near_busy(r)})" for r in ok if near_busy(r)]
    return (f" Near saturation (not flagged, but a core >= {NEAR_BUSY:.0%} busy), so "
            "possibly its library's figure: " + "; ".join(near) + "." if near else "")


def _hop_note(ok: list[Row], rows: list[Row]) -> str:
    """When a ranking mixes rows behind the Caddy front with rows without it: the hop's
    size, and whether the leading front row, less the hop, still stands where it does
    against the leading row without one (the hop is the setup's, not the protocol's)."""
    fronts = [r for r in ok if carries_hop(r)]
    plain = [r for r in ok if not carries_hop(r)]
    if not fronts or not plain:
        return ""
    front, lead = fronts[0], plain[0]
    conc = front["concurrency"]
    cells = [r["cell"] for r in plain]
    names = " and ".join(filter(None, (", ".join(cells[:-1]), cells[-1])))
    do = "does" if len(cells) == 1 else "do"
    hop = measured_hop(rows, conc, front["workload"])
    if hop is None:
        return (f" The @caddy rows cross Caddy's local hop to the backend and {names} {do} "
                "not; this run has no Caddy-less twin to measure the hop against, so that "
                "part of the gap is not separated.")
    value, rng = _less_hop(front, hop)
    lead_rng = _interval(lead)
    if rng is None or lead_rng is None:
        how = "one repeat, so indicative only"
    elif rng[1] < lead_rng[0]:
        how = f"ahead of {lead['cell']}"
    elif rng[0] > lead_rng[1]:
        how = f"still behind {lead['cell']}"
    else:
        how = (f"{rng[0]:.2f}-{rng[1]:.2f} ms against {lead['cell']}'s "
               f"{lead_rng[0]:.2f}-{lead_rng[1]:.2f}: without the hop, this run cannot say "
               "which of the two is faster")
    return (f" The @caddy rows cross Caddy's local hop to the backend, which {names} {do} "
            f"not: {_hop_text(hop, conc)}. Less the hop, {front['cell']} would be "
            f"{value:.2f} ms: {how}.")


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
            how = _gap_words(*_separated(first, second))
            out.append(f"- Lowest {kind} latency at {load}{where}: **{_show(first)}**, then "
                       f"{_show(second)} ({factor:.2f}x); {how}. Order: "
                       + " < ".join(f"{r['cell']} {r[field]:.2f}"
                                    + (" (near saturation)" if near_busy(r) else "")
                                    for r in ok) + " ms." + _near_note(ok)
                       + _hop_note(ok, rows))
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
            repeated = _rps_range(ok[0]) is not None and _rps_range(ok[1]) is not None
            real = apart(throughput_estimate(ok[0]), throughput_estimate(ok[1]))
            how = _gap_words(real, repeated).replace("**", "")
            hop = ""
            if carries_hop(ok[0]) != carries_hop(ok[1]):
                front = ok[0] if carries_hop(ok[0]) else ok[1]
                hop = (f" {front['cell']} crosses Caddy's local hop to the backend and the "
                       "other does not: " + ("without it the gap would be wider."
                                             if front is ok[0] else "part of the gap is the hop."))
            out.append(f"- Highest {kind} throughput at c={ok[0]['concurrency']}: "
                       f"**{ok[0]['cell']} {ok[0]['throughput_rps']:,.0f} req/s**, then "
                       f"{ok[1]['cell']} {ok[1]['throughput_rps']:,.0f} ({how}).{hop}")
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
    """Per protocol: the library factor (later group vs first) against the protocol spread.

    The spread is taken less the Caddy hop where it separates a row behind the front from
    one without (the hop is the setup's, not a protocol's); the library factor is not: a
    front is part of the stack it serves."""
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
        field, per_repeat, _ = _metric(ref[0])
        mixed = any(carries_hop(r) for r in ref) and not all(carries_hop(r) for r in ref)
        hop = measured_hop(rows, ref[0]["concurrency"], kind) if mixed else None
        less = {r["cell"]: _less_hop(r, hop)[0] for r in ref}
        lo = min(ref, key=lambda r: less[r["cell"]])
        hi = max(ref, key=lambda r: less[r["cell"]])
        protocol_spread = less[hi["cell"]] / less[lo["cell"]]
        spread_range = ratio_range(_repeats_less_hop(hi, hop), _repeats_less_hop(lo, hop))
        hop_words = ""
        if hop is not None and carries_hop(hi) != carries_hop(lo):
            front = hi if carries_hop(hi) else lo
            hop_words = (f" ({front['cell']} measured {front[field]:.2f} ms, less Caddy's "
                         f"{hop.ms:+.2f} ms hop: the hop is the setup's, not the protocol's)")
        elif hop is not None:
            hop_words = f" (the @caddy rows taken less Caddy's {hop.ms:+.2f} ms hop)"
        elif mixed:
            hop_words = (" (the @caddy rows include Caddy's local hop, which this run "
                         "cannot measure without a Caddy-less twin)")
        out.append(f"- Protocol spread ({kind}, group {group!r}, unsaturated rows at one "
                   f"user): {protocol_spread:.2f}x{_ratio_text(spread_range)}, from "
                   f"{lo['cell']} {less[lo['cell']]:.2f} ms to {hi['cell']} "
                   f"{less[hi['cell']]:.2f} ms{hop_words}.")
        for r in _one_user_rows(rows):
            if r.get("group") == group or r["workload"] != kind:
                continue
            base = firsts.get(r["protocol"])
            if base is None or base["cell"].replace("@caddy", "") == r["cell"]:
                continue        # no counterpart, or the same stack without the front (hop_cost)
            if not base[field] or not r[field]:
                continue
            out.append(_library_line(r, base, field, per_repeat, protocol_spread,
                                     spread_range))
    return out


def _repeats_less_hop(r: Row, hop: Hop | None) -> list[float] | None:
    values = r.get(_metric(r)[1])
    if hop is None or not carries_hop(r) or not values:
        return values
    return [v - hop.ms for v in values if v is not None]


def _library_line(r: Row, base: Row, field: str, per_repeat: str, protocol_spread: float,
                  spread_range: tuple[float, float] | None) -> str:
    """One protocol's two stacks against the spread between protocols. A saturated row
    measures its library, so the two are said to be apart, never which is faster."""
    slow, quick = (r, base) if r[field] >= base[field] else (base, r)
    factor = slow[field] / quick[field]
    factor_range = ratio_range(slow.get(per_repeat), quick.get(per_repeat))
    verdict = larger_spread(
        factor, factor_range, protocol_spread, spread_range,
        "**the library decides**: it costs more than the protocols differ",
        "the protocols differ more than these two stacks do",
        ("library", "protocols"))
    bound = [x for x in (r, base) if _bound(x)]
    if bound:
        apart = f"{factor:.2f}x apart"
    else:
        apart = f"{quick['cell']} faster by {factor:.2f}x"
    hop_words = (" (Caddy's hop included: part of that stack)"
                 if carries_hop(base) and not carries_hop(r) else "")
    note = "".join(f" ({x['cell']} saturated: {_bound(x)})" for x in bound)
    return (f"- {r['protocol']}: {r['cell']} {r[field]:.2f} ms vs {base['cell']} "
            f"{base[field]:.2f} ms{hop_words}, {apart}{_ratio_text(factor_range)}, against a "
            f"{protocol_spread:.2f}x spread between protocols: {verdict}{note}.")


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
    out = []
    for front, direct in _hop_pairs(rows):
        field, _, name = _metric(front)
        conc = front["concurrency"]
        d_cpu = ("" if front.get("server_cpu_ms_per_req") is None
                 or direct.get("server_cpu_ms_per_req") is None else
                 f", server CPU {front['server_cpu_ms_per_req'] - direct['server_cpu_ms_per_req']:+.3f}"
                 f" ms per request")
        out.append(f"- The Caddy hop at c={conc}: {front['cell']} {name} {front[field]:.3f} ms "
                   f"vs {direct['cell']} {direct[field]:.3f} ms served directly: "
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
