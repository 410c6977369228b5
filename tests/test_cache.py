"""The local cache of finished batches (`cache_dir=`), over TCP against the mock: what is kept,
what is served from it with no request, what is never kept, damage, bounds and privacy."""

import asyncio
import os
import pickle
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import soket_transcribe as st
from soket_transcribe.cli import main as cli_main
from soket_transcribe.testing import MockServer
from requests_log import pages_asked, results_requests

#: Every file final: a batch that is done.
FINAL = {"completed": 0.8, "failed": 0.2}
PAGES = 9  # 450 files, 50 a page


@pytest.fixture
def srv():
    with MockServer(files=450, seed=3, statuses=FINAL) as server:
        yield server


def client(server, cache_dir, **options):
    return st.Client(server.token, server.url, cache_dir=cache_dir, **options)


def status_requests(server):
    return sum("/status/batch/" in r["path"] for r in server.requests)


def entries(cache_dir):
    return sorted((Path(cache_dir) / "entries").glob("*.entry"))


async def _async_dicts(c, batch):
    return [f async for f in c.iter_files(batch, limit=50)]


READS = {
    "dicts": lambda c, b: list(c.iter_files(b, limit=50)),
    "dataclasses": lambda c, b: list(c.iter_files(b, limit=50, as_dataclass=True)),
    "fields": lambda c, b: list(c.iter_files(b, limit=50, fields=["file_id", "status", "result.text"])),
    "jobs": lambda c, b: list(c.iter_jobs(b, limit=50)),
    "pages": lambda c, b: [p.to_dict() for p in c.iter_files(b, limit=50).pages()],
    "async": lambda c, b: asyncio.run(_async_dicts(c, b)),
    "to_arrow": lambda c, b: c.iter_files(b, limit=50).to_arrow(),
    "to_pandas": lambda c, b: c.iter_files(b, limit=50).to_pandas(),
    "to_polars": lambda c, b: c.iter_files(b, limit=50).to_polars(),
    "arrow_stream": lambda c, b: pa.RecordBatchReader.from_stream(c.iter_files(b, limit=50)).read_all(),
}


def same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        return True
    if isinstance(a, (pa.Table, pl.DataFrame)):
        return a.equals(b)
    return a == b


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_second_read_by_a_new_client_is_equal_and_makes_no_request(srv, tmp_path, read):
    first = read(client(srv, tmp_path), srv.batch_id)
    pages = len(results_requests(srv))  # 9 of files, more of jobs (a file may have several)
    assert pages >= PAGES
    assert status_requests(srv) == 1, "one status request confirms the batch is done before it is kept"
    assert len(entries(tmp_path)) == 1
    srv.clear_requests()

    again = client(srv, tmp_path)
    second = read(again, srv.batch_id)
    assert same(first, second)
    assert srv.requests == [], "no request at all: not the results endpoint, not the status one"
    assert again.stats["cache_hits"] == pages and again.stats["requests"] == 0


def test_partial_reads_and_partitions_are_served_from_a_whole_entry(srv, tmp_path):
    everything = list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50))
    srv.clear_requests()
    c = client(srv, tmp_path)
    assert list(c.iter_files(srv.batch_id, limit=50, start_page=3, max_items=70)) == everything[100:170]
    assert list(c.iter_files(srv.batch_id, limit=50, max_items=5)) == everything[:5]
    parts = c.iter_files(srv.batch_id, limit=50).partitions(pages_per_partition=4)
    ids = [i for part in parts for i in part.to_arrow()["file_id"].to_pylist()]
    assert ids == [f["file_id"] for f in everything]
    assert srv.requests == []


def test_a_partial_read_keeps_nothing(srv, tmp_path):
    c = client(srv, tmp_path)
    list(c.iter_files(srv.batch_id, limit=50, max_items=120))
    list(c.iter_files(srv.batch_id, limit=50, start_page=2))
    res = c.iter_files(srv.batch_id, limit=50)
    next(iter(res))  # a read stopped early
    del res
    assert entries(tmp_path) == []
    assert c.cache_info()["entries"] == 0


def test_a_running_batch_is_never_kept_and_is_once_done(tmp_path):
    with MockServer(files=1, statuses=FINAL) as server:
        batch = server.add_batch(150, seed=4, statuses={"processing": 1.0}, processing_seconds=3.0)
        c = client(server, tmp_path)
        running = list(c.iter_files(batch, limit=50))
        assert any(f["status"] == "processing" for f in running), "read while files were in flight"
        assert entries(tmp_path) == [], "a batch with a file in flight is not kept"
        c.wait(batch, poll_interval=0.2)
        done = list(c.iter_files(batch, limit=50))
        assert len(entries(tmp_path)) == 1, "kept once every file is final"
        server.clear_requests()
        assert list(client(server, tmp_path).iter_files(batch, limit=50)) == done
        assert server.requests == []


