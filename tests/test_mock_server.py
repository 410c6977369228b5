"""The embedded mock server, spoken to over plain HTTP (http.client): what a user of
`soket_transcribe.testing.MockServer` sees, whatever client they test."""

from __future__ import annotations

import collections
import gzip
import hashlib
import http.client
import inspect
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote, urlsplit

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer


class Reply:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        body = self.body
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return json.loads(body)


def get(
    base_url: str,
    path: str,
    *,
    token: Optional[str] = "test-token",
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 10.0,
) -> Reply:
    """GET base_url + path on a fresh connection (http.client never follows redirects)."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn.request("GET", url.path + path, headers=sent)
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def results(srv: MockServer, query: str = "", batch_id: Optional[str] = None) -> Reply:
    return get(srv.url, f"/results/batch/{quote(batch_id or srv.batch_id, safe='')}?{query}")


@pytest.fixture
def srv():
    with MockServer(files=105) as server:
        yield server


def test_serves_a_documented_page(srv: MockServer) -> None:
    assert srv.url == f"http://127.0.0.1:{srv.port}/transcribe"
    reply = results(srv, "limit=10&speech_information=true&chunks=true")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    page = reply.json()
    assert list(page) == ["batch_id", "page", "limit", "total_pages", "total_files", "count", "files"]
    assert (page["batch_id"], page["page"], page["limit"], page["count"]) == (srv.batch_id, 1, 10, 10)
    for f in page["files"]:
        assert {"file_id", "filename", "status", "errors", "chunk_results", "created_at", "metadata"} <= set(f)
        if f["status"] == "completed":
            assert f["result"]["text"] and f["result"]["segments"][0]["speaker_id"].startswith("S")
        elif f["status"] == "failed":
            assert "result" not in f and f["errors"][0]["code"]
        else:
            assert f["result"] is None


def test_pages_cover_the_batch_once(srv: MockServer) -> None:
    ids = []
    for page_no in (1, 2, 3):
        page = results(srv, f"page={page_no}&limit=50").json()
        assert (page["total_files"], page["total_pages"]) == (105, 3)
        ids += [f["file_id"] for f in page["files"]]
    assert len(ids) == len(set(ids)) == 105
    past = results(srv, "page=4&limit=50").json()
    assert (past["count"], past["files"], past["total_files"], past["total_pages"]) == (0, [], 105, 3)


def test_status_filters_and_raw_jobs_add_up(srv: MockServer) -> None:
    statuses = ("completed", "failed", "retrying", "processing")
    assert sum(results(srv, f"status={s}&limit=1").json()["total_files"] for s in statuses) == 105
    jobs = results(srv, "raw=true&limit=200").json()
    assert set(jobs) >= {"total_jobs", "jobs"} and "files" not in jobs
    assert 105 < jobs["total_jobs"] <= 315 and jobs["count"] == jobs["total_jobs"]
    assert sum(results(srv, f"raw=true&status={s}&limit=1").json()["total_jobs"] for s in statuses) == jobs["total_jobs"]
    for job in jobs["jobs"]:
        assert {"job_id", "file_id", "batch_id", "filename", "chunk_index", "status", "created_at"} <= set(job)


def test_auth_is_required(srv: MockServer) -> None:
    missing = get(srv.url, f"/results/batch/{srv.batch_id}", token=None)
    assert (missing.status, missing.json()) == (401, {"detail": "Not authenticated"})
    wrong = get(srv.url, f"/results/batch/{srv.batch_id}", token="nope")
    assert (wrong.status, wrong.json()) == (401, {"detail": "Invalid token"})
    assert get(srv.url, f"/results/batch/{srv.batch_id}", token=srv.token).status == 200
    assert [(r["auth_present"], r["authorized"]) for r in srv.requests] == [(False, False), (True, False), (True, True)]


@pytest.mark.parametrize(
    "query, loc",
    [("limit=0", "limit"), ("limit=201", "limit"), ("page=0", "page"), ("page=two", "page"),
     ("status=done", "status"), ("raw=maybe", "raw"), ("chunks=2", "chunks"), ("speech_information=x", "speech_information")],
)
def test_invalid_queries_are_422(srv: MockServer, query: str, loc: str) -> None:
    reply = results(srv, query)
    assert reply.status == 422
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["query", loc]
    assert error["msg"] and error["type"]


def test_unknown_batch(srv: MockServer) -> None:
    reply = results(srv, batch_id="no-such-batch")
    assert (reply.status, reply.json()) == (404, {"error": "batch not found"})
    empty = results(srv, "status=failed", batch_id="no-such-batch").json()
    assert (empty["total_files"], empty["total_pages"], empty["files"]) == (0, 0, [])
    with MockServer(not_found_status=200) as lenient:
        reply = results(lenient, batch_id="no-such-batch")
        assert (reply.status, reply.json()) == (200, {"error": "batch not found"})


def test_batch_id_is_one_percent_encoded_segment(srv: MockServer) -> None:
    odd = "a/b?c#d é%"
    assert srv.add_batch(7, batch_id=odd) == odd
    page = results(srv, batch_id=odd).json()
    assert (page["batch_id"], page["total_files"]) == (odd, 7)
    assert srv.requests[-1]["path"].endswith("/a%2Fb%3Fc%23d%20%C3%A9%25")


def test_gzip_when_accepted(srv: MockServer) -> None:
    plain = results(srv, "limit=100")
    zipped = get(srv.url, f"/results/batch/{srv.batch_id}?limit=100", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == plain.body
    assert len(zipped.body) * 3 < len(plain.body)
    assert srv.requests[-1]["accept_encoding"] == "gzip"
    with MockServer(gzip=False) as off:
        reply = get(off.url, f"/results/batch/{off.batch_id}", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in reply.headers


def test_records_are_deterministic_by_seed() -> None:
    def first_page(seed: int) -> Any:
        with MockServer(seed=seed) as server:
            return results(server, "limit=20&speech_information=true").json()

    assert first_page(7) == first_page(7)
    assert first_page(7)["files"] != first_page(8)["files"]


def test_records_look_real() -> None:
    with MockServer(files=1000) as server:
        files = []
        for page_no in range(1, 6):
            files += results(server, f"page={page_no}&limit=200").json()["files"]
    names = [f["filename"] for f in files]
    assert len(set(names)) > 990
    assert sum(not n.isascii() for n in names) > 200
    assert {n.rsplit(".", 1)[1] for n in names} == {"wav", "mp3", "m4a", "flac"}
    assert any(f["metadata"].get("trace_id", 0) > 2**64 for f in files)
    statuses = [f["status"] for f in files]
    assert 800 < statuses.count("completed") < 900 and statuses.count("failed") > 60
    texts = " ".join(f["result"]["text"] for f in files if f["status"] == "completed").split()
    assert len(set(texts)) > 200


def test_status_weights() -> None:
    with MockServer(files=50, statuses={"failed": 1.0}) as server:
        assert results(server, "status=failed").json()["total_files"] == 50
    with pytest.raises(ValueError, match='unknown status "done" in statuses'):
        MockServer(statuses={"done": 1.0})
    with pytest.raises(ValueError, match="fault_rate must be within 0..=1, not 2"):
        MockServer(fault_rate=2.0)


def test_random_faults_follow_the_rate() -> None:
    with MockServer(fault_rate=0.2, seed=1) as server:
        bad = 0
        for _ in range(600):
            try:
                reply = results(server, "limit=5")
                ok = reply.status == 200 and isinstance(reply.json(), dict)
            except (http.client.HTTPException, ValueError, ConnectionError):
                ok = False
            bad += not ok
        assert 80 <= server.faults_injected <= 160
        assert bad == server.faults_injected
        faults = [r["fault"] for r in server.requests if r["fault"]]
        assert len(faults) == server.faults_injected
        assert set(faults) == {"status:503", "429", "cut", "malformed"}


def test_random_faults_are_reproducible() -> None:
    def faults(seed: int):
        with MockServer(fault_rate=0.3, seed=seed) as server:
            for _ in range(50):
                try:
                    results(server, "limit=1")
                except http.client.HTTPException:
                    pass
            return [r["fault"] for r in server.requests]

    assert faults(3) == faults(3)
    assert faults(3) != faults(4)


def test_scripted_faults(srv: MockServer) -> None:
    srv.fail_next("status", 2, status=502)
    srv.fail_next("429", retry_after=3)
    srv.fail_next("cut")
    srv.fail_next("malformed")
    for _ in range(2):
        assert results(srv).status == 502
    limited = results(srv)
    assert (limited.status, limited.headers["retry-after"]) == (429, "3")
    with pytest.raises(http.client.IncompleteRead):
        results(srv, "limit=100")
    malformed = results(srv)
    assert malformed.status == 200
    with pytest.raises(ValueError, match="Expecting|Extra data|Unterminated|Invalid"):
        malformed.json()
    assert results(srv).status == 200
    assert srv.faults_injected == 5
    assert [r["fault"] for r in srv.requests] == ["status:502", "status:502", "429", "cut", "malformed", None]
    with pytest.raises(ValueError, match="unknown fault kind"):
        srv.fail_next("explode")


def test_a_status_fault_sends_retry_after_when_given(srv: MockServer) -> None:
    """A service under load answers 503 with `Retry-After`: a throttle, as a 429 is."""
    srv.fail_next("status", status=503, retry_after=2)
    srv.fail_next("status", status=503)
    busy = results(srv)
    assert (busy.status, busy.headers.get("retry-after"), busy.json()) == (503, "2", {"detail": "Service Unavailable"})
    plain = results(srv)
    assert (plain.status, plain.headers.get("retry-after")) == (503, None)
    assert [r["fault"] for r in srv.requests] == ["status:503", "status:503"]


def test_stall_triggers_client_timeouts(srv: MockServer) -> None:
    srv.fail_next("stall", stall_s=2.0)  # well past the timeout, however late the client is scheduled
    with pytest.raises(socket.timeout):  # it times out, rather than wait the stall out and answer
        results_with_timeout(srv, 0.2)
    assert results(srv).status == 200


def results_with_timeout(srv: MockServer, timeout: float) -> Reply:
    return get(srv.url, f"/results/batch/{srv.batch_id}", timeout=timeout)


def test_latency_is_added_without_serialising_requests() -> None:
    with MockServer(latency_ms=200) as server:
        started = time.monotonic()
        threads = [threading.Thread(target=results, args=(server,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - started >= 0.2
        # Not serialised: requests overlapped at the server (measured there, not by a wall clock).
        assert max(r["in_flight"] for r in server.requests) >= 2


def test_redirect_to_another_server(srv: MockServer) -> None:
    with MockServer(host="127.0.0.2") as target, MockServer(redirect_to=target.url) as redirecting:
        assert target.url.startswith("http://127.0.0.2:")
        reply = results(redirecting, "page=2&limit=10")
        assert reply.status == 307
        assert reply.headers["location"] == f"{target.url}/results/batch/{redirecting.batch_id}?page=2&limit=10"


def test_request_log(srv: MockServer) -> None:
    results(srv, "limit=3&raw=false")
    (record,) = srv.requests
    assert record == {
        "method": "GET",
        "path": f"/transcribe/results/batch/{srv.batch_id}",
        "query": "limit=3&raw=false",
        "auth_present": True,
        "authorized": True,
        "accept_encoding": "identity",
        "fault": None,
        "in_flight": 1,
        "throttled": False,
        "time": record["time"],
    }
    assert 0 < record["time"] < 60
    srv.clear_requests()
    assert srv.requests == []


def test_growing_batch(srv: MockServer) -> None:
    batch_id = srv.add_batch(10, seed=3, grow_per_request=5)
    totals = [results(srv, "limit=1", batch_id=batch_id).json()["total_files"] for _ in range(3)]
    assert totals == [10, 15, 20]
    status = get(srv.url, f"/status/batch/{batch_id}").json()
    assert (status["total_files"], status["status"]) == (25, "processing")


def test_status_endpoint(srv: MockServer) -> None:
    status = get(srv.url, f"/status/batch/{srv.batch_id}").json()
    assert status["batch_id"] == srv.batch_id
    assert status["total_files"] == 105
    records = [f for p in range(1, 4) for f in results(srv, f"page={p}&limit=50").json()["files"]]
    counts = collections.Counter(f["status"] for f in records)
    assert (status["files_completed"], status["files_failed"]) == (counts["completed"], counts["failed"]) == (87, 9)
    assert status["estimated_audio_seconds"] == 35378.7, "seeded"


def test_stop_closes_the_port_and_keeps_the_log() -> None:
    with MockServer() as server:
        results(server)
    with pytest.raises(ConnectionError):
        results(server)
    assert len(server.requests) == 1
    server.stop()


def test_the_pytest_fixture(soket_mock: MockServer) -> None:
    page = results(soket_mock).json()
    assert (page["total_files"], soket_mock.token) == (1000, "test-token")




def ids_of(page: Dict[str, Any]) -> List[str]:
    return [f["file_id"] for f in page["files"]]


def test_batch_growing_at_the_front(srv: MockServer) -> None:
    batch_id = srv.add_batch(6, seed=2, grow_per_request=2, grow_at="front")
    first = results(srv, "limit=50", batch_id=batch_id).json()
    second = results(srv, "limit=50", batch_id=batch_id).json()
    assert (first["total_files"], second["total_files"]) == (6, 8)
    assert second["files"][2:] == first["files"], "every file moved back two places, unchanged"
    assert not set(ids_of(second)[:2]) & set(ids_of(first))
    page_two = results(srv, "page=2&limit=5", batch_id=batch_id).json()
    assert ids_of(page_two) == ids_of(second)[3:8], "two more in front: page 2 repeats 2 files of page 1"
    queries = [r["query"] for r in srv.requests]
    assert queries == ["limit=50", "limit=50", "page=2&limit=5"]


def test_batch_completing_per_request(srv: MockServer) -> None:
    batch_id = srv.add_batch(10, statuses={"processing": 1.0}, complete_per_request=2)
    views = [results(srv, "status=processing&limit=50", batch_id=batch_id).json() for _ in range(3)]
    assert [v["total_files"] for v in views] == [10, 8, 6]
    everything = ids_of(views[0])
    assert ids_of(views[1]) == everything[2:] and ids_of(views[2]) == everything[4:]
    completed = results(srv, "status=completed", batch_id=batch_id).json()
    assert ids_of(completed) == everything[:6]
    assert all(f["result"]["text"] and f["errors"] == [] for f in completed["files"])
    status = get(srv.url, f"/status/batch/{batch_id}").json()
    assert (status["files_completed"], status["files_processing"], status["status"]) == (8, 2, "processing")


def test_changing_batches_are_deterministic() -> None:
    def read() -> List[Any]:
        with MockServer(files=5) as server:
            batch_id = server.add_batch(
                40,
                seed=5,
                grow_per_request=3,
                grow_at="front",
                complete_per_request=2,
                statuses={"processing": 0.5, "failed": 0.5},
            )
            return [
                results(server, f"page={p}&limit=7&status={s}", batch_id=batch_id).json()
                for p in (1, 2, 3)
                for s in ("processing", "failed", "completed")
            ]

    assert read() == read()


def test_add_batch_refuses_bad_arguments(srv: MockServer) -> None:
    with pytest.raises(ValueError, match="grow_at must be 'end' or 'front', not \"middle\""):
        srv.add_batch(5, grow_at="middle")
    with pytest.raises(ValueError, match='unknown status "done"'):
        srv.add_batch(5, statuses={"done": 1.0})
    with pytest.raises(ValueError, match="processing_seconds must be a duration in seconds, not -1"):
        srv.add_batch(5, processing_seconds=-1)


def raw_get(srv: MockServer, path: str) -> bytes:
    reply = get(srv.url, path)
    assert reply.status == 200 and "content-encoding" not in reply.headers
    return reply.body


def test_records_stay_byte_identical_for_a_seed() -> None:
    """Pages hashed before the word lists moved to `words.txt`: a seed's records never change."""
    digest = hashlib.sha256()
    for seed in (0, 7):
        with MockServer(files=3000, seed=seed, gzip=False) as server:
            for query in (
                "page=1&limit=200&chunks=true&speech_information=true",
                "page=3&limit=200",
                "page=15&limit=200&raw=true&speech_information=true",
                "page=2&limit=200&status=failed&chunks=true",
            ):
                digest.update(raw_get(server, f"/results/batch/{server.batch_id}?{query}"))
    assert digest.hexdigest() == "c9fc3dcd44824ea5fba52716bc210054bdcb5a1692be12aaf8f04bc21fbb1bea"


