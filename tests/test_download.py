"""`transport="download"`: the same records as the paged read, from one `/download/batch` NDJSON
stream, for every consumer of a `BatchResults`; a cut stream read on from where it stopped;
errors as elsewhere. Against the embedded mock over TCP (and tiny scripted servers for shapes
the mock does not make)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

import soket_transcribe as st
from soket_transcribe.query import BatchQuery
from soket_transcribe.testing import MockServer
from requests_log import results_requests


def downloads(server):
    return [r for r in server.requests if "/download/batch/" in r["path"]]


@pytest.fixture(params=[False, True], ids=["plain", "gzip"])
def mock(request):
    with MockServer(files=1234, seed=7, gzip=request.param) as srv:
        yield srv


@pytest.mark.parametrize("raw", [False, True], ids=["files", "jobs"])
def test_every_consumer_gets_the_paged_records(mock, raw):
    client = st.Client(mock.token, mock.url)
    read = client.iter_jobs if raw else client.iter_files
    options = dict(speech_information=True, chunks=True)
    for shape in [{}, {"as_dataclass": True}, {"fields": ["file_id", "status", "result.text"]}]:
        paged = list(read(mock.batch_id, **options, **shape))
        mock.clear_requests()
        assert list(read(mock.batch_id, transport="download", **options, **shape)) == paged, shape
        assert len(downloads(mock)) == 1 and not results_requests(mock)
    assert read(mock.batch_id, transport="download").to_arrow().equals(read(mock.batch_id).to_arrow())
    assert pa.table(read(mock.batch_id, transport="download")).equals(pa.table(read(mock.batch_id)))
    frame = read(mock.batch_id, transport="download", **options).to_pandas()
    assert frame.equals(read(mock.batch_id, **options).to_pandas())


def test_one_request_reads_the_whole_batch_and_the_pages_are_numbered_as_the_service_does(server, client):
    paged = client.iter_files(server.batch_id)
    expected = [p.items for p in paged.pages()]
    server.clear_requests()
    res = client.iter_files(server.batch_id, transport="download")
    pages = list(res.pages())
    assert [p.items for p in pages] == expected
    assert [p.page for p in pages] == list(range(1, 8)) and {p.limit for p in pages} == {200}
    (download,) = downloads(server)
    assert download["query"] == "format=ndjson" and download["fault"] is None
    assert not results_requests(server)
    assert (res.total, res.total_pages, res.next_page, res.complete) == (1234, 7, 8, True)


def test_async_for_reads_the_stream(server, client):
    expected = list(client.iter_files(server.batch_id))

    async def main():
        return [f async for f in client.iter_files(server.batch_id, transport="download")]

    assert asyncio.run(main()) == expected


@pytest.mark.parametrize("fault", ["cut", "malformed"])
def test_a_cut_stream_is_read_on_with_every_record_once(mock, fault):
    client = st.Client(mock.token, mock.url, max_retries=2)
    expected = list(client.iter_files(mock.batch_id, speech_information=True))
    mock.clear_requests()
    mock.fail_next(fault)
    res = client.iter_files(mock.batch_id, speech_information=True, transport="download")
    assert list(res) == expected
    assert [r["fault"] for r in downloads(mock)] == [fault, None]
    assert res.complete and res.total == 1234


def test_a_stream_cut_every_time_fails_after_the_retries_naming_the_cut(server):
    client = st.Client(server.token, server.url, max_retries=1)
    server.fail_next("cut", 5)
    res = client.iter_files(server.batch_id, transport="download", limit=50)
    got = []
    with pytest.raises(st.APIConnectionError, match=r"after 1 retries"):
        for f in res:
            got.append(f["file_id"])
    # The first stream delivered the 12 whole pages before its cut (at record 617); the retry is
    # cut at the same place, moving nothing: one retry is all max_retries=1 allows.
    assert [r["fault"] for r in downloads(server)] == ["cut", "cut"]
    # The three cuts still queued would fall on whichever concurrent page requests come first (two
    # on one page fail it, at random): the paged read to compare with runs without them.
    server.clear_faults()
    paged = [f["file_id"] for f in client.iter_files(server.batch_id)]
    assert got == paged[:600]
    rest = [f["file_id"] for f in res]
    assert got + rest == paged, "the next loop requests the stream again from the next page"


def test_throttles_and_server_errors_are_retried(server, client):
    expected = list(client.iter_files(server.batch_id))
    server.clear_requests()
    server.fail_next("429", retry_after="0")
    server.fail_next("status", status=503)
    assert list(client.iter_files(server.batch_id, transport="download")) == expected
    assert [r["fault"] for r in downloads(server)] == ["429", "status:503", None]


def test_start_page_and_max_items_are_served_from_the_stream(server, client):
    paged = list(client.iter_files(server.batch_id))
    res = client.iter_files(server.batch_id, transport="download", start_page=3)
    assert list(res) == paged[400:] and res.next_page == 8
    res = client.iter_files(server.batch_id, transport="download", max_items=450)
    assert list(res) == paged[:450] and res.next_page == 3, "page 3 was cut short: a resumed read starts at it"
    pages = client.iter_files(server.batch_id, max_items=450)
    assert list(pages) == paged[:450] and pages.next_page == 3, "as the paged read says"


def test_a_status_filter_reads_that_view(server, client):
    expected = list(client.iter_files(server.batch_id, status="failed"))
    res = client.iter_files(server.batch_id, status="failed", transport="download")
    assert list(res) == expected and expected
    assert res.total == len(expected), "known at the end"


def test_missing_batch(client, server):
    with pytest.raises(st.BatchNotFoundError, match="batch not found"):
        list(client.iter_files("no-such-batch", transport="download"))
    assert list(client.iter_files("no-such-batch", status="failed", transport="download")) == []


def test_bad_arguments_are_value_errors(client, server):
    with pytest.raises(ValueError, match="transport must be 'pages' or 'download'; got \"ftp\""):
        client.iter_files(server.batch_id, transport="ftp")
    with pytest.raises(ValueError, match="filter_status needs transport='pages'"):
        BatchQuery(batch_id=server.batch_id, filter_status="failed", transport="download").open(client)
    assert not server.requests


def test_partitions_of_a_download_read_are_page_ranges(server, client):
    res = client.iter_files(server.batch_id, transport="download")
    parts = res.partitions(pages_per_partition=3)
    assert [(p.pages.start, p.pages.stop) for p in parts] == [(1, 4), (4, 7), (7, 8)]
    server.clear_requests()
    assert parts[1].to_pandas()["file_id"].tolist() == [f["file_id"] for f in client.iter_files(server.batch_id)][600:1200]
    assert not downloads(server), "a page range is read as pages: one stream cannot be split"


def test_subtitles_from_the_stream(tmp_path):
    with MockServer(files=30, seed=2) as srv:
        client = st.Client(srv.token, srv.url)
        paged = client.iter_files(srv.batch_id, speech_information=True).write_subtitles(tmp_path / "a")
        streamed = client.iter_files(srv.batch_id, speech_information=True, transport="download")
        written = streamed.write_subtitles(tmp_path / "b")
    assert [p.name for p in written] == [p.name for p in paged] and paged
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in paged]


# -- shapes the mock does not make -----------------------------------------------------------


def test_an_answer_that_is_not_ndjson_names_the_line(scripted_server):
    pretty = b'{\n  "batch_id": "b",\n  "files": []\n}\n'
    client = st.Client("t", scripted_server(lambda query: pretty), max_retries=0)
    with pytest.raises(st.ResponseFormatError, match="line 1 of the download is not JSON"):
        list(client.iter_files("b", transport="download"))
    array = b'[{"file_id": "a"}]\n'
    client = st.Client("t", scripted_server(lambda query: array), max_retries=0)
    with pytest.raises(st.ResponseFormatError, match=r"line 1 of the download is not a JSON object \(a JSON array"):
        list(client.iter_files("b", transport="download"))


def test_a_garbled_line_fails_after_the_retries_naming_it(scripted_server):
    body = b'{"file_id": "a"}\n\n{"file_id": "b"}\n{"file_id": "c", \n'
    client = st.Client("t", scripted_server(lambda query: body), max_retries=1)
    with pytest.raises(st.ResponseFormatError, match="line 4 of the download is not JSON"):
        list(client.iter_files("b", transport="download"))


def test_an_error_body_is_the_services_error(scripted_server):
    client = st.Client("t", scripted_server(lambda query: b'{"error": "quota exceeded"}'))
    with pytest.raises(st.APIError, match="quota exceeded"):
        list(client.iter_files("b", transport="download"))


def test_a_last_line_without_its_newline_is_a_record(scripted_server):
    client = st.Client("t", scripted_server(lambda query: b'{"file_id": "a"}\r\n{"file_id": "b"}'))
    assert [f["file_id"] for f in client.iter_files("b", transport="download")] == ["a", "b"]


# -- a stream that stalls halfway: cancel and Ctrl-C ----------------------------------------


def stalling_server(records, stall_after, go_on):
    """Serves `/download` as NDJSON: `stall_after` lines, then waits for `go_on` (an Event), then
    the rest; returns the server (its URL: `url(server)`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Connection", "close")
            self.end_headers()
            lines = [b'{"file_id": "f%d"}\n' % i for i in range(records)]
            self.wfile.write(b"".join(lines[:stall_after]))
            self.wfile.flush()
            go_on.wait()
            self.wfile.write(b"".join(lines[stall_after:]))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server):
    return f"http://127.0.0.1:{server.server_address[1]}/transcribe"