def test_a_status_view_of_a_running_batch_is_not_kept(tmp_path):
    with MockServer(files=1, statuses=FINAL) as server:
        batch = server.add_batch(300, seed=5, statuses={"completed": 0.5, "processing": 0.5})
        c = client(server, tmp_path)
        completed = list(c.iter_files(batch, status="completed", limit=50))
        assert completed and all(f["status"] == "completed" for f in completed), "every record it read is final"
        assert entries(tmp_path) == []
        server.clear_requests()
        assert list(client(server, tmp_path).iter_files(batch, status="completed", limit=50)) == completed
        # the status is picked out in the client: the read asks every page of the 300 files again
        assert sorted(pages_asked(server, batch)) == list(range(1, 300 // 50 + 1))


def test_another_token_parameter_or_service_is_no_hit(srv, tmp_path):
    list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50))
    srv.clear_requests()
    other_token = st.Client("another-token", srv.url, cache_dir=tmp_path, max_retries=0)
    with pytest.raises(st.AuthenticationError):
        list(other_token.iter_files(srv.batch_id, limit=50))  # asks the service, which refuses it
    c = client(srv, tmp_path)
    others = [
        dict(limit=40),
        dict(limit=50, chunks=True),
        dict(limit=50, speech_information=True),
        dict(limit=50, status="failed"),
    ]
    for options in others:
        before = len(results_requests(srv))
        list(c.iter_files(srv.batch_id, **options))
        assert len(results_requests(srv)) > before, options
    before = len(results_requests(srv))
    list(c.iter_jobs(srv.batch_id, limit=50))
    assert len(results_requests(srv)) > before, "raw"
    with MockServer(files=450, seed=3, statuses=FINAL) as twin:  # the same batch id, another service
        assert twin.batch_id == srv.batch_id
        list(client(twin, tmp_path).iter_files(twin.batch_id, limit=50))
        assert len(results_requests(twin)) == PAGES


#: The pages a damaged entry leaves to the service, at least and at most: cut short, it loses its
#: trailer (so its index: nothing is trusted); one bit flipped in the middle byte lands in page 5's
#: frame (9 frames of about one size, then a small index), so pages 1-4 are served from the entry,
#: page 5 from the service, and pages 6-9 from either (those the workers had read from the entry
#: before page 5's check failed are kept: each is checked on its own).
FETCHED_AGAIN = {
    "truncate": (set(range(1, PAGES + 1)), set(range(1, PAGES + 1))),
    "flip": ({5}, set(range(5, PAGES + 1))),
}


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) - 40]
    else:
        data[len(data) // 2] ^= 0x01  # inside a page in the middle of the batch
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_entry_is_noticed_dropped_and_healed(srv, tmp_path, how):
    everything = list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50))
    _damage(entries(tmp_path)[0], how)
    srv.clear_requests()
    with pytest.warns(RuntimeWarning, match="damaged cache entry"):
        assert list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50)) == everything
    at_least, at_most = FETCHED_AGAIN[how]
    asked = pages_asked(srv)
    assert at_least <= set(asked) <= at_most, "what the entry could not give came from the service"
    assert len(asked) == len(set(asked)), "each page asked once"
    # Read again (and kept again, if the damaged read could not keep it): then served whole.
    list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50))
    srv.clear_requests()
    assert list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50)) == everything
    assert srv.requests == [] and len(entries(tmp_path)) == 1


WRITER = """
import sys, soket_transcribe as st
token, url, batch, cache_dir = sys.argv[1:]
sys.stdin.readline()  # both start reading together
print(len(list(st.Client(token, url, cache_dir=cache_dir).iter_files(batch, limit=50))))
"""


def test_two_processes_writing_one_entry_leave_one_good_entry(tmp_path):
    with MockServer(files=450, seed=3, statuses=FINAL, latency_ms=20) as server:
        args = [sys.executable, "-c", WRITER, server.token, server.url, server.batch_id, str(tmp_path)]
        procs = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0] and outs == ["450\n", "450\n"]
        assert len(entries(tmp_path)) == 1
        assert [p.name for p in (tmp_path / "entries").iterdir()] == [entries(tmp_path)[0].name], "no temp file"
        server.clear_requests()
        assert len(list(client(server, tmp_path).iter_files(server.batch_id, limit=50))) == 450
        assert server.requests == []