def test_testing_is_an_attribute_of_the_package() -> None:
    code = "import soket_transcribe as st; import sys; assert 'soket_transcribe.testing' not in sys.modules; "
    code += "print(st.testing.MockServer.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "MockServer\n", "")
    import soket_transcribe as st

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        st.nope  # noqa: B018


def test_the_python_class_is_the_rust_class() -> None:
    from soket_transcribe import _core

    assert MockServer is _core.MockServer
    signature = inspect.signature(MockServer)
    assert list(signature.parameters)[-5:] == ["processing_seconds", "log_limit", "rate_limit", "burst", "retry_after"]
    assert signature.parameters["retry_after"].default == 1.0
    assert "log_limit" in (MockServer.__doc__ or "") and "600 bytes" in (MockServer.__doc__ or "")

    class Named(MockServer):
        pass

    with Named(files=3) as server:
        assert repr(server) == f"MockServer(url={server.url!r}, batch_id={server.batch_id!r})"
        assert results(server).json()["total_files"] == 3


def test_the_request_log_is_bounded() -> None:
    with MockServer(files=3, log_limit=3) as server:
        for n in range(1, 6):
            results(server, f"limit={n}")
        assert [r["query"] for r in server.requests] == ["limit=3", "limit=4", "limit=5"]
        assert server.requests_total == 5
        server.clear_requests()
        assert (server.requests, server.requests_total) == ([], 5)


