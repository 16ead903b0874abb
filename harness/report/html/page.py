"""report.html: the run's figures and its report.md in one self-contained page.

Nothing is fetched: figures are inline SVG, the HOL section's PNGs become data: URIs,
and the style sheet is inline, so the file opens offline, from a mail attachment or a
CI artifact alike. Everything comes from the results folder (summary.json, report.md,
the .hgrm files), so `python bench.py report DIR` redraws a finished run.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from harness.report.html.figures import (bytes_figure, capacity_figures, cdf_figures,
                                         versus_load, waterfall_figure)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } figure svg, figure img { max-width: 100%; height: auto; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr));
           gap: .5em 1.5em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
.note { color: #555; font-size: 12px; }
"""


def _figure(svg: str, caption: str) -> str:
    return f'<figure>{svg}<figcaption class="note">{html.escape(caption)}</figcaption></figure>'


def figures_section(rows: list[dict[str, Any]], out_dir: Path) -> str:
    parts: list[str] = []
    for kind, stream in (("embed", False), ("stream", True)):
        mine = [r for r in rows if r["workload"] == kind]
        if not mine:
            continue
        drawn = []
        if stream:
            drawn += [_figure(s, "time to first token per request, from the run's .hgrm")
                      for s in cdf_figures(mine, out_dir, "ttft", "TTFT")]
            drawn += [_figure(s, "gaps between successive chunks, pooled over streams")
                      for s in cdf_figures(mine, out_dir, "itl", "inter-token latency")]
        else:
            drawn += [_figure(s, "latency per request (from its intended start), from the "
                                 "run's .hgrm") for s in cdf_figures(mine, out_dir, "latency",
                                                                     "latency")]
        drawn += [_figure(s, "one line per cell over the scenario's load points")
                  for s in versus_load(mine, stream)]
        svg = bytes_figure(mine)
        if svg:
            drawn.append(_figure(svg, "at each cell's first load point"))
        if drawn:
            parts += [f"<h3>{'Streams' if stream else 'Requests'}</h3>",
                      '<div class="figures">', *drawn, "</div>"]
    return "".join(parts)


def _lifecycle(rows: list[dict[str, Any]]) -> list[str]:
    parts = []
    svg = waterfall_figure(rows)
    if svg:
        parts += ["<h3>Connection lifecycle</h3>", _figure(svg, "cold requests only: each "
                                                               "opened its connection")]
    return parts


def figures_html(summary: dict[str, Any], out_dir: Path) -> str:
    rows = summary.get("rows") or []
    parts = []
    capacity = summary.get("capacity")
    if capacity:
        goodput = summary["scenario"]["load"].get("goodput") or 0.99
        parts += ["<h3>Capacity within the SLO</h3>", '<div class="figures">',
                  *[_figure(s, "one line per cell; the dashed line is the goodput target")
                    for s in capacity_figures(capacity, goodput)], "</div>"]
    parts += [figures_section(rows, out_dir), *_lifecycle(rows)]
    if not any(parts):
        return ""
    return ("<h2>Figures</h2><p class=note>Dashed lines and [saturated] / [failed] labels "
            "mark rows that measure a library, not a protocol.</p>" + "".join(parts))


def _inline_images(body: str, out_dir: Path) -> str:
    """The report's local images (the HOL figures) as data: URIs."""
    def embed(m: re.Match) -> str:
        src = html.unescape(m.group(1))
        path = (out_dir / src).resolve()
        if src.startswith(("http:", "https:", "data:")) or not path.is_file():
            return m.group(0)
        mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:{mime};base64,{data}"'
    return re.sub(r'src="([^"]+)"', embed, body)


def render_html(summary: dict[str, Any], report_md: str, out_dir: Path) -> str:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    report = _inline_images(md.render(report_md), out_dir)
    title = html.escape(f"wirebench: {summary['scenario']['name']}")
    env = html.escape(json.dumps(summary.get("environment"), indent=2, default=str))
    scenario = html.escape(json.dumps(summary.get("scenario"), indent=2, default=str))
    # The report's own first part (title, status, verdict) leads; figures follow it.
    split = report.find("<h2>Latency and throughput</h2>")
    head, rest = (report[:split], report[split:]) if split >= 0 else (report, "")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title>", f"<style>{STYLE}</style></head><body>",
        head, figures_html(summary, out_dir), rest,
        "<h2>Environment and scenario</h2>",
        f"<details><summary>environment</summary><pre>{env}</pre></details>",
        f"<details><summary>resolved scenario</summary><pre>{scenario}</pre></details>",
        "</body></html>"])


def write_html(out_dir: Path) -> Path:
    """Render report.html from a results folder (summary.json and report.md in it)."""
    summary = json.loads((out_dir / "summary.json").read_text())
    report_md = (out_dir / "report.md").read_text()
    path = out_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_html(summary, report_md, out_dir))
    tmp.replace(path)
    return path
