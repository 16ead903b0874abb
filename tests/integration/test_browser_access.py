"""Browser access, over real sockets against real server processes: CORS (--cors) on
every HTTP server, the GET (EventSource) form of the streams in both apps, the
WebSocket server's Origin allow-list and browser authentication, and HTTP/3 on ::1 for
`--host localhost`. curl plays the browser for CORS (it sends what a browser sends)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.parse

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from clients.base import Target
from clients.transport.http3 import Http3Transport
from clients.rest_h3 import RestH3Client
from clients.sse_h3 import SseH3Client
from servers import core
from servers.__main__ import parse_args
from servers.cors import parse_origins

KEY = "sk-browser"
PAGE = "http://example.test"
OTHER_PAGE = "http://localhost:5173"
STRANGER = "http://evil.test"
CORS = ["--cors", f"{PAGE},{OTHER_PAGE}"]
CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5,
        "stream": True}

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs system curl")


# ------------------------------------------------------------------ helpers

def curl(url: str, *args: str, ca=None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lowercase names, body) of one curl request."""
    cmd = ["curl", "-sS", "-i", "--max-time", "20", "--noproxy", "*", *args]
    if ca is not None:
        cmd += ["--cacert", str(ca)]
    out = subprocess.run(cmd + [url], capture_output=True, timeout=30, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return int(lines[0].split()[1]), headers, body


def preflight(url: str, origin: str, *, method: str = "POST", headers: str | None = None,
              http: tuple[str, ...] = (), ca=None):
    args = ["-X", "OPTIONS", "-H", f"Origin: {origin}",
            "-H", f"Access-Control-Request-Method: {method}", *http]
    if headers is not None:
        args += ["-H", f"Access-Control-Request-Headers: {headers}"]
    return curl(url, *args, ca=ca)


def post(url: str, body: dict, *, origin: str | None = None, key: str | None = None,
         http: tuple[str, ...] = (), ca=None):
    args = ["-X", "POST", "-H", "Content-Type: application/json",
            "--data-binary", orjson.dumps(body).decode(), *http]
    if origin is not None:
        args += ["-H", f"Origin: {origin}"]
    if key is not None:
        args += ["-H", f"Authorization: Bearer {key}"]
    return curl(url, *args, ca=ca)


def get(url: str, *, origin: str | None = None, key: str | None = None, ca=None,
        http: tuple[str, ...] = ()):
    args = ["-H", "Accept: text/event-stream", *http]   # what EventSource sends
    if origin is not None:
        args += ["-H", f"Origin: {origin}"]
    if key is not None:
        args += ["-H", f"Authorization: Bearer {key}"]
    return curl(url, *args, ca=ca)


def sse_events(body: bytes) -> list[str]:
    return [part[6:] for part in body.decode().split("\n\n") if part.startswith("data: ")]


def qs(**params) -> str:
    return urllib.parse.urlencode(params)


def no_cors_headers(headers: dict[str, str]) -> bool:
    return not any(name.startswith("access-control-") for name in headers)


# (server kind, flags besides --cors, scheme, curl flags, use the h2c port)
CELLS = {
    "h1": ("h1", [], "http", (), False),
    "h2": ("h2", ["--h2c-port", "0"], "https", ("--http2",), False),
    "h2c": ("h2", ["--h2c-port", "0"], "http", ("--http2-prior-knowledge",), True),
    "granian-h1": ("granian-h1", [], "http", (), False),
    "caddy-h1": ("caddy-h1", [], "http", (), False),
    "caddy-h2": ("caddy-h2", [], "https", ("--http2",), False),
    "fastapi-h1": ("fastapi-h1", [], "http", (), False),
    "fastapi-h2": ("fastapi-h2", [], "https", ("--http2",), False),
}


def base_url(servers, cell: str, cors: list[str] | None = CORS, api_key: str | None = KEY):
    kind, flags, scheme, http, h2c = CELLS[cell]
    srv = servers.start(kind, api_key=api_key, extra=flags + (cors or []))
    port = srv.info["h2c_port"] if h2c else srv.port
    return f"{scheme}://localhost:{port}", http


# ------------------------------------------------------------------ CORS over TCP

@pytest.mark.parametrize("cell", CELLS)
def test_cors_preflight_and_responses(servers, tls_files, cell):
    base, http = base_url(servers, cell)
    ca = tls_files.ca
    # The preflight: answered before the key check (no credentials on a preflight).
    status, h, _ = preflight(f"{base}/v1/chat/completions", PAGE, http=http, ca=ca,
                             headers="content-type, x-stainless-os, x-made-up")
    assert status == 204, h
    assert h["access-control-allow-origin"] == PAGE
    assert set(h["access-control-allow-methods"].replace(" ", "").split(",")) == {
        "GET", "POST", "OPTIONS"}
    allowed = h["access-control-allow-headers"].replace(" ", "").split(",")
    assert {"authorization", "content-type", "x-stainless-os"} <= set(allowed)
    assert "x-made-up" not in allowed
    assert int(h["access-control-max-age"]) > 0
    assert "origin" in h["vary"].lower()
    # The second listed origin too, and a GET preflight (EventSource never sends one,
    # but fetch() with an Authorization header does).
    status, h, _ = preflight(f"{base}/v1/completions", OTHER_PAGE, method="GET", http=http,
                             ca=ca)
    assert status == 204 and h["access-control-allow-origin"] == OTHER_PAGE
    # An origin not on the list: no allow headers, so the browser refuses.
    status, h, _ = preflight(f"{base}/v1/chat/completions", STRANGER, http=http, ca=ca)
    assert status == 204 and no_cors_headers(h), h

    # Actual responses carry Allow-Origin and expose the timing header: a 200 ...
    status, h, body = post(f"{base}/v1/embeddings", {"input": "x", "dimensions": 4},
                           origin=PAGE, key=KEY, http=http, ca=ca)
    assert status == 200, body
    assert h["access-control-allow-origin"] == PAGE
    assert "server-timing" in h["access-control-expose-headers"].lower()
    assert "server-timing" in h
    # ... a 401 (no key) and a 400, in the API's error shape ...
    status, h, body = post(f"{base}/v1/embeddings", {"input": "x"}, origin=PAGE, http=http,
                           ca=ca)
    assert status == 401 and h["access-control-allow-origin"] == PAGE
    assert orjson.loads(body)["error"]["code"] == "invalid_api_key"
    status, h, body = post(f"{base}/v1/embeddings", {"input": 3}, origin=PAGE, key=KEY,
                           http=http, ca=ca)
    assert status == 400 and h["access-control-allow-origin"] == PAGE
    # ... and a streamed SSE response.
    status, h, body = post(f"{base}/v1/chat/completions", CHAT, origin=OTHER_PAGE, key=KEY,
                           http=http, ca=ca)
    assert status == 200 and h["access-control-allow-origin"] == OTHER_PAGE
    assert h["content-type"].startswith("text/event-stream")
    assert sse_events(body)[-1] == "[DONE]"
    # A stranger's request is served (CORS is the browser's check) but not shared.
    status, h, _ = post(f"{base}/v1/embeddings", {"input": "x"}, origin=STRANGER, key=KEY,
                        http=http, ca=ca)
    assert status == 200 and no_cors_headers(h)
    # No Origin (not a browser): no CORS headers at all.
    status, h, _ = post(f"{base}/v1/embeddings", {"input": "x"}, key=KEY, http=http, ca=ca)
    assert status == 200 and no_cors_headers(h)


@pytest.mark.parametrize("cell", ["h1", "fastapi-h1"])
def test_cors_star(servers, tls_files, cell):
    base, http = base_url(servers, cell, cors=["--cors", "*"])
    status, h, _ = preflight(f"{base}/v1/embeddings", STRANGER, headers="authorization")
    assert status == 204 and h["access-control-allow-origin"] == "*"
    assert "authorization" in h["access-control-allow-headers"]   # '*' would not cover it
    status, h, _ = get(f"{base}/v1/completions?{qs(prompt='hi', api_key=KEY)}",
                       origin="null")
    assert status == 200 and h["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("cell", ["h1", "fastapi-h1", "granian-h1"])
def test_no_cors_flag_is_same_origin_only(servers, tls_files, cell):
    base, http = base_url(servers, cell, cors=None)
    status, h, _ = preflight(f"{base}/v1/chat/completions", PAGE)
    assert no_cors_headers(h) and status != 204, (status, h)
    status, h, _ = post(f"{base}/v1/embeddings", {"input": "x"}, origin=PAGE, key=KEY)
    assert status == 200 and no_cors_headers(h)


def test_cors_flag_values():
    assert parse_origins(None) is None
    assert parse_origins("*") == ("*",)
    assert parse_origins(" HTTP://Example.test/ ,http://localhost:5173") == (
        "http://example.test", "http://localhost:5173")
    assert parse_args(["h1", "--cors", "http://a.test"]).cors_origins == ("http://a.test",)
    assert parse_args(["ws", "--cors", "*"]).cors_origins == ("*",)
    assert parse_args(["h1"]).cors_origins is None
    for bad in (["h1", "--cors", "example.test"], ["h1", "--cors", "*,http://a.test"],
                ["h1", "--cors", "http://a.test/path"], ["h1", "--cors", ""],
                ["grpc", "--cors", "*"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


# ------------------------------------------------------------------ CORS over HTTP/3

async def h3_request(target: Target, method: bytes, path: bytes, headers, body=b""):
    transport = Http3Transport(target, reuse=False)
    try:
        exchange = await transport.request(method, path, headers, body)
        data, _ = await exchange.read_body()
        await exchange.aclose()
        return exchange.response.status, dict(exchange.response.headers), data
    finally:
        await transport.close()


@pytest.mark.parametrize("kind", ["h3", "caddy-h3"])
async def test_cors_over_http3(servers, tls_files, kind):
    srv = servers.start(kind, api_key=KEY, extra=CORS)
    target = Target(port=srv.port, ca=tls_files.ca)
    origin = PAGE.encode()
    status, h, _ = await h3_request(target, b"OPTIONS", b"/v1/embeddings", [
        (b"origin", origin), (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"authorization,content-type")])
    assert status == 204 and h[b"access-control-allow-origin"] == origin
    assert b"authorization" in h[b"access-control-allow-headers"]
    status, h, _ = await h3_request(target, b"POST", b"/v1/embeddings", [
        (b"origin", origin), (b"content-type", b"application/json")], b'{"input": "x"}')
    assert status == 401 and h[b"access-control-allow-origin"] == origin
    path = f"/v1/chat/completions?{qs(content='hi', max_tokens=3, api_key=KEY)}".encode()
    status, h, data = await h3_request(target, b"GET", path, [(b"origin", origin)])
    assert status == 200 and h[b"access-control-allow-origin"] == origin
    assert sse_events(data)[-1] == "[DONE]"


# ------------------------------------------------------------------ the GET stream form

GET_APPS = ["h1", "fastapi-h1"]


@pytest.mark.parametrize("cell", GET_APPS)
def test_get_stream_is_the_post_stream(servers, tls_files, cell):
    base, _ = base_url(servers, cell, cors=None, api_key=None)
    params = {"content": "hello there", "max_tokens": 7, "seed": 4, "itl_ms": 1,
              "include_usage": "true", "model": core.MODEL_ID}
    status, h, body = get(f"{base}/v1/chat/completions?{qs(**params)}")
    assert status == 200 and h["content-type"].startswith("text/event-stream")
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    request = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 7,
               "wirebench": {"seed": 4}}
    expected = core.tokens_for(core.parse_generate_request(request, chat=True))
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [t for t in texts if t] == expected
    assert chunks[-1]["usage"]["completion_tokens"] == 7        # include_usage
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[-2]["wirebench"]["server_time_us"] >= 6000    # 6 gaps of itl_ms=1
    # The POST stream with the same parameters: the same events but for ids and stamps.
    status, _, post_body = post(f"{base}/v1/chat/completions",
                                {**request, "stream": True,
                                 "stream_options": {"include_usage": True}})
    post_chunks = [orjson.loads(e) for e in sse_events(post_body)[:-1]]
    assert [c["choices"] for c in post_chunks] == [c["choices"] for c in chunks]

    status, _, body = get(f"{base}/v1/completions?{qs(prompt='once upon', max_tokens=3)}")
    events = sse_events(body)
    assert status == 200 and events[-1] == "[DONE]"
    text = "".join(orjson.loads(e)["choices"][0]["text"] for e in events[:-1])
    assert text == "".join(core.tokens_for(core.parse_generate_request(
        {"prompt": "once upon", "max_tokens": 3}, chat=False)))


GET_BAD = [
    # (path, query, status, param, code)
    ("/v1/chat/completions", {}, 400, "content", "invalid_request_error"),
    ("/v1/completions", {"content": "x"}, 400, "content", "invalid_request_error"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "many"}, 400, "max_tokens",
     "invalid_request_error"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "0"}, 400, "max_tokens",
     "invalid_request_error"),
    ("/v1/chat/completions", {"content": "x", "ttft_ms": "-1"}, 400, "ttft_ms",
     "invalid_request_error"),
    ("/v1/chat/completions", {"content": "x", "itl_ms": "nan"}, 400, "itl_ms",
     "invalid_request_error"),
    ("/v1/chat/completions", {"content": "x", "include_usage": "maybe"}, 400,
     "include_usage", "invalid_request_error"),
    ("/v1/chat/completions", {"content": "x", "stream": "false"}, 400, "stream",
     "invalid_request_error"),
    ("/v1/chat/completions", {"content": "x", "model": "gpt-x"}, 404, "model",
     "model_not_found"),
    ("/v1/chat/completions", "content=x&content=y", 400, "content", "invalid_request_error"),
    ("/v1/chat/completions", "content=%ff", 400, None, "invalid_request_error"),
]


@pytest.mark.parametrize("path, query, status, param, code", GET_BAD,
                         ids=[f"{b[2]}-{b[3]}-{i}" for i, b in enumerate(GET_BAD)])
def test_get_stream_refusals_agree_in_both_apps(servers, tls_files, path, query, status,
                                                param, code):
    query = query if isinstance(query, str) else qs(**query)
    answers = []
    for cell in GET_APPS:
        base, _ = base_url(servers, cell, cors=None, api_key=None)
        got, h, body = get(f"{base}{path}?{query}")
        assert got == status, (cell, body)
        assert h["content-type"].startswith("application/json")
        error = orjson.loads(body)["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", code, param), (cell, error)
        answers.append(error)
    assert answers[0] == answers[1]         # the bare app and FastAPI say the same


@pytest.mark.parametrize("cell", GET_APPS)
def test_get_stream_api_key_in_the_query(servers, tls_files, cell):
    base, _ = base_url(servers, cell, cors=None)
    url = f"{base}/v1/chat/completions?{qs(content='hi', max_tokens=2)}"
    status, _, body = get(url)
    assert status == 401 and "api_key" in orjson.loads(body)["error"]["message"]
    status, _, body = get(f"{url}&{qs(api_key='wrong')}")
    assert status == 401 and orjson.loads(body)["error"]["code"] == "invalid_api_key"
    status, _, body = get(f"{url}&{qs(api_key=KEY)}")
    assert status == 200 and sse_events(body)[-1] == "[DONE]"
    status, _, body = get(url, key=KEY)                     # the header works too ...
    assert status == 200
    status, _, body = get(f"{url}&{qs(api_key=KEY)}", key="wrong")   # ... and decides
    assert status == 401
    # The query key is the GET streams' only: not for POST, not for other routes.
    status, _, _ = post(f"{base}/v1/chat/completions?{qs(api_key=KEY)}", CHAT)
    assert status == 401
    status, _, _ = get(f"{base}/v1/models?{qs(api_key=KEY)}")
    assert status == 401


@pytest.mark.parametrize("cell", GET_APPS)
def test_openapi_documents_the_get_form(servers, tls_files, cell):
    base, _ = base_url(servers, cell, cors=None, api_key=None)
    status, _, body = curl(f"{base}/openapi.json")
    paths = orjson.loads(body)["paths"]
    for path, text in (("/v1/chat/completions", "content"), ("/v1/completions", "prompt")):
        operation = paths[path]["get"]
        names = {p["name"]: p for p in operation["parameters"]}
        assert names[text]["required"] and names[text]["in"] == "query"
        assert {"model", "max_tokens", "ttft_ms", "itl_ms", "seed", "include_usage",
                "api_key"} <= set(names)
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        assert "post" in paths[path]


@pytest.mark.parametrize("cell", ["h2", "h2c", "granian-h1", "caddy-h2", "fastapi-h2"])
def test_get_stream_on_other_servers(servers, tls_files, cell):
    base, http = base_url(servers, cell)
    status, h, body = get(f"{base}/v1/completions?{qs(prompt='x', max_tokens=4, api_key=KEY)}",
                          origin=PAGE, http=http, ca=tls_files.ca)
    assert status == 200 and h["access-control-allow-origin"] == PAGE
    events = sse_events(body)
    assert events[-1] == "[DONE]" and len(events) == 4 + 2


# ------------------------------------------------------------------ WebSocket

@pytest.fixture(scope="module")
def ws_servers(servers):
    """A keyed ws server with --cors, one without --cors, one with --cors '*'."""
    return {"listed": servers.start("ws", api_key=KEY, extra=CORS),
            "default": servers.start("ws"),
            "star": servers.start("ws", extra=["--cors", "*"])}


async def ws_try(port: int, path: str = "/", **kwargs) -> tuple[int, str | None]:
    """(101 or the refusal's status, the selected subprotocol); a request works."""
    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", proxy=None, compression=None,
                           open_timeout=10, **kwargs) as ws:
            await ws.send(orjson.dumps({"id": 1, "type": "generate",
                                        "body": {**CHAT, "max_tokens": 2}}), text=True)
            kinds = [orjson.loads(await ws.recv())["type"] for _ in range(3)]
            assert kinds == ["token", "token", "done"]
            return 101, ws.subprotocol
    except InvalidStatus as exc:
        return exc.response.status_code, None


