"""The token stays secret; plain http only on loopback; no auth across origins."""

import logging

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer

SECRET = "sekrit-TOKEN-1234567890"


def test_token_not_in_repr_or_str():
    client = st.Client(SECRET, "http://127.0.0.1:9/transcribe")
    assert SECRET not in repr(client) and SECRET not in str(client)
    assert not hasattr(client, "token"), "no attribute hands the token out"


def test_token_not_in_errors_or_logs(caplog):
    with MockServer(files=10, token=SECRET) as srv:
        client = st.Client(SECRET, srv.url, max_retries=1)
        caplog.set_level(logging.DEBUG, logger="soket_transcribe")
        srv.fail_next("status", times=2, status=500)
        with pytest.raises(st.ServerError) as e:
            client.get_page(srv.batch_id)
        srv.fail_next("malformed", times=1)
        with pytest.raises(st.ResponseFormatError) as f:
            client.get_page(srv.batch_id, max_retries=0)
        wrong = st.Client("wrong-" + SECRET, srv.url)
        with pytest.raises(st.AuthenticationError) as g:
            wrong.get_page(srv.batch_id)
        for err in (e.value, f.value, g.value):
            text = " ".join(str(x) for x in (err, repr(err), getattr(err, "body", ""), getattr(err, "excerpt", "")))
            assert SECRET not in text
        assert caplog.records, "debug logging reports requests"
        assert all(SECRET not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "url",
    ["http://api.soket.ai/transcribe", "http://10.1.2.3/transcribe", "http://example.com:80/"],
)
def test_plain_http_refused_off_loopback(url):
    with pytest.raises(ValueError, match="https"):
        st.Client("t0ken", url)


@pytest.mark.parametrize("url", ["http://localhost:1/t", "http://127.0.0.1:1/t", "http://[::1]:1/t"])
def test_plain_http_allowed_on_loopback(url):
    st.Client("t0ken", url)


def test_authorization_not_forwarded_to_another_origin():
    with MockServer(files=10, host="127.0.0.2", token=SECRET) as other:
        with MockServer(files=10, token=SECRET, redirect_to=other.url) as srv:
            client = st.Client(SECRET, srv.url, max_retries=0)
            with pytest.raises(st.AuthenticationError):
                client.get_page(srv.batch_id)
            (first,) = srv.requests
            assert first["auth_present"]
            (followed,) = other.requests
            assert not followed["auth_present"], "the token must not cross origins"


def test_body_size_cap():
    with MockServer(files=1000) as srv:
        client = st.Client(srv.token, srv.url, max_body_bytes=10_000)
        with pytest.raises(st.ResponseFormatError, match="max_body_bytes"):
            client.get_page(srv.batch_id, limit=200)


def test_proxy_from_the_environment_is_honoured(monkeypatch):
    with MockServer(files=10, batch_id="b") as proxy, MockServer(files=10, batch_id="b") as origin:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = st.Client(origin.token, origin.url.replace("127.0.0.1", "localhost"))
        assert client.get_page("b").count == 10
        assert len(proxy.requests) == 1 and origin.requests == [], "the request went through the proxy"