def test_least_recently_used_entries_are_evicted_under_the_cap(tmp_path):
    with MockServer(files=300, seed=3, statuses=FINAL) as server:
        batches = [server.batch_id] + [server.add_batch(300, seed=s, statuses=FINAL) for s in (8, 9)]
        list(client(server, tmp_path).iter_files(batches[0], limit=50))
        size = client(server, tmp_path).cache_info()["bytes"]
        c = client(server, tmp_path, cache_max_bytes=int(size * 2.5))
        list(c.iter_files(batches[1], limit=50))
        list(c.iter_files(batches[0], limit=50))  # served: now the most recently used
        list(c.iter_files(batches[2], limit=50))  # over the cap: batches[1] goes
        info = c.cache_info()
        assert (info["entries"], info["batches"]) == (2, 2) and info["bytes"] <= info["max_bytes"]
        for batch, kept in zip(batches, (True, False, True)):
            server.clear_requests()
            list(client(server, tmp_path).iter_files(batch, limit=50))
            assert (len(results_requests(server)) == 0) == kept, batch


def test_files_are_private_and_nothing_holds_the_token(tmp_path):
    token = "tok-5e3a91c7d2-unique"
    with MockServer(files=120, seed=1, statuses=FINAL, token=token) as server:
        cache_dir = tmp_path / "cache"
        c = client(server, cache_dir)
        list(c.iter_files(server.batch_id, limit=50))
        assert token not in repr(c) and token not in repr(c.cache_info())
    paths = list(cache_dir.rglob("*"))
    assert len([p for p in paths if p.is_file()]) == 2, paths  # the directory's key and one entry
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.is_file() else 0o700), (path, oct(mode))
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def test_refresh_reads_the_service_and_replaces_the_entry(srv, tmp_path):
    c = client(srv, tmp_path)
    everything = list(c.iter_files(srv.batch_id, limit=50))
    before = entries(tmp_path)[0].stat().st_mtime_ns
    srv.clear_requests()
    assert list(c.iter_files(srv.batch_id, limit=50, refresh=True)) == everything
    assert len(results_requests(srv)) == PAGES
    assert len(entries(tmp_path)) == 1 and entries(tmp_path)[0].stat().st_mtime_ns >= before
    srv.clear_requests()
    jobs = c.iter_jobs(srv.batch_id, limit=50, refresh=True)  # with nothing to replace
    assert list(jobs) and len(results_requests(srv)) == jobs.total_pages
    srv.clear_requests()
    assert list(c.iter_files(srv.batch_id, limit=50)) == everything and srv.requests == []


def test_cache_info_and_clear_cache(srv, tmp_path):
    c = client(srv, tmp_path)
    second = srv.add_batch(100, seed=2, statuses=FINAL)
    list(c.iter_files(srv.batch_id, limit=50))
    list(c.iter_jobs(srv.batch_id, limit=50))
    list(c.iter_files(second, limit=50))
    info = c.cache_info()
    assert (info["entries"], info["batches"]) == (3, 2)
    assert info["bytes"] == sum(p.stat().st_size for p in entries(tmp_path))
    assert info["dir"] == str(tmp_path) and info["max_bytes"] == 1 << 30
    assert c.clear_cache(srv.batch_id) == 2
    assert c.cache_info()["entries"] == 1
    assert c.clear_cache() == 1 and c.cache_info()["entries"] == 0


def gzip_answers(server, batch, pages):
    """The size of the answers as the service sends them, gzip-compressed."""
    total = 0
    for page in range(1, pages + 1):
        url = f"{server.url.rstrip('/')}/results/batch/{batch}?page={page}&limit=50"
        headers = {"Authorization": f"Bearer {server.token}", "Accept-Encoding": "gzip"}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            total += len(answer.read())
    return total


def test_the_entry_is_smaller_than_the_gzip_answers(srv, tmp_path):
    c = client(srv, tmp_path)
    list(c.iter_files(srv.batch_id, limit=50))
    assert c.cache_info()["bytes"] <= gzip_answers(srv, srv.batch_id, PAGES)


def test_no_cache_unless_asked_and_the_environment_names_one(srv, tmp_path, monkeypatch):
    monkeypatch.delenv("SOKET_CACHE_DIR", raising=False)
    plain = st.Client(srv.token, srv.url)
    assert plain.cache_dir is None and plain.cache_info() is None and plain.clear_cache() == 0
    monkeypatch.setenv("SOKET_CACHE_DIR", str(tmp_path / "env"))
    from_env = st.Client(srv.token, srv.url)
    assert from_env.cache_dir == str(tmp_path / "env")
    list(from_env.iter_files(srv.batch_id, limit=50))
    assert len(entries(tmp_path / "env")) == 1
    monkeypatch.setenv("SOKET_CACHE_DIR", "")
    with pytest.raises(ValueError, match="SOKET_CACHE_DIR"):
        st.Client(srv.token, srv.url)