async def test_ws_origin_allow_list(ws_servers):
    listed = ws_servers["listed"].port
    auth = {"additional_headers": {"Authorization": f"Bearer {KEY}"}}
    assert await ws_try(listed, **auth) == (101, None)                      # no Origin
    assert (await ws_try(listed, origin=PAGE, **auth))[0] == 101
    assert (await ws_try(listed, origin=OTHER_PAGE, **auth))[0] == 101
    assert (await ws_try(listed, origin=STRANGER, **auth))[0] == 403
    assert (await ws_try(listed, origin=f"http://127.0.0.1:{listed}", **auth))[0] == 101
    # Origin is checked first: a stranger with the right key is still refused.
    assert (await ws_try(listed, origin=STRANGER,
                         subprotocols=[f"wirebench.bearer.{KEY}"]))[0] == 403

    default = ws_servers["default"].port
    assert (await ws_try(default))[0] == 101
    assert (await ws_try(default, origin=PAGE))[0] == 403
    assert (await ws_try(default, origin="null"))[0] == 403
    for own in (f"http://127.0.0.1:{default}", f"http://localhost:{default}",
                f"http://[::1]:{default}"):
        assert (await ws_try(default, origin=own))[0] == 101, own
    assert (await ws_try(default, origin=f"http://localhost:{default + 1}"))[0] == 403

    star = ws_servers["star"].port
    assert (await ws_try(star, origin=STRANGER))[0] == 101
    assert (await ws_try(star, origin="null"))[0] == 101


