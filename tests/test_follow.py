"""`client.follow(batch_id)`: every file once, each as soon as a poll finds it final."""

import asyncio
import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import parse_qs

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

FINAL = ("completed", "failed")


def final_records(client, batch_id):
    """The batch as it ends, read by the plain reader: the reference."""
    return {f["file_id"]: f for f in client.iter_files(batch_id)}


def batch_requests(srv, batch_id):
    return [r for r in srv.requests if r["path"].endswith("/" + batch_id) and r["fault"] is None]


def replay(srv, batch_id, files, limit, per_request):
    """Replays the mock's log of a `complete_per_request` batch (the first `per_request` files
    still processing complete after each answered request, results or status): for each page
    request, whether that page was worth reading, i.e. had it held a file in flight at its last
    read (or never been read). Returns (page reads, needless page reads)."""
    done = 0
    seen_unfinished = {}
    reads = needless = 0
    for request in batch_requests(srv, batch_id):
        if "/results/" in request["path"]:
            page = int(parse_qs(request["query"])["page"][0])
            reads += 1
            if seen_unfinished.get(page, True) is False:
                needless += 1
            last_index = min(page * limit, files) - 1
            seen_unfinished[page] = last_index >= done
        done = min(done + per_request, files)
    return reads, needless


def test_follow_yields_every_file_once_and_only_final_ones():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(120, seed=5, statuses={"processing": 1}, processing_seconds=1.5)
        client = st.Client(srv.token, srv.url)
        res = client.follow(batch, poll_interval=0.2, limit=20)
        got = list(res)
        assert all(f["status"] in FINAL for f in got)
        ids = [f["file_id"] for f in got]
        assert len(ids) == len(set(ids)) == 120
        assert {f["file_id"]: f for f in got} == final_records(client, batch)
        assert res.finished and res.done == res.total == 120 and res.polls >= 2


def test_follow_rereads_only_the_pages_still_in_flight():
    # Deterministic: files complete in batch order, 7 per answered request; concurrency 1 keeps
    # the requests in page order, so the mock's log can be replayed exactly.
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(200, seed=2, statuses={"processing": 1}, complete_per_request=7)
        client = st.Client(srv.token, srv.url, concurrency=1)
        res = client.follow(batch, poll_interval=0.05, limit=20)
        got = [f["file_id"] for f in res]
        assert len(got) == len(set(got)) == 200
        reads, needless = replay(srv, batch, 200, 20, 7)
        assert needless == 0  # a page whose files were all final is never read again
        assert reads == len([r for r in batch_requests(srv, batch) if "/results/" in r["path"]])
        assert res.polls >= 3 and reads <= res.polls * 10 * 0.75  # well below the whole view each poll


def test_follow_async_with_dataclasses_and_fields():
    async def main(client, batch):
        records = []
        async for f in client.follow(batch, poll_interval=0.2, limit=25, as_dataclass=True):
            records.append(f)
        narrowed = []
        async for f in client.follow(batch, poll_interval=0.2, limit=25, fields=["result.text"]):
            narrowed.append(f)
        return records, narrowed

    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(60, seed=9, statuses={"processing": 1}, processing_seconds=1.0)
        client = st.Client(srv.token, srv.url)
        records, narrowed = asyncio.run(main(client, batch))
        assert all(isinstance(f, st.FileResult) and f.status in FINAL for f in records)
        assert sorted(f.file_id for f in records) == sorted(final_records(client, batch))
        assert len(narrowed) == 60
        # fields= narrows as everywhere: the keys follow needs are not added to what it yields
        assert all(set(f) <= {"result"} for f in narrowed)


def test_follow_sync_with_dataclasses_fields_and_progress():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(60, seed=9, statuses={"processing": 1}, processing_seconds=0.6)
        client = st.Client(srv.token, srv.url)
        seen = []
        records = list(client.follow(batch, poll_interval=0.1, limit=25, as_dataclass=True, progress=lambda *a: seen.append(a)))
        expected = final_records(client, batch)
        assert [f.file_id for f in records] != [] and sorted(f.file_id for f in records) == sorted(expected)
        assert all(isinstance(f, st.FileResult) and f.status in FINAL for f in records)
        assert seen[-1] == (60, 60) and [done for done, _ in seen] == sorted(done for done, _ in seen)
        narrowed = list(client.follow(batch, poll_interval=0.1, limit=25, fields=["file_id", "result.text"]))
        assert sorted(f["file_id"] for f in narrowed) == sorted(expected), "each file once"
        assert all(set(f) <= {"file_id", "result"} for f in narrowed)


