"""res.to_ray(): a batch read by the read tasks of a real Ray cluster (two CPUs), a page a block."""

import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
import ray.data  # noqa: E402

import soket_transcribe as st  # noqa: E402
from soket_transcribe.testing import MockServer  # noqa: E402
from requests_log import pages_requested  # noqa: E402

TOKEN = "sekrit-ray-token-27"

# Ray's own deprecations (its DataContext warns about its own defaults).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")


@pytest.fixture(scope="module")
def server():
    srv = MockServer(files=1234, seed=7, token=TOKEN)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in page order, as one process reads them
    yield
    ray.shutdown()


@pytest.fixture
def client(server):
    return st.Client(TOKEN, server.url, max_retries=1)


def test_to_ray_equals_one_process_and_fetches_every_page_once(server, client, cluster):
    expected = client.iter_files(server.batch_id, limit=50).to_arrow(flatten=True)
    server.clear_requests()
    ds = client.iter_files(server.batch_id, limit=50).to_ray(pages_per_partition=4)
    assert pages_requested(server, server.batch_id) == {1: 1, 25: 1}  # the plan, and nothing else
    server.clear_requests()
    got = pa.concat_tables([ray.get(ref) for ref in ds.to_arrow_refs()])
    assert pages_requested(server, server.batch_id) == {page: 1 for page in range(1, 26)}
    assert got.column_names == expected.column_names + ["extra"]
    for name in expected.column_names:
        # The one column only null on the plan's page is JSON text there (here: all null).
        assert got[name].to_pylist() == expected[name].to_pylist(), name
    assert got["extra"].null_count == 1234


def test_read_tasks_carry_exact_row_counts_and_the_plan_schema(server, client, cluster):
    from soket_transcribe.ray_reader import BatchDatasource

    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=10)
    tasks = BatchDatasource(parts).get_read_tasks(parallelism=8)
    assert [t.metadata.num_rows for t in tasks] == [500, 500, 234]
    assert all(t.schema == parts[0].schema for t in tasks)
    # One block per page: 10 pages, 10 tables.
    assert [b.num_rows for b in tasks[0]()] == [50] * 10


def test_a_column_selection_reaches_the_read_tasks(server, client, cluster):
    from soket_transcribe.ray_reader import BatchDatasource

    parts = client.iter_files(server.batch_id, limit=50).partitions(pages_per_partition=10)
    projected = BatchDatasource(parts).apply_projection({"file_id": "file_id", "status": "status"})
    task = projected.get_read_tasks(parallelism=2)[2]
    assert task.schema.names == ["file_id", "status"]
    assert [b.column_names for b in task()] == [["file_id", "status"]] * 5
    ds = client.iter_files(server.batch_id, limit=50).to_ray(pages_per_partition=10)
    assert ds.select_columns(["status"]).count() == 1234


def test_a_refused_token_is_a_clear_error(server, cluster):
    with pytest.raises(st.AuthenticationError):
        st.Client("wrong-token", server.url, max_retries=0).iter_files(server.batch_id).to_ray()



def test_a_key_holding_a_dot_is_selected_by_its_escaped_name(scripted_pages, cluster):
    records = [{"file_id": f"f{i}", "a.b": i, "a": {"b": -i}} for i in range(6)]
    client = scripted_pages(records, 2)
    ds = client.iter_files("b", limit=2).to_ray(pages_per_partition=1)
    assert sorted(row["a\\.b"] for row in ds.select_columns(["a\\.b"]).take_all()) == list(range(6))
    assert sorted(row["a.b"] for row in ds.select_columns(["a.b"]).take_all()) == [-5, -4, -3, -2, -1, 0]