def test_one_file_is_byte_equal_to_its_element_of_the_batch(srv: MockServer) -> None:
    options = "chunks=true&speech_information=true"
    page = raw_get(srv, f"/results/batch/{srv.batch_id}?limit=50&{options}")
    ids = [f["file_id"] for f in json.loads(page)["files"]]
    for file_id in ids:
        one = raw_get(srv, f"/results/file/{quote(file_id, safe='')}?{options}")
        assert one in page and json.loads(one)["file_id"] == file_id
    plain = get(srv.url, f"/results/file/{ids[0]}").json()
    assert "chunk_results" not in plain and set(plain) >= {"file_id", "filename", "status", "errors"}
    missing = get(srv.url, "/results/file/no-such-file")
    assert (missing.status, missing.json()) == (404, {"error": "file not found"})
    assert get(srv.url, f"/results/file/{ids[0]}", token=None).status == 401
    with MockServer(files=3, not_found_status=200) as lenient:
        assert get(lenient.url, "/results/file/x").json() == {"error": "file not found"}


def test_status_and_file_endpoints_get_the_results_faults(srv: MockServer) -> None:
    file_id = results(srv, "limit=1").json()["files"][0]["file_id"]
    srv.fail_next("status", 2, status=502)
    srv.fail_next("429", retry_after=2)
    assert get(srv.url, f"/status/batch/{srv.batch_id}").status == 502
    assert get(srv.url, f"/results/file/{file_id}").status == 502
    limited = get(srv.url, f"/status/batch/{srv.batch_id}")
    assert (limited.status, limited.headers["retry-after"]) == (429, "2")
    assert [r["fault"] for r in srv.requests] == [None, "status:502", "status:502", "429"]
    status = get(srv.url, f"/status/batch/{srv.batch_id}").json()
    documented = ["batch_id", "total_files", "files_completed", "files_failed", "estimated_audio_seconds"]
    documented += ["estimated_completion_seconds", "status"]
    assert list(status) == documented + ["files_retrying", "files_processing"]


