"""Errors as a user meets them: every class the core can raise exists in `st.errors` under
`SoketError`, HTTP statuses become the README's classes, and `max_retries` works per call on
`status` and `get_file` as on `get_page`; and `status` answers the `st.BatchStatus` the service sent."""

import asyncio
import json
import urllib.request

import pytest

import soket_transcribe as st
from soket_transcribe import _core, errors


def test_every_class_the_core_can_raise_is_a_soket_error():
    names = _core._error_classes()
    assert "APIError" in names and "BatchChangedError" in names
    for name in names:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SoketError), name
        assert getattr(st, name) is cls, f"{name} is not exported as st.{name}"


# The README's error tree: status -> class, with max_retries=0 so retried statuses raise at once.
STATUS_CLASSES = [
    (400, st.InvalidRequestError),
    (401, st.AuthenticationError),
    (403, st.PermissionDeniedError),
    (404, st.NotFoundError),
    (422, st.InvalidRequestError),
    (500, st.ServerError),
    (503, st.ServerError),
    (418, st.APIError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_http_statuses_raise_the_classes_of_the_readme(server, status, cls):
    client = st.Client(server.token, server.url, max_retries=0)
    server.fail_next("status", status=status)
    with pytest.raises(cls) as e:
        client.get_page(server.batch_id, page=2)
    assert type(e.value) is cls
    assert (e.value.status_code, e.value.page) == (status, 2)
    assert isinstance(e.value.body, str) and e.value.body


def test_a_429_beyond_the_wait_cap_is_a_rate_limit_error(server):
    client = st.Client(server.token, server.url)
    server.fail_next("429", retry_after="3600")
    with pytest.raises(st.RateLimitError) as e:
        client.status(server.batch_id)
    assert e.value.status_code == 429


def test_a_missing_file_and_a_missing_batch_have_their_own_classes(server, client):
    with pytest.raises(st.FileResultNotFoundError) as e:
        client.get_file("no-such-file")
    assert e.value.status_code == 404
    with pytest.raises(st.BatchNotFoundError):
        client.status("no-such-batch")


def test_a_malformed_answer_is_a_response_format_error(server):
    client = st.Client(server.token, server.url, max_retries=0)
    server.fail_next("malformed")
    with pytest.raises(st.ResponseFormatError):
        client.status(server.batch_id)


def status_requests(server):
    return [r["fault"] for r in server.requests if r["path"].endswith("/status/batch/" + server.batch_id)]


def file_requests(server, file_id):
    return [r["fault"] for r in server.requests if r["path"].endswith("/results/file/" + file_id)]


def a_file_id(server, client):
    file_id = client.get_page(server.batch_id, limit=1).items[0]["file_id"]
    server.clear_requests()
    return file_id


def test_status_takes_max_retries_per_call(server):
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("status", times=2, status=503)
    with pytest.raises(st.ServerError):
        client.status(server.batch_id, max_retries=0)
    assert len(status_requests(server)) == 1
    assert client.status(server.batch_id, max_retries=2).batch_id == server.batch_id
    assert len(status_requests(server)) == 3
    assert client.stats["retries"] == 1


def test_status_async_takes_max_retries_per_call(server):
    client = st.Client(server.token, server.url, max_retries=3)
    server.fail_next("status", times=2, status=503)
    with pytest.raises(st.ServerError):
        asyncio.run(client.status_async(server.batch_id, max_retries=0))
    status = asyncio.run(client.status_async(server.batch_id, max_retries=2))
    assert status.batch_id == server.batch_id
    assert len(status_requests(server)) == 3


def test_get_file_takes_max_retries_per_call(server):
    client = st.Client(server.token, server.url, max_retries=3)
    file_id = a_file_id(server, client)
    server.fail_next("status", times=2, status=503)
    with pytest.raises(st.ServerError):
        client.get_file(file_id, max_retries=0)
    assert len(file_requests(server, file_id)) == 1
    assert client.get_file(file_id, as_dataclass=True, max_retries=2).file_id == file_id
    assert len(file_requests(server, file_id)) == 3


def test_get_file_async_takes_max_retries_per_call(server):
    client = st.Client(server.token, server.url, max_retries=3)
    file_id = a_file_id(server, client)
    server.fail_next("status", times=2, status=503)
    with pytest.raises(st.ServerError):
        asyncio.run(client.get_file_async(file_id, max_retries=0))
    assert asyncio.run(client.get_file_async(file_id, max_retries=2))["file_id"] == file_id
    assert len(file_requests(server, file_id)) == 3


def test_a_negative_max_retries_is_refused(server, client):
    with pytest.raises(OverflowError):
        client.status(server.batch_id, max_retries=-1)


def test_status_is_the_batch_status_the_service_sent(server, client):
    """Rust builds `st.BatchStatus` from its parsed answer; `from_dict` (for users' dicts) agrees."""
    sent = urllib.request.Request(
        f"{server.url}/status/batch/{server.batch_id}", headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(sent) as answer:
        record = json.load(answer)
    status = client.status(server.batch_id)
    assert status == st.BatchStatus.from_dict(record)
    assert status.extra and not set(status.extra) & set(st.BatchStatus._NAMED)
    assert status.to_dict() == {**dict.fromkeys(st.BatchStatus._NAMED), **record}


def test_a_coroutine_made_with_no_loop_running_is_one_to_asyncio(server, client):
    """Built before any loop runs, `status_async`'s awaitable is taken by `create_task` too."""
    made_early = client.status_async(server.batch_id)
    assert asyncio.iscoroutine(made_early)

    async def main():
        return await asyncio.create_task(made_early)

    assert asyncio.run(main()) == client.status(server.batch_id)
