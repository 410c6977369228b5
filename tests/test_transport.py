"""Transport: proxies from the environment, redirects, empty answers, stale connections, ids
and environment values that would change the request. Every server here is on this machine."""

import json
import select
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

PROXY_VARS = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]


@pytest.fixture
def proxy_env(monkeypatch):
    """`proxy_env(HTTP_PROXY=..., ...)`: exactly these proxy variables, none inherited."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


class RecordingProxy:
    """An HTTP proxy on this machine that records what it is asked (the request line and the
    headers), tunnels `CONNECT` (or refuses it with `refuse`, e.g. 403) and forwards plain GETs."""

    def __init__(self, host="127.0.0.1", refuse=None):
        proxy = self
        self.seen = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                head = []
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    head.append(line.decode("latin-1").rstrip("\r\n"))
                if not head:
                    return
                method, target, _ = head[0].split(" ", 2)
                proxy.seen.append({"line": head[0], "head": "\n".join(head)})
                if method == "CONNECT":
                    self.tunnel(target)
                else:
                    self.forward(target, head[1:])

            def tunnel(self, target):
                if refuse:
                    self.wfile.write(f"HTTP/1.1 {refuse} Refused\r\nContent-Length: 0\r\n\r\n".encode())
                    return
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port))) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    pipe(self.connection, upstream)

            def forward(self, target, headers):
                # absolute-form: http://host:port/path?query
                hostport, _, path = target.split("://", 1)[1].partition("/")
                host, port = hostport.rsplit(":", 1)
                kept = [h for h in headers if not h.lower().startswith(("connection:", "proxy-"))]
                request = "\r\n".join([f"GET /{path} HTTP/1.1", *kept, "Connection: close", "", ""])
                with socket.create_connection((host, int(port))) as upstream:
                    upstream.sendall(request.encode("latin-1"))
                    while chunk := upstream.recv(65536):
                        self.wfile.write(chunk)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def pipe(a, b):
    """Copies bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for s in readable:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


