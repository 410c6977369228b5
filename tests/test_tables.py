"""Tables: `to_arrow`, `to_pandas`, `to_polars`, Parquet and the Arrow stream interface give back
exactly the records that `iter_files` yields; odd shapes fall back to JSON text, never fail."""

import asyncio
import json
import math
import threading
from collections import Counter

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer
from requests_log import pages_asked

JSON_TEXT = b"soket_transcribe.json"
OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"chunks": True}, id="chunks"),
    pytest.param({"speech_information": True}, id="speech"),
    pytest.param({"chunks": True, "speech_information": True}, id="chunks+speech"),
]


@pytest.fixture(scope="module")
def mock():
    # Mixed statuses (completed, failed, retrying, processing), unicode names, rare huge ints.
    with MockServer(files=1100, seed=3) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(mock):
    return st.Client(mock.token, mock.url)


# -- comparing records -------------------------------------------------------------------


def is_null(v):
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def clean(v):
    """Plain Python, keys with null values dropped: Arrow cannot tell absent from null."""
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if not is_null(x)}
    if isinstance(v, (list, tuple, np.ndarray, pl.Series)):
        return [clean(x) for x in v]
    if isinstance(v, np.generic):
        return clean(v.item())
    if is_null(v):
        return None
    return v


def json_paths(fields, prefix=""):
    """Dotted paths of the JSON text columns (list elements are transparent)."""
    paths = set()
    for f in fields:
        name = prefix + f.name
        if f.metadata and f.metadata.get(JSON_TEXT) == b"true":
            paths.add(name)
        t = f.type
        while pa.types.is_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        if pa.types.is_struct(t):
            paths |= json_paths([t.field(i) for i in range(t.num_fields)], name + ".")
    return paths


def decode_json(v, paths, at=""):
    if isinstance(v, list):
        return [decode_json(x, paths, at) for x in v]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            path = at + k
            out[k] = json.loads(x) if path in paths and isinstance(x, str) else decode_json(x, paths, path + ".")
        return out
    return v


def unflatten(row):
    out = {}
    for name, v in row.items():
        *parents, leaf = name.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


# The columns the seeded mock's files make JSON text (a trace id beyond 64 bits on rare records),
# pinned so that a column turned into text by mistake fails rather than being compared as text.
MOCK_JSON_TEXT = frozenset({"metadata.trace_id"})


def pinned_json_paths(schema, expected=MOCK_JSON_TEXT):
    paths = json_paths(schema)
    assert paths == expected, "the columns of JSON text"
    return paths


def assert_same_records(rows, files, paths, flat=False):
    assert len(rows) == len(files)
    for row, f in zip(rows, files):
        row = clean(row)
        got = decode_json(unflatten(row) if flat else row, paths)
        assert clean(got) == clean(f)


def fetch(client, mock, **options):
    files = list(client.iter_files(mock.batch_id, **options))
    return files, client.iter_files(mock.batch_id, **options)


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS)
def test_arrow_gives_back_the_records(client, mock, options):
    files, res = fetch(client, mock, **options)
    table = res.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names[:3] == ["file_id", "filename", "status"]
    assert {f["status"] for f in files} >= {"completed", "failed"}
    assert_same_records(table.to_pylist(), files, pinned_json_paths(table.schema))
    assert (res.total_pages, res.next_page) == (6, 7), "1,100 files at the default limit of 200"


@pytest.mark.parametrize("options", OPTIONS)
def test_parquet_gives_back_the_records(client, mock, options, tmp_path):
    files, res = fetch(client, mock, **options)
    table = res.to_arrow()
    pq.write_table(table, tmp_path / "results.parquet")
    back = pq.read_table(tmp_path / "results.parquet")
    assert_same_records(back.to_pylist(), files, pinned_json_paths(back.schema))


