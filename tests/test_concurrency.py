"""The README's promise "pages fetched `concurrency` at a time", measured at the server: the mock
logs how many requests were in flight when each arrived."""

from __future__ import annotations

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

PAGES = 40
LIMIT = 10


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_pages_are_fetched_concurrency_at_a_time(concurrency: int) -> None:
    # The latency keeps each request in flight long enough for the next ones to overlap it.
    with MockServer(files=PAGES * LIMIT, latency_ms=60) as srv:
        client = st.Client(srv.token, srv.url, concurrency=concurrency)
        files = list(client.iter_files(srv.batch_id, limit=LIMIT))
        log = srv.requests
    assert len(files) == PAGES * LIMIT
    assert len(log) == PAGES
    in_flight = [request["in_flight"] for request in log]
    # Never more than `concurrency` at once, and that many reached: not serial, not uncapped.
    assert max(in_flight) == concurrency, in_flight
