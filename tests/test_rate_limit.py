"""A rate-limited service (the mock's token bucket): read at the rate it allows, never die of a
429 while pages arrive, and never pace a service that does not throttle."""

import asyncio
import logging
import re
import threading

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

FILES, LIMIT = 200, 5  # 40 pages


def expected_ids(files=FILES):
    with MockServer(files=files, seed=3) as clean:
        return [f["file_id"] for f in st.Client(clean.token, clean.url).iter_files(clean.batch_id, limit=LIMIT)]


@pytest.fixture(scope="module")
def expected():
    return expected_ids()


def throttled_server(retry_after=1, files=FILES):
    return MockServer(files=files, seed=3, rate_limit=40, burst=8, retry_after=retry_after)


def check_counts(client, srv, files=FILES):
    """Every request the log holds was counted, every 429 a throttle, every throttle retried."""
    stats = client.stats
    throttles = sum(1 for r in srv.requests if r["throttled"])
    assert stats["throttled"] == throttles and stats["requests"] == len(srv.requests)
    assert stats["requests"] == files // LIMIT + stats["retries"]


@pytest.mark.parametrize("retry_after", [1, None])
@pytest.mark.parametrize("concurrency", [1, 4, 16, 32])
def test_every_file_once_in_order_at_any_concurrency(expected, concurrency, retry_after):
    with throttled_server(retry_after) as srv:
        client = st.Client(srv.token, srv.url, concurrency=concurrency, max_retries=0)
        assert [f["file_id"] for f in client.iter_files(srv.batch_id, limit=LIMIT)] == expected
        check_counts(client, srv)
        assert client.stats["throttled"] >= 1 and client.stats["rate"] is not None, "the bucket was met"


ASYNC_FILES = 100  # 20 pages: past the burst of 8, in half the time of the sync batch


@pytest.fixture(scope="module")
def expected_async():
    return expected_ids(ASYNC_FILES)


@pytest.mark.parametrize("retry_after", [1, None])
@pytest.mark.parametrize("concurrency", [1, 4, 16, 32])
def test_async_reads_too(expected_async, concurrency, retry_after):
    with throttled_server(retry_after, files=ASYNC_FILES) as srv:
        client = st.Client(srv.token, srv.url, concurrency=concurrency, max_retries=0)

        async def read():
            return [f["file_id"] async for f in client.iter_files(srv.batch_id, limit=LIMIT)]

        assert asyncio.run(read()) == expected_async
        check_counts(client, srv, files=ASYNC_FILES)
        assert client.stats["throttled"] >= 1 and client.stats["rate"] is not None, "the bucket was met"


def test_two_threads_and_a_task_share_one_pace(expected):
    """Three reads through one client meet one bucket: one controller paces them all, so the
    429s stay few (unpaced, every worker meets the empty bucket again after each wait).

    The opening burst is throttled whatever the client does (its 24 requests leave before any
    answer); from the moment it comes back (its `Retry-After`, 1 s, after the first throttle)
    every start is paced, and the 429s after it are the issue's target, at most a tenth of the
    pages (measured: 1 or 2 of 120; unpaced, each `Retry-After` sends the 24 workers back into
    the empty bucket at once)."""
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
        throttled_at = [r["time"] for r in srv.requests if r["throttled"]]
        paced = [t for t in throttled_at if t > throttled_at[0] + 1.0]
        assert len(paced) <= pages // 10, throttled_at


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


def test_a_503_with_retry_after_is_a_throttle_not_a_failure(expected):
    """A service under load answers 503 with `Retry-After`: waited and retried as a 429 is,
    counted as a throttle, and not charged to `max_retries` (0 here: one error would raise)."""
    pages = 4  # few: the pace starts from the accept rate of the last second, none here
    with MockServer(files=FILES, seed=3) as srv:
        srv.fail_next("status", times=1, status=503, retry_after="1")
        client = st.Client(srv.token, srv.url, max_retries=0)
        assert [f["file_id"] for f in client.iter_files(srv.batch_id, limit=FILES // pages)] == expected
        assert [r["fault"] for r in srv.requests[:2]] == ["status:503", None]
        assert srv.requests[1]["time"] - srv.requests[0]["time"] >= 1.0, "the Retry-After was waited"
        stats = client.stats
        assert stats["throttled"] == 1 and stats["retries"] == 1 and stats["rate"] is not None
        assert stats["requests"] == pages + 1 == len(srv.requests)


def test_the_progress_callback_sees_every_page_while_throttled(expected):
    """A table read under throttling reports each page as it lands: the bar keeps moving
    between throttles instead of stalling as if hung."""
    with throttled_server() as srv:
        client = st.Client(srv.token, srv.url, concurrency=4, max_retries=0)
        seen = []

        def progress(done, total):
            seen.append((done, total, sum(1 for r in srv.requests if r["throttled"])))

        table = client.iter_files(srv.batch_id, limit=LIMIT).to_arrow(progress=progress)
        assert table.column("file_id").to_pylist() == expected
        # Each page once, in order (the end of the stream may report the last count again).
        assert list(dict.fromkeys((done, total) for done, total, _ in seen)) == [
            (n, FILES) for n in range(LIMIT, FILES + 1, LIMIT)
        ]
        throttled_by_then = [throttles for _, _, throttles in seen]
        assert throttled_by_then[-1] == client.stats["throttled"] >= 1
        moving = [done for done, _, throttles in seen if throttles >= 1]
        assert len(moving) >= (FILES // LIMIT) // 2, f"pages reported after the first throttle: {seen}"


def test_pacing_settling_is_logged(caplog):
    """Once a measure of the service's rate is trusted, the pace settles under it, at INFO.
    The read stops at that message (a few seconds in: two cuts, 0.5 s apart at least)."""
    with MockServer(files=4000, seed=3, rate_limit=40, burst=8, retry_after=1) as srv:
        client = st.Client(srv.token, srv.url, concurrency=4, max_retries=0)
        with caplog.at_level(logging.INFO, logger="soket_transcribe"):
            for _ in client.iter_files(srv.batch_id, limit=LIMIT):
                if "pacing settles" in caplog.text:
                    break
    settled = re.search(r"pacing settles at ([0-9.]+) requests/s, under the service's measured rate", caplog.text)
    assert settled, caplog.text
    assert caplog.text.index("the service throttles: pacing requests at") < settled.start()
    # Under the bucket's 40/s (BETA = 0.9 of the measure); 10% more for the jitter a loaded
    # machine adds to when the throttles that bound the measure are received.
    assert 0 < float(settled.group(1)) <= 44, settled.group(0)


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