async def test_ws_browser_authentication(ws_servers):
    port = ws_servers["listed"].port
    good = f"wirebench.bearer.{KEY}"
    assert await ws_try(port, origin=PAGE, subprotocols=[good]) == (101, good)
    assert await ws_try(port, origin=PAGE, subprotocols=["chat", good]) == (101, good)
    assert (await ws_try(port, origin=PAGE, subprotocols=["wirebench.bearer.nope"]))[0] == 401
    assert (await ws_try(port, origin=PAGE))[0] == 401
    assert await ws_try(port, f"/?{qs(api_key=KEY)}", origin=PAGE) == (101, None)
    assert (await ws_try(port, f"/?{qs(api_key='nope')}", origin=PAGE))[0] == 401
    assert (await ws_try(port, additional_headers={"Authorization": "Bearer nope"}))[0] == 401
    # Without a key the bearer subprotocol is still selected: a page works either way.
    default = ws_servers["default"].port
    assert await ws_try(default, subprotocols=["wirebench.bearer.any"]) == (
        101, "wirebench.bearer.any")


def raw_handshake_status(port: int, *headers: str) -> int:
    """The status line's code of a hand-written upgrade request."""
    head = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_ws_repeated_origin_or_authorization_is_refused(ws_servers):
    port = ws_servers["listed"].port
    auth = f"Authorization: Bearer {KEY}"
    assert raw_handshake_status(port, f"Origin: {PAGE}", auth) == 101
    assert raw_handshake_status(port, f"Origin: {PAGE}", f"Origin: {STRANGER}", auth) == 403
    assert raw_handshake_status(port, f"Origin: {PAGE}", f"Origin: {PAGE}", auth) == 403
    assert raw_handshake_status(port, auth, auth) == 401
    assert raw_handshake_status(port, auth, "Sec-WebSocket-Protocol: chat") == 101


