"""res.to_dask(): a batch read by the workers of a real Dask cluster (two processes), page ranges each."""

import dataclasses
import json
import pickle

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
from dask.dataframe.utils import assert_eq  # noqa: E402

import soket_transcribe as st  # noqa: E402
from soket_transcribe.dask_reader import to_dask  # noqa: E402
from soket_transcribe.partitions import PickledClient  # noqa: E402
from soket_transcribe.testing import MockServer  # noqa: E402
from requests_log import pages_requested  # noqa: E402

TOKEN = "sekrit-dask-token-93"


@pytest.fixture(scope="module")
def server():
    srv = MockServer(files=1234, seed=7, token=TOKEN)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cluster():
    # Slow to start: one cluster for the module. The workers' environment holds the token,
    # for the client that reads SOKET_API_TOKEN on the worker.
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"SOKET_API_TOKEN": TOKEN},
    ) as local, distributed.Client(local) as dask_client:
        yield dask_client


@pytest.fixture
def client(server):
    return st.Client(TOKEN, server.url, max_retries=1)


def one_process(client, batch_id, limit):
    """What one process reads, in the columns and dtypes of the plan: a column that is only
    nulls on the sampled pages is JSON text (here: all null), integers and booleans nullable,
    plus the empty `extra` column."""
    frame = client.iter_files(batch_id, limit=limit).to_pandas()
    frame["metadata.client_ref"] = pd.Series([None] * len(frame), dtype="str")
    frame["extra"] = pd.Series([None] * len(frame), dtype="str")
    nullable = {"int64": "Int64", "bool": "boolean"}
    return frame.astype({name: nullable[str(t)] for name, t in frame.dtypes.items() if str(t) in nullable})


def test_to_dask_equals_one_process_and_fetches_every_page_once(server, client, cluster):
    expected = one_process(client, server.batch_id, 50)
    server.clear_requests()
    ddf = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=4)
    assert pages_requested(server, server.batch_id) == {1: 1, 25: 1}  # the plan, and nothing else
    assert ddf.npartitions == 7
    # 25 pages, the last short (34 records): divisions from the planned row counts.
    assert ddf.divisions == (0, 200, 400, 600, 800, 1000, 1200, 1233)
    server.clear_requests()
    frame = ddf.compute()
    assert pages_requested(server, server.batch_id) == {page: 1 for page in range(1, 26)}
    assert_eq(frame, expected, sort_results=False)
    assert_eq(ddf, expected, sort_results=False, scheduler=cluster.get)  # meta, dtypes, divisions too
    assert len(ddf.partitions[6].compute()) == 34
    # One HTTP client per worker process, whatever the number of partitions it read.
    clients = cluster.run(lambda: len(__import__("soket_transcribe.partitions").partitions._clients))
    assert sorted(clients.values()) == [1, 1]


def test_a_projection_builds_only_those_columns_on_the_workers(server, client, cluster):
    ddf = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=8)
    projected = ddf[["file_id", "status"]]
    readers = [e for e in projected.optimize(fuse=False).expr.walk() if type(e).__name__ == "FromMapProjectable"]
    assert [r.operand("columns") for r in readers] == [["file_id", "status"]]
    expected = one_process(client, server.batch_id, 50)[["file_id", "status"]]
    assert_eq(projected, expected, sort_results=False, scheduler=cluster.get)
    counts = projected.groupby("status").size().compute()
    assert counts.sum() == 1234


def test_an_empty_batch_is_one_empty_partition(server, client, cluster):
    batch = server.add_batch(0)
    ddf = client.iter_files(batch).to_dask()
    assert ddf.npartitions == 1
    frame = ddf.compute()
    assert frame.empty and list(frame.columns) == ["extra"]