def counts(client):
    """The request and retry counts of `client.stats` (throttles are tested in test_rate_limit.py)."""
    return {k: client.stats[k] for k in ("requests", "retries")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- proxies ------------------------------------------------------------------------------


def test_no_proxy_star_exempts_ip_hosts(proxy_env):
    with RecordingProxy() as proxy, MockServer(files=10, batch_id="b") as origin:
        proxy_env(HTTP_PROXY=f"http://127.0.0.1:{proxy.port}", NO_PROXY="*")
        client = st.Client(origin.token, origin.url)
        assert client.get_page("b").count == 10
        assert proxy.seen == [] and len(origin.requests) == 1, "NO_PROXY=* means no proxy, as for curl"


@pytest.mark.parametrize("no_proxy, proxied", [("localhost", False), (".localhost", False), ("example.com", True)])
def test_no_proxy_names_hosts(proxy_env, no_proxy, proxied):
    with RecordingProxy() as proxy, MockServer(files=10, batch_id="b") as origin:
        proxy_env(HTTP_PROXY=f"http://127.0.0.1:{proxy.port}", NO_PROXY=no_proxy)
        client = st.Client(origin.token, origin.url.replace("127.0.0.1", "localhost"))
        assert client.get_page("b").count == 10
        assert len(proxy.seen) == int(proxied) and len(origin.requests) == 1


@pytest.mark.parametrize(
    "name, value",
    [
        ("HTTPS_PROXY", "http://127.0.0.1:8888 "),
        ("HTTP_PROXY", "http://user:pa ss@127.0.0.1:8888"),
        ("https_proxy", "socks5://127.0.0.1:1080"),
        ("ALL_PROXY", "http://127.0.0.1:port"),
    ],
)
def test_a_malformed_proxy_is_refused_at_client_naming_the_variable(proxy_env, name, value):
    proxy_env(**{name: value})
    with pytest.raises(ValueError, match=f"^{name} is not a usable proxy URL") as e:
        st.Client("t0ken", "https://api.soket.ai/transcribe")
    assert "pa ss" not in str(e.value), "the proxy's password stays out of the message"


def test_a_dead_proxy_is_named_and_retried(proxy_env):
    port = free_port()
    proxy_env(HTTPS_PROXY=f"http://127.0.0.1:{port}")
    client = st.Client("t0ken", "https://localhost:1/transcribe", max_retries=1)
    with pytest.raises(st.APIConnectionError) as e:
        client.get_page("b")
    assert f"could not connect through the proxy http://127.0.0.1:{port} (from HTTPS_PROXY)" in str(e.value)
    assert counts(client) == {"requests": 2, "retries": 1}


def test_a_proxy_refusing_connect_is_final_and_named(proxy_env):
    with RecordingProxy(refuse=403) as proxy:
        proxy_env(HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}")
        client = st.Client("sekrit-t0ken", "https://localhost:1/transcribe", max_retries=3)
        with pytest.raises(st.APIConnectionError, match=r"the proxy http://127\.0\.0\.1:\d+ \(from HTTPS_PROXY\) refused"):
            client.get_page("b")
        assert [s["line"] for s in proxy.seen] == ["CONNECT localhost:1 HTTP/1.1"]
        assert counts(client) == {"requests": 1, "retries": 0}


def test_https_goes_through_https_proxy_in_a_tunnel_without_the_token(proxy_env):
    """CONNECT to the service's host; the token only inside the tunnel. The far end here is the
    plain-http mock, so the TLS handshake fails: a protocol mismatch, final."""
    with RecordingProxy() as proxy, MockServer(files=10, token="sekrit-t0ken") as origin:
        proxy_env(HTTPS_PROXY=f"http://127.0.0.1:{proxy.port}", HTTP_PROXY="http://127.0.0.1:1")
        client = st.Client(origin.token, f"https://localhost:{origin.port}/transcribe", max_retries=3)
        with pytest.raises(st.APIConnectionError, match="does not speak the URL's protocol"):
            client.get_page(origin.batch_id)
        (connect,) = proxy.seen
        assert connect["line"] == f"CONNECT localhost:{origin.port} HTTP/1.1"
        assert "sekrit" not in connect["head"] and "authorization:" not in connect["head"].lower()
        assert counts(client) == {"requests": 1, "retries": 0}


def test_plain_http_never_goes_through_a_proxy_off_loopback(proxy_env):
    """0.0.0.0 is not a loopback address (though on this machine it reaches the proxy): the
    token of a plain-http request must not travel in clear to it, so the request goes direct."""
    with RecordingProxy(host="0.0.0.0") as proxy, MockServer(files=10, batch_id="b") as origin:
        proxy_env(HTTP_PROXY=f"http://0.0.0.0:{proxy.port}")
        client = st.Client(origin.token, origin.url)
        assert client.get_page("b").count == 10
        assert proxy.seen == [] and len(origin.requests) == 1


def test_plain_http_goes_through_a_loopback_proxy(proxy_env):
    with RecordingProxy() as proxy, MockServer(files=10, batch_id="b") as origin:
        proxy_env(HTTP_PROXY=f"http://127.0.0.1:{proxy.port}")
        client = st.Client(origin.token, origin.url.replace("127.0.0.1", "localhost"))
        assert client.get_page("b").count == 10
        assert [s["line"].split()[0] for s in proxy.seen] == ["GET"] and len(origin.requests) == 1


@pytest.mark.timeout(30)
def test_a_connect_that_never_completes_is_bounded(proxy_env):
    """A listener whose backlog is full drops new connections' SYNs: connecting never completes.
    (The 10 s cap on connecting within a longer timeout is checked in fetch.rs's unit tests.)"""
    proxy_env()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog until a connection hangs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
            if not select.select([], [filler], [], 0.3)[1]:
                break
            assert len(fillers) < 64, "the backlog never filled"
        port = listener.getsockname()[1]
        client = st.Client("t0ken", f"http://127.0.0.1:{port}/t", timeout=1.0, max_retries=0)
        with pytest.raises(st.APITimeoutError):
            client.get_page("b")
        assert counts(client) == {"requests": 1, "retries": 0}
    finally:
        for s in [*fillers, listener]:
            s.close()


# --- redirects, empty answers, stale connections --------------------------------------------


@pytest.fixture
def http_server():
    """`http_server(handler)`: a server on 127.0.0.1 whose GETs call `handler(request)`; the
    requests' paths are logged in `server.paths`. Returns the server."""
    servers = []

    def start(answer):
        paths = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                paths.append(self.path)
                answer(self)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.paths = paths
        server.url = f"http://127.0.0.1:{server.server_address[1]}/t"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def redirect(request, location, status=302):
    request.send_response(status)
    request.send_header("Location", location)
    request.send_header("Content-Length", "0")
    request.end_headers()


def test_a_redirect_loop_is_final_and_names_the_target(http_server):
    def answer(request):
        path = request.path.split("?")[0]
        redirect(request, "/t/other" if path != "/t/other" else "/t/results/batch/b?page=1&limit=50")

    server = http_server(answer)
    client = st.Client("t0ken", server.url, max_retries=3)
    with pytest.raises(st.APIError) as e:
        client.get_page("b")
    assert "redirect loop" in str(e.value) and "/t/results/batch/b?page=1&limit=50" in str(e.value)
    assert e.value.status_code == 302
    assert server.paths == ["/t/results/batch/b?page=1&limit=50", "/t/other"], "one request per hop, no retry"


def test_endless_redirects_stop_after_ten(http_server):
    server = http_server(lambda request: redirect(request, f"/t/{len(server.paths)}", status=301))
    client = st.Client("t0ken", server.url, max_retries=3)
    with pytest.raises(st.APIError, match=r"more than 10 redirects; the last to http://127\.0\.0\.1:\d+/t/11"):
        client.get_page("b")
    assert len(server.paths) == 11


def test_a_redirect_to_https_on_a_plain_port_is_final_and_names_the_target(http_server):
    server = http_server(lambda request: redirect(request, f"https://127.0.0.1:{port}/t/moved", status=301))
    port = server.server_address[1]
    client = st.Client("t0ken", server.url, max_retries=3)
    with pytest.raises(st.APIConnectionError) as e:
        client.get_page("b")
    assert f"https://127.0.0.1:{port}/t/moved" in str(e.value)
    assert "does not speak the URL's protocol" in str(e.value) and "redirected from" in str(e.value)
    assert server.paths == ["/t/results/batch/b?page=1&limit=50"], "not retried"


def test_a_redirect_to_plain_http_off_loopback_is_not_followed(http_server):
    server = http_server(lambda request: redirect(request, "http://192.0.2.1/t"))
    client = st.Client("t0ken", server.url, max_retries=3)
    with pytest.raises(st.APIError, match="only https, or plain http to a loopback host"):
        client.get_page("b")
    assert len(server.paths) == 1


def test_a_redirect_on_the_same_origin_keeps_the_token(http_server):
    body = page_body(1).encode()

    def answer(request):
        if request.path.startswith("/t/results/"):
            return redirect(request, "/moved" + request.path[2:], status=308)
        assert request.headers["Authorization"] == "Bearer t0ken"
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    server = http_server(answer)
    client = st.Client("t0ken", server.url)
    assert client.get_page("b").items == [{"file_id": "f1"}]
    assert server.paths == ["/t/results/batch/b?page=1&limit=50", "/moved/results/batch/b?page=1&limit=50"]


@pytest.mark.parametrize("status", [204, 200])
def test_an_empty_answer_is_final_and_names_the_status(http_server, status):
    def answer(request):
        request.send_response(status)
        if status != 204:
            request.send_header("Content-Length", "0")
        request.end_headers()

    server = http_server(answer)
    client = st.Client("t0ken", server.url, max_retries=3)
    with pytest.raises(st.ResponseFormatError, match=f"^HTTP {status} .*: an empty answer where JSON was expected"):
        client.get_page("b", page=2)
    assert len(server.paths) == 1


def page_body(page):
    return json.dumps({"page": page, "total_pages": 2, "total_files": 2, "count": 1, "files": [{"file_id": f"f{page}"}]})


def test_a_pooled_connection_closed_as_it_is_reused_is_sent_again_for_free():
    """The server answers a connection's first request and closes it at the second, having read
    it: the request never got an answer, and goes once more on a new connection."""
    requests = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            for n in range(2):
                line = self.rfile.readline().decode()
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                if not line:
                    return
                requests.append((self.client_address[1], line.split()[1]))
                if n == 1:
                    return  # closes with the request read and no answer
                body = page_body(int(parse_qs(urlsplit(line.split()[1]).query)["page"][0])).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client = st.Client("t0ken", f"http://127.0.0.1:{server.server_address[1]}/t", max_retries=0)
        assert client.get_page("b", page=1).items == [{"file_id": "f1"}]
        assert client.get_page("b", page=2).items == [{"file_id": "f2"}], "no retry is allowed, yet the read goes on"
        (first, p1), (reused, p2), (fresh, p2_again) = requests
        assert first == reused != fresh, "page 2 went on the pooled connection, then on a new one"
        assert "page=1" in p1 and "page=2" in p2 and p2 == p2_again
        assert counts(client) == {"requests": 3, "retries": 1}
        server.shutdown()


# --- ids and environment values ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\tb", "\t..", "\t", "a\nb", "a\rb", "a\x00b", "a\x7f"])
def test_control_characters_in_an_id_are_refused_before_any_request(server, client, bad):
    calls = [
        lambda: client.get_file(bad),
        lambda: client.status(bad),
        lambda: client.get_page(bad),
        lambda: list(client.iter_files(bad)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="control character"):
            call()
    assert server.requests == []


@pytest.mark.parametrize("name", ["SOKET_BASE_URL", "SOKET_API_TOKEN"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_environment_value_is_an_error_naming_it(monkeypatch, name, value):
    monkeypatch.setenv("SOKET_API_TOKEN", "t0ken")
    monkeypatch.setenv("SOKET_BASE_URL", "http://127.0.0.1:9/t")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name} is set but empty"):
        st.Client()


def test_a_blank_token_is_refused():
    with pytest.raises(ValueError, match="token must not be blank"):
        st.Client(" ", "http://127.0.0.1:9/t")
