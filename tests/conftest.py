import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer


@pytest.fixture
def server():
    with MockServer(files=1234, seed=7) as srv:
        yield srv


@pytest.fixture
def client(server):
    return st.Client(server.token, server.url, max_retries=2)


Answer = Callable[[Dict[str, str]], bytes]


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Answer], str]]:
    """For shapes the mock does not make: `scripted_server(answer)` starts a tiny HTTP server that
    answers every GET with 200 and the JSON body `answer(query)` (the query's parameters as a
    dict), and returns its base URL; the servers stop after the test."""
    servers = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = answer(dict(parse_qsl(urlsplit(self.path).query)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/transcribe"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
