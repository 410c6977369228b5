"""One bookkeeping for `for`, `async for` and table reads of a `BatchResults`: a loop that stops
(break, an error, a cancel, Ctrl-C) leaves every record not yet yielded to the next one; a
table read that fails hands nothing over; one consumer at a time; a forked child is told.
All against the embedded mock over TCP."""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer
from requests_log import pages_asked


def ids(records):
    return [r["file_id"] for r in records]


def wait_until(condition, what, timeout=30.0):
    """Polls `condition` (a generous bound, for a loaded machine: the test waits on the event,
    not on a guess of how long it takes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


async def await_until(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


# -- 1. a cancel while a page is awaited --------------------------------------------------


def test_a_cancel_once_the_page_has_come_loses_nothing():
    """The page arrives while the loop is busy, then the task is cancelled before it got it:
    the next `async for` yields that page first."""
    with MockServer(files=6, seed=3, latency_ms=50) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1)
        expected = ids(client.iter_files(srv.batch_id))
        srv.clear_requests()

        async def main():
            res = client.iter_files(srv.batch_id, limit=1)
            got = []

            async def read():
                async for f in res:
                    got.append(f["file_id"])

            task = asyncio.create_task(read())
            await await_until(lambda: len(got) >= 2, "two records")
            # One request at a time, in page order: page 4 asked for means page 3 has come.
            await await_until(lambda: 4 in pages_asked(srv), "page 4 requested")
            time.sleep(0.3)  # the loop is busy: what the runtime finishes meanwhile waits for it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            got += [f["file_id"] async for f in res]
            return got, res

        got, res = asyncio.run(main())
        assert got == expected
        assert res.complete and res.next_page == 7


def test_random_cancels_lose_and_repeat_nothing():
    with MockServer(files=400, seed=4, latency_ms=2) as srv:
        client = st.Client(srv.token, srv.url, concurrency=2)
        expected = ids(client.iter_files(srv.batch_id))
        rng = random.Random(11)

        async def main():
            res = client.iter_files(srv.batch_id, limit=10)
            got, cancels = [], 0
            records = res.__aiter__()
            while True:
                # A timeout of 0 cancels before the step starts, whatever the load; the others mostly
                # while a page is awaited (or not at all, when the window is ahead of the loop).
                timeout = 0 if rng.random() < 0.1 else rng.uniform(0, 0.004)
                try:
                    got.append((await asyncio.wait_for(records.__anext__(), timeout))["file_id"])
                except asyncio.TimeoutError:
                    cancels += 1
                except StopAsyncIteration:
                    return got, cancels, res
                if rng.random() < 0.05:
                    time.sleep(0.003)  # the loop is busy while a page comes

        got, cancels, res = asyncio.run(main())
        assert cancels > 0
        assert got == expected and res.complete


# -- 2. one cursor for every loop ---------------------------------------------------------


def test_async_for_again_goes_on_from_the_next_record(server, client):
    expected = ids(client.iter_files(server.batch_id, limit=10, max_items=30))

    async def main():
        res = client.iter_files(server.batch_id, limit=10, max_items=30)
        first = []
        async for f in res:
            first.append(f["file_id"])
            if len(first) == 4:
                break
        at = res.next_page
        return first + [f["file_id"] async for f in res], at

    got, next_page_after_break = asyncio.run(main())
    assert got == expected
    assert next_page_after_break == 1


def test_sync_and_async_loops_share_the_cursor(server, client):
    expected = ids(client.iter_files(server.batch_id, limit=10, max_items=30))
    res = client.iter_files(server.batch_id, limit=10, max_items=30)
    got = []
    for f in res:
        got.append(f["file_id"])
        if len(got) == 3:
            break

    async def rest():
        out = []
        async for f in res:
            out.append(f["file_id"])
            if len(out) == 12:
                break
        return out

    got += asyncio.run(rest())
    got += ids(res)
    assert got == expected


def test_a_table_after_a_partial_async_for_is_refused(server, client):
    async def partial(res):
        async for _ in res:
            break

    res = client.iter_files(server.batch_id, limit=10)
    asyncio.run(partial(res))
    with pytest.raises(RuntimeError, match="already read"):
        res.to_arrow()
    assert len(list(res)) == 1234 - 1  # the loop goes on: nothing lost to the refusal


# -- 3. a table read that fails hands nothing over ----------------------------------------


def test_a_table_read_that_fails_part_way_can_be_resumed_from_where_it_began():
    with MockServer(files=50, seed=2) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1, max_retries=0)
        expected = ids(client.iter_files(srv.batch_id))
        srv.fail_next("stall", 3, stall_s=0)  # pages 1-3 answered (one request at a time, in order)
        srv.fail_next("status", status=400)  # page 4 fails
        res = client.iter_files(srv.batch_id, limit=10)
        with pytest.raises(st.InvalidRequestError) as e:
            res.to_arrow()
        assert e.value.page == 4
        assert res.next_page == 1  # the caller got none of pages 1-3
        resumed = client.iter_files(srv.batch_id, limit=10, start_page=res.next_page).to_arrow()
        assert resumed.column("file_id").to_pylist() == expected
        assert res.to_arrow().column("file_id").to_pylist() == expected  # the same res, read again


def test_an_interrupted_table_read_can_be_read_again(server, client):
    expected = ids(client.iter_files(server.batch_id))
    res = client.iter_files(server.batch_id, limit=100)

    def interrupt(done, total):
        if done >= 300:
            raise KeyboardInterrupt  # what Ctrl-C raises there (see the SIGINT test below)

    with pytest.raises(KeyboardInterrupt):
        res.to_arrow(progress=interrupt)
    assert res.next_page == 1
    assert res.to_pandas()["file_id"].tolist() == expected


def test_a_timed_out_async_table_read_can_be_read_again():
    with MockServer(files=50, seed=2, latency_ms=30) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1)
        expected = ids(client.iter_files(srv.batch_id))
        srv.clear_requests()

        async def main():
            res = client.iter_files(srv.batch_id, limit=10)
            task = asyncio.create_task(res.to_arrow_async())
            await await_until(lambda: 4 in pages_asked(srv), "page 4 requested")
            task.cancel()  # as asyncio.wait_for does when its time is up
            with pytest.raises(asyncio.CancelledError):
                await task
            at = res.next_page
            return at, await res.to_arrow_async()

        at, table = asyncio.run(main())
        assert at == 1
        assert table.column("file_id").to_pylist() == expected


# -- 4. one consumer at a time ------------------------------------------------------------


def test_a_second_task_reading_at_the_same_time_is_refused(server, client):
    expected = ids(client.iter_files(server.batch_id))

    async def main():
        res = client.iter_files(server.batch_id, limit=50)
        started = asyncio.Event()

        async def read():
            got = []
            async for f in res:
                got.append(f["file_id"])
                started.set()
                await asyncio.sleep(0)
            return got

        first = asyncio.create_task(read())
        await started.wait()
        second = asyncio.create_task(read())
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(main())
    assert isinstance(second, RuntimeError) and "single-consumer" in str(second)
    assert first == expected


def test_a_second_thread_reading_at_the_same_time_is_refused(server, client):
    expected = ids(client.iter_files(server.batch_id))
    res = client.iter_files(server.batch_id, limit=50)
    got, reading, go_on = [], threading.Event(), threading.Event()

    def read():
        for f in res:
            got.append(f["file_id"])
            if len(got) == 5:
                reading.set()
                go_on.wait()

    thread = threading.Thread(target=read)
    thread.start()
    assert reading.wait(30)
    try:
        with pytest.raises(RuntimeError, match="single-consumer"):
            next(iter(res))
        with pytest.raises(RuntimeError, match="already read"):
            res.to_arrow()
    finally:
        go_on.set()
        thread.join()
    assert got == expected


# -- 5. argument errors before any request, and never a spent read -------------------------


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda res: res.to_pandas(dtype_backend="bogus"), ValueError),
        (lambda res: res.to_arrow(explode=""), ValueError),
        (lambda res: res.to_polars(explode=5), ValueError),
        (lambda res: res.to_arrow(progress="yes"), TypeError),
        (lambda res: next(res.iter_arrow_batches(explode=["segments"])), ValueError),
    ],
    ids=["dtype_backend", "explode empty", "explode not a str", "progress", "batches explode"],
)
def test_bad_arguments_raise_before_any_request(server, client, call, error):
    res = client.iter_files(server.batch_id)
    with pytest.raises(error):
        call(res)
    assert server.requests == []
    assert res.to_arrow().num_rows == 1234  # not spent


def test_an_explode_path_the_data_lacks_does_not_spend_the_read(server, client):
    res = client.iter_files(server.batch_id)
    with pytest.raises(ValueError, match='no "nope" column'):
        res.to_pandas(explode="nope")
    assert res.next_page == 1
    assert len(res.to_pandas()) == 1234


# -- 6. records that are not objects; imports off the event loop --------------------------


def test_a_record_that_is_not_an_object_is_no_dataclass(scripted_server):
    body = b'{"batch_id":"b","page":1,"limit":50,"total_pages":1,"total_files":3,"count":3,"files":[{"file_id":"a"},"oops",null]}'
    client = st.Client("t", scripted_server(lambda query: body))
    with pytest.raises(st.ResponseFormatError, match="page 1: record 1 is not a JSON object") as e:
        list(client.iter_files("b", as_dataclass=True))
    assert e.value.page == 1


IMPORT_OFF_THE_LOOP = textwrap.dedent(
    """
    import asyncio, sys, threading
    import soket_transcribe as st
    from soket_transcribe.testing import MockServer

    assert "pyarrow" not in sys.modules and "polars" not in sys.modules
    where = {}

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name in ("pyarrow", "polars"):
                where[name] = threading.current_thread() is threading.main_thread()
            return None

    sys.meta_path.insert(0, Watch())
    with MockServer(files=30) as srv:
        client = st.Client(srv.token, srv.url)
        asyncio.run(client.iter_files(srv.batch_id).to_arrow_async())
        asyncio.run(client.iter_files(srv.batch_id).to_polars_async())
    print(where)
    """
)


def test_the_first_async_table_imports_off_the_event_loop():
    out = subprocess.run([sys.executable, "-c", IMPORT_OFF_THE_LOOP], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'pyarrow': False, 'polars': False}"  # not on the loop's (main) thread


# -- 7. a forked child does not go on with its parent's read ------------------------------


FORKED = textwrap.dedent(
    """
    import os, sys
    import soket_transcribe as st
    from soket_transcribe.testing import MockServer

    with MockServer(files=50, latency_ms=20) as srv:
        client = st.Client(srv.token, srv.url, timeout=5)
        res = client.iter_files(srv.batch_id, limit=10)
        records = iter(res)
        next(records)
        pid = os.fork()
        if pid == 0:
            said = []
            for attempt in (lambda: next(records), lambda: list(res), res.to_arrow, lambda: next(res._stream)):
                try:
                    attempt()
                    said.append("no error")
                except RuntimeError as e:
                    said.append(str(e))
            print("\\n".join(said), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", 1 + sum(1 for _ in records))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_going_on_with_the_parents_read_is_told_at_once():
    out = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    parent = lines.pop()
    assert len(lines) == 4
    for line in lines:
        assert "belongs to process" in line and "start a new read" in line, line
    assert parent == "parent 50"  # the parent goes on unharmed


# -- 8. memory stays flat as the batch grows ----------------------------------------------


MEMORY = textwrap.dedent(
    """
    import sys
    import soket_transcribe as st

    def kb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    token, url, batch, arrow_batch = sys.argv[1:]
    client = st.Client(token, url)
    res = client.iter_files(batch)
    records = iter(res)
    next(records)
    before = kb("VmRSS")
    n = 1 + sum(1 for _ in records)
    after = kb("VmRSS")
    import pyarrow
    client.iter_files(arrow_batch, max_items=1000).to_arrow()  # the first-use costs
    reset_peak()
    base = kb("VmRSS")
    table = client.iter_files(arrow_batch).to_arrow()
    peak = kb("VmHWM")
    print(n, after - before, table.num_rows, table.nbytes // 1024, peak - base)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_stays_flat_and_a_table_costs_about_its_size():
    """Reading 100,000 files (~80 MB of JSON) grows the reader's RSS by a few MB at most; the
    peak of `to_arrow()` stays within a small multiple of the table. Coarse bounds: they catch a
    leak or a whole-batch buffer, not a regression of a few percent. The mock runs here, the
    reader in a subprocess, so its RSS is the client's alone."""
    with MockServer(files=0, seed=1) as srv:
        batch = srv.add_batch(100_000, seed=1)
        arrow_batch = srv.add_batch(30_000, seed=2)
        out = subprocess.run(
            [sys.executable, "-c", MEMORY, srv.token, srv.url, batch, arrow_batch],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode == 0, out.stderr
    n, growth_kb, rows, table_kb, peak_kb = map(int, out.stdout.split())
    assert n == 100_000 and rows == 30_000
    assert growth_kb < 30 * 1024, f"RSS grew {growth_kb} KB over 100,000 records"
    assert peak_kb < 3 * table_kb + 30 * 1024, f"to_arrow peaked {peak_kb} KB over a table of {table_kb} KB"


# -- 9. the GIL while tables are read; Ctrl-C while iterating and in to_arrow ---------------


def one_heavy_page():
    """One page whose reading into Arrow is long work (~20 MB: 200 files of 1,500 words each)."""
    words = [{"word": f"w{i}", "start": i / 10, "end": i / 10 + 0.05, "confidence": 0.9} for i in range(1500)]
    files = [{"file_id": f"f{i}", "status": "done", "words": words} for i in range(200)]
    return json.dumps({"page": 1, "limit": 200, "count": 200, "total_pages": 1, "total_files": 200, "files": files})


def serve_once_sent(body, sent):
    """A service answered by a Python thread of this process (so it needs the GIL to answer at
    all) that sets `sent` once the whole answer is written; returns the server and its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            sent.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/transcribe"


def test_other_threads_run_while_to_arrow_reads():
    """Once the page is sent, all that is left of `to_arrow()` is reading it into Arrow (~0.3 s
    here, idle). Meanwhile another Python thread takes the GIL 10 times (a few ms of work): if
    the read held the GIL, that thread could not finish before `to_arrow()` returned (its first
    hand-over would give the GIL to the read for the whole conversion), and a read holding it
    throughout could not even get the page from the Python service (a timeout)."""
    sent, handed_over = threading.Event(), threading.Event()

    def take_the_gil_ten_times():
        sent.wait()
        for _ in range(10):
            time.sleep(0.002)  # gives the GIL up, then needs it back
        handed_over.set()

    server, url = serve_once_sent(one_heavy_page().encode(), sent)
    try:
        other = threading.Thread(target=take_the_gil_ten_times)
        other.start()
        table = st.Client("t0ken", url, max_retries=0, timeout=60).iter_files("b", limit=200).to_arrow()
        ran_during_the_read = handed_over.is_set()
        other.join()
    finally:
        server.shutdown()
        server.server_close()
    assert table.num_rows == 200 and table.column("words")[0].as_py()[1499]["word"] == "w1499"
    assert ran_during_the_read


CTRL_C = textwrap.dedent(
    """
    import sys
    import soket_transcribe as st

    token, url, batch, how = sys.argv[1:]
    client = st.Client(token, url, concurrency=1, timeout=120)
    res = client.iter_files(batch, limit=10)
    got = []

    def tell(done, total=None):
        if done == 20:  # pages 1-2 are in: page 3 is awaited next
            print("reading", flush=True)

    try:
        if how == "for":
            for f in res:
                got.append(f["file_id"])
                tell(len(got))
        else:
            res.to_arrow(progress=tell)
    except KeyboardInterrupt:
        print("interrupted", len(got), res.next_page, flush=True)
    if how == "for":
        got += [f["file_id"] for f in res]  # going on after Ctrl-C
    else:
        got = res.to_arrow().column("file_id").to_pylist()  # read again after Ctrl-C
    print(len(got), len(set(got)), flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
@pytest.mark.parametrize("how", ["for", "to_arrow"])
def test_ctrl_c_stops_a_read_and_going_on_loses_nothing(how):
    with MockServer(files=50, seed=6) as srv:
        srv.fail_next("stall", 2, stall_s=0)  # pages 1-2 answered (one request at a time, in order)
        srv.fail_next("stall", stall_s=5)  # page 3 hangs a while: the read is under way, waiting
        with subprocess.Popen(
            [sys.executable, "-c", CTRL_C, srv.token, srv.url, srv.batch_id, how],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as proc:
            # Once pages 1-2 are read (not during the first imports, which Ctrl-C may break in
            # C code that is not ours) and page 3 is asked for:
            assert proc.stdout.readline() == "reading\n"
            wait_until(lambda: 3 in pages_asked(srv) or proc.poll() is not None, "page 3 requested")
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    interrupted, total = stdout.splitlines()
    if how == "for":
        assert interrupted == "interrupted 20 3"  # pages 1-2 yielded, page 3 next
    else:
        assert interrupted == "interrupted 0 1"  # a table hands nothing over until it returns
    assert total == "50 50"
