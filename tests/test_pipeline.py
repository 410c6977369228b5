"""The page pipeline as a user meets it: pages fetched only as needed, and a batch that changes
while it is read (src/pipeline/changes.rs): every record present throughout is yielded once,
and no message claims more than holds."""

import json
import logging
import re
import subprocess
import sys
import warnings

import pytest

import soket_transcribe as st
from soket_transcribe.query import BatchQuery
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


# -- status= while the batch runs: the whole batch is read and filtered by the client ---------


def churning(srv):
    """300 processing files; each answer completes the first still processing and adds a new
    processing one at the end: the `processing` view keeps its size and moves by one a request."""
    return srv.add_batch(300, seed=5, statuses={"processing": 1.0}, complete_per_request=1, grow_per_request=1)


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_a_status_view_moving_at_constant_size_loses_nothing(concurrency, caplog):
    with MockServer(files=0) as srv:
        order = batch_order(srv, 300, seed=5, statuses={"processing": 1.0})
        for _ in range(RUNS // 4):
            batch = churning(srv)
            res = st.Client(srv.token, srv.url, concurrency=concurrency).iter_files(batch, status="processing", limit=50)
            with caplog.at_level(logging.INFO, logger="soket_transcribe"):
                got, said = read_changing(res)
            stayed = order[len(requests_to(srv, batch)) :]
            assert_exactly_once(got, stayed)
            # The whole batch grew at its end meanwhile: said, and harmless (no file moved).
            assert res.complete and all("may be missing" not in w for w in said), said
            assert res.total is None and res.__length_hint__() == 0  # the filtered count is unknowable
            asked = requests_to(srv, batch)
            assert "/status/batch/" in asked[0]["path"]
            assert all("/results/batch/" in r["path"] and "status=" not in r["query"] for r in asked[1:])
            assert "status=processing of a running batch: reading the whole batch and filtering" in caplog.text


def test_a_status_read_of_a_finished_batch_reads_the_filtered_view(server, client):
    # The default batch has files processing for ever: a twin whose files are all final.
    batch = server.add_batch(1000, seed=2, statuses={"completed": 0.8, "failed": 0.2})
    failed = [f for f in client.iter_files(batch) if f["status"] == "failed"]
    server.clear_requests()
    res = client.iter_files(batch, status="failed", limit=50)
    assert list(res) == failed and res.total == len(failed) and res.complete
    pages = -(-len(failed) // 50)
    # One status request, then the filtered pages and nothing more.
    assert [r["path"].split("/")[2] for r in server.requests] == ["status"] + ["results"] * pages
    assert sorted(r["query"] for r in server.requests[1:]) == sorted(
        f"status=failed&page={p}&limit=50" for p in range(1, pages + 1)
    )


def test_a_server_without_the_status_endpoint_is_read_as_asked(scripted_server, caplog):
    asked = []

    def answer(query):
        asked.append(query)
        if "page" not in query:  # the status endpoint: not what this server knows
            return b'{"detail": "no such route"}'
        files = [{"file_id": f"f{i}", "status": "failed"} for i in range(3)]
        return json.dumps({"page": 1, "total_pages": 1, "total_files": 3, "files": files}).encode()

    client = st.Client("t0ken", scripted_server(answer))
    with caplog.at_level(logging.INFO, logger="soket_transcribe"):
        got, said = read_changing(client.iter_files("b", status="failed"))
    assert got == ["f0", "f1", "f2"] and said == []
    assert [q.get("status") for q in asked] == [None, "failed"]
    assert "reading the filtered view" in caplog.text


def test_filtered_by_the_client_fields_and_max_items_apply_to_the_records_kept(server, client):
    everything = list(client.iter_files(server.batch_id, limit=100))
    failed = [f["file_id"] for f in everything if f["status"] == "failed"]
    res = client.iter_files(server.batch_id, status="failed", limit=100, fields=["file_id"], max_items=50)
    server.clear_requests()
    assert [f for f in res] == [{"file_id": i} for i in failed[:50]]
    # The default batch runs (some files process for ever): filtered here, not by the service.
    assert not any("status=" in r["query"] for r in server.requests)


def test_stream_filter_status_reads_the_whole_batch_pages(server, client):
    query = BatchQuery(batch_id=server.batch_id, filter_status="failed", limit=100, start_page=3, end_page=4)
    stream = query.open(client)
    kept = [f for page in stream for f in page.items]
    whole = [f for p in (3, 4) for f in client.get_page(server.batch_id, page=p, limit=100).items]
    assert kept == [f for f in whole if f["status"] == "failed"] and kept
    assert not any("/status/" in r["path"] for r in server.requests), "no status request: the caller chose"
    with pytest.raises(ValueError, match="not both"):
        BatchQuery(batch_id=server.batch_id, status="failed", filter_status="failed").open(client)
    with pytest.raises(ValueError, match="status must be one of"):
        BatchQuery(batch_id=server.batch_id, filter_status="done").open(client)


# -- the end check: unique records against the announced total ------------------------------


def test_a_record_slid_past_every_read_by_a_shift_is_said(server, client):
    batch = server.add_batch(30, seed=1)
    for on_change in ("warn", "raise"):
        # Page 1 stalls a moment; page 2 is served shifted by one: it repeats page 1's last record,
        # and its own last slides onto page 3's start, never served. The totals never move.
        server.fail_next("stall", 1, stall_s=0.01)
        server.fail_next("shift", 1)
        res = st.Client(server.token, server.url, concurrency=1).iter_files(batch, limit=10, on_change=on_change)
        message = "read 29 unique record(s) where the batch announced 30: records may be missing"
        if on_change == "warn":
            got, said = read_changing(res)
            assert len(got) == len(set(got)) == 29 and res.duplicates_skipped == 1
            assert not res.complete
            assert any(message in w and "shifted at page(s) 2" in w for w in said), said
        else:
            with pytest.raises(st.BatchChangedError, match=re.escape(message)):
                read_changing(res)


def test_a_read_is_one_object_checked_once_in_the_core(server, client):
    # st.BatchQuery is what iter_files builds; a bad one is refused when opened, before any request.
    query = st.BatchQuery(batch_id=server.batch_id, limit=100, start_page=2, max_items=150)
    import pickle

    assert pickle.loads(pickle.dumps(query)) == query
    got = [f for page in query.open(client) for f in page.items]
    assert got == list(client.iter_files(server.batch_id, limit=100, start_page=2, max_items=150))
    server.clear_requests()
    with pytest.raises(ValueError, match="limit must be between 1 and 200; got 0"):
        st.BatchQuery(batch_id=server.batch_id, limit=0).open(client)
    with pytest.raises(ValueError, match="end_page must be >= start_page"):
        st.BatchQuery(batch_id=server.batch_id, start_page=3, end_page=2).open(client)
    assert server.requests == []
