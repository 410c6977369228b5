"""Faults: retried when worth it, raised with the page and a way to resume, nothing lost."""

import asyncio
import time

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer
from requests_log import pages_asked


def counts(client):
    """The request and retry counts of `client.stats` (throttles are tested in test_rate_limit.py)."""
    return {k: client.stats[k] for k in ("requests", "retries")}


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("status", dict(status=503)),
        ("status", dict(status=500)),
        ("status", dict(status=502)),
        ("status", dict(status=504)),
        ("status", dict(status=408)),
        ("429", dict(retry_after="0")),
        ("cut", {}),
        ("malformed", {}),
    ],
)
def test_transient_faults_are_retried(server, kind, kwargs):
    client = st.Client(server.token, server.url, max_retries=2)
    server.fail_next(kind, times=2, **kwargs)
    page = client.get_page(server.batch_id, limit=10)
    assert len(page.items) == 10
    assert pages_asked(server) == [1, 1, 1]
    assert counts(client) == {"requests": 3, "retries": 2}


@pytest.mark.parametrize(
    "status, error",
    [
        (400, st.InvalidRequestError),
        (401, st.AuthenticationError),
        (403, st.PermissionDeniedError),
        (404, st.NotFoundError),
        (422, st.InvalidRequestError),
    ],
)
def test_client_errors_are_never_retried(server, status, error):
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("status", times=1, status=status)
    with pytest.raises(error) as e:
        client.get_page(server.batch_id, page=2)
    assert e.value.status_code == status and e.value.page == 2
    assert pages_asked(server) == [2]
    assert counts(client) == {"requests": 1, "retries": 0}


@pytest.mark.parametrize("status, error", [(503, st.ServerError), (500, st.ServerError)])
def test_retries_exhausted_raise_the_typed_error(server, status, error):
    """(A 429 does not use up max_retries: see test_rate_limit.py.)"""
    client = st.Client(server.token, server.url, max_retries=1)
    server.fail_next("status", times=5, status=status)
    with pytest.raises(error) as e:
        client.get_page(server.batch_id)
    assert e.value.status_code == status and "after 1 retries" in str(e.value)
    assert pages_asked(server) == [1, 1]
    assert counts(client) == {"requests": 2, "retries": 1}


def test_connection_errors_exhausted(server):
    client = st.Client(server.token, server.url, max_retries=1)
    server.fail_next("cut", times=5)
    with pytest.raises(st.APIConnectionError) as e:
        client.get_page(server.batch_id, page=3)
    assert e.value.page == 3
    assert pages_asked(server) == [3, 3]
    assert counts(client) == {"requests": 2, "retries": 1}


def test_per_call_max_retries_override(server):
    client = st.Client(server.token, server.url, max_retries=0)
    server.fail_next("status", times=2, status=503)
    assert client.get_page(server.batch_id, max_retries=2).page == 1
    assert pages_asked(server) == [1, 1, 1]
    assert counts(client) == {"requests": 3, "retries": 2}


def test_retry_after_is_honoured(server):
    client = st.Client(server.token, server.url, max_retries=1)
    server.fail_next("429", times=1, retry_after="1")
    started = time.monotonic()
    client.get_page(server.batch_id)
    assert time.monotonic() - started >= 0.9
    assert counts(client) == {"requests": 2, "retries": 1}


def test_retry_after_beyond_the_cap_raises_at_once(server):
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("429", times=1, retry_after="3600")
    started = time.monotonic()
    with pytest.raises(st.RateLimitError):
        client.get_page(server.batch_id)
    assert time.monotonic() - started < 5
    assert pages_asked(server) == [1]
    assert counts(client) == {"requests": 1, "retries": 0}


def test_timeout(server):
    client = st.Client(server.token, server.url, timeout=0.3, max_retries=1)
    server.fail_next("stall", times=2, stall_s=30.0)
    started = time.monotonic()
    with pytest.raises(st.APITimeoutError) as e:
        client.get_page(server.batch_id)
    assert isinstance(e.value, st.APIConnectionError) and e.value.page == 1
    assert "after 1 retries" in str(e.value)
    assert time.monotonic() - started < 15, "two timeouts of 0.3 s, not two stalls of 30 s"
    assert pages_asked(server) == [1, 1], "the stalled request, then its one retry"
    assert counts(client) == {"requests": 2, "retries": 1}


