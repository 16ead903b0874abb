"""Capacity within the SLO (a sweep scenario): one number per cell, sorted, with what
bounds it, and whether the failing probe measured a library (its server core saturated).

`capacity` in summary.json is harness.run.sweep's result per cell; the probes are rows
(`sweep_probe`). Pure: data in, lines and a table out.
"""

from __future__ import annotations

from typing import Any

from harness.report.tables import table


def _failing_row(cell: str, result: dict[str, Any], rows: list[dict[str, Any]]
                 ) -> dict[str, Any] | None:
    hi = (result.get("bracket_rps") or [None, None])[1]
    if hi is None:
        return None
    return next((r for r in rows if r.get("sweep_probe") and r["cell"] == cell.split()[0]
                 and r.get("rate_offered_rps") == hi), None)


def _limit(cell: str, result: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """What stopped the cell: the SLO (and whether its server was saturated there), the
    client's ceiling, or the range."""
    if result["kind"] == "bracketed":
        row = _failing_row(cell, result, rows)
        bound = row.get("server_bound") if row else None
        return f"SLO missed above (server saturated: {bound})" if bound else "SLO missed above"
    if result.get("client_ceiling_rps"):
        return f"client bound at {result['client_ceiling_rps']:,.0f} req/s"
    return "rate_max kept the SLO" if result["kind"] == "at least" else "rate_min missed"


def _number(result: dict[str, Any]) -> str:
    lo = result.get("capacity_rps")
    if lo is None:
        return "-"
    return f">= {lo:,.0f}" if result["kind"] == "at least" else f"{lo:,.0f}"


def ordered(capacity: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(capacity.items(), key=lambda kv: -(kv[1].get("capacity_rps") or 0))


def capacity_table(capacity: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    return table(["cell", "capacity req/s", "bracket [pass, fail]", "probes", "limit"],
                 [[cell, _number(r), "[{}, {}]".format(*[f"{v:,.0f}" if v else "-"
                                                         for v in r["bracket_rps"]]),
                   str(len(r["probes"])), _limit(cell, r, rows)]
                  for cell, r in ordered(capacity)])


def capacity_lines(capacity: dict[str, dict[str, Any]], slo: list[str] | None) -> list[str]:
    """One line per cell for the terminal, highest first."""
    head = f"Capacity within the SLO ({'; '.join(slo or [])}), highest first:"
    return [head] + [f"  {cell}: {r['verdict']}" for cell, r in ordered(capacity)]


def markdown_section(summary: dict[str, Any]) -> list[str]:
    capacity = summary.get("capacity")
    if not capacity:
        return []
    rows = summary["rows"]
    load = summary["scenario"]["load"]
    slo = "; ".join(summary["scenario"].get("slo") or [])
    return ["## Capacity within the SLO", "",
            f"Per cell, the highest open-loop rate whose requests kept the SLO ({slo}) "
            f"with goodput >= {load['goodput']:.0%}, by bisection between "
            f"{load['rate_min']:g} and {load['rate_max']:g} req/s (at most "
            f"{load['steps']} probes, stopping when the bracket is within "
            f"{load['tolerance']:.0%}). A cell whose failing probe saturated its server "
            "measures that server library's ceiling; a client-bound probe says nothing "
            "about the cell, so such a cell reads \">=\".", "",
            capacity_table(capacity, rows), ""]