@pytest.mark.parametrize("options", OPTIONS)
def test_pandas_flat_columns_give_back_the_records(client, mock, options):
    files, res = fetch(client, mock, **options)
    df = res.to_pandas()
    assert "result.text" in df.columns and "result" not in df.columns
    paths = pinned_json_paths(client.iter_files(mock.batch_id, **options).to_arrow().schema)
    assert_same_records(df.to_dict("records"), files, paths, flat=True)


def test_pandas_nested_and_arrow_backed(client, mock):
    files, res = fetch(client, mock, speech_information=True)
    df = res.to_pandas(flatten=False)
    assert isinstance(df["result"].dropna().iloc[0], dict)
    paths = pinned_json_paths(client.iter_files(mock.batch_id).to_arrow().schema)
    assert_same_records(df.to_dict("records"), files, paths)

    df = client.iter_files(mock.batch_id, speech_information=True).to_pandas(dtype_backend="pyarrow")
    assert isinstance(df["result.duration_seconds"].dtype, pd.ArrowDtype)
    assert df["file_id"].tolist() == [f["file_id"] for f in files]
    df = client.iter_files(mock.batch_id).to_pandas(dtype_backend="numpy_nullable")
    durations = [(f.get("result") or {}).get("duration_seconds") for f in files]
    assert str(df["result.duration_seconds"].dtype) == "Float64"
    assert df["result.duration_seconds"].isna().tolist() == [d is None for d in durations]


@pytest.mark.parametrize("options", OPTIONS)
def test_polars_gives_back_the_records(client, mock, options):
    files, res = fetch(client, mock, **options)
    paths = pinned_json_paths(client.iter_files(mock.batch_id, **options).to_arrow().schema)
    df = res.to_polars(flatten=False)
    assert isinstance(df, pl.DataFrame)
    assert_same_records(df.to_dicts(), files, paths)
    flat = client.iter_files(mock.batch_id, **options).to_polars()
    assert "result.text" in flat.columns
    assert_same_records(flat.to_dicts(), files, paths, flat=True)


def sql_by_status(res):
    return sorted(duckdb.sql("select status, count(*) from res group by 1").fetchall())


def schema_then_table(res):
    assert pa.schema(res).names[:3] == ["file_id", "filename", "status"]
    return pa.table(res)


ARROW_CONSUMERS = [
    pytest.param(sql_by_status, id="duckdb"),
    pytest.param(pa.table, id="pa.table"),
    pytest.param(pl.DataFrame, id="pl.DataFrame"),
    pytest.param(lambda res: pa.RecordBatchReader.from_stream(res).read_all(), id="RecordBatchReader"),
    pytest.param(schema_then_table, id="schema-then-stream"),
    pytest.param(
        lambda res: pd.DataFrame.from_arrow(res),
        id="pd.DataFrame.from_arrow",
        marks=pytest.mark.skipif(not hasattr(pd.DataFrame, "from_arrow"), reason="pandas < 3"),
    ),
]


@pytest.mark.parametrize("consume", ARROW_CONSUMERS)
def test_every_arrow_stream_consumer_reads_a_fresh_result_fetching_each_page_once(consume):
    with MockServer(files=1100, seed=3) as srv:
        client = st.Client(srv.token, srv.url)
        files = list(client.iter_files(srv.batch_id, limit=100))
        srv.clear_requests()
        out = consume(client.iter_files(srv.batch_id, limit=100))
        assert sorted(pages_asked(srv)) == list(range(1, 12)), "each page once"
    if isinstance(out, list):  # DuckDB's rows
        assert out == sorted(Counter(f["status"] for f in files).items())
    else:
        ids = out["file_id"]
        assert (ids.to_pylist() if isinstance(ids, pa.ChunkedArray) else list(ids)) == [f["file_id"] for f in files]