def test_a_field_appearing_late_lands_in_extra_on_the_workers(server, client, cluster):
    # Record 7 alone has metadata.trace_id (beyond 64 bits): with 5 a page, after the plan's page.
    batch = server.add_batch(40, seed=7)
    ddf = client.iter_files(batch, limit=5).to_dask(pages_per_partition=2)
    assert "metadata.trace_id" not in ddf.columns
    frame = ddf.compute()
    trace_id = int(client.iter_files(batch, limit=5).to_pandas()["metadata.trace_id"].dropna().iloc[0])
    assert [json.loads(e) for e in frame["extra"].dropna()] == [{"metadata.trace_id": trace_id}]
    assert frame["extra"].dropna().index.tolist() == [7]


def test_a_batch_growing_during_the_read_raises_naming_the_partition(server, client, cluster):
    batch = server.add_batch(200, seed=3, grow_per_request=5)
    ddf = client.iter_files(batch, limit=50).to_dask(pages_per_partition=1)
    with pytest.raises(st.BatchChangedError, match=r"partition \d+ \(page \d+\)"):
        ddf.compute()
    warned = client.iter_files(batch, limit=50).to_dask(pages_per_partition=1, on_change="warn")
    assert warned.divisions[0] is None  # row numbers no longer promised
    # The workers' warnings reach the client that computes (they arrive as events: wait for them).
    with pytest.warns(RuntimeWarning, match=r"partition \d+ \(page \d+\)") as said:
        assert len(warned.compute()) >= 200
        assert wait_for(lambda: any("changed since the partitions were planned" in str(w.message) for w in said))


def test_the_token_is_not_in_the_graph(server, client, cluster):
    ddf = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=10)
    assert TOKEN not in str(ddf.dask)
    assert TOKEN not in repr(ddf.expr) and TOKEN not in ddf.expr.tree_repr()
    parts = client.iter_files(server.batch_id, limit=50).partitions(10)
    assert TOKEN not in str([dask.base.normalize_token(p) for p in parts])


def test_a_client_from_the_environment_ships_no_token_and_reads_it_on_the_worker(server, cluster, monkeypatch):
    monkeypatch.setenv("SOKET_API_TOKEN", TOKEN)
    env_client = st.Client(base_url=server.url, max_retries=1)
    parts = env_client.iter_files(server.batch_id, limit=50).partitions(10)
    assert TOKEN.encode() not in pickle.dumps(parts)
    assert len(to_dask(parts).compute()) == 1234


def test_a_token_refused_on_the_workers_is_a_clear_error_on_compute(server, client, cluster):
    parts = client.iter_files(server.batch_id, limit=50).partitions(10)
    wrong = PickledClient.of(st.Client("wrong-token", server.url, max_retries=0))
    ddf = to_dask([dataclasses.replace(p, client_config=wrong) for p in parts])
    with pytest.raises(st.AuthenticationError, match=r"partition \d \(pages \d+-\d+\)"):
        ddf.compute()


def test_bad_input_fails_at_the_call(server, client, cluster):
    with pytest.raises(ValueError, match="pages_per_partition"):
        client.iter_files(server.batch_id).to_dask(pages_per_partition=0)
    with pytest.raises(st.BatchNotFoundError):
        client.iter_files("no-such-batch").to_dask()


def test_a_frame_planned_with_another_client_computes_with_that_client(server, client, cluster):
    first = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=10)
    assert len(first.compute()) == 1234
    refused = st.Client("a-revoked-token", server.url, max_retries=0)
    planned = client.iter_files(server.batch_id, limit=50).partitions(10)
    again = to_dask([dataclasses.replace(p, client_config=PickledClient.of(refused)) for p in planned])
    assert again._name != first._name and "a-revoked-token" not in again._name
    with pytest.raises(st.AuthenticationError):
        again.compute()


def test_a_status_view_of_a_running_batch_is_refused_rather_than_mixed(server, client, cluster):
    # Each request completes the first processing file and adds one: the view keeps its size.
    batch = server.add_batch(300, seed=5, statuses={"processing": 1.0}, complete_per_request=1, grow_per_request=1)
    with pytest.raises(st.BatchChangedError, match=r"client\.wait\(batch_id\)"):
        client.iter_files(batch, status="processing", limit=50).to_dask(pages_per_partition=1)


