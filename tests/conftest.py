import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Sequence
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


ScriptedPages = Callable[..., st.Client]


@pytest.fixture
def scripted_pages(scripted_server) -> ScriptedPages:
    """`scripted_pages(records, limit)`: a client of a scripted service that serves `records`
    (read at each request: a test may extend the list) `limit` a page, and reports the totals
    named in `totals=` (default both, "total_pages" and "total_files")."""

    def serve(
        records: List[Dict[str, Any]], limit: int, *, totals: Sequence[str] = ("total_pages", "total_files")
    ) -> st.Client:
        def answer(query: Dict[str, str]) -> bytes:
            page = int(query["page"])
            files = records[(page - 1) * limit : page * limit]
            body = {"page": page, "limit": limit, "count": len(files), "files": files}
            reported = {"total_pages": -(-len(records) // limit), "total_files": len(records)}
            body.update({name: reported[name] for name in totals})
            return json.dumps(body).encode()

        return st.Client("t0ken", scripted_server(answer), max_retries=0)

    return serve
