"""README promises that had no test of their own (issue 26), each over TCP against the mock and
checked at the server (its request log), so that each test fails when its promise breaks."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import textwrap
import time

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def test_the_defaults_are_the_configuration_tables() -> None:
    # Latency keeps each request in flight long enough for the default 4 to overlap.
    with MockServer(files=400, latency_ms=60) as srv:
        client = st.Client(srv.token, srv.url)
        assert (client.timeout, client.max_retries, client.concurrency) == (60.0, 3, 4)
        assert client.max_body_bytes == 256 * 1024 * 1024
        assert len(list(client.iter_files(srv.batch_id, limit=10))) == 400
        log = srv.requests
    assert len(log) == 40
    assert max(r["in_flight"] for r in log) == 4, "pages in flight: 4 by default"
    assert all("gzip" in r["accept_encoding"] for r in log), "gzip on the wire"


def test_the_default_is_three_retries(server) -> None:
    client = st.Client(server.token, server.url)
    server.fail_next("status", times=4, status=503)
    with pytest.raises(st.ServerError, match="after 3 retries"):
        client.get_page(server.batch_id)
    assert [r["fault"] for r in server.requests] == ["status:503"] * 4
    assert client.stats["requests"] == 4 and client.stats["retries"] == 3


def test_retry_after_as_an_http_date_is_honoured(server) -> None:
    client = st.Client(server.token, server.url, max_retries=1)
    # An HTTP date has whole seconds: three seconds from now is at least two away.
    server.fail_next("429", times=1, retry_after=email.utils.formatdate(time.time() + 3, usegmt=True))
    assert client.get_page(server.batch_id, limit=10).page == 1
    throttled, retried = server.requests
    assert throttled["fault"] == "429" and retried["fault"] is None
    assert retried["time"] - throttled["time"] >= 1.5, "the retry waited for the date"


def test_retry_after_as_a_date_beyond_a_minute_raises_at_once(server) -> None:
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("429", times=1, retry_after=email.utils.formatdate(time.time() + 3600, usegmt=True))
    with pytest.raises(st.RateLimitError):
        client.get_page(server.batch_id)
    assert len(server.requests) == 1, "not retried"


LOGGING_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import soket_transcribe as st
    from soket_transcribe.testing import MockServer
    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.DEBUG)
    with MockServer(files=30) as srv:
        srv.fail_next("status", times=1, status=503)  # one retry
        client = st.Client(srv.token, srv.url)
        assert len(list(client.iter_files(srv.batch_id, limit=10))) == 30
        print(srv.token)
    """
)


def run_logging_script(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOGGING_SCRIPT, mode], capture_output=True, text=True, timeout=120)


def test_the_library_prints_nothing_unless_logging_is_configured() -> None:
    quiet = run_logging_script("unconfigured")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = run_logging_script("configured")
    assert loud.returncode == 0, loud.stderr
    token = loud.stdout.strip()
    lines = loud.stderr.splitlines()
    # The same read logs requests at DEBUG and its retry at INFO once an application asks.
    assert any(line.startswith("DEBUG:soket_transcribe") and "GET " in line for line in lines), lines
    assert any(line.startswith("INFO:soket_transcribe") and "503" in line for line in lines), lines
    assert token and token not in loud.stderr


def test_the_cache_serves_and_keeps_a_download_read(tmp_path) -> None:
    with MockServer(files=0) as srv:
        batch_id = srv.add_batch(300, statuses={"completed": 1.0})  # final: a whole read is kept
        client = st.Client(srv.token, srv.url, cache_dir=str(tmp_path))
        expected = list(client.iter_files(batch_id, transport="download"))
        assert len(expected) == 300 and client.cache_info()["entries"] == 1, "a whole download read is kept"
        srv.clear_requests()
        assert list(client.iter_files(batch_id)) == expected
        assert list(client.iter_files(batch_id, transport="download")) == expected
        assert srv.requests == [], "one entry serves both transports, with no request"