def counts_by_results(server: MockServer) -> Dict[str, int]:
    return {
        s: results(server, f"status={s}&limit=1").json()["total_files"]
        for s in ("completed", "failed", "retrying", "processing")
    }


def counts_by_status(server: MockServer) -> Dict[str, Any]:
    status = get(server.url, f"/status/batch/{server.batch_id}").json()
    return {s: status[f"files_{s}"] for s in ("completed", "failed", "retrying", "processing")} | {
        "status": status["status"]
    }


def test_a_batch_progresses_over_processing_seconds() -> None:
    weights = {"completed": 0.4, "failed": 0.1, "retrying": 0.2, "processing": 0.3}
    with MockServer(files=300, statuses=weights, processing_seconds=1.0) as server:
        started = time.monotonic()
        before = counts_by_status(server)
        assert before["status"] == "processing" and before["processing"] + before["retrying"] > 100
        seen = []
        while True:
            between = counts_by_results(server)
            after = counts_by_status(server)
            # Files only finish: what the results endpoint saw lies between two status reads.
            for s in ("completed", "failed"):
                assert before[s] <= between[s] <= after[s]
            for s in ("retrying", "processing"):
                assert before[s] >= between[s] >= after[s]
            seen.append(between["completed"])
            if after["status"] == "completed":
                break
            before = after
            assert time.monotonic() - started < 3
        assert after["processing"] == after["retrying"] == 0 and after["completed"] + after["failed"] == 300
        assert counts_by_results(server) == {k: v for k, v in after.items() if k != "status"}
        assert len(set(seen)) > 2, "the batch moved in steps, not at once"