def test_follow_a_finished_batch_is_one_read():
    with MockServer(files=90, seed=1, statuses={"completed": 0.5, "failed": 0.5}) as srv:
        client = st.Client(srv.token, srv.url)
        res = client.follow(srv.batch_id, poll_interval=10, limit=30)
        assert len(list(res)) == 90
        assert res.polls == 1 and res.pages_read == 3
        assert len(batch_requests(srv, srv.batch_id)) == 3


def test_follow_timeout_raises_after_yielding_what_was_final():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(40, seed=4, statuses={"completed": 0.5, "processing": 0.5})
        client = st.Client(srv.token, srv.url)
        res = client.follow(batch, poll_interval=0.1, timeout=0.5, limit=10)
        got = []
        with pytest.raises(st.WaitTimeoutError) as caught:
            for f in res:
                got.append(f)
        finals = [f for f in client.iter_files(batch) if f["status"] in FINAL]
        assert sorted(f["file_id"] for f in got) == sorted(f["file_id"] for f in finals)
        assert caught.value.status is not None and caught.value.status.in_progress
        assert "files final" in str(caught.value)


def test_follow_missing_batch():
    with MockServer(files=5) as srv:
        client = st.Client(srv.token, srv.url)
        with pytest.raises(st.BatchNotFoundError):
            list(client.follow("no-such-batch", poll_interval=0.1))


def test_follow_bad_arguments_before_any_request():
    with MockServer(files=5) as srv:
        client = st.Client(srv.token, srv.url)
        with pytest.raises(ValueError, match="poll_interval"):
            client.follow(srv.batch_id, poll_interval=0)
        with pytest.raises(ValueError, match="timeout"):
            client.follow(srv.batch_id, timeout=-1)
        with pytest.raises(ValueError, match="limit"):
            client.follow(srv.batch_id, limit=500)
        assert srv.requests == []


def test_follow_break_then_again_loses_nothing_and_stops_polling():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(50, seed=6, statuses={"processing": 1}, processing_seconds=1.0)
        client = st.Client(srv.token, srv.url)
        res = client.follow(batch, poll_interval=0.2, limit=10)
        first = []
        for f in res:
            first.append(f["file_id"])
            if len(first) == 3:
                break
        before = srv.requests_total
        rest = [f["file_id"] for f in res]  # the same follow goes on where it stopped
        assert len(first + rest) == len(set(first + rest)) == 50
        assert srv.requests_total > before


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_loop_cut_in_its_first_poll_goes_on_with_every_page(face):
    # The first poll reads the whole batch; a `break` after page 1 once left pages 2-5 unread and
    # the follow `finished` with 10 of 50 files.
    with MockServer(files=50, seed=1, statuses={"completed": 1}) as srv:
        client = st.Client(srv.token, srv.url)
        res = client.follow(srv.batch_id, poll_interval=0.1, limit=10)

        async def twice_async():
            loop = aiter(res)
            first = [(await anext(loop))["file_id"] for _ in range(3)]  # then the loop is left
            return first + [f["file_id"] async for f in res]

        def twice():
            first = [f["file_id"] for f in itertools.islice(res, 3)]  # the loop left mid-page
            return first + [f["file_id"] for f in res]

        got = twice() if face == "sync" else asyncio.run(twice_async())
        assert got == [f["file_id"] for f in client.iter_files(srv.batch_id)]
        assert res.finished and res.done == res.total == 50


def test_a_loop_cut_by_an_error_goes_on_with_every_page():
    with MockServer(files=50, seed=1, statuses={"completed": 1}) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1, max_retries=0)
        expected = [f["file_id"] for f in client.iter_files(srv.batch_id, limit=10)]
        srv.fail_next("stall", 1, stall_s=0)  # page 1 answers (one request at a time, in order)
        srv.fail_next("status", 1, status=400)  # page 2 fails
        res = client.follow(srv.batch_id, poll_interval=0.1, limit=10)
        first = []
        with pytest.raises(st.APIError):
            for f in res:
                first.append(f["file_id"])
        assert first == expected[:10]
        assert first + [f["file_id"] for f in res] == expected and res.finished


def test_a_second_loop_while_one_reads_is_refused_and_takes_over_once_it_stopped():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(20, seed=6, statuses={"processing": 1})  # never finishes
        client = st.Client(srv.token, srv.url)
        res = client.follow(batch, poll_interval=30, limit=10, timeout=60)

        async def main():
            first = asyncio.create_task(anext(aiter(res), None))
            while client.stats["requests"] < 2:  # the first poll read: it sleeps out the interval
                await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError, match="being read"):
                aiter(res)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            return aiter(res)  # the first loop is over: a new one may read

        assert asyncio.run(main()) is not None