def test_ws_websocket_client_library(ws_servers):
    """The other common client library (synchronous), offering the subprotocol."""
    websocket = pytest.importorskip("websocket", reason="websocket-client not installed")
    port = ws_servers["listed"].port
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", origin=PAGE,
                                     subprotocols=[f"wirebench.bearer.{KEY}"], timeout=10)
    try:
        assert ws.getsubprotocol() == f"wirebench.bearer.{KEY}"
        ws.send(orjson.dumps({"id": "s", "type": "stats"}).decode())
        assert orjson.loads(ws.recv())["type"] == "stats"
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(f"ws://127.0.0.1:{port}/", origin=STRANGER,
                                    subprotocols=[f"wirebench.bearer.{KEY}"], timeout=10)
    assert err.value.status_code == 403


# ------------------------------------------------------------------ HTTP/3 on ::1

def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize("kind", ["h3", "caddy-h3"])
async def test_h3_localhost_listens_on_both_loopbacks(servers, tls_files, kind):
    srv = servers.start(kind, host="localhost")
    assert set(srv.info["addresses"]) == {"127.0.0.1", "::1"}
    for host in ("::1", "127.0.0.1"):
        target = Target(host=host, port=srv.port, ca=tls_files.ca)
        async with RestH3Client(target) as client:
            result = await client.embed({"input": "x", "dimensions": 8})
        assert result.vectors.shape == (1, 8) and result.new_connection
        async with SseH3Client(target) as client:
            stream = await client.generate({**CHAT, "max_tokens": 3})
        assert len(stream.tokens) == 3


def test_h3_other_hosts_bind_one_address(servers, tls_files):
    srv = servers.start("h3")               # 127.0.0.1: nothing on ::1
    assert srv.info["addresses"] == ["127.0.0.1"]


# ------------------------------------------------------------------ the harness

@pytest.mark.parametrize("protocol", ["rest-h1", "ws", "grpc"])
def test_scenario_cors_reaches_the_servers(tls_files, tmp_path, protocol):
    from base.cells import parse_cell
    from harness.run.runner import Runner
    from harness.scenario import parse_scenario

    scenario = parse_scenario({"name": "t", "workload": {"type": "embed"}, "load": {},
                               "protocols": [protocol], "cors": [PAGE]})
    runner = Runner(scenario, tmp_path, None, loopback=True)
    try:
        _, _, srv, _ = runner._target(parse_cell(protocol))
        flags = srv.args[srv.args.index("--cors"):][:2] if "--cors" in srv.args else []
        assert flags == ([] if protocol == "grpc" else ["--cors", PAGE])   # gRPC: no CORS
    finally:
        runner.servers.stop_all()