# -- in-flight counts, rate limiting, failed batches, and the mock as a test tool -----------


def wait_for(predicate, what: str) -> None:
    """Polls the server's state (no fixed sleep): a request's arrival shows in the log at once."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_the_log_counts_requests_in_flight(srv: MockServer) -> None:
    srv.fail_next("stall", stall_s=2.0)
    stalled = threading.Thread(target=results, args=(srv,))
    stalled.start()
    wait_for(lambda: len(srv.requests) == 1, "the stalled request")
    results(srv)  # arrives while the first one stalls
    stalled.join()
    results(srv)  # arrives alone: the two before were answered
    assert [r["in_flight"] for r in srv.requests] == [1, 2, 1]


def test_rate_limit_answers_429_above_the_bucket() -> None:
    # 0.001/s: no token comes back during the test, so the count is exact.
    with MockServer(files=5, rate_limit=0.001, burst=3, retry_after=2) as server:
        file_id = results(server, "limit=1").json()["files"][0]["file_id"]
        assert get(server.url, f"/status/batch/{server.batch_id}").status == 200
        assert get(server.url, f"/results/file/{file_id}").status == 200
        limited = [results(server), get(server.url, f"/status/batch/{server.batch_id}"), results(server)]
        assert [r.status for r in limited] == [429, 429, 429]
        assert limited[0].json() == {"detail": "Too Many Requests"}
        assert limited[0].headers["retry-after"] == "2" and "retry-after-ms" not in limited[0].headers
        # A path outside the API takes no token.
        assert get(server.url, "/nope").status == 404
        assert server.throttled == 3
        assert [r["throttled"] for r in server.requests] == [False] * 3 + [True] * 3 + [False]
        assert [r["fault"] for r in server.requests] == [None] * 7


def test_rate_limit_headers() -> None:
    with MockServer(files=5, rate_limit=0.001, burst=1, retry_after=None) as bare:
        assert results(bare).status == 200
        limited = results(bare)
        assert limited.status == 429 and "retry-after" not in limited.headers
    with MockServer(files=5, rate_limit=0.001, burst=1, retry_after=0.25) as fractional:
        assert results(fractional).status == 200
        limited = results(fractional)
        assert (limited.status, limited.headers["retry-after"], limited.headers["retry-after-ms"]) == (429, "1", "250")


def test_rate_limit_comes_before_faults_and_batch_changes() -> None:
    with MockServer(files=5, rate_limit=0.001, burst=1) as server:
        batch_id = server.add_batch(10, grow_per_request=5)
        assert results(server, "limit=1", batch_id=batch_id).json()["total_files"] == 10
        server.fail_next("status", status=500)
        assert results(server, batch_id=batch_id).status == 429
        assert server.clear_faults() == 1, "the throttled request used up no scripted fault"
        assert server.faults_injected == 0


def test_rate_limit_paces_a_client_to_the_end() -> None:
    with MockServer(files=200, rate_limit=200, burst=2, retry_after=0.01) as server:
        client = st.Client(server.token, server.url, concurrency=4, max_retries=100)
        assert len(list(client.iter_files(server.batch_id, limit=10))) == 200
        assert server.throttled > 0
        served = [r for r in server.requests if not r["throttled"]]
        assert len(served) == 20


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate_limit": 0}, "rate_limit must be"),
        ({"rate_limit": float("nan")}, "rate_limit must be"),
        ({"rate_limit": 10, "burst": 0}, "burst must be 1 or more"),
        ({"burst": 5}, "burst needs a rate_limit"),
        ({"rate_limit": 10, "retry_after": -1}, "retry_after must be"),
        ({"rate_limit": 10, "burst": -1}, "burst must be an integer from 0 to 4294967295, not -1"),
    ],
)
def test_rate_limit_refuses_bad_arguments(kwargs: Dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockServer(**kwargs)


def test_a_batch_whose_files_all_failed_has_failed(srv: MockServer) -> None:
    batch_id = srv.add_batch(10, statuses={"failed": 1})
    status = get(srv.url, f"/status/batch/{batch_id}").json()
    assert (status["status"], status["files_failed"], status["total_files"]) == ("failed", 10, 10)
    assert st.Client(srv.token, srv.url).wait(batch_id, poll_interval=0.1).status == "failed"
    mixed = srv.add_batch(10, statuses={"failed": 1, "completed": 1})
    assert get(srv.url, f"/status/batch/{mixed}").json()["status"] == "completed"


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: MockServer(files=-1), "files"),
        (lambda: MockServer(seed=-1), "seed"),
        (lambda: MockServer(latency_ms=-5), "latency_ms"),
        (lambda: MockServer(port=70000), "port"),
        (lambda: MockServer(log_limit=-1), "log_limit"),
        (lambda: MockServer(seed=2**64), "seed"),
    ],
)
def test_integers_out_of_range_are_a_value_error_naming_them(make: Any, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be an integer from 0 to"):
        make()


def test_method_integers_out_of_range_are_a_value_error(srv: MockServer) -> None:
    for call, name in [
        (lambda: srv.fail_next("cut", times=-1), "times"),
        (lambda: srv.fail_next("status", status=-1), "status"),
        (lambda: srv.fail_next("shift", shift_by=-1), "shift_by"),
        (lambda: srv.add_batch(-1), "files"),
        (lambda: srv.add_batch(1, grow_per_request=-1), "grow_per_request"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be an integer from 0 to"):
            call()
    with pytest.raises(TypeError):
        srv.fail_next("cut", times="2")  # type: ignore[arg-type]
    assert srv.clear_faults() == 0


def test_clear_faults_drops_the_queued_ones(srv: MockServer) -> None:
    srv.fail_next("status", 3)
    assert results(srv).status == 503
    assert srv.clear_faults() == 2
    assert results(srv).status == 200
    assert srv.clear_faults() == 0
    assert srv.faults_injected == 1


def test_a_wildcard_host_gives_a_loopback_url() -> None:
    with MockServer(files=7, host="0.0.0.0") as server:
        assert server.url == f"http://127.0.0.1:{server.port}/transcribe"
        assert len(list(st.Client(server.token, server.url).iter_files(server.batch_id))) == 7


def test_entering_a_stopped_server_raises() -> None:
    server = MockServer(files=1)
    server.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        with server:
            pass  # pragma: no cover


def mock_server_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "soket_transcribe", "mock-server", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, name",
    [
        (["--port", "70000"], "port"),
        (["--files", "-1"], "files"),
        (["--latency-ms", "-5"], "latency_ms"),
        (["--seed", "-1"], "seed"),
        (["--rate-limit", "0"], "rate_limit"),
    ],
)
def test_mock_server_cli_refuses_bad_numbers_in_one_line(args: List[str], name: str) -> None:
    done = mock_server_cli(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {name} must be") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_mock_server_cli_rate_limit() -> None:
    command = [sys.executable, "-m", "soket_transcribe", "mock-server", "--files", "5"]
    command += ["--rate-limit", "0.001", "--burst", "2", "--retry-after", "3"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop.":
            lines.append(proc.stdout.readline().rstrip("\n"))
            assert lines[-1] or proc.poll() is None, proc.stderr.read()
        assert "  rate limit 0.001 requests/s, above it 429 with Retry-After 3 s" in lines
        url = next(line.split()[-1] for line in lines if line.strip().startswith("url"))
        batch_id = next(line.split()[-1] for line in lines if line.strip().startswith("batch id"))
        replies = [get(url, f"/results/batch/{batch_id}") for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 429]
        assert replies[2].headers["retry-after"] == "3"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_a_batch_of_given_records_is_served_exactly(srv: MockServer) -> None:
    records = [
        {"file_id": "f1", "status": "completed", "a.b": 1, "a": {"b": 2}, "flag": True},
        {"file_id": "f2", "status": "failed", "m": {"x.y": 3}, "flag": None, "text": "नमस्ते"},
        {"file_id": "f3", "status": "completed", "flag": None, "big": 2**70},
        {"file_id": "f4", "status": "completed", "flag": True},
    ]
    batch_id = srv.add_batch(records=records)
    pages = [results(srv, f"page={n}&limit=2", batch_id=batch_id).json() for n in (1, 2, 3)]
    assert [p["files"] for p in pages] == [records[:2], records[2:], []]
    assert [(p["total_files"], p["total_pages"], p["count"]) for p in pages] == [(4, 2, 2), (4, 2, 2), (4, 2, 0)]
    completed = results(srv, "status=completed&limit=10", batch_id=batch_id).json()
    assert (completed["total_files"], completed["files"]) == (3, [records[0], *records[2:]])
    assert results(srv, "raw=true", batch_id=batch_id).json()["jobs"] == records
    assert get(srv.url, "/results/file/f2").json() == records[1]
    status = get(srv.url, f"/status/batch/{batch_id}").json()
    assert (status["status"], status["total_files"], status["files_completed"], status["files_failed"]) == (
        "completed",
        4,
        3,
        1,
    )
    client = st.Client(srv.token, srv.url)
    assert list(client.iter_files(batch_id, limit=3)) == records


def test_pages_without_totals(srv: MockServer) -> None:
    batch_id = srv.add_batch(450, totals=False)
    page = results(srv, "limit=200&page=3", batch_id=batch_id).json()
    assert list(page) == ["batch_id", "page", "limit", "total_pages", "count", "files"]
    assert (page["total_pages"], page["count"]) == (3, 50)
    assert "total_jobs" not in results(srv, "raw=true", batch_id=batch_id).json()
    given = srv.add_batch(records=[{"x": 1}], totals=False)
    assert "total_files" not in results(srv, batch_id=given).json()
    assert "total_files" in results(srv).json(), "the other batches keep theirs"


def test_given_records_are_checked(srv: MockServer) -> None:
    with pytest.raises(ValueError, match=r"records\[1\] must be a dict, not list"):
        srv.add_batch(records=[{}, [1]])
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        srv.add_batch(records=[{"x": float("nan")}])
    with pytest.raises(ValueError, match="records= serves exactly the records given"):
        srv.add_batch(5, records=[{}])
    with pytest.raises(ValueError, match="records= serves exactly the records given"):
        srv.add_batch(records=[{}], grow_per_request=1)
