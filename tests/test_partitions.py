"""st.BatchPartition: a batch split into page ranges that fetch exactly their own pages."""

import dataclasses
import json
import multiprocessing
import os
import pickle
import sys

import cloudpickle
import dask.base
import pyarrow as pa
import pytest

import soket_transcribe as st
from soket_transcribe import partitions as partitions_module
from soket_transcribe.fixed_schema import conform, plan_schema
from soket_transcribe.partitions import PickledClient
from soket_transcribe.testing import MockServer
from requests_log import pages_requested

TOKEN = "sekrit-partition-token-41"


@pytest.fixture(scope="module")
def server():
    srv = MockServer(files=1234, seed=7, token=TOKEN)
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    return st.Client(TOKEN, server.url, max_retries=1)


def test_partitions_cover_the_batch_in_page_ranges_with_exact_row_counts(server, client):
    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=4)
    # 1234 files, 50 a page: 25 pages, the last one short (34 records).
    assert [p.pages for p in parts] == [range(s, min(s + 4, 26)) for s in range(1, 26, 4)]
    assert [p.num_rows for p in parts] == [200] * 6 + [34]
    assert [p.first_row for p in parts] == [0, 200, 400, 600, 800, 1000, 1200]
    assert [p.index for p in parts] == list(range(7))
    assert all(p.batch_id == server.batch_id for p in parts)


def test_planning_fetches_the_first_and_last_pages_once_and_nothing_else(server, client):
    batch = server.add_batch(300, seed=1)
    client.iter_files(batch, limit=50).partitions(pages_per_partition=2)
    assert pages_requested(server, batch) == {1: 1, 6: 1}


def test_each_partition_fetches_exactly_its_pages_and_the_records_of_one_read(server, client):
    batch = server.add_batch(430, seed=2)
    parts = client.iter_files(batch, limit=20).partitions(pages_per_partition=3)
    expected = list(client.iter_files(batch, limit=20))
    server.clear_requests()
    got = []
    for part in parts:
        before = pages_requested(server, batch)
        got.extend(part.records())
        fetched = pages_requested(server, batch) - before
        assert fetched == {page: 1 for page in part.pages}, part
    assert got == expected


def test_partitions_survive_pickle_and_cloudpickle_and_tokenize_deterministically(server, client):
    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=10)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        copy = loads(dumps(parts[1]))
        assert copy == parts[1]
        assert dask.base.tokenize(copy) == dask.base.tokenize(parts[1])
    assert dask.base.tokenize(parts[0]) != dask.base.tokenize(parts[1])
    assert parts[1].to_arrow().equals(pickle.loads(pickle.dumps(parts[1])).to_arrow())


def test_the_token_is_in_no_generic_view_and_no_tokenize_input(server, client):
    part = client.iter_files(server.batch_id).partitions()[0]
    for view in (repr(part), str(dataclasses.asdict(part)), str(dataclasses.astuple(part)), str(vars(part))):
        assert TOKEN not in view
    assert TOKEN not in str(dask.base.normalize_token(part))
    assert TOKEN not in str(part.__dask_tokenize__())


def test_the_client_settings_change_the_dask_key(server, client):
    planned = client.iter_files(server.batch_id).partitions()[0]

    def key(**settings):
        settings = {"token": TOKEN, "max_retries": 1, **settings}
        config = PickledClient.of(st.Client(base_url=server.url, **settings))
        return dask.base.tokenize(dataclasses.replace(planned, client_config=config))

    keys = [key(), key(token="another-token-8"), key(timeout=7), key(max_retries=2), key(concurrency=2)]
    assert len(set(keys)) == 5
    assert key() == keys[0]  # the same settings, the same key