def wait_until(condition, what, deadline_s=30):
    """Until `condition()` holds (the deadline only guards a hang)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {deadline_s} s"
        time.sleep(0.005)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_batch_where_nothing_moves_is_asked_once_an_interval(face):
    # Three pages in flight: each poll asks the status first, which says nothing finished, so
    # the pages are not read; the next ask waits out the interval (it once followed at once), and
    # the timeout's error tells the last answer rather than asking again.
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(30, seed=6, statuses={"processing": 1})  # never finishes
        client = st.Client(srv.token, srv.url)
        res = client.follow(batch, poll_interval=0.2, limit=10, timeout=1.5)

        async def follow_async():
            return [f async for f in res]

        with pytest.raises(st.WaitTimeoutError):
            list(res) if face == "sync" else asyncio.run(follow_async())
        began = batch_requests(srv, batch)[0]["time"]
        asks = [r["time"] for r in batch_requests(srv, batch) if "/status/" in r["path"]]
        assert 2 <= len(asks) <= 1.5 / 0.2 + 1, len(asks)
        # An interval apart, but for a last look at the deadline (what finished by then is yielded).
        assert min(b - a for a, b in zip(asks, asks[1:-1])) >= 0.15, asks
        assert asks[-1] - began >= 1.4, asks
        # The first answer has nothing to compare with: the pages are read once more, then never.
        assert res.polls == 2 and res.pages_read == 6, "the status said each time that nothing moved"


def test_follow_cancelled_task_stops_polling():
    def between_polls(srv):
        # Two status requests in a row: the pages are read, no stream is open, and nothing
        # moves (the batch never finishes), so the follow only sleeps and asks the status.
        return [("/status/" in r["path"]) for r in srv.requests[-2:]] == [True, True]

    async def main(client, batch, srv):
        async def consume():
            async for f in client.follow(batch, poll_interval=0.1, limit=10):
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(wait_until, lambda: between_polls(srv), "status poll")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sent = client.stats["requests"]  # counted as each request is made: no lag behind the cancel
        await asyncio.sleep(0.5)  # five poll intervals: a follow still polling would ask again
        return sent

    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(30, seed=6, statuses={"processing": 1})  # never finishes
        client = st.Client(srv.token, srv.url)
        sent = asyncio.run(main(client, batch, srv))
        assert client.stats["requests"] == sent  # nothing polls once the task is cancelled
        assert srv.requests_total <= sent


def test_follow_view_moved_warns_and_still_yields_each_file_once():
    # A file is added at the front on every answered request: pages shift under the follow.
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(
            30, seed=8, statuses={"processing": 1}, grow_per_request=1, grow_at="front", processing_seconds=0.6
        )
        client = st.Client(srv.token, srv.url, concurrency=1)
        res = client.follow(batch, poll_interval=0.1, limit=10, timeout=3)
        got = []
        with pytest.warns(RuntimeWarning, match="moved while followed"):
            with pytest.raises(st.WaitTimeoutError):  # the batch grows for ever: only a timeout ends it
                for f in res:
                    got.append(f["file_id"])
        assert len(got) == len(set(got))
        assert res.warnings and "reading the whole batch again" in res.warnings[0]


def test_follow_ctrl_c_in_a_subprocess():
    # The mock runs here: its log says when the follow in the subprocess has begun to poll.
    script = textwrap.dedent(
        """
        import sys
        import soket_transcribe as st
        client = st.Client(sys.argv[1], sys.argv[2])
        try:
            for f in client.follow(sys.argv[3], poll_interval=30):
                pass
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    with MockServer(files=1) as srv:
        batch = srv.add_batch(20, statuses={"processing": 1})
        proc = subprocess.Popen(
            [sys.executable, "-c", script, srv.token, srv.url, batch], stdout=subprocess.PIPE, text=True
        )
        try:
            wait_until(lambda: srv.requests_total or proc.poll() is not None, "request from the subprocess", 60)
            # whether the follow is polling (in Rust) or sleeping out its 30 s, Ctrl-C ends it
            proc.send_signal(signal.SIGINT)
            began = time.monotonic()
            out, _ = proc.communicate(timeout=20)
            took = time.monotonic() - began
        finally:
            proc.kill()
    assert "interrupted" in out
    assert took < 5, f"{took:.2f} s: at once, not at the end of the 30 s interval (a loaded machine's margin)"


def test_follow_repr_and_html():
    with MockServer(files=20, seed=1, statuses={"completed": 0.5, "failed": 0.5}) as srv:
        client = st.Client(srv.token, srv.url)
        failed = sum(f["status"] == "failed" for f in client.iter_files(srv.batch_id))
        res = client.follow(srv.batch_id, poll_interval=1)
        list(res)
        assert repr(res).startswith("<FollowResults ") and "\n" not in repr(res)
        html = res._repr_html_()
        assert "20 of 20 files final" in html and "<script" not in html
        assert f"({20 - failed} completed, {failed} failed, 0 running)" in html and 0 < failed < 20