def test_a_cancel_mid_stream_loses_and_repeats_nothing():
    go_on = threading.Event()
    server = stalling_server(500, 250, go_on)
    try:
        client = st.Client("t", url(server))

        async def main():
            res = client.iter_files("b", transport="download", limit=100)
            records = res.__aiter__()
            got = [(await records.__anext__())["file_id"] for _ in range(200)]
            with pytest.raises(asyncio.TimeoutError):  # page 3 is never whole while the server stalls
                await asyncio.wait_for(records.__anext__(), 0.3)
            go_on.set()
            got += [f["file_id"] async for f in res]
            return got

        assert asyncio.run(main()) == [f"f{i}" for i in range(500)]
    finally:
        go_on.set()
        server.shutdown()
        server.server_close()


def test_ctrl_c_mid_stream_in_a_subprocess():
    script = textwrap.dedent(
        """
        import threading
        import soket_transcribe as st
        sys_path = __import__("sys").path.insert(0, %r)
        from test_download import stalling_server, url
        server = stalling_server(500, 250, threading.Event())
        client = st.Client("t", url(server))

        class Announced:
            # Says when the loop calls into Rust for page 3, which the server holds back.
            def __init__(self, stream):
                self.stream, self.calls = stream, 0
            def __getattr__(self, name):
                return getattr(self.stream, name)
            def __next__(self):
                self.calls += 1
                if self.calls == 3:
                    print("waiting", flush=True)
                return next(self.stream)

        res = client.iter_files("b", transport="download", limit=100)
        res._stream = Announced(res._stream)
        try:
            for f in res:
                pass
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
        % str(__import__("pathlib").Path(__file__).parent)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "waiting"  # the loop now waits in Rust for page 3
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert "interrupted" in out



def test_cli_results_with_the_download_transport(server, client):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKET_")}
    env.update(SOKET_API_TOKEN=server.token, SOKET_BASE_URL=server.url)
    server.clear_requests()
    out = subprocess.run(
        [sys.executable, "-m", "soket_transcribe", "results", server.batch_id, "--transport", "download", "--raw"],
        capture_output=True,
        encoding="utf-8",
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == list(client.iter_jobs(server.batch_id))
    assert len(downloads(server)) == 1 and "raw=true" in downloads(server)[0]["query"]