def test_to_pandas_equals_one_process_reading_with_the_extra_column(server, client):
    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=8)
    import pandas as pd

    got = pd.concat([p.to_pandas() for p in parts])
    whole = client.iter_files(server.batch_id, limit=50).to_pandas()
    assert list(got.index) == list(range(1234))
    assert list(got.columns) == list(whole.columns) + ["extra"]
    assert got["file_id"].tolist() == whole["file_id"].tolist()
    assert got["result.text"].equals(whole["result.text"].astype(got["result.text"].dtype))
    assert got["extra"].isna().all()
    # Every partition gives the plan's columns and dtypes, whatever its own pages hold.
    assert all((p.to_pandas().dtypes == parts[0].empty_pandas().dtypes).all() for p in parts)


def test_iter_arrow_gives_one_table_per_page_under_the_plan_schema(server, client):
    part = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=3)[1]
    tables = list(part.iter_arrow())
    assert [t.num_rows for t in tables] == [50, 50, 50]
    assert all(t.schema == part.schema for t in tables)
    assert pa.concat_tables(tables).equals(part.to_arrow())


def test_a_field_that_first_appears_after_the_first_page_is_kept_in_extra(server, client):
    # The mock's 8th record (index 7) alone has metadata.trace_id, an integer beyond 64 bits;
    # with 5 records a page it first appears on page 2, after the plan was made.
    batch = server.add_batch(60, seed=7)
    parts = client.iter_files(batch, limit=5).partitions(pages_per_partition=2)
    assert "metadata.trace_id" not in parts[0].schema.names
    rows = pa.concat_tables([p.to_arrow() for p in parts]).to_pylist()
    whole = client.iter_files(batch, limit=5).to_pandas()
    trace_id = int(whole["metadata.trace_id"].dropna().iloc[0])
    assert trace_id > 2**64
    assert [json.loads(r["extra"]) for r in rows if r["extra"]] == [{"metadata.trace_id": trace_id}]
    assert rows[7]["file_id"] == whole["file_id"][7]


def test_a_value_whose_type_moved_goes_to_extra_never_lost():
    schema = plan_schema(pa.schema([("file_id", pa.string()), ("duration", pa.float64()), ("note", pa.null())]))
    assert schema.names == ["file_id", "duration", "note", "extra"]
    late = pa.table(
        {
            "file_id": ["a", "b"],
            "duration": ["long", None],  # a string where the plan has numbers
            "note": [{"x": 1}, None],  # a struct where page 1 had only nulls: JSON text
            "speaker": ["S1", None],  # a field the plan never saw
        }
    )
    out = conform(late, schema)
    assert out.schema == schema
    assert out.to_pylist() == [
        {"file_id": "a", "duration": None, "note": '{"x": 1}', "extra": '{"duration": "long", "speaker": "S1"}'},
        {"file_id": "b", "duration": None, "note": None, "extra": None},
    ]
    # Integers fit a float column; a struct that gained a field does not fit the old one.
    assert conform(pa.table({"file_id": ["c"], "duration": [3]}), schema)["duration"].to_pylist() == [3.0]
    nested = plan_schema(pa.schema([("r", pa.struct([("a", pa.int64())]))]))
    moved = conform(pa.table({"r": [{"a": 1, "b": 2}]}), nested)
    assert moved.to_pylist() == [{"r": None, "extra": '{"r": {"a": 1, "b": 2}}'}]


def test_max_items_and_start_page_shape_the_plan(server, client):
    parts = client.iter_files(server.batch_id, limit=50, max_items=120).partitions(pages_per_partition=2)
    assert [(p.pages, p.num_rows) for p in parts] == [(range(1, 3), 100), (range(3, 4), 20)]
    assert len([r for p in parts for r in p.records()]) == 120
    assert parts[1].to_arrow().num_rows == 20
    later = client.iter_files(server.batch_id, limit=50, start_page=24).partitions()
    assert [(p.pages, p.num_rows, p.first_row) for p in later] == [(range(24, 26), 84, 0)]


def test_an_empty_batch_gives_one_empty_partition(server, client):
    batch = server.add_batch(0)
    parts = client.iter_files(batch).partitions()
    assert len(parts) == 1 and parts[0].num_rows == 0
    assert parts[0].to_pandas().empty
    assert list(parts[0].records()) == []


