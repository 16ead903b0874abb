"""The head-of-line blocking section of report.md: the points, tables, figures and
sentences (section.py), and what the collateral stalls waited on (mechanism.py)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.measure.hol import DEFINITIONS
from harness.report.hol.mechanism import mechanism_part
from harness.report.hol.section import (SWEEP_FIGURE, TIMELINE_FIGURE, HolPoint,
                                        collateral_sentences, drop_sentence,
                                        drop_timeline_figure, first_per_series,
                                        folklore_sentences, itl_sentences,
                                        loss_sweep_figure, missed_drop_sentences,
                                        setup_sentence, single_drop_table,
                                        stack_cost_table, sweep_table, timeline_table,
                                        trend_sentences)

__all__ = ["HolPoint", "render_hol_section"]


def render_hol_section(points: list[HolPoint], figure_dir: Path,
                       report_dir: Path | None = None, rows: list[dict] | None = None) -> str:
    """The markdown section; writes its PNGs into figure_dir (linked relative to
    report_dir, default figure_dir)."""
    if not points:
        return ""
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    sweep = [p for p in points if not p.single_drop]
    probes = [p for p in points if p.single_drop and p.timeline]
    figures = _figures(sweep, probes, figure_dir)

    def link(f: Path) -> str:
        return os.path.relpath(f, report_dir or figure_dir)

    parts = ["## Head-of-line blocking", "", setup_sentence(points), "",
             "### What the numbers show", ""]
    said = (collateral_sentences(sweep) + trend_sentences(sweep) + itl_sentences(sweep)
            + [drop_sentence(p) for p in first_per_series(probes)]
            + missed_drop_sentences(points)
            + folklore_sentences(points))
    parts += said or ["- No point had loss or a dropped packet: nothing to attribute."]
    parts += ["", "### Per point", "", sweep_table(points), ""]
    parts += mechanism_part(points)
    if SWEEP_FIGURE in figures:
        parts += [f"![collateral stall time and ITL p99 vs loss]"
                  f"({link(figures[SWEEP_FIGURE])})", ""]
    if probes:
        parts += ["### One dropped packet", "",
                  ("Excess one-way delay: a token's one-way delay minus its stream's median "
                   "before the drop; tokens listed from the one emitted just before the drop."),
                  ""]
        parts += ["Every single drop, per series (a different packet each time; excess "
                  "one-way delay over the stream's median before the drop):", "",
                  single_drop_table(points), "",
                  "One example per series (its earliest drop):", ""]
        for p in first_per_series(probes):
            parts += [timeline_table(p), ""]
        if TIMELINE_FIGURE in figures:
            parts += [f"![per-stream delivery around the drop]"
                      f"({link(figures[TIMELINE_FIGURE])})", ""]
    cost = stack_cost_table(rows or [], points)
    if cost:
        parts += ["### What each stack's transport costs", "",
                  "\"HTTP/3 solves this but introduces UDP complexity\": per token on the "
                  "lossless link with every stream on one connection, the packets, bytes and "
                  "CPU each stack spends (QUIC in user space: aioquic in Python, quic-go in "
                  "Caddy; TCP in the kernel), the round trips a new connection pays, and "
                  "beside them what one lost packet cost the streams that lost nothing.", "",
                  cost, ""]
    if "missing" in figures:
        parts += [f"Figures not drawn: {figures['missing']}.", ""]
    parts += ["### HOL definitions", ""] + [f"- `{k}`: {v}" for k, v in DEFINITIONS.items()] + [""]
    return "\n".join(parts)


def _figures(sweep: list[HolPoint], probes: list[HolPoint], figure_dir: Path) -> dict:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {"missing": "matplotlib is not installed"}
    out = {}
    for name, draw, pts in ((SWEEP_FIGURE, loss_sweep_figure, sweep),
                            (TIMELINE_FIGURE, drop_timeline_figure, first_per_series(probes))):
        made = draw(pts, figure_dir / name)
        if made is not None:
            out[name] = made
    return out