def test_the_arrow_stream_serves_consumer_after_consumer(client, mock):
    files = list(client.iter_files(mock.batch_id))
    res = client.iter_files(mock.batch_id)
    mock.clear_requests()
    assert pa.table(res).num_rows == len(files)
    assert sql_by_status(res) == sorted(Counter(f["status"] for f in files).items())
    assert pl.DataFrame(res).height == len(files)
    assert sorted(pages_asked(mock)) == [1, 2, 3, 4, 5, 6], "each of the 6 pages once"


# -- asyncio -------------------------------------------------------------------------------


def test_async_tables_equal_the_sync_ones(client, mock):
    async def main():
        res = client.iter_files(mock.batch_id, speech_information=True)
        table = await res.to_arrow_async()
        df = await client.iter_files(mock.batch_id, speech_information=True).to_pandas_async(explode="segments")
        polars = await client.iter_files(mock.batch_id, speech_information=True).to_polars_async()
        return res, table, df, polars

    res, table, df, polars = asyncio.run(main())
    assert table.equals(client.iter_files(mock.batch_id, speech_information=True).to_arrow())
    assert res.next_page == 7
    assert df.equals(client.iter_files(mock.batch_id, speech_information=True).segments())
    assert polars.equals(client.iter_files(mock.batch_id, speech_information=True).to_polars())
    with pytest.raises(RuntimeError, match="already read"):
        asyncio.run(res.to_arrow_async())


def test_the_event_loop_runs_while_a_table_is_read(client, mock):
    # The progress callable runs on a client thread and holds the read after its first page
    # until a task of the loop has run: that can only happen if the loop is not blocked.
    loop_ran = threading.Event()

    async def main():
        loop = asyncio.get_running_loop()
        page_read = asyncio.Event()
        seen = []

        def progress(done, total):
            if not seen:
                loop.call_soon_threadsafe(page_read.set)
                seen.append(loop_ran.wait(timeout=30))

        async def meanwhile():
            await page_read.wait()
            loop_ran.set()

        other = asyncio.create_task(meanwhile())
        table = await client.iter_files(mock.batch_id, limit=100).to_arrow_async(progress=progress)
        await other
        return table, seen

    table, seen = asyncio.run(main())
    assert seen == [True], "a task of the loop ran while the table was being read"
    assert table.num_rows == 1100


def test_an_async_read_that_fails_names_the_page():
    with MockServer(files=300, seed=1) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1, max_retries=0)
        srv.fail_next("status", status=503)
        res = client.iter_files(srv.batch_id, limit=100)
        with pytest.raises(st.ServerError) as e:
            asyncio.run(res.to_arrow_async())
        assert e.value.page == 1 and res.next_page == 1


def test_unicode_survives(client, mock):
    files = list(client.iter_files(mock.batch_id))
    names = client.iter_files(mock.batch_id).to_arrow().column("filename").to_pylist()
    assert names == [f["filename"] for f in files]
    assert any(not n.isascii() for n in names)


def test_raw_jobs_and_max_items(client, mock):
    jobs = list(client.iter_jobs(mock.batch_id, max_items=333))
    table = client.iter_jobs(mock.batch_id, max_items=333).to_arrow()
    assert table.num_rows == 333
    assert_same_records(table.to_pylist(), jobs, pinned_json_paths(table.schema, expected=set()))


def test_an_empty_result_is_an_empty_table(client, mock):
    res = client.iter_files(mock.batch_id, max_items=0)
    assert res.to_arrow().num_rows == 0
    assert len(client.iter_files(mock.batch_id, max_items=0).to_pandas()) == 0


# -- reshaping ---------------------------------------------------------------------------


def test_explode_segments_gives_one_row_per_segment(client, mock):
    files = list(client.iter_files(mock.batch_id, speech_information=True))
    expected = [(f["file_id"], s) for f in files for s in (f.get("result") or {}).get("segments") or []]
    assert expected
    for df in (
        client.iter_files(mock.batch_id, speech_information=True).segments(),
        client.iter_files(mock.batch_id, speech_information=True).to_pandas(explode="segments"),
    ):
        assert len(df) == len(expected)
        assert df.columns[0] == "file_id"
        rows = df.to_dict("records")
        assert [r.pop("file_id") for r in rows] == [fid for fid, _ in expected]
        assert [clean(r) for r in rows] == [clean(s) for _, s in expected]
    polars = client.iter_files(mock.batch_id, speech_information=True).to_polars(explode="segments")
    assert polars.height == len(expected)


