"""The client as a user meets it: arguments, pages, iteration, shapes, records."""

import asyncio
import dataclasses
import re
from urllib.parse import parse_qs

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer
from requests_log import pages_asked, results_requests


# -- configuration ----------------------------------------------------------------------


def test_token_and_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("SOKET_API_TOKEN", server.token)
    monkeypatch.setenv("SOKET_BASE_URL", server.url)
    client = st.Client()
    assert client.base_url.rstrip("/") == server.url.rstrip("/")
    assert client.get_page(server.batch_id).page == 1


def test_no_token_anywhere_names_both_ways(monkeypatch):
    monkeypatch.delenv("SOKET_API_TOKEN", raising=False)
    with pytest.raises(ValueError) as e:
        st.Client(base_url="http://127.0.0.1:1/transcribe")
    assert "token=" in str(e.value) and "SOKET_API_TOKEN" in str(e.value)


def test_default_base_url(monkeypatch):
    monkeypatch.delenv("SOKET_BASE_URL", raising=False)
    assert st.Client("t0ken").base_url == "https://api.soket.ai/transcribe"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(timeout=0), "timeout must be a positive number of seconds; got 0"),
        (dict(timeout=-1.0), "timeout must be a positive number of seconds; got -1"),
        (dict(concurrency=0), "concurrency must be between 1 and 64; got 0"),
        (dict(max_body_bytes=0), "max_body_bytes must be positive"),
        (dict(base_url="ftp://x"), "must start with https://"),
        (dict(token="bad\ntoken"), "token holds characters not allowed in an HTTP header"),
    ],
)
def test_bad_client_arguments(kwargs, message):
    kwargs = {"token": "t0ken", "base_url": "http://127.0.0.1:1/t", **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        st.Client(**kwargs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, b: c.get_page(b, limit=0), "limit must be between 1 and 200; got 0"),
        (lambda c, b: c.get_page(b, limit=201), "limit must be between 1 and 200; got 201"),
        (lambda c, b: c.get_page(b, page=0), "page must be >= 1; got 0"),
        (lambda c, b: c.get_page(b, status="done"), "status must be one of completed, failed, retrying, processing"),
        (lambda c, b: c.get_page(""), "batch_id must be a non-empty string"),
        (lambda c, b: c.iter_files(b, limit=0), "limit must be between 1 and 200; got 0"),
        (lambda c, b: c.iter_files(b, limit=-5), "limit must be between 1 and 200; got -5"),
        (lambda c, b: c.iter_files(b, start_page=0), "start_page must be >= 1; got 0"),
        (lambda c, b: c.iter_jobs(b, status="finished"), "got \"finished\""),
        (lambda c, b: c.iter_files(""), "batch_id must be a non-empty string"),
        (lambda c, b: c.iter_files(b, max_items=-1), "max_items must be >= 0; got -1"),
        (lambda c, b: c.iter_files(b, fields=[]), "fields must name at least one field"),
        (lambda c, b: c.iter_files(b, fields=["file_id", 3]), "fields must hold dotted paths as strings; got 3"),
        (lambda c, b: c.iter_files(b, fields=["result..text"]), "not a dotted path (empty segment)"),
        (lambda c, b: c.iter_files(b, fields="file_id"), "fields must be a list of dotted paths, not a string"),
    ],
)
def test_argument_errors_raise_before_any_request(server, client, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(client, server.batch_id)
    assert results_requests(server) == []


# -- one page ---------------------------------------------------------------------------


def test_get_page_sends_every_parameter(server, client):
    page = client.get_page(
        server.batch_id, page=2, limit=10, status="completed", raw=True, chunks=True, speech_information=False
    )
    assert page.page == 2 and page.raw and page.limit == 10
    (req,) = results_requests(server)
    assert parse_qs(req["query"]) == {
        "status": ["completed"],
        "page": ["2"],
        "limit": ["10"],
        "raw": ["true"],
        "chunks": ["true"],
        "speech_information": ["false"],
    }
    assert req["auth_present"] and req["authorized"]


def test_both_shapes(server, client):
    files = client.get_page(server.batch_id, limit=5)
    assert files.to_dict().keys() >= {"files", "total_files", "total_pages", "count", "page", "limit", "batch_id"}
    assert files.total == 1234 and files.total_pages == 247 and files.count == 5
    assert all("file_id" in f for f in files.items)
    jobs = client.get_page(server.batch_id, limit=5, raw=True)
    assert jobs.to_dict().keys() >= {"jobs", "total_jobs"}
    assert jobs.total == 2064, "seed 7's 1,234 files make 2,064 jobs"
    assert all("job_id" in j for j in jobs.items)


def test_chunks_and_speech_information(server, client):
    plain = client.get_page(server.batch_id, limit=50).items
    rich = client.get_page(server.batch_id, limit=50, chunks=True, speech_information=True).items
    assert not any("chunk_results" in f for f in plain)
    assert all("chunk_results" in f for f in rich)
    completed = [f for f in rich if f["status"] == "completed"]
    assert completed and all("segments" in f["result"] for f in completed)


def test_batch_id_is_one_encoded_path_segment(server, client):
    odd = server.add_batch(files=3, batch_id="a/b?c#d é")
    page = client.get_page(odd)
    assert page.total == 3 and page.batch_id == odd
    (req,) = [r for r in results_requests(server)]
    assert req["path"].endswith("/results/batch/a%2Fb%3Fc%23d%20%C3%A9")


def test_page_async_equals_sync(server, client):
    sync = client.get_page(server.batch_id, page=3, limit=20, speech_information=True)
    async_ = asyncio.run(client.get_page_async(server.batch_id, page=3, limit=20, speech_information=True))
    assert sync.items == async_.items and sync.to_dict() == async_.to_dict()


# -- iterating a batch ------------------------------------------------------------------


def test_every_file_once_in_order_across_1000_pages():
    with MockServer(files=2345, seed=3) as srv:
        client = st.Client(srv.token, srv.url, concurrency=8)
        expected = []
        for p in range(1, 13):
            expected += [f["file_id"] for f in client.get_page(srv.batch_id, page=p, limit=200).items]
        srv.clear_requests()
        res = client.iter_files(srv.batch_id, limit=2)
        got = [f["file_id"] for f in res]
        assert got == expected and len(got) == 2345 and len(set(got)) == 2345
        pages = sorted(pages_asked(srv))
        assert pages == list(range(1, 1174)), "every page fetched exactly once"
        assert res.total == 2345 and res.total_pages == 1173 and res.next_page == 1174


def test_last_partial_page_and_totals(server, client):
    res = client.iter_files(server.batch_id, limit=200)
    assert res.total is None and res.total_pages is None
    pages = list(res.pages())
    assert [p.page for p in pages] == [1, 2, 3, 4, 5, 6, 7]
    assert [len(p.items) for p in pages] == [200] * 6 + [34]
    assert res.total == 1234 and res.total_pages == 7


def test_records_are_the_pages_items(server, client):
    from_pages = []
    for p in range(1, 8):
        from_pages += client.get_page(server.batch_id, page=p, limit=200, speech_information=True).items
    assert list(client.iter_files(server.batch_id, speech_information=True)) == from_pages


def test_jobs_iteration(server, client):
    jobs = list(client.iter_jobs(server.batch_id, limit=150))
    assert len(jobs) == client.get_page(server.batch_id, raw=True).total
    assert len({j["job_id"] for j in jobs}) == len(jobs)
    assert {j["file_id"] for j in jobs} == {f["file_id"] for f in client.iter_files(server.batch_id)}


def test_status_filter(server, client):
    failed = list(client.iter_files(server.batch_id, status="failed", limit=17))
    assert failed and all(f["status"] == "failed" for f in failed)
    assert all("result" not in f and f["errors"] for f in failed)
    everything = list(client.iter_files(server.batch_id))
    assert failed == [f for f in everything if f["status"] == "failed"]


def test_empty_batch():
    with MockServer(files=0) as srv:
        client = st.Client(srv.token, srv.url)
        res = client.iter_files(srv.batch_id)
        assert list(res) == []
        assert res.total == 0 and res.total_pages == 0


def test_start_page_and_max_items(server, client):
    everything = [f["file_id"] for f in client.iter_files(server.batch_id, limit=100)]
    tail = [f["file_id"] for f in client.iter_files(server.batch_id, limit=100, start_page=5)]
    assert tail == everything[400:]
    res = client.iter_files(server.batch_id, limit=100, max_items=250)
    assert [f["file_id"] for f in res] == everything[:250]
    assert res.next_page == 3, "page 3 was only half yielded"
    assert list(client.iter_files(server.batch_id, max_items=0)) == []
    past_the_end = client.iter_files(server.batch_id, limit=100, start_page=99)
    assert list(past_the_end) == []


def test_next_page_while_iterating(server, client):
    res = client.iter_files(server.batch_id, limit=100)
    it = iter(res)
    for _ in range(150):
        next(it)
    assert res.next_page == 2
    rest = [f["file_id"] for f in client.iter_files(server.batch_id, limit=100, start_page=res.next_page)]
    assert len(rest) == 1234 - 100


def test_sync_and_async_faces_give_identical_results(server, client):
    sync = list(client.iter_files(server.batch_id, limit=37, chunks=True))

    async def collect():
        return [f async for f in client.iter_files(server.batch_id, limit=37, chunks=True)]

    assert asyncio.run(collect()) == sync


def test_two_async_iterations_at_once(server, client):
    other = server.add_batch(files=555, seed=9)

    async def collect(batch):
        return [f["file_id"] async for f in client.iter_files(batch, limit=20)]

    async def both():
        return await asyncio.gather(collect(server.batch_id), collect(other))

    a, b = asyncio.run(both())
    assert a == [f["file_id"] for f in client.iter_files(server.batch_id)]
    assert b == [f["file_id"] for f in client.iter_files(other)]


def test_async_pages(server, client):
    async def collect():
        res = client.iter_files(server.batch_id, limit=500 // 3)
        return [p.page async for p in res.pages()], res

    pages, res = asyncio.run(collect())
    assert pages == list(range(1, 9)) and res.total_pages == 8, "1,234 files, 166 a page"


def wait_for_requests(server, count, deadline_s=30):
    """Until the mock has logged `count` result requests (the deadline only guards a hang)."""
    import time

    deadline = time.monotonic() + deadline_s
    while len(results_requests(server)) < count:
        assert time.monotonic() < deadline, f"{len(results_requests(server))} of {count} requests after {deadline_s} s"
        time.sleep(0.005)


class KindsSeen:
    """A page stream that notes what kind of awaitable each `__anext__` hands over."""

    def __init__(self, stream):
        self.stream, self.kinds = stream, []

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def __anext__(self):
        awaitable = self.stream.__anext__()
        self.kinds.append(type(awaitable).__name__)
        return awaitable


# With concurrency=1 one worker takes the pages in order: it asks for page n+1 only once the
# answer of page n is in the client, so the mock's log tells which pages are already fetched.


def test_async_hands_over_a_page_already_fetched_at_once(server):
    """A page the pipeline has fetched ahead comes as an awaitable already finished (no
    runtime task, no wake-up of the loop); an error fetched ahead comes the same way."""
    from soket_transcribe import _core

    client = st.Client(server.token, server.url, concurrency=1, max_retries=0)
    server.fail_next("stall", 3, stall_s=0)  # pages 1-3 answered as usual (one request at a time, in order)
    server.fail_next("status", 1, status=403)  # page 4 fails

    async def main():
        stream = KindsSeen(client.iter_files(server.batch_id, limit=100)._stream)
        pages = [(await stream.__anext__()).parse().page]  # the window (pages 2-4) is asked for
        kinds_before = len(stream.kinds)
        await asyncio.to_thread(wait_for_requests, server, 4)  # pages 2 and 3 are in
        pages.append((await stream.__anext__()).parse().page)  # page 5 is asked for
        await asyncio.to_thread(wait_for_requests, server, 5)  # page 4's 403 is in
        pages.append((await stream.__anext__()).parse().page)
        awaitable = stream.__anext__()
        with pytest.raises(st.PermissionDeniedError) as e:
            await awaitable
        with pytest.raises(RuntimeError, match="already awaited"):
            await awaitable
        return stream.kinds[kinds_before:], pages, e.value.page

    kinds, pages, failed = asyncio.run(main())
    assert kinds == [_core._Ready.__name__] * 3
    assert (pages, failed) == ([1, 2, 3], 4)


def test_other_tasks_run_between_pages_already_fetched(server):
    """Pages fetched ahead are taken without suspending, yet the loop's other tasks still get
    a turn between every two pages."""
    from soket_transcribe import _core

    client = st.Client(server.token, server.url, concurrency=1)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        res = client.iter_files(server.batch_id, limit=25)
        res._stream = stream = KindsSeen(res._stream)
        pages = res.pages().__aiter__()
        await pages.__anext__()
        await asyncio.to_thread(wait_for_requests, server, 4)  # the window's pages 2 and 3 are in
        task = asyncio.ensure_future(ticker())
        seen = []
        async for page in pages:
            seen.append(ticks)
        task.cancel()
        return seen, stream.kinds

    seen, kinds = asyncio.run(main())
    assert len(seen) == -(-1234 // 25) - 1  # every page but the first
    assert kinds[1:3] == [_core._Ready.__name__] * 2, "pages 2 and 3 were taken without suspending"
    assert all(b > a for a, b in zip(seen, seen[1:])), seen


def test_length_hint(server, client):
    import operator

    res = client.iter_files(server.batch_id, limit=200)
    assert operator.length_hint(res) == 0
    it = iter(res)
    next(it)
    assert operator.length_hint(res) == 1234 - 1  # every record not yet yielded


def test_dataclasses(server, client):
    files = list(client.iter_files(server.batch_id, as_dataclass=True, chunks=True))
    dicts = list(client.iter_files(server.batch_id, chunks=True))
    assert all(isinstance(f, st.FileResult) for f in files)
    assert [f.to_dict() for f in files] == [{**{k: None for k in st.FileResult._NAMED}, **d} for d in dicts]
    first = files[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = "x"
    assert set(first.extra) == set(dicts[0]) - set(st.FileResult._NAMED)
    jobs = list(client.iter_jobs(server.batch_id, as_dataclass=True, max_items=10))
    assert all(isinstance(j, st.JobResult) and j.job_id for j in jobs)


# -- not found --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 200])
def test_batch_not_found_whatever_the_status(status):
    with MockServer(files=10, not_found_status=status) as srv:
        client = st.Client(srv.token, srv.url)
        with pytest.raises(st.BatchNotFoundError) as e:
            list(client.iter_files("no-such-batch"))
        assert e.value.status_code == status and e.value.page == 1
        assert isinstance(e.value, st.NotFoundError) and isinstance(e.value, st.APIError)
        with pytest.raises(st.BatchNotFoundError):
            client.get_page("no-such-batch")


def test_status_filter_on_a_missing_batch_yields_nothing(server, client):
    assert list(client.iter_files("no-such-batch", status="completed")) == []


# -- records pass through untouched -----------------------------------------------------


def test_records_survive_exactly(server, client):
    """Every page equals what json.loads makes of the body: pages with integers beyond 64 bits
    (jiter's path) and pages without (orjson's) alike."""
    import json
    import urllib.request

    big_ints = 0
    for page in range(1, 8):
        req = urllib.request.Request(
            f"{server.url}/results/batch/{server.batch_id}?page={page}&limit=200&speech_information=true&chunks=true",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        with urllib.request.urlopen(req) as r:
            expected = json.loads(r.read())["files"]
        got = client.get_page(server.batch_id, page=page, limit=200, speech_information=True, chunks=True).items
        assert got == expected
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
        big_ints += json.dumps(got).count("trace_id")
    assert big_ints, "the batch holds integers beyond 64 bits"
    names = {f["filename"] for f in client.iter_files(server.batch_id)}
    assert any(not n.isascii() for n in names), "unicode filenames come through"


def test_the_cyclic_gc_is_left_as_found(server, client):
    """The GC is held off only while a page is parsed: on after a read (and still finding
    cycles), off after one if the caller had it off; the records stay tracked by it."""
    import gc

    assert gc.isenabled()
    records = list(client.iter_files(server.batch_id, speech_information=True))
    nested = next(v for f in records for v in f.values() if isinstance(v, list))
    assert gc.isenabled() and gc.is_tracked(records[0]) and gc.is_tracked(nested)
    cycle = [records[1]]
    cycle.append(cycle)
    del cycle
    assert gc.collect() > 0
    gc.disable()
    try:
        assert len(list(client.iter_files(server.batch_id))) == len(records)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_odd_json_values_survive(scripted_server):
    """Values a parser could bend: big and negative integers, float edge cases, escapes, nesting."""
    import json

    records = [
        {"file_id": "a", "n": 2**64 + 1, "m": -(2**70), "f": 1.7976931348623157e308, "t": 5e-324},
        {"file_id": "b", "s": "tab\t quote\" nul\u0000 emoji \U0001F600 \u0939\u093f", "z": None, "e": [], "o": {}},
        {"file_id": "c", "deep": json.loads("[" * 150 + "1" + "]" * 150), "x": 0.1, "neg0": -0.0},
    ]
    body = json.dumps({"page": 1, "total_pages": 1, "total_files": 3, "count": 3, "files": records}).encode()
    client = st.Client("t0ken", scripted_server(lambda query: body))
    assert list(client.iter_files("b")) == records
    assert client.get_page("b").items == json.loads(body)["files"]


# -- the client's life: closing, pickling --------------------------------------------------


def test_client_closes_with_a_with_block(server):
    with st.Client(server.token, server.url) as client:
        assert client.get_page(server.batch_id).page == 1
    with pytest.raises(RuntimeError, match="this Client is closed"):
        client.get_page(server.batch_id)

    async def main():
        async with st.Client(server.token, server.url) as client:
            assert (await client.get_page_async(server.batch_id)).page == 1
        return client

    closed = asyncio.run(main())
    with pytest.raises(RuntimeError, match="closed"):
        closed.iter_files(server.batch_id)


def test_a_token_from_the_environment_is_read_again_where_unpickled(server, monkeypatch):
    import pickle

    monkeypatch.setenv("SOKET_API_TOKEN", server.token)
    client = st.Client(base_url=server.url, concurrency=3)
    shipped = pickle.dumps(client)
    assert server.token.encode() not in shipped
    monkeypatch.setenv("SOKET_API_TOKEN", "another-token")
    with pytest.raises(st.AuthenticationError):
        pickle.loads(shipped).get_page(server.batch_id)
    monkeypatch.setenv("SOKET_API_TOKEN", server.token)
    again = pickle.loads(shipped)
    assert isinstance(again, st.Client) and again.concurrency == 3
    assert again.get_page(server.batch_id).page == 1
    explicit = pickle.dumps(st.Client(server.token, server.url))
    assert server.token.encode() in explicit, "an explicit token travels in the pickle (documented)"


# -- fields and typed records ----------------------------------------------------------------


def test_fields_keep_only_what_was_asked_nested_as_given(server, client):
    whole = list(client.iter_files(server.batch_id, speech_information=True))
    narrow = list(client.iter_files(server.batch_id, speech_information=True, fields=["file_id", "status", "result.text"]))
    assert len(narrow) == len(whole) == 1234
    for w, n in zip(whole, narrow):
        expected = {"file_id": w["file_id"], "status": w["status"]}
        if isinstance(w.get("result"), dict):
            expected["result"] = {"text": w["result"]["text"]} if "text" in w["result"] else {}
        assert n == expected
    assert any("result" not in n for n in narrow), "a failed file has no result: the path is absent, not None"


def test_fields_with_dataclasses_fill_the_rest_with_none(server, client):
    files = list(client.iter_files(server.batch_id, fields=["file_id", "result.text", "created_at"], as_dataclass=True))
    first = files[0]
    assert first.file_id and first.filename is None and first.status is None and first.errors is None
    whole = next(iter(client.iter_files(server.batch_id)))
    assert first.extra == ({"created_at": whole["created_at"]} if "created_at" in whole else {})


def test_typed_records_are_real_dataclasses(server, client):
    import pickle

    files = list(client.iter_files(server.batch_id, as_dataclass=True, max_items=50))
    dicts = list(client.iter_files(server.batch_id, max_items=50))
    assert files == [st.FileResult.from_dict(d) for d in dicts]
    first = files[0]
    assert dataclasses.asdict(first)["file_id"] == dicts[0]["file_id"]
    assert dataclasses.replace(first, status="failed").status == "failed"
    assert pickle.loads(pickle.dumps(first)) == first
    assert repr(first).startswith(f"FileResult(file_id={dicts[0]['file_id']!r}, ")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.status = "x"


# -- the network misbehaving in ways the mock does not ---------------------------------------


def test_timeout_bounds_an_answer_that_trickles_in():
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        while not stop.wait(0.3):
            try:
                conn.sendall(b" ")
            except OSError:
                break
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    client = st.Client("t0ken", f"http://127.0.0.1:{listener.getsockname()[1]}/transcribe", timeout=2, max_retries=0)
    started = time.monotonic()
    try:
        with pytest.raises(st.APITimeoutError, match="no complete answer within 2.0s"):
            client.get_page("b")
        assert time.monotonic() - started < 20  # the trickle would go on for 300 s (1,000 bytes, 0.3 s apart)
    finally:
        stop.set()
        listener.close()


def test_an_untrusted_certificate_is_final_and_prints_nothing(tmp_path):
    import subprocess
    import sys

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    code = f"""
import socket, ssl, threading
import soket_transcribe as st
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain({str(cert)!r}, {str(key)!r})
listener = socket.create_server(("127.0.0.1", 0))
handshakes = []
def serve():
    while True:
        conn, _ = listener.accept()
        handshakes.append(1)
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass
threading.Thread(target=serve, daemon=True).start()
client = st.Client("t0ken", f"https://127.0.0.1:{{listener.getsockname()[1]}}/transcribe", max_retries=3)
try:
    client.get_page("b")
except st.APIConnectionError as e:
    print(type(e).__name__, len(handshakes), "certificate" in str(e).lower())
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["APIConnectionError", "1", "True"], run.stdout + run.stderr
    assert run.stderr == ""


def test_fields_narrow_the_tables_too(server, client):
    table = client.iter_files(server.batch_id, fields=["file_id", "result.text"]).to_arrow(flatten=True)
    assert table.column_names == ["file_id", "result.text"] and table.num_rows == 1234
    whole = client.iter_files(server.batch_id).to_arrow(flatten=True)
    assert table.column("result.text").to_pylist() == whole.column("result.text").to_pylist()


def test_a_batch_query_is_built_by_keyword():
    with pytest.raises(TypeError):
        st.BatchQuery("b", True)
    assert st.BatchQuery(batch_id="b", raw=True).raw


def test_partitions_of_a_bad_read_are_refused_by_the_core_before_any_request(server, client):
    with pytest.raises(ValueError, match=re.escape("max_items must be >= 0; got -1")):
        client.iter_files(server.batch_id, max_items=-1).partitions()
    assert server.requests == []
