"""st.BatchPartition: a batch split into page ranges that fetch exactly their own pages."""

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


def test_planning_fetches_the_first_page_once_and_nothing_else(server, client):
    batch = server.add_batch(300, seed=1)
    client.iter_files(batch, limit=50).partitions(pages_per_partition=2)
    assert pages_requested(server, batch) == {1: 1}


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


def test_the_token_is_in_no_repr_and_no_tokenize_input(server, client):
    part = client.iter_files(server.batch_id).partitions()[0]
    assert TOKEN not in repr(part)
    assert TOKEN not in str(dask.base.normalize_token(part))
    assert TOKEN not in str(part.__dask_tokenize__())


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


def test_a_missing_batch_fails_at_the_call(server, client):
    with pytest.raises(st.BatchNotFoundError):
        client.iter_files("no-such-batch").partitions()


def test_a_rejected_token_on_the_worker_is_a_clear_error(server, client):
    part = client.iter_files(server.batch_id).partitions()[0]
    wrong = pickle.dumps(st.Client("wrong-token", server.url, max_retries=0))
    import dataclasses

    with pytest.raises(st.AuthenticationError):
        dataclasses.replace(part, client_config=wrong).to_arrow()


def test_one_client_per_process_and_no_descriptor_growth_over_1000_partitions(server, client):
    batch = server.add_batch(1000, seed=4)
    parts = [pickle.loads(pickle.dumps(p)) for p in client.iter_files(batch, limit=1).partitions(1)]
    assert len(parts) == 1000
    parts[0].to_arrow()
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    rows = sum(len(list(p.records())) for p in parts)
    assert rows == 1000
    assert len({id(p.client) for p in parts}) == 1
    assert sum(key == parts[0].client_config for key in partitions_module._clients) == 1
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