def test_explode_chunk_results(client, mock):
    files = list(client.iter_files(mock.batch_id, chunks=True))
    df = client.iter_files(mock.batch_id, chunks=True).chunks()
    assert len(df) == sum(len(f.get("chunk_results") or []) for f in files)
    assert {"file_id", "chunk_index", "status"} <= set(df.columns)


def test_explode_without_the_list_says_how_to_get_it(client, mock):
    with pytest.raises(ValueError, match="speech_information=True"):
        client.iter_files(mock.batch_id).segments()


# -- streaming ---------------------------------------------------------------------------


def test_iter_arrow_batches_one_per_page(client, mock):
    files = list(client.iter_files(mock.batch_id, speech_information=True))
    res = client.iter_files(mock.batch_id, speech_information=True, limit=200)
    batches = list(res.iter_arrow_batches())
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert [b.num_rows for b in batches] == [200] * 5 + [100]
    table = pa.Table.from_batches(batches[-1:]).schema
    rows = [r for b in batches for r in b.to_pylist()]
    assert_same_records(rows, files, pinned_json_paths(table))
    assert res.next_page == 7

    flat = list(client.iter_files(mock.batch_id, speech_information=True).iter_arrow_batches(flatten=True))
    assert "result.text" in flat[0].schema.names
    segments = client.iter_files(mock.batch_id, speech_information=True).iter_arrow_batches(explode="segments")
    assert sum(b.num_rows for b in segments) == sum(len((f.get("result") or {}).get("segments") or []) for f in files)


def test_iter_arrow_batches_into_a_given_schema(client, mock):
    schema = pa.schema([("file_id", pa.string()), ("status", pa.string())])
    batches = list(client.iter_files(mock.batch_id).iter_arrow_batches(schema=schema))
    assert all(b.schema == schema for b in batches)
    assert sum(b.num_rows for b in batches) == 1100


# -- progress, errors, single use --------------------------------------------------------