def test_the_default_size_is_many_pages_never_one_tiny_partition_per_page(server, client):
    parts = client.iter_files(server.batch_id, limit=10).partitions()
    assert len(parts) == 1 and parts[0].pages == range(1, 125)


def test_a_batch_that_grows_during_the_read_raises_naming_the_partition(server, client):
    batch = server.add_batch(200, seed=3, grow_per_request=7)
    parts = client.iter_files(batch, limit=50).partitions(pages_per_partition=1)
    with pytest.raises(st.BatchChangedError, match=r"partition 1 \(page 2\)") as caught:
        parts[1].to_arrow()
    assert "wait for the batch to complete" in str(caught.value).lower()
    assert TOKEN not in str(caught.value)
    warned = client.iter_files(batch, limit=50).partitions(pages_per_partition=1, on_change="warn")
    with pytest.warns(RuntimeWarning, match="partition 2"):
        assert warned[2].to_arrow().num_rows == 50


def test_bad_input_is_refused_before_any_request(server, client):
    server.clear_requests()
    res = client.iter_files(server.batch_id)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="pages_per_partition"):
            res.partitions(pages_per_partition=bad)
    with pytest.raises(ValueError, match="on_change"):
        res.partitions(on_change="ignore")
    assert server.requests == []


def test_any_integral_is_a_page_count(server, client):
    numpy = pytest.importorskip("numpy")
    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=numpy.int64(10))
    assert [p.pages for p in parts] == [range(1, 11), range(11, 21), range(21, 26)]


def test_a_missing_batch_fails_at_the_call(server, client):
    with pytest.raises(st.BatchNotFoundError):
        client.iter_files("no-such-batch").partitions()


def test_a_rejected_token_on_the_worker_is_a_clear_error(server, client):
    part = client.iter_files(server.batch_id).partitions()[0]
    wrong = PickledClient.of(st.Client("wrong-token", server.url, max_retries=0))
    with pytest.raises(st.AuthenticationError, match=r"partition 0 \(pages 1-7\)"):
        dataclasses.replace(part, client_config=wrong).to_arrow()


def test_an_error_on_a_worker_names_the_partition_and_its_pages(server, client):
    part = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=3)[2]
    server.fail_next("status", 1, status=400)
    with pytest.raises(st.InvalidRequestError, match=r"^partition 2 \(pages 7-9\) of batch") as raised:
        part.to_arrow()
    assert raised.value.page == 7 and raised.value.status_code == 400


def test_one_client_per_process_and_no_descriptor_growth_over_1000_partitions(server, client):
    batch = server.add_batch(1000, seed=4)
    parts = [pickle.loads(pickle.dumps(p)) for p in client.iter_files(batch, limit=1).partitions(1)]
    assert len(parts) == 1000
    parts[0].to_arrow()
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    rows = sum(len(list(p.records())) for p in parts)
    assert rows == 1000
    assert len({id(p.client) for p in parts}) == 1
    assert parts[0].client is client  # in the planning process, the planning client itself
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds + 4


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_partitions_are_read_in_forked_and_spawned_workers(server, client, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=5)
    parts[0].to_arrow()  # the parent's client exists before the fork
    with multiprocessing.get_context(method).Pool(2) as pool:
        tables = pool.map(st.BatchPartition.to_arrow, parts)
    assert [t.num_rows for t in tables] == [p.num_rows for p in parts]