def test_a_pickled_client_keeps_its_cache(srv, tmp_path):
    c = pickle.loads(pickle.dumps(client(srv, tmp_path, cache_max_bytes=10**7)))
    assert c.cache_dir == str(tmp_path) and c.cache_info()["max_bytes"] == 10**7


def test_bad_cache_arguments_are_refused(srv, tmp_path):
    with pytest.raises(ValueError, match="cache_max_bytes"):
        client(srv, tmp_path, cache_max_bytes=0)
    with pytest.raises(ValueError, match="cache_max_bytes"):
        client(srv, tmp_path, cache_max_bytes=-5)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(OSError, match="cache directory"):
        client(srv, a_file)


def test_the_cache_command_shows_and_clears(srv, tmp_path, capsys, monkeypatch):
    list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50))
    assert cli_main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 entry" in out and "1 batch" in out and str(tmp_path) in out
    monkeypatch.setenv("SOKET_CACHE_DIR", str(tmp_path))
    assert cli_main(["cache", "clear", "no-such-batch"]) == 0
    assert "removed 0 entries" in capsys.readouterr().out
    assert cli_main(["cache", "clear", srv.batch_id]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert entries(tmp_path) == []
    monkeypatch.delenv("SOKET_CACHE_DIR")
    assert cli_main(["cache", "info"]) == 2
    assert "SOKET_CACHE_DIR" in capsys.readouterr().err


# transport="download": one entry for both transports (a download's records are the paged read's,
# page for page), served from disk and kept by the same rule.


def download_requests(server):
    return sum("/download/batch/" in r["path"] for r in server.requests)


def page_dicts(res):
    return [p.to_dict() for p in res.pages()]


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "identity"])
def test_a_download_read_is_served_from_a_paged_reads_entry(tmp_path, gzip):
    with MockServer(files=450, seed=3, statuses=FINAL, gzip=gzip) as srv:
        first = client(srv, tmp_path)
        everything = list(first.iter_files(srv.batch_id, limit=50))
        table = first.iter_files(srv.batch_id, limit=50).to_arrow()
        assert len(entries(tmp_path)) == 1
        srv.clear_requests()

        c = client(srv, tmp_path)
        res = c.iter_files(srv.batch_id, limit=50, transport="download")
        assert list(res) == everything
        assert (res.total, res.complete) == (450, True)
        assert c.iter_files(srv.batch_id, limit=50, transport="download").to_arrow().equals(table)
        assert srv.requests == [], "no stream, no status request: the entry serves it"
        assert c.stats["cache_hits"] == 2 * PAGES and c.stats["requests"] == 0


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "identity"])
@pytest.mark.parametrize("raw", [False, True], ids=["files", "jobs"])
def test_a_finished_download_is_kept_and_serves_either_transport(tmp_path, gzip, raw):
    with MockServer(files=450, seed=3, statuses=FINAL, gzip=gzip) as srv:
        read = (lambda c, **kw: c.iter_jobs(srv.batch_id, limit=50, **kw)) if raw else (
            lambda c, **kw: c.iter_files(srv.batch_id, limit=50, **kw)
        )
        plain = st.Client(srv.token, srv.url)  # no cache: what the service sends
        expected, expected_pages = list(read(plain)), page_dicts(read(plain))
        srv.clear_requests()

        res = read(client(srv, tmp_path), transport="download")
        assert list(res) == expected
        assert (res.total, res.complete) == (len(expected), True)
        assert len(entries(tmp_path)) == 1, "a whole download of a finished batch is kept"
        assert download_requests(srv) == 1 and len(results_requests(srv)) == 0
        assert status_requests(srv) == 1, "the size asked beside the stream also said it is finished"
        srv.clear_requests()

        for transport in ("pages", "download"):
            c = client(srv, tmp_path)
            res = read(c, transport=transport)
            assert list(res) == expected, transport
            assert (res.total, res.total_pages, res.complete) == (len(expected), len(expected_pages), True)
            assert page_dicts(read(c, transport=transport)) == expected_pages, "pages as the service cuts them"
            assert read(c, transport=transport).to_arrow().equals(read(plain).to_arrow())
            assert c.stats["requests"] == 0 and c.stats["cache_hits"] == 3 * len(expected_pages)
        assert all("/results/batch/" in r["path"] for r in srv.requests), "only the `plain` reads"


