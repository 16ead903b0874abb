"""Headless Chromium as an outside page would use the servers (issue 14): a cross-origin
fetch() allowed by --cors and refused without it, EventSource on the GET form with
?api_key=, and a WebSocket authenticated by the wirebench.bearer.<key> subprotocol."""

from __future__ import annotations

import asyncio
import json

import pytest

from clients.browser import browser_unavailable
from clients.browser.chromium import Chromium
from servers.launcher import start_server

pytestmark = pytest.mark.skipif(browser_unavailable() is not None,
                                reason=str(browser_unavailable()))
KEY = "sk-page"
EMBED = json.dumps({"model": "wirebench-embed-1", "input": ["hi"], "dimensions": 8})


def fetch_js(url: str) -> str:
    return (f"fetch({json.dumps(url)}, {{method: 'POST', headers: {{'Authorization': "
            f"'Bearer {KEY}', 'content-type': 'application/json'}}, body: {json.dumps(EMBED)}}})"
            ".then(async r => [r.status, (await r.json()).data[0].embedding.length])"
            ".catch(e => ['refused', String(e)])")


async def test_a_page_on_another_origin_uses_the_api():
    with start_server("h1", api_key=KEY) as home, \
         start_server("h1", api_key=KEY, extra=["--cors", "*"]) as api, \
         start_server("h1", api_key=KEY) as closed, \
         start_server("ws", api_key=KEY, extra=["--cors", "*"]) as ws:
        browser = Chromium()
        await browser.launch([], 20)
        try:
            await browser.call("Page.navigate",
                               {"url": f"http://127.0.0.1:{home.port}/bench.html"})
            for _ in range(50):          # until the page's script is there
                if await browser.evaluate("typeof wb !== 'undefined'"):
                    break
                await asyncio.sleep(0.1)
            other = f"http://localhost:{api.port}"          # another origin: another port
            assert await browser.evaluate(fetch_js(other + "/v1/embeddings")) == [200, 8]
            refused = await browser.evaluate(
                fetch_js(f"http://localhost:{closed.port}/v1/embeddings"))
            assert refused[0] == "refused"                  # no --cors: same-origin only
            source = (other + "/v1/chat/completions?content=hi&max_tokens=5&include_usage=true"
                      f"&api_key={KEY}")
            events = await browser.evaluate(
                "new Promise(res => { const got = []; const es = new EventSource("
                f"{json.dumps(source)}); es.onmessage = e => {{ got.push(e.data); "
                "if (e.data === '[DONE]') { es.close(); res(got); } }; "
                "es.onerror = () => { es.close(); res(got.concat(['error'])); }; })")
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
            assert len(tokens) == 5 and chunks[-1]["usage"]["completion_tokens"] == 5
            message = json.dumps({"id": 1, "type": "generate", "body": {
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}})
            opened = await browser.evaluate(
                "new Promise(res => { const got = []; const s = new WebSocket("
                f"'ws://localhost:{ws.port}/', ['wirebench.bearer.{KEY}']); "
                f"s.onopen = () => s.send({json.dumps(message)}); "
                "s.onmessage = e => { got.push(JSON.parse(e.data)); "
                "if (got[got.length - 1].type === 'done') { "
                "s.close(); res([s.protocol, got.length]); } }; "
                "s.onerror = () => res(['error']); })")
            assert opened[0] == f"wirebench.bearer.{KEY}" and opened[1] >= 3
            keyless = await browser.evaluate(
                f"new Promise(res => {{ const s = new WebSocket('ws://localhost:{ws.port}/'); "
                "s.onopen = () => res('opened'); s.onerror = () => res('refused'); })")
            assert keyless == "refused"
        finally:
            await browser.close()