@pytest.mark.parametrize(("method", "module", "extra"), [("to_dask", "dask.dataframe", "dask"), ("to_ray", "ray.data", "ray")])
def test_a_missing_engine_names_the_extra_to_install(monkeypatch, method, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    res = st.Client("any-token", "http://127.0.0.1:9").iter_files("batch")
    with pytest.raises(ImportError, match=rf"pip install 'soket-transcribe\[{extra}\]'"):
        getattr(res, method)()


def test_every_partition_has_the_dtypes_of_the_meta_nullable_where_a_later_page_holds_nulls(scripted_pages):
    flags = [True, True, None, None, True, None]
    counts = [0, 1, None, 3, 4, 5]
    records = [{"file_id": f"f{i}", "flag": f, "n": n} for i, (f, n) in enumerate(zip(flags, counts))]
    parts = scripted_pages(records, 2).iter_files("b", limit=2).partitions(pages_per_partition=1)
    import pandas as pd

    meta = parts[0].empty_pandas()
    assert meta.dtypes.to_dict() == {"file_id": meta["file_id"].dtype, "flag": "boolean", "n": "Int64", "extra": meta["extra"].dtype}
    frames = [p.to_pandas() for p in parts]
    assert all(f.dtypes.equals(meta.dtypes) for f in frames)
    whole = pd.concat(frames)
    assert whole["flag"].tolist() == [True, True, pd.NA, pd.NA, True, pd.NA]
    assert whole["flag"].sum() == 3 and whole["n"].sum() == 13
    assert whole["extra"].isna().all()


def test_a_late_field_named_extra_is_kept_in_the_extra_column(scripted_pages):
    records = [{"file_id": f"f{i}"} for i in range(6)]
    records[2]["extra"] = "theirs"  # page 2 of 3: neither sampled page has it
    parts = scripted_pages(records, 2).iter_files("b", limit=2).partitions(pages_per_partition=1)
    assert parts[0].schema.names == ["file_id", "extra"]
    rows = pa.concat_tables([p.to_arrow() for p in parts]).to_pylist()
    assert [json.loads(r["extra"]) if r["extra"] else None for r in rows] == [None, None, {"extra": "theirs"}, None, None, None]


def test_pages_without_total_files_are_planned_from_the_page_count_and_the_last_page(scripted_pages):
    records = [{"file_id": f"f{i}"} for i in range(450)]
    client = scripted_pages(records, 50, totals=("total_pages",))
    assert len(list(client.iter_files("b", limit=50))) == 450
    parts = client.iter_files("b", limit=50).partitions(pages_per_partition=4)
    assert [(p.pages, p.num_rows) for p in parts] == [(range(1, 5), 200), (range(5, 9), 200), (range(9, 10), 50)]
    assert [r["file_id"] for p in parts for r in p.records()] == [r["file_id"] for r in records]


def test_the_last_page_is_sampled_too_when_the_first_holds_only_failed_files(scripted_pages):
    records = [{"file_id": f"f{i}", "status": "failed"} for i in range(4)]
    records += [{"file_id": f"f{i}", "status": "completed", "result": {"text": f"t{i}"}} for i in range(4, 6)]
    parts = scripted_pages(records, 2).iter_files("b", limit=2).partitions(pages_per_partition=1)
    assert "result.text" in parts[0].schema.names
    table = pa.concat_tables([p.to_arrow() for p in parts])
    assert table["result.text"].to_pylist() == [None] * 4 + ["t4", "t5"]
    assert table["extra"].null_count == 6


def test_a_partition_warned_of_a_moved_batch_keeps_every_record_it_fetched(scripted_pages):
    records = [{"file_id": f"f{i}"} for i in range(130)]
    served = records[:120]
    client = scripted_pages(served, 50)
    last = client.iter_files("b", limit=50).partitions(pages_per_partition=1, on_change="warn")[2]
    assert last.num_rows == 20
    served += records[120:]  # ten more files on the last page since the plan
    with pytest.warns(RuntimeWarning, match=r"partition 2 \(page 3\) expected 20 records"):
        assert last.to_arrow()["file_id"].to_pylist() == [f"f{i}" for i in range(100, 130)]


def test_a_status_view_of_a_running_batch_is_refused_at_planning(server, client):
    # Each request completes the first processing file and adds one: the view keeps its size.
    batch = server.add_batch(300, seed=5, statuses={"processing": 1.0}, complete_per_request=1, grow_per_request=1)
    res = client.iter_files(batch, status="processing", limit=50)
    with pytest.raises(st.BatchChangedError, match=r"still processing.*client\.wait\(batch_id\)"):
        res.partitions(pages_per_partition=1)
    with pytest.warns(RuntimeWarning, match="still processing"):
        assert len(res.partitions(pages_per_partition=1, on_change="warn")) == 6
    done = server.add_batch(100, seed=5, statuses={"completed": 1.0})
    parts = client.iter_files(done, status="completed", limit=50).partitions()
    assert sum(p.num_rows for p in parts) == 100


def test_the_default_size_is_100_000_records_on_a_large_batch(server, client):
    batch = server.add_batch(1_000_000, seed=9)
    parts = client.iter_files(batch, limit=200).partitions()
    assert [p.num_rows for p in parts] == [100_000] * 10
    assert [p.pages for p in parts] == [range(s, s + 500) for s in range(1, 5001, 500)]
    assert pages_requested(server, batch) == {1: 1, 5000: 1}


def test_the_default_size_is_64_mib_of_arrow_for_large_records(scripted_server):
    # 2,000 pages of 50 records of ~100 kB each: ~670 records a partition, never 100,000.
    text = "word " * 20_000

    def answer(query):
        page = int(query["page"])
        files = [{"file_id": f"f{page}-{i}", "result": {"text": text}} for i in range(50)]
        body = {"page": page, "limit": 50, "total_pages": 2000, "total_files": 100_000, "count": 50, "files": files}
        return json.dumps(body).encode()

    client = st.Client("t0ken", scripted_server(answer), max_retries=0)
    parts = client.iter_files("b", limit=50).partitions()
    page_bytes = client.iter_files("b", limit=50, max_items=50).to_arrow(flatten=True).nbytes
    pages = len(parts[0].pages)
    assert pages * page_bytes <= 64 * 2**20 < (pages + 1) * page_bytes
    assert sum(p.num_rows for p in parts) == 100_000


def test_thirty_closed_clients_leave_no_connection_open():
    with MockServer(files=300, seed=3, token=TOKEN) as srv:
        for i in range(30):
            with st.Client(TOKEN, srv.url, timeout=10 + i) as each:
                each.iter_files(srv.batch_id, limit=50).partitions()[0].to_arrow()
        assert wait_for(lambda: connections_to(srv) == 0), connections_to(srv)


def test_a_process_keeps_the_clients_of_a_few_configurations_and_closes_older_ones():
    with MockServer(files=300, seed=3, token=TOKEN) as srv:
        part = st.Client(TOKEN, srv.url, concurrency=1).iter_files(srv.batch_id, limit=50).partitions()[0]
        # Partitions as a worker receives them: 50 configurations it has no client for, each
        # client holding one connection (concurrency=1) once it has read.
        configs = [PickledClient.of(st.Client(TOKEN, srv.url, timeout=10 + i, concurrency=1)) for i in range(50)]
        for config in configs:
            assert dataclasses.replace(part, client_config=config).to_arrow().num_rows == 300
        assert len(partitions_module._clients) == 4
        # The four cached, and the planning client's: the older 46 were closed.
        assert wait_for(lambda: connections_to(srv) <= 5), connections_to(srv)


def test_a_new_token_in_the_environment_is_read_again(server, monkeypatch):
    monkeypatch.setenv("SOKET_API_TOKEN", TOKEN)
    part = st.Client(base_url=server.url, max_retries=0).iter_files(server.batch_id).partitions()[0]
    shipped = pickle.loads(pickle.dumps(part))
    assert shipped.to_arrow().num_rows == 1234
    monkeypatch.setenv("SOKET_API_TOKEN", "a-revoked-token")
    with pytest.raises(st.AuthenticationError):
        shipped.to_arrow()


def wait_for(condition, seconds=30.0):
    """Polls `condition` until true (connections close on the runtime's threads, a moment later)."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def connections_to(server):
    """Open TCP connections from this process to `server` (its port as the remote end)."""
    port = int(server.url.split(":")[2].split("/")[0])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                    count += 1
    return count
