"""The page pipeline as a user meets it: pages fetched only as needed, and a batch that changes
while it is read (src/pipeline/changes.rs): every record present throughout is yielded once,
and no message claims more than holds."""

import json
import subprocess
import sys
import warnings

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

RUNS = 20  # each ordering of concurrent requests is a draw: enough runs to meet the bad ones


def ids(records):
    return [r["file_id"] for r in records]


def batch_order(srv, files, seed, statuses=None):
    """The file ids of a batch, in batch order, read from a twin that does not change."""
    twin = srv.add_batch(files, seed=seed, statuses=statuses)
    return ids(st.Client(srv.token, srv.url).iter_files(twin, limit=200))


def requests_to(srv, batch_id):
    return [r for r in srv.requests if batch_id in r["path"] and r["fault"] is None]


def read_changing(res):
    """All records of `res`, the RuntimeWarnings it gave, and its warnings list."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ids(res)
    return got, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def assert_exactly_once(got, present_throughout):
    assert len(got) == len(set(got)), "a record was yielded twice"
    missing = set(present_throughout) - set(got)
    assert not missing, f"{len(missing)} record(s) present throughout were never yielded"


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_files_added_at_the_front_while_read_are_all_yielded_once(concurrency):
    with MockServer(files=0) as srv:
        original = batch_order(srv, 300, seed=3)
        for _ in range(RUNS):
            batch = srv.add_batch(300, seed=3, grow_per_request=1, grow_at="front")
            res = st.Client(srv.token, srv.url, concurrency=concurrency).iter_files(batch, limit=50)
            got, said = read_changing(res)
            assert_exactly_once(got, original)
            assert res.complete and res.changed_while_reading
            assert said and all("may be missing" not in w for w in said), said
            assert any("every record present throughout the read is still yielded once" in w for w in said)


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_a_status_view_losing_files_while_read_yields_those_that_stay_once(concurrency):
    processing = {"processing": 1.0}
    with MockServer(files=0) as srv:
        order = batch_order(srv, 300, seed=5, statuses=processing)
        for _ in range(RUNS):
            batch = srv.add_batch(300, seed=5, statuses=processing, complete_per_request=1)
            client = st.Client(srv.token, srv.url, concurrency=concurrency)
            res = client.iter_files(batch, status="processing", limit=50)
            got, said = read_changing(res)
            # Each answered request completed the first file still processing: those left stayed throughout.
            stayed = order[len(requests_to(srv, batch)) :]
            assert_exactly_once(got, stayed)
            assert set(got) <= set(order)
            assert res.complete, res.warnings
            assert all("may be missing" not in w for w in said), said


def test_no_extra_request_when_nothing_changes(server, client):
    res = client.iter_files(server.batch_id, limit=100)
    assert len(list(res)) == 1234
    assert len(server.requests) == 13 and res.complete and not res.changed_while_reading
    assert res.warnings == []


def test_a_change_of_a_page_or_more_is_said_never_claimed_away():
    with MockServer(files=0) as srv:
        batch = srv.add_batch(300, seed=3, grow_per_request=60, grow_at="front")
        res = st.Client(srv.token, srv.url, concurrency=1).iter_files(batch, limit=50)
        got, said = read_changing(res)
        assert not res.complete
        assert any(
            "records may be missing between pages 1 and 2: the batch moved by 60 records between their reads, "
            "a page (50) or more" in w
            for w in said
        ), said

        batch = srv.add_batch(300, seed=3, grow_per_request=60, grow_at="front")
        res = st.Client(srv.token, srv.url, concurrency=1).iter_files(batch, limit=50, on_change="raise")
        with pytest.raises(st.BatchChangedError, match="records may be missing between pages 1 and 2") as raised:
            read_changing(res)
        assert raised.value.page == 2 and res.next_page == 2


def test_on_change_is_checked_before_any_request(server, client):
    with pytest.raises(ValueError, match="on_change must be 'warn' or 'raise'; got \"ignore\""):
        client.iter_files(server.batch_id, on_change="ignore")
    assert server.requests == []


def test_a_short_read_is_said(scripted_server):
    # 150 files announced over 3 pages, but the pages hold 50, then 10, then none.
    held = {1: 50, 2: 10, 3: 0}

    def answer(query):
        page = int(query["page"])
        files = [{"file_id": f"f{page}-{i}"} for i in range(held[page])]
        body = {"page": page, "limit": 50, "total_pages": 3, "total_files": 150, "count": len(files), "files": files}
        return json.dumps(body).encode()

    client = st.Client("t0ken", scripted_server(answer))
    res = client.iter_files("b", limit=50)
    got, said = read_changing(res)
    assert len(got) == 60
    assert not res.complete and not res.changed_while_reading
    assert any("page 2 holds 10 record(s), fewer than its limit of 50, though the batch has 3 pages" in w for w in said)


def test_going_on_after_an_error_mid_change_loses_nothing():
    processing = {"processing": 1.0}
    with MockServer(files=0) as srv:
        order = batch_order(srv, 300, seed=5, statuses=processing)
        batch = srv.add_batch(300, seed=5, statuses=processing, complete_per_request=1)
        client = st.Client(srv.token, srv.url, concurrency=4)
        # 30 pages: after 60 records, pages are still left past the window for the fault to hit.
        res = client.iter_files(batch, status="processing", limit=10)
        got = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = iter(res)
            got += [next(records)["file_id"] for _ in range(60)]
            srv.fail_next("status", 1, status=400)
            with pytest.raises(st.InvalidRequestError) as raised:
                for record in records:
                    got.append(record["file_id"])
            assert raised.value.page is not None and res.next_page <= raised.value.page + 1
            got += ids(res)  # iterating again goes on from the failed page
        stayed = order[len(requests_to(srv, batch)) :]
        assert_exactly_once(got, stayed)
        assert res.complete


def test_max_items_never_requests_a_page_past_the_last_needed(server, client):
    assert len(list(client.iter_files(server.batch_id, limit=50, max_items=120))) == 120
    assert sorted(r["query"] for r in server.requests) == [f"page={p}&limit=50" for p in (1, 2, 3)]
    server.clear_requests()
    res = client.iter_files(server.batch_id, limit=50, start_page=6, max_items=250)
    assert len(list(res)) == 250
    assert sorted(r["query"] for r in server.requests) == sorted(f"page={p}&limit=50" for p in range(6, 11))
    assert res.next_page == 11


def test_the_warnings_stay_off_stderr_when_the_caller_silenced_them():
    code = """
import warnings
import soket_transcribe as st
from soket_transcribe.testing import MockServer
warnings.simplefilter("ignore")
with MockServer(files=0) as srv:
    batch = srv.add_batch(300, seed=3, grow_per_request=1, grow_at="front")
    res = st.Client(srv.token, srv.url, concurrency=4).iter_files(batch, limit=50)
    print(sum(1 for _ in res), res.changed_while_reading)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[1] == "True"
    assert run.stderr == ""