def test_not_json_on_200_is_a_format_error(server):
    client = st.Client(server.token, server.url, max_retries=0)
    server.fail_next("malformed", times=1)
    with pytest.raises(st.ResponseFormatError) as e:
        client.get_page(server.batch_id, page=4)
    assert e.value.page == 4 and "page 4" in str(e.value)
    assert pages_asked(server) == [4] and counts(client) == {"requests": 1, "retries": 0}
    assert server.token not in str(e.value) and server.token not in (e.value.excerpt or "")


def test_error_mid_iteration_names_the_page_and_resume_loses_nothing(server):
    client = st.Client(server.token, server.url, max_retries=0, concurrency=1)
    everything = [f["file_id"] for f in client.iter_files(server.batch_id, limit=100)]
    server.clear_requests()
    res = client.iter_files(server.batch_id, limit=100)
    got = []
    with pytest.raises(st.ServerError) as e:
        for i, f in enumerate(res):
            got.append(f["file_id"])
            if i == 250:
                server.fail_next("status", times=1, status=503)
    assert e.value.page == res.next_page >= 3, "the first page fetched after the fault"
    assert got == everything[: (res.next_page - 1) * 100], "every page before it, whole"
    rest = [f["file_id"] for f in client.iter_files(server.batch_id, limit=100, start_page=res.next_page)]
    assert got + rest == everything


@pytest.mark.timeout(600)
def test_soak_under_faults_every_file_once_in_order():
    """2,000 pages, a fifth of the requests failing: nothing lost, nothing repeated (see bench/soak.py)."""
    with MockServer(files=4000, seed=11, fault_rate=0.2) as srv:
        client = st.Client(srv.token, srv.url, max_retries=8, concurrency=8)
        clean = MockServer(files=4000, seed=11)
        with clean:
            expected = [f["file_id"] for f in st.Client(clean.token, clean.url).iter_files(clean.batch_id)]
        got = [f["file_id"] for f in client.iter_files(srv.batch_id, limit=2)]
        assert got == expected
        assert srv.faults_injected > 200
        # Every fault costs one retry, and every request is a page or a retry: no request lost
        # count of, none sent twice.
        assert client.stats["retries"] == srv.faults_injected
        assert client.stats["requests"] == 2000 + srv.faults_injected
        assert sorted(set(pages_asked(srv))) == list(range(1, 2001))


def test_async_faults_are_retried_too(server):
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("cut", times=1)
    server.fail_next("status", times=1, status=503)

    async def collect():
        return [f async for f in client.iter_files(server.batch_id, limit=100)]

    assert len(asyncio.run(collect())) == 1234
    assert sorted(pages_asked(server)) == sorted([*range(1, 14), *pages_asked(server)[:2]])
    assert counts(client) == {"requests": 15, "retries": 2}, "13 pages, two of them twice"


def test_batch_growing_while_read_yields_each_original_file_once(server):
    growing = server.add_batch(files=500, seed=4, grow_per_request=1)  # less than a page between reads
    client = st.Client(server.token, server.url, concurrency=2)
    res = client.iter_files(growing, limit=50)
    with pytest.warns(RuntimeWarning, match="changed while it was read"):
        got = [f["file_id"] for f in res]
    assert len(got) == len(set(got)) and len(got) >= 500
    assert res.changed_while_reading
    # the files that existed when the read began all came, in order
    with pytest.warns(RuntimeWarning):
        later = [f["file_id"] for f in client.iter_files(growing, limit=200, max_items=500)]
    assert got[:500] == later


def test_a_shifted_page_never_repeats_a_file(server):
    """A page that repeats records of the page before (the batch shifted) skips them."""
    client = st.Client(server.token, server.url, concurrency=1)
    res = client.iter_files(server.batch_id, limit=100)
    it = iter(res)
    first = [next(it)["file_id"] for _ in range(100)]  # page 1 is in, page 2 not asked for yet
    server.fail_next("shift", times=100, shift_by=3)  # 3 records appear before page 2 from now on
    with pytest.warns(RuntimeWarning, match="repeated"):
        got = first + [f["file_id"] for f in it]
    assert len(got) == len(set(got)) == 1234
    assert res.duplicates_skipped == 3 and res.changed_while_reading
