"""A rate-limited service (the mock's token bucket): read at the rate it allows, never die of a
429 while pages arrive, and never pace a service that does not throttle."""

import asyncio
import logging
import threading

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

FILES, LIMIT = 200, 5  # 40 pages


def expected_ids():
    with MockServer(files=FILES, seed=3) as clean:
        return [f["file_id"] for f in st.Client(clean.token, clean.url).iter_files(clean.batch_id, limit=LIMIT)]


@pytest.fixture(scope="module")
def expected():
    return expected_ids()


def throttled_server(retry_after=1):
    return MockServer(files=FILES, seed=3, rate_limit=40, burst=8, retry_after=retry_after)


def check_counts(client, srv):
    """Every request the log holds was counted, every 429 a throttle, every throttle retried."""
    stats = client.stats
    throttles = sum(1 for r in srv.requests if r["throttled"])
    assert stats["throttled"] == throttles and stats["requests"] == len(srv.requests)
    assert stats["requests"] == FILES // LIMIT + stats["retries"]


@pytest.mark.parametrize("retry_after", [1, None])
@pytest.mark.parametrize("concurrency", [1, 4, 16, 32])
def test_every_file_once_in_order_at_any_concurrency(expected, concurrency, retry_after):
    with throttled_server(retry_after) as srv:
        client = st.Client(srv.token, srv.url, concurrency=concurrency, max_retries=0)
        assert [f["file_id"] for f in client.iter_files(srv.batch_id, limit=LIMIT)] == expected
        check_counts(client, srv)
        assert client.stats["throttled"] >= 1 and client.stats["rate"] is not None, "the bucket was met"


@pytest.mark.parametrize("retry_after", [1, None])
@pytest.mark.parametrize("concurrency", [4, 32])
def test_async_reads_too(expected, concurrency, retry_after):
    with throttled_server(retry_after) as srv:
        client = st.Client(srv.token, srv.url, concurrency=concurrency, max_retries=0)

        async def read():
            return [f["file_id"] async for f in client.iter_files(srv.batch_id, limit=LIMIT)]

        assert asyncio.run(read()) == expected
        check_counts(client, srv)


def test_two_threads_and_a_task_share_one_pace(expected):
    """Three reads through one client meet one bucket: one controller paces them all, so the
    429s stay few (unpaced, every worker meets the empty bucket again after each wait)."""
    with throttled_server() as srv:
        client = st.Client(srv.token, srv.url, concurrency=8, max_retries=0)
        got = {}

        def read(name):
            got[name] = [f["file_id"] for f in client.iter_files(srv.batch_id, limit=LIMIT)]

        async def read_async():
            got["task"] = [f["file_id"] async for f in client.iter_files(srv.batch_id, limit=LIMIT)]

        threads = [threading.Thread(target=read, args=(n,)) for n in ("a", "b")]
        threads.append(threading.Thread(target=lambda: asyncio.run(read_async())))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == {"a": expected, "b": expected, "task": expected}
        pages = 3 * FILES // LIMIT
        assert client.stats["requests"] == pages + client.stats["retries"] == len(srv.requests)
        assert client.stats["throttled"] <= pages // 3, client.stats


def test_rate_limit_timeout_raises_with_the_page_when_nothing_succeeds(server):
    server.fail_next("429", times=10_000, retry_after="0")
    client = st.Client(server.token, server.url, rate_limit_timeout=0.5, max_retries=0)
    with pytest.raises(st.RateLimitError, match=r"rate_limit_timeout=0\.5s\)") as e:
        client.get_page(server.batch_id, page=3)
    assert e.value.page == 3 and e.value.status_code == 429
    assert client.stats["throttled"] == client.stats["requests"] >= 2, "throttles did not use up max_retries=0"


def test_a_retry_after_beyond_the_cap_still_raises_at_once(server):
    server.fail_next("429", times=1, retry_after="3600")
    client = st.Client(server.token, server.url)
    with pytest.raises(st.RateLimitError, match="beyond the 60s the client waits"):
        client.get_page(server.batch_id)
    assert len(server.requests) == 1


def test_max_requests_per_second_is_never_exceeded():
    with MockServer(files=150, seed=3) as srv:
        client = st.Client(srv.token, srv.url, concurrency=8, max_requests_per_second=20)
        assert client.stats["rate"] == 20.0
        assert len(list(client.iter_files(srv.batch_id, limit=5))) == 150
        times = sorted(r["time"] for r in srv.requests)
        assert len(times) == 30
        # Starts 1/20 s apart: any second of the log holds at most 20 (21 with the arrival
        # jitter of the loopback at both ends of a window).
        assert max(sum(1 for t in times if start <= t < start + 1) for start in times) <= 21
        assert times[-1] - times[0] >= 29 / 20 * 0.95


def test_an_unthrottled_read_is_never_paced(server, client):
    server.fail_next("status", times=1, status=503)  # a 503 without Retry-After is an error, not a throttle
    assert len(list(client.iter_files(server.batch_id, limit=100))) == 1234
    assert client.stats["throttled"] == 0 and client.stats["rate"] is None
    assert client.stats["requests"] == 13 + 1


def test_configuration_is_checked_and_pickled():
    import pickle

    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_requests_per_second must be a positive number"):
            st.Client("t0ken", "http://127.0.0.1:9/t", max_requests_per_second=bad)
    with pytest.raises(ValueError, match="rate_limit_timeout must be a positive number of seconds"):
        st.Client("t0ken", "http://127.0.0.1:9/t", rate_limit_timeout=0)
    client = st.Client("t0ken", "http://127.0.0.1:9/t", max_requests_per_second=2.5, rate_limit_timeout=30)
    again = pickle.loads(pickle.dumps(client))
    assert (again.max_requests_per_second, again.rate_limit_timeout) == (2.5, 30.0)
    assert st.Client("t0ken", "http://127.0.0.1:9/t").max_requests_per_second is None


def test_pacing_is_logged_while_python_logs_and_reads(expected, caplog):
    """The controller logs with its lock released: a handler needs the GIL, and the reading
    thread holds the GIL while it asks the controller for its window (this hung once)."""
    with throttled_server() as srv, caplog.at_level(logging.INFO, logger="soket_transcribe"):
        client = st.Client(srv.token, srv.url, concurrency=4)
        assert [f["file_id"] for f in client.iter_files(srv.batch_id, limit=LIMIT)] == expected
    assert "the service throttles: pacing requests at" in caplog.text


def test_a_shed_request_is_retried_without_pacing_the_client(server, client):
    """`Retry-After: 0` (as the mock's random faults send, there with `retry-after-ms: 20`) is a
    service shedding one request, not a rate limit: retried, never paced, max_retries untouched."""
    server.fail_next("429", times=2, retry_after="0")
    assert len(list(client.iter_files(server.batch_id, limit=100))) == 1234
    assert client.stats["throttled"] == 2 and client.stats["rate"] is None