def test_every_partition_computes_the_dtypes_of_the_meta(scripted_pages, cluster):
    # A boolean true on page 1, null after, true again; an integer null on page 2 only.
    flags, counts = [True, True, None, None, True, None], [0, 1, None, 3, 4, 5]
    records = [{"file_id": f"f{i}", "flag": f, "n": n} for i, (f, n) in enumerate(zip(flags, counts))]
    client = scripted_pages(records, 2)
    ddf = client.iter_files("b", limit=2).to_dask(pages_per_partition=1)
    assert ddf.dtypes.to_dict() == {"file_id": ddf["file_id"].dtype, "flag": "boolean", "n": "Int64", "extra": ddf["extra"].dtype}
    frames = cluster.compute(list(ddf.to_delayed()), sync=True)
    assert all(frame.dtypes.equals(ddf._meta.dtypes) for frame in frames)
    assert ddf["flag"].sum().compute() == 3 and ddf["n"].sum().compute() == 13


def test_no_column_asked_for_builds_no_column(server, client, cluster):
    ddf = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=10)
    empty = ddf[[]]
    readers = [e for e in empty.optimize(fuse=False).expr.walk() if type(e).__name__ == "FromMapProjectable"]
    assert [r.operand("columns") for r in readers] == [[]]
    frame = empty.compute()
    assert list(frame.columns) == [] and len(frame) == 1234


# Dask's own read_parquet calls reset_index/set_index(inplace=True), which pandas 3.1 deprecates.
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.(reset|set)_index is deprecated")
def test_parquet_round_trips_with_the_pyarrow_backend(server, client, cluster, tmp_path):
    ddf = client.iter_files(server.batch_id, limit=50).to_dask(pages_per_partition=10)
    ddf.to_parquet(tmp_path / "batch")
    # The default backend cannot rebuild the list-of-struct `errors` column's dtype from its name.
    with pytest.raises(TypeError, match="not understood"):
        dd.read_parquet(tmp_path / "batch").compute()
    back = dd.read_parquet(tmp_path / "batch", dtype_backend="pyarrow").compute()
    assert len(back) == 1234
    assert back["errors"].tolist() == ddf["errors"].compute().tolist()
    assert back["file_id"].tolist() == ddf["file_id"].compute().tolist()


def wait_for(condition, seconds=30.0):
    """Polls `condition` until true (a worker's warning reaches the client as an event)."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True



def test_keys_holding_dots_are_columns_of_their_own_and_project(scripted_pages, cluster):
    # A key literally named "a.b" beside a nested a.b, and a dotted key inside a struct.
    records = [{"file_id": f"f{i}", "a.b": i, "a": {"b": -i}, "m": {"x.y": 10 * i}} for i in range(6)]
    client = scripted_pages(records, 2)
    ddf = client.iter_files("b", limit=2).to_dask(pages_per_partition=1)
    assert list(ddf.columns) == ["file_id", "a\\.b", "a.b", "m.x\\.y", "extra"]
    assert ddf["a\\.b"].compute().tolist() == list(range(6))
    assert ddf["a.b"].compute().tolist() == [-i for i in range(6)]
    assert ddf[["m.x\\.y"]].compute()["m.x\\.y"].tolist() == [10 * i for i in range(6)]


def test_a_throttled_batch_is_read_to_the_end_by_the_workers(cluster):
    """Two worker processes read one batch behind one token bucket, each through its process's
    client (its own rate controller): every file once, and no RateLimitError from the 429s."""
    with MockServer(files=600, seed=7, token=TOKEN) as clean:
        expected = [f["file_id"] for f in st.Client(TOKEN, clean.url).iter_files(clean.batch_id)]
    with MockServer(files=600, seed=7, token=TOKEN, rate_limit=40, burst=8, retry_after=1) as srv:
        client = st.Client(TOKEN, srv.url, max_retries=0)
        frame = client.iter_files(srv.batch_id, limit=10).to_dask(pages_per_partition=6).compute()
        assert sorted(frame["file_id"]) == sorted(expected) and len(frame) == len(expected)
        assert any(r["throttled"] for r in srv.requests), "the workers met the bucket"