def test_a_download_with_fields_keeps_whole_records(srv, tmp_path):
    everything = list(st.Client(srv.token, srv.url).iter_files(srv.batch_id, limit=50))
    narrow = list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50, fields=["file_id"], transport="download"))
    assert narrow == [{"file_id": f["file_id"]} for f in everything]
    srv.clear_requests()
    assert list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50)) == everything
    assert srv.requests == []


def test_a_partial_download_keeps_nothing_and_is_served_from_an_entry(srv, tmp_path):
    c = client(srv, tmp_path)
    list(c.iter_files(srv.batch_id, limit=50, max_items=120, transport="download"))
    list(c.iter_files(srv.batch_id, limit=50, start_page=2, transport="download"))
    assert entries(tmp_path) == []
    everything = list(c.iter_files(srv.batch_id, limit=50, transport="download"))
    srv.clear_requests()
    res = c.iter_files(srv.batch_id, limit=50, start_page=3, max_items=70, transport="download")
    assert list(res) == everything[100:170] and res.next_page == 4, "page 4 was cut short"
    assert srv.requests == []


def test_a_running_batchs_download_is_not_kept_and_is_once_done(tmp_path):
    with MockServer(files=1, statuses=FINAL) as server:
        batch = server.add_batch(150, seed=4, statuses={"processing": 1.0}, processing_seconds=3.0)
        c = client(server, tmp_path)
        running = list(c.iter_files(batch, limit=50, transport="download"))
        assert any(f["status"] == "processing" for f in running), "read while files were in flight"
        assert entries(tmp_path) == [], "a batch with a file in flight is not kept"
        c.wait(batch, poll_interval=0.2)
        done = list(c.iter_files(batch, limit=50, transport="download"))
        assert len(entries(tmp_path)) == 1, "kept once every file is final"
        server.clear_requests()
        assert list(client(server, tmp_path).iter_files(batch, limit=50, transport="download")) == done
        assert server.requests == []


def test_a_status_view_of_a_running_batch_is_not_kept_by_a_download(tmp_path):
    with MockServer(files=1, statuses=FINAL) as server:
        batch = server.add_batch(300, seed=5, statuses={"completed": 0.5, "processing": 0.5})
        c = client(server, tmp_path)
        completed = list(c.iter_files(batch, status="completed", limit=50, transport="download"))
        assert completed and all(f["status"] == "completed" for f in completed), "every record it read is final"
        assert entries(tmp_path) == [], "the status endpoint says the batch runs"


def test_refresh_downloads_again_and_replaces_the_entry(srv, tmp_path):
    c = client(srv, tmp_path)
    everything = list(c.iter_files(srv.batch_id, limit=50))
    before = entries(tmp_path)[0].stat().st_mtime_ns
    srv.clear_requests()
    assert list(c.iter_files(srv.batch_id, limit=50, transport="download", refresh=True)) == everything
    assert download_requests(srv) == 1 and len(results_requests(srv)) == 0
    assert len(entries(tmp_path)) == 1 and entries(tmp_path)[0].stat().st_mtime_ns >= before
    srv.clear_requests()
    again = client(srv, tmp_path)
    assert page_dicts(again.iter_files(srv.batch_id, limit=50)) == page_dicts(st.Client(srv.token, srv.url).iter_files(srv.batch_id, limit=50))
    assert len(results_requests(srv)) == PAGES and again.stats["requests"] == 0, "the replaced entry serves"


def test_an_empty_batchs_download_is_kept_as_its_one_empty_page(tmp_path):
    with MockServer(files=1, statuses=FINAL) as server:
        batch = server.add_batch(0, seed=1, statuses=FINAL)
        expected = page_dicts(st.Client(server.token, server.url).iter_files(batch, limit=50))
        c = client(server, tmp_path)
        assert list(c.iter_files(batch, limit=50, transport="download")) == []
        assert len(entries(tmp_path)) == 1
        server.clear_requests()
        again = client(server, tmp_path)
        assert page_dicts(again.iter_files(batch, limit=50)) == expected
        assert server.requests == []


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_entry_under_a_download_is_noticed_and_healed(srv, tmp_path, how):
    everything = list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50, transport="download"))
    _damage(entries(tmp_path)[0], how)
    srv.clear_requests()
    with pytest.warns(RuntimeWarning, match="damaged cache entry"):
        assert list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50, transport="download")) == everything
    assert srv.requests, "what the entry could not give came from the service"
    list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50, transport="download"))
    srv.clear_requests()
    assert list(client(srv, tmp_path).iter_files(srv.batch_id, limit=50, transport="download")) == everything
    assert srv.requests == [] and len(entries(tmp_path)) == 1
