"""report.html renders in headless Chromium: every figure drawn, no console error, no
request beyond the file itself; a screenshot is kept beside it (report.png)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest

from clients.browser.chromium import Chromium, browser_unavailable
from tests.integration.test_bench_cli import result_dir, run_bench, write

# Installed before the page's own scripts: collects what a console would show.
CAPTURE = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.src)),
                        true);
const origError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); origError(...a); };
"""

CHECK = """(() => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 30),
                 ok: i.complete && i.naturalWidth > 0}));
  const svgs = [...document.querySelectorAll('figure svg')].map(s => {
    const r = s.getBoundingClientRect(); return {w: r.width, h: r.height};});
  return {imgs, svgs, errors: window.__errors,
          resources: performance.getEntriesByType('resource').map(e => e.name),
          title: document.title, height: document.documentElement.scrollHeight};
})()"""


def render_in_chromium(page: Path, screenshot: Path) -> dict:
    """Open `page` in headless Chromium; what it rendered, and a full-page screenshot."""
    async def go() -> dict:
        browser = Chromium()
        await browser.launch(["--window-size=1200,900"], timeout_s=30)
        try:
            await browser.call("Page.enable")
            await browser.call("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE})
            await browser.call("Page.navigate", {"url": page.resolve().as_uri()})
            for _ in range(100):                  # until loaded (no network: quick)
                if await browser.evaluate("document.readyState") == "complete":
                    break
                await asyncio.sleep(0.1)
            found = await browser.evaluate(CHECK)
            height = min(int(found["height"]), 16000)
            shot = await browser.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1200, "height": height, "scale": 1}})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return found
        finally:
            await browser.close()
    return asyncio.run(go())


needs_browser = pytest.mark.skipif(browser_unavailable() is not None,
                                   reason=str(browser_unavailable()))

SCENARIO = """
name: html
workload:
  - {type: embed, batch_size: 2, dimensions: 32}
  - {type: stream, max_tokens: 6, ttft_ms: 5, itl_ms: 2}
protocols: [rest-h1, grpc, ws, sse-h1, ws-stream]
load: {mode: closed, concurrency: [1, 2], requests: 40}
warmup: {requests: 4}
connection: {policy: [reuse, new]}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    out = tmp / "out"
    done = run_bench([write(tmp / "s.yaml", SCENARIO), "--out", out], tmp / "tls",
                     timeout=240)
    assert done.returncode in (0, 1), done.stderr      # 1: a busy machine's error limit
    return result_dir(out)


def test_the_page_fetches_nothing(run):
    text = (run / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text
    assert text.count("<svg") >= 6          # CDFs, load curves, bytes, waterfall


@needs_browser
def test_report_html_renders_every_figure_in_chromium(run):
    found = render_in_chromium(run / "report.html", run / "report.png")
    assert found["title"] == "wirebench: html"
    assert found["errors"] == [], found["errors"]
    assert found["resources"] == [], found["resources"]     # nothing fetched
    assert found["svgs"] and all(s["w"] > 100 and s["h"] > 100 for s in found["svgs"])
    assert all(i["ok"] for i in found["imgs"]), found["imgs"]
    assert (run / "report.png").stat().st_size > 20_000


def test_bench_report_redraws_a_finished_run(run, tmp_path):
    (run / "report.html").unlink()
    done = run_bench(["report", run], tmp_path / "tls")
    assert done.returncode == 0, done.stderr
    assert (run / "report.html").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["scenario"]["name"] in (run / "report.html").read_text()