def test_progress_callable_sees_every_page(client, mock):
    seen = []
    client.iter_files(mock.batch_id, limit=100).to_arrow(progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (100, 1100)
    assert seen[-1] == (1100, 1100)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_bar_on_stderr(client, mock, capsys):
    client.iter_files(mock.batch_id).to_pandas(progress=True)
    assert "1,100" in capsys.readouterr().err.replace("1.10k", "1,100")


def test_a_table_is_read_once(client, mock):
    res = client.iter_files(mock.batch_id)
    res.to_arrow()
    with pytest.raises(RuntimeError, match="already read"):
        res.to_arrow()
    res = client.iter_files(mock.batch_id)
    next(iter(res))
    with pytest.raises(RuntimeError, match="already read"):
        res.to_pandas()


def test_an_error_mid_way_names_the_page_and_allows_resuming():
    with MockServer(files=500, seed=1) as srv:
        client = st.Client(srv.token, srv.url, concurrency=1, max_retries=0)
        res = client.iter_files(srv.batch_id, limit=100)

        def fail_after_first_page(done, total):
            if done == 100:  # pages are fetched ahead: the next request to arrive fails
                srv.fail_next("status", status=503)

        with pytest.raises(st.ServerError) as e:
            res.to_arrow(progress=fail_after_first_page)
        failed = e.value.page
        # The table handed nothing over: resuming starts where it began (tests/test_results.py).
        assert failed is not None and 2 <= failed <= 5 and res.next_page == 1
        rest = client.iter_files(srv.batch_id, limit=100, start_page=res.next_page).to_arrow()
        assert rest.num_rows == 500


def test_missing_pandas_names_the_extra(client, mock, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"soket-transcribe\[pandas\]"):
        client.iter_files(mock.batch_id).to_pandas()


# -- shapes the mock does not make: a tiny server of given records -----------------------


@pytest.fixture
def records_server(scripted_server):
    """`serve(records)` -> a client of a server answering those records (JSON texts), 2 a page."""

    def serve(records):
        def page(query):
            page, limit = int(query.get("page", "1")), int(query.get("limit", "50"))
            items = records[(page - 1) * limit : page * limit]
            pages = max(1, -(-len(records) // limit))
            body = '{"batch_id":"b","page":%d,"limit":%d,"total_pages":%d,"total_files":%d,"count":%d,"files":[%s]}' % (
                page, limit, pages, len(records), len(items), ",".join(items),
            )
            return body.encode()

        return st.Client("t", scripted_server(page))

    return serve


# Every field whose type varies between the records below, however they are paged.
CONFLICT_JSON_TEXT = {"v", "l", "big", "empty", "seg.speaker_id"}
CONFLICTS = [
    '{"file_id": "a", "v": {"x": 1}, "l": [1, 2], "big": 1, "late": null}',
    '{"file_id": "b", "v": "text \\"quoted\\" é", "l": 3, "big": 18446744073709551616}',
    '{"file_id": "c", "v": null, "seg": [{"speaker_id": "S1"}, {"speaker_id": 2}]}',
    '{"file_id": "d", "v": [true], "late": {"appears": "on page 2"}, "empty": {}}',
]


@pytest.mark.parametrize("limit", [1, 2, 4], ids=lambda n: f"{n} a page")
def test_type_conflicts_fall_back_to_json_text(records_server, limit):
    # Pages are read apart: a column typed on one page and JSON text on another is text on all.
    client = records_server(CONFLICTS)
    files = list(client.iter_files("b", limit=2))
    table = client.iter_files("b", limit=limit).to_arrow()
    schema = table.schema
    for name in ("v", "l", "big", "empty"):
        assert schema.field(name).type == pa.string()
        assert schema.field(name).metadata == {JSON_TEXT: b"true"}
    assert pa.types.is_struct(schema.field("late").type), "a field that only appears on page 2"
    assert table.column("v").to_pylist() == ['{"x":1}', '"text \\"quoted\\" é"', None, "[true]"]
    assert table.column("big").to_pylist()[1] == "18446744073709551616"
    assert_same_records(table.to_pylist(), files, pinned_json_paths(schema, CONFLICT_JSON_TEXT))
    df = client.iter_files("b", limit=limit).to_pandas()
    assert df["late.appears"].tolist()[3] == "on page 2"
    assert_same_records(df.to_dict("records"), files, json_paths(schema), flat=True)
    segs = client.iter_files("b", limit=limit).to_pandas(explode="seg")
    assert segs["speaker_id"].tolist() == ['"S1"', "2"]


def test_streamed_schemas_only_widen(records_server):
    client = records_server(CONFLICTS)
    first, second = client.iter_files("b", limit=2).iter_arrow_batches()
    assert "late" in first.schema.names and pa.types.is_null(first.schema.field("late").type)
    assert pa.types.is_struct(second.schema.field("late").type)
    assert second.schema.field("v").metadata == {JSON_TEXT: b"true"}


# -- edge cases: explode while streaming, deep nesting, odd strings and keys --------------

SEGMENTS = [
    '{"file_id": "a", "status": "failed"}',
    '{"file_id": "b", "result": {"segments": [{"s": 1}, {"s": 2}]}}',
    '{"file_id": "c", "result": {"segments": 5}}',
    '{"file_id": "d", "result": {"segments": [{"s": 3}]}}',
]


def test_streamed_explode_fails_where_the_table_fails(records_server):
    client = records_server(SEGMENTS)
    for path in ("nope", "segments"):
        with pytest.raises(ValueError) as whole:
            client.iter_files("b", limit=2).to_arrow(explode=path)
        with pytest.raises(ValueError) as streamed:
            list(client.iter_files("b", limit=2).iter_arrow_batches(explode=path))
        assert str(streamed.value).split(";")[0] == str(whole.value).split(";")[0]
    valid = records_server(SEGMENTS[:2] + SEGMENTS[3:])
    rows = [b.num_rows for b in valid.iter_files("b", limit=1).iter_arrow_batches(explode="segments")]
    assert rows == [2, 1], "a page before the list shows gives no batch"


def nested(levels, leaf="1"):
    return "[" * levels + leaf + "]" * levels


def test_deep_nesting_reads_as_python_does_and_becomes_json_text_in_tables(scripted_server):
    records = ['{"file_id": "a", "d": %s}' % nested(250), '{"file_id": "b", "d": %s}' % nested(70)]
    served = []

    def answer(query):
        served.append(query)
        return ('{"page":1,"total_pages":1,"files":[%s]}' % ",".join(records)).encode()

    client = st.Client("t", scripted_server(answer))
    assert list(client.iter_files("b")) == [json.loads(r) for r in records]
    for table in (client.iter_files("b").to_arrow(), pa.table(client.iter_files("b").to_pandas())):
        assert table.num_rows == 2
    assert len(served) == 3, "each read fetched its page once, nothing retried"
    depth, column = 0, client.iter_files("b").to_arrow().column("d").to_pylist()
    while isinstance(column[0], list):
        depth, column = depth + 1, [c[0] for c in column]
    assert json.loads(column[0]) == json.loads(nested(250 - depth))


def test_a_record_python_cannot_read_names_its_page_and_is_not_retried(scripted_server):
    served = []

    def answer(query):
        served.append(query)
        return ('{"page":1,"total_pages":1,"files":[{"file_id":"a","d":%s}]}' % nested(100_000)).encode()

    client = st.Client("t", scripted_server(answer), max_retries=3)
    with pytest.raises(st.ResponseFormatError) as e:
        list(client.iter_files("b"))
    assert e.value.page == 1 and len(served) == 1
    assert client.iter_files("b").to_arrow().num_rows == 1, "a table holds it as JSON text"


def test_a_lone_surrogate_loses_nothing(records_server):
    client = records_server(['{"file_id": "a", "t": "cut \\ud83d"}', '{"file_id": "b", "t": "ok"}'])
    assert list(client.iter_files("b")) == [{"file_id": "a", "t": "cut \ud83d"}, {"file_id": "b", "t": "ok"}]
    assert list(client.iter_files("b", fields=["t"])) == [{"t": "cut \ud83d"}, {"t": "ok"}]
    assert client.iter_files("b").to_arrow().column("t").to_pylist() == ["cut \ufffd", "ok"]
    assert client.iter_files("b").to_polars()["t"].to_list() == ["cut \ufffd", "ok"]


def test_a_lone_surrogate_in_an_answer_beside_the_records_is_read_as_python_reads_it(scripted_server):
    # The page's envelope, the status answer and a file answer: Python's json reads each, so do we.
    records = '[{"file_id": "a", "t": "ok"}, {"file_id": "b", "t": "cut \\ud83d"}]'
    page = '{"batch_id": "b\\ud800", "note": "\\udc00", "page": 1, "total_pages": 1, "total_files": 2, "files": %s}'
    client = st.Client("t", scripted_server(lambda query: (page % records).encode()), max_retries=0)
    assert list(client.iter_files("b")) == json.loads(records)
    assert client.iter_files("b").to_arrow().column("t").to_pylist() == ["ok", "cut \ufffd"]
    status = '{"batch_id": "b", "status": "completed", "total_files": 2, "note": "x\\ud800"}'
    client = st.Client("t", scripted_server(lambda query: status.encode()), max_retries=0)
    got = client.status("b")
    assert (got.status, got.total_files, got.extra) == ("completed", 2, {"note": "x\ufffd"})
    answer = '{"file_id": "f", "result": {"text": "cut \\ud83d"}}'
    client = st.Client("t", scripted_server(lambda query: answer.encode()), max_retries=0)
    assert client.get_file("f") == json.loads(answer)
    client = st.Client("t", scripted_server(lambda query: b'{"error": "batch not found", "x": "\\ud800"}'))
    with pytest.raises(st.BatchNotFoundError):
        list(client.iter_files("b"))


def test_keys_with_dots_nul_and_backslashes_name_unique_columns(records_server):
    record = '{"file_id": "a", "a.b": 1, "a": {"b": 2}, "m": {"x.y": 3}, "k\\u0000": 4, "c\\\\d": 5}'
    client = records_server([record])
    expected = ["file_id", "a\\.b", "a.b", "m.x\\.y", "k\\0", "c\\\\d"]
    assert list(client.iter_files("b").to_pandas().columns) == expected
    assert client.iter_files("b").to_polars().columns == expected
    assert [st._core.split_flat_name(n) for n in expected] == [
        ["file_id"], ["a.b"], ["a", "b"], ["m", "x.y"], ["k\0"], ["c\\d"]
    ]
    assert [st._core.flat_name(st._core.split_flat_name(n)) for n in expected] == expected
    assert client.iter_files("b").to_arrow().schema.names == ["file_id", "a.b", "a", "m", "k\\0", "c\\\\d"]
    assert list(client.iter_files("b", fields=["a\\.b", "m.x\\.y"])) == [{"a.b": 1, "m": {"x.y": 3}}]
    with pytest.raises(ValueError, match="backslash"):
        client.iter_files("b", fields=["a\\b"])


def test_fields_leave_out_what_is_missing_and_take_the_last_of_a_repeated_key(records_server):
    client = records_server(['{"file_id": "a", "result": {"text": "x"}}', '{"file_id": "b", "r": {"t": "x"}, "r": 5}'])
    assert list(client.iter_files("b", fields=["file_id", "result.nope"])) == [{"file_id": "a"}, {"file_id": "b"}]
    assert client.iter_files("b", fields=["file_id", "result.nope"]).to_arrow().schema.names == ["file_id"]
    whole = list(client.iter_files("b"))
    assert whole[1]["r"] == 5
    assert list(client.iter_files("b", fields=["r"])) == [{}, {"r": 5}]
    assert list(client.iter_files("b", fields=["r.t"])) == [{}, {}]


def test_an_exploded_element_keeps_its_own_file_id_apart(records_server):
    client = records_server(['{"file_id": "a", "result": {"segments": [{"file_id": "x", "s": 1}]}}'])
    assert list(client.iter_files("b").to_pandas(explode="segments").columns) == ["file_id", "segments.file_id", "s"]
    assert client.iter_files("b").to_polars(explode="segments").row(0) == ("a", "x", 1)


def test_integers_with_nulls_stay_exact_in_pandas(records_server):
    client = records_server(['{"file_id": "a", "n": 9007199254740993}', '{"file_id": "b", "n": null}'])
    column = client.iter_files("b").to_pandas()["n"]
    assert str(column.dtype) == "Int64"
    assert column.iloc[0] == 9007199254740993 and column.iloc[1] is pd.NA


def test_explode_hints(records_server):
    client = records_server(['{"file_id": "a", "chunk_results": [{"i": 1}], "result": {"segments": [1]}}', '{"result": "odd"}'])
    with pytest.raises(ValueError, match='"chunk_results", with chunks=True'):
        client.iter_files("b").to_pandas(explode="chunks")
    with pytest.raises(ValueError, match=r'\["result"\] hold JSON text.*differ in type'):
        client.iter_files("b").to_pandas(explode="segments")
