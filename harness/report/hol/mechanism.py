"""What the collateral stalls waited on, per series and loss: the split that
harness.measure.mechanism.split measures (ordering, congestion window, application),
as a table and one sentence per multiplexed series."""

from __future__ import annotations

from collections import defaultdict

from harness.measure.mechanism.split import LABELS, MECHANISMS
from harness.report.hol.section import HolPoint, pct
from harness.report.tables import table

NAMED = ("ordering", "cwnd", "app_server", "app_client")   # the three mechanisms' parts


def _totals(points: list[HolPoint]) -> dict[tuple[str, str], dict]:
    """Summed over repeats (and, for single drops, over drop positions), per series and
    link condition."""
    out: dict[tuple[str, str], dict] = defaultdict(lambda: defaultdict(float))
    for p in points:
        m = p.mechanism
        if not m or not m.get("collateral_stalls"):
            continue
        cond = "one drop" if p.single_drop else f"{pct(p.loss)} loss"
        t = out[(p.series, cond)]
        for k in ("collateral_stalls", "collateral_ms", "unaccounted_ms", "state_unknown_ms",
                  *(f"{name}_ms" for name in MECHANISMS)):
            t[k] += m.get(k) or 0.0
        t["sources"] = sorted({*t.get("sources", []), m.get("source") or "none"})
    return out


def accounted(t: dict) -> float:
    return sum(t[f"{n}_ms"] for n in NAMED) / t["collateral_ms"] if t["collateral_ms"] else 0.0


def mechanism_table(points: list[HolPoint]) -> str | None:
    totals = _totals(points)
    if not totals:
        return None
    rows = []
    for (series, cond), t in sorted(totals.items()):
        whole = t["collateral_ms"]
        share = [f"{t[f'{n}_ms'] / whole:.0%}" for n in MECHANISMS]
        rows.append([series, cond, f"{t['collateral_stalls']:.0f}", f"{whole:,.0f} ms", *share,
                     f"{t['unaccounted_ms'] / whole:.0%}", f"{accounted(t):.0%}",
                     ", ".join(t["sources"])])
    return table(["series", "link", "collateral stalls", "collateral time", "ordering",
                  "cwnd", "app (server)", "app (client)", "link", "unaccounted",
                  "accounted", "sender state"], rows)


def mechanism_sentences(points: list[HolPoint]) -> list[str]:
    """Per multiplexed series and lossy condition with collateral stall time: what it
    was, by measured share (largest first)."""
    out = []
    multiplexed = {p.series for p in points if p.multiplexed}
    for (series, cond), t in sorted(_totals(points).items()):
        whole = t["collateral_ms"]
        if whole < 1.0 or series not in multiplexed:
            continue
        parts = sorted(((t[f"{n}_ms"] / whole, n) for n in MECHANISMS), reverse=True)
        said = ", ".join(f"{share:.0%} {LABELS[n].split(' (')[0]}" for share, n in parts
                         if abs(share) >= 0.05)
        n = int(t["collateral_stalls"])
        out.append(f"- {series}, {cond}: {whole:,.0f} ms of collateral stall over {n} "
                   f"stall{'s' if n != 1 else ''}: {said or 'no part over 5%'} "
                   f"({accounted(t):.0%} accounted for; {', '.join(t['sources'])}).")
    return out


def mechanism_part(points: list[HolPoint]) -> list[str]:
    """The subsection, or nothing when no point recorded a split."""
    tab = mechanism_table(points)
    if tab is None:
        return []
    legend = "; ".join(f"`{n}`: {LABELS[n]}" for n in MECHANISMS)
    return ["### What the collateral stalls waited on", "",
            "Each collateral stall (a stream that lost nothing, stalled) split along its "
            "token's measured path: server emit stamp, first on the link and released by "
            "it (the packet log), read by the client; the sender's congestion window from "
            "tcp_info (TCP) or the stack's qlog (QUIC). Shares of collateral stall time; "
            "a part can be negative when the token before the stall waited longer on that "
            "leg. " + legend + ".", "", tab, "", *mechanism_sentences(points), ""]