def test_a_file_on_two_pages_of_one_read_is_a_moved_view(scripted_server, caplog):
    # The batch keeps its size while `b` moves from page 1 to page 2 between the two page reads
    # (a file gone from the front, one added at the end): no total tells it, the repeat does
    # (`d` was never seen: the follow once ended without it).
    reads = collections.Counter()
    pages = {1: ["a", "b"], 2: ["c", "d"]}

    def answer(query):
        page = int(query["page"])
        reads[page] += 1
        ids = ["b", "c"] if (page, reads[page]) == (2, 1) else pages[page]
        files = ",".join('{"file_id": "%s", "status": "completed"}' % i for i in ids)
        return ('{"page": %d, "total_pages": 2, "total_files": 4, "files": [%s]}' % (page, files)).encode()

    client = st.Client("t", scripted_server(answer), concurrency=1)
    res = client.follow("b", poll_interval=0.05, limit=2)
    with pytest.warns(RuntimeWarning, match="moved while followed .a page repeated files"):
        got = [f["file_id"] for f in res]
    assert got == ["a", "b", "c", "d"] and res.finished
    assert dict(reads) == {1: 2, 2: 2}, "the whole batch read again, once"
    assert [r.name for r in caplog.records if "moved while followed" in r.getMessage()] == ["soket_transcribe.follow"]


def test_cli_follow_writes_a_line_per_file_as_it_turns_final():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(40, seed=5, statuses={"processing": 1}, processing_seconds=1.0)
        env = {**os.environ, "SOKET_API_TOKEN": srv.token, "SOKET_BASE_URL": srv.url}
        proc = subprocess.run(
            [sys.executable, "-m", "soket_transcribe", "follow", batch, "--poll-interval", "0.2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        client = st.Client(srv.token, srv.url)
        assert sorted(f["file_id"] for f in lines) == sorted(final_records(client, batch))
        assert all(f["status"] in FINAL for f in lines)


def test_cli_follow_times_out_with_exit_3():
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(10, statuses={"processing": 1})
        env = {**os.environ, "SOKET_API_TOKEN": srv.token, "SOKET_BASE_URL": srv.url}
        proc = subprocess.run(
            [sys.executable, "-m", "soket_transcribe", "follow", batch, "--poll-interval", "0.1", "--timeout", "0.5"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 3 and proc.stdout == ""
        assert "0 of 10 files final" in proc.stderr


def test_batch_results_show_themselves_in_a_notebook():
    with MockServer(files=30, seed=1) as srv:
        res = st.Client(srv.token, srv.url).iter_files(srv.batch_id, limit=10)
        assert "no page read yet" in res._repr_html_()
        first = [next(iter(res)) for _ in range(12)]
        html = res._repr_html_()
        assert "12 of 30 files yielded" in html and "page 1 of 3" in html and "<script" not in html
        assert len(first) == 12


def test_the_mocks_unfiltered_view_keeps_its_order_and_agrees_with_its_status():
    # What follow relies on: files finishing never move in the unfiltered view, and the status
    # endpoint counts what the records say.
    with MockServer(files=1, seed=3) as srv:
        batch = srv.add_batch(60, seed=5, statuses={"processing": 1}, complete_per_request=5)
        client = st.Client(srv.token, srv.url, concurrency=1)
        reads = []
        for round in range(3):
            records = [f for p in (1, 2, 3) for f in client.get_page(batch, page=p, limit=20).items]
            status = client.status(batch)
            reads.append(records)
            # 5 files complete after each answered request (pages and status alike): 4 a round
            assert status.files_completed + status.files_failed == min(5 * (4 * round + 3), 60)
        assert all([f["file_id"] for f in r] == [f["file_id"] for f in reads[0]] for r in reads)
        assert sum(f["status"] in FINAL for f in reads[-1]) > sum(f["status"] in FINAL for f in reads[0])


def test_batch_status_shows_itself_in_a_notebook():
    status = st.BatchStatus.from_dict(
        {"batch_id": "b<1>", "status": "processing", "total_files": 10, "files_completed": 6, "files_failed": 1,
         "estimated_audio_seconds": None, "estimated_completion_seconds": 120}
    )
    html = status._repr_html_()
    assert "7 of 10 files final (6 completed, 1 failed, 3 running)" in html
    assert "b&lt;1&gt;" in html and "about 2 min to go" in html and "<script" not in html
    assert "\n" not in repr(status)
