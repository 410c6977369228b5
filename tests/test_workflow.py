"""The workflow around the results: a batch's status, waiting for it, one file (over TCP, the mock)."""

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from types import SimpleNamespace

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer


def polls(server, batch_id):
    return sum(1 for r in server.requests if r["path"].endswith(f"/status/batch/{batch_id}"))


# -- status --------------------------------------------------------------------------------


def test_status_counts_equal_the_results_endpoint(server, client):
    status = client.status(server.batch_id)
    records = list(client.iter_files(server.batch_id))
    by_status = Counter(r["status"] for r in records)
    assert isinstance(status, st.BatchStatus)
    assert status.batch_id == server.batch_id
    assert status.total_files == len(records) == 1234
    assert (status.files_completed, status.files_failed) == (by_status["completed"], by_status["failed"])
    assert status.extra["files_retrying"] == by_status["retrying"] > 0
    assert status.extra["files_processing"] == by_status["processing"] > 0
    assert status.status == "processing" and status.in_progress
    # The mock's estimates (src/mock): ~4 s of one worker for each file still in flight, and the
    # audio of every file, drawn from the seed alone: the same batch with every file completed
    # shows each length in `result.duration_seconds` (summed in tenths, as the mock does).
    assert status.estimated_completion_seconds == 4 * (by_status["retrying"] + by_status["processing"]) == 212
    all_completed = server.add_batch(1234, seed=7, statuses={"completed": 1.0})
    tenths = sum(round(r["result"]["duration_seconds"] * 10) for r in client.iter_files(all_completed))
    assert status.estimated_audio_seconds == tenths / 10 == 369863.6
    assert status.to_dict()["files_retrying"] == status.extra["files_retrying"]


def test_status_async_is_the_same(server, client):
    assert asyncio.run(client.status_async(server.batch_id)) == client.status(server.batch_id)


def test_a_finished_batch_is_not_in_progress(client, server):
    batch_id = server.add_batch(50, statuses={"completed": 0.8, "failed": 0.2})
    status = client.status(batch_id)
    assert status.status == "completed" and not status.in_progress
    assert status.files_done == status.total_files == 50
    assert status.estimated_completion_seconds == 0


@pytest.mark.parametrize("http_status", [404, 200])
def test_a_missing_batch_raises_batch_not_found_whatever_the_http_status(http_status):
    with MockServer(10, not_found_status=http_status) as server:
        client = st.Client(server.token, server.url)
        with pytest.raises(st.BatchNotFoundError, match="batch not found"):
            client.status("no-such-batch")
        with pytest.raises(st.BatchNotFoundError):
            asyncio.run(client.status_async("no-such-batch"))


def test_status_refuses_a_bad_id_before_any_request(server, client):
    for bad, message in [("", "batch_id must be a non-empty string"), ("..", "cannot be sent as a path segment")]:
        with pytest.raises(ValueError, match=message):
            client.status(bad)
    assert server.requests == []


def test_status_sends_the_id_as_one_encoded_segment(server, client):
    with pytest.raises(st.BatchNotFoundError):
        client.status("a/b?c")
    assert server.requests[-1]["path"].endswith("/status/batch/a%2Fb%3Fc")


def test_status_is_retried_like_a_page(server, client):
    server.fail_next("status", 2, status=503)
    assert client.status(server.batch_id).total_files == 1234
    assert polls(server, server.batch_id) == 3


# -- wait ----------------------------------------------------------------------------------


def test_wait_returns_the_final_status_once_the_batch_is_done(server, client):
    batch_id = server.add_batch(40, statuses={"processing": 0.5, "completed": 0.5}, processing_seconds=1.0)
    began = time.monotonic()
    final = client.wait(batch_id, poll_interval=0.1)
    assert time.monotonic() - began >= 0.9
    assert not final.in_progress and final.files_done == final.total_files == 40
    # The service's estimate (about a second left) is worth more than polling every 0.1 s.
    assert polls(server, batch_id) == 2
    assert Counter(r["status"] for r in client.iter_files(batch_id))["processing"] == 0


def test_wait_polls_no_more_often_than_the_interval(server, client):
    batch_id = server.add_batch(10, statuses={"completed": 1.0}, grow_per_request=1)  # never done, no estimate
    with pytest.raises(st.WaitTimeoutError) as e:
        client.wait(batch_id, poll_interval=0.25, timeout=1.0)
    # At 0, 0.25, 0.5, 0.75 and the deadline at most; fewer when a loaded machine answers slowly,
    # but more than one (a second poll needs only the first answer within 0.75 s).
    assert 2 <= polls(server, batch_id) <= 5
    assert isinstance(e.value, st.SoketError)


def test_wait_times_out_with_the_last_status(server, client):
    began = time.monotonic()
    with pytest.raises(st.WaitTimeoutError, match=f"batch {server.batch_id} still processing after 0.5 s") as e:
        client.wait(server.batch_id, poll_interval=0.1, timeout=0.5)
    assert 0.5 <= time.monotonic() - began < 3
    # The estimate (minutes) puts the next poll past the deadline: one poll, then the time is
    # slept out (a poll at the deadline could not be answered within it).
    assert polls(server, server.batch_id) == 1
    assert isinstance(e.value.status, st.BatchStatus) and e.value.status.in_progress
    assert e.value.status.total_files == 1234


def test_wait_async(server, client):
    batch_id = server.add_batch(20, statuses={"processing": 1.0}, processing_seconds=0.5)
    final = asyncio.run(client.wait_async(batch_id, poll_interval=0.1, timeout=10))
    assert final.status == "completed" and final.files_done == 20
    with pytest.raises(st.WaitTimeoutError):
        asyncio.run(client.wait_async(server.batch_id, poll_interval=0.1, timeout=0.2))


def test_wait_lets_other_tasks_run(server, client):
    batch_id = server.add_batch(20, statuses={"processing": 1.0}, processing_seconds=0.5)

    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        ticker = asyncio.ensure_future(tick())
        await client.wait_async(batch_id, poll_interval=0.1)
        ticker.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


def test_wait_shows_files_done_over_total(server, client, capsys):
    batch_id = server.add_batch(30, statuses={"processing": 1.0}, processing_seconds=0.3)
    client.wait(batch_id, poll_interval=0.1, progress=True)
    assert "30/30 files" in capsys.readouterr().err.replace("30.0/30.0", "30/30")
    seen = []
    client.wait(batch_id, poll_interval=0.1, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(30, 30)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(poll_interval=0), r"poll_interval must be a number of seconds in \(0, 60\]; got 0"),
        (dict(poll_interval=61), r"poll_interval must be .*; got 61"),
        (dict(poll_interval=float("nan")), r"poll_interval must be .*; got nan"),
        (dict(timeout=-1), "timeout must be None or a number of seconds >= 0; got -1"),
        (dict(timeout=float("inf")), "timeout must be None or a number of seconds >= 0; got inf"),
    ],
)
def test_wait_refuses_bad_arguments_before_any_request(server, client, kwargs, message):
    with pytest.raises(ValueError, match=message):
        client.wait(server.batch_id, **kwargs)
    with pytest.raises(ValueError, match="batch_id must be a non-empty string"):
        client.wait("")
    assert server.requests == []


def test_ctrl_c_stops_a_sync_wait_at_once(server):
    script = textwrap.dedent(
        f"""
        import sys, time
        import soket_transcribe as st
        client = st.Client({server.token!r}, {server.url!r})
        try:
            client.wait({server.batch_id!r}, poll_interval=30)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, encoding="utf-8")
    try:
        deadline = time.monotonic() + 30
        while polls(server, server.batch_id) == 0:  # the first poll is answered: it sleeps now
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        sent = time.monotonic()  # in the pause or still in the poll: Ctrl-C ends either at once
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline()
        took = time.monotonic() - sent
    finally:
        proc.kill() if proc.poll() is None else None
        proc.communicate(timeout=10)
    assert line == "interrupted\n"
    # Polls are 30 s apart, so anything well under that is Ctrl-C's doing; the bound leaves a
    # loaded 2-core machine room to schedule the child.
    assert took < 5


# -- one file ------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, dict(chunks=True, speech_information=True), dict(chunks=False)])
def test_get_file_equals_the_record_in_the_batch(server, client, options):
    records = list(client.iter_files(server.batch_id, limit=200, max_items=300, **options))
    for record in records[::37]:
        assert client.get_file(record["file_id"], **options) == record
    failed = next(r for r in records if r["status"] == "failed")
    assert client.get_file(failed["file_id"], **options) == failed
    query = server.requests[-1]["query"]
    for name, value in options.items():
        assert f"{name}={'true' if value else 'false'}" in query


def test_get_file_as_a_dataclass_and_async(server, client):
    record = next(iter(client.iter_files(server.batch_id, status="completed", speech_information=True)))
    typed = client.get_file(record["file_id"], speech_information=True, as_dataclass=True)
    assert typed == st.FileResult.from_dict(record)
    assert asyncio.run(client.get_file_async(record["file_id"], speech_information=True)) == record
    typed = asyncio.run(client.get_file_async(record["file_id"], speech_information=True, as_dataclass=True))
    assert typed == st.FileResult.from_dict(record)
    assert st.to_srt(client.get_file(record["file_id"], speech_information=True)) == st.to_srt(record)


@pytest.mark.parametrize("read", ["iter_files", "iter_jobs"])
def test_every_model_round_trips_through_from_dict_and_to_dict(server, client, read):
    records = list(getattr(client, read)(server.batch_id, max_items=50))
    typed = list(getattr(client, read)(server.batch_id, max_items=50, as_dataclass=True))
    model = type(typed[0])
    assert model is (st.JobResult if read == "iter_jobs" else st.FileResult)
    assert [model.from_dict(r) for r in records] == typed
    assert [t.to_dict() for t in typed] == [{**dict.fromkeys(model._NAMED), **r} for r in records]
    status = client.status(server.batch_id)
    assert st.BatchStatus.from_dict(status.to_dict()) == status


@pytest.mark.parametrize("http_status", [404, 200])
def test_a_missing_file_raises_file_result_not_found(http_status):
    with MockServer(10, not_found_status=http_status) as server:
        client = st.Client(server.token, server.url)
        with pytest.raises(st.FileResultNotFoundError, match="file not found") as e:
            client.get_file("no/such file")
        assert isinstance(e.value, st.NotFoundError) and not isinstance(e.value, FileNotFoundError)
        assert server.requests[-1]["path"].endswith("/results/file/no%2Fsuch%20file")
        with pytest.raises(st.FileResultNotFoundError):
            asyncio.run(client.get_file_async("nope"))


def test_get_file_refuses_a_bad_id_before_any_request(server, client):
    for bad, message in [("", "file_id must be a non-empty string"), (".", "cannot be sent as a path segment")]:
        with pytest.raises(ValueError, match=message):
            client.get_file(bad)
    assert server.requests == []


def test_the_token_never_shows_in_workflow_errors(server):
    client = st.Client("sk-wrong-0123456789abcdef", server.url)
    for call in (lambda: client.status(server.batch_id), lambda: client.get_file("x")):
        with pytest.raises(st.AuthenticationError) as e:
            call()
        assert "sk-wrong-0123456789abcdef" not in str(e.value) + repr(e.value.body)


# -- what is final (the core's rule) -------------------------------------------------------


def answers(*bodies):
    """A scripted answer that sends `bodies` in turn (as JSON), then the last one again; and the
    count of requests made."""
    sent = []

    def answer(query):
        sent.append(query)
        return json.dumps(bodies[min(len(sent), len(bodies)) - 1]).encode()

    return answer, sent


def batch(word, total=3, completed=0, failed=0, **more):
    return {"batch_id": "b", "status": word, "total_files": total, "files_completed": completed, "files_failed": failed, **more}


def test_wait_polls_on_through_states_that_are_not_final(scripted_server, caplog):
    answer, sent = answers(
        batch("queued"), batch("PROCESSING", completed=1), batch(""), batch("cancelled", completed=2), batch("Completed", completed=3)
    )
    client = st.Client("t", scripted_server(answer))
    with caplog.at_level("WARNING", logger="soket_transcribe.wait"):
        final = client.wait("b", poll_interval=0.01, timeout=60)
    assert final.status == "Completed" and final.is_final and not final.in_progress
    assert len(sent) == 5
    unknown = [r.getMessage() for r in caplog.records if "not one the service documents" in r.getMessage()]
    assert unknown == ["batch b: status 'queued' is not one the service documents; waiting until it says completed or"
                       " failed, or every file is counted done"]  # logged once, for the first such word


def test_any_word_is_final_once_every_file_is_counted_done(scripted_server):
    answer, sent = answers(batch("cancelled", completed=2, failed=1))
    final = st.Client("t", scripted_server(answer)).wait("b", poll_interval=0.01, timeout=60)
    assert final.status == "cancelled" and final.is_final and len(sent) == 1


@pytest.mark.parametrize(
    "word, total, done, stage",
    [
        ("completed", 3, 0, "final"),
        ("FAILED", None, 0, "final"),
        ("processing", 3, 3, "running"),  # the service's word outranks the counts: files may still come
        ("Retrying", 3, 1, "running"),
        ("queued", 3, 2, "unknown"),
        ("queued", 3, 3, "final"),
        ("", 0, 0, "unknown"),  # no files yet is not every file done
        ("cancelled", None, 5, "unknown"),
    ],
)
def test_batch_status_is_final_by_the_cores_rule(word, total, done, stage):
    status = st.BatchStatus.from_dict(batch(word, total=total, completed=done))
    assert status.stage == stage
    assert status.is_final == (stage == "final") and status.in_progress == (stage != "final")


# -- wait's deadline -----------------------------------------------------------------------
# Each case would take 20 to 30 s without the deadline; the bounds are loose (a loaded 2-core
# machine) but well below what an unbounded wait takes.


def test_a_slow_status_answer_does_not_outlast_the_timeout(server, client):
    server.fail_next("stall", stall_s=30)
    began = time.monotonic()
    with pytest.raises(st.WaitTimeoutError, match=f"batch {server.batch_id}: no status answer within 1 s$") as e:
        client.wait(server.batch_id, timeout=1)
    assert 1 <= time.monotonic() - began < 15
    assert e.value.status is None


def test_retry_after_does_not_outlast_the_timeout(server, client):
    server.fail_next("429", retry_after=20)
    began = time.monotonic()
    with pytest.raises(st.WaitTimeoutError):
        asyncio.run(client.wait_async(server.batch_id, timeout=1))
    assert 1 <= time.monotonic() - began < 15


def test_failures_while_waiting_are_retried_until_the_deadline(server, client):
    batch_id = server.add_batch(20, statuses={"completed": 1.0})
    server.fail_next("status", 3, status=503)  # as many as a call with max_retries=2 tries
    with pytest.raises(st.ServerError):
        client.status(batch_id)
    server.fail_next("status", 4, status=503)
    assert client.wait(batch_id, timeout=600).is_final
    assert polls(server, batch_id) == 3 + 5


def test_without_a_timeout_only_the_first_poll_gives_up(server, client):
    server.fail_next("status", 3, status=503)
    with pytest.raises(st.ServerError, match="after 2 retries"):
        client.wait(server.batch_id)  # a service that fails from the start (or a wrong URL): at once
    batch_id = server.add_batch(20, statuses={"processing": 1.0}, processing_seconds=0.5)
    server.clear_requests()
    fail_after_first = [lambda: server.fail_next("status", 5, status=502)]
    final = client.wait(batch_id, poll_interval=0.05, progress=lambda *_: fail_after_first and fail_after_first.pop()())
    assert final.is_final and final.files_done == 20
    assert [r["fault"] for r in server.requests].count("status:502") == 5


def test_the_deadline_message_says_why_the_status_did_not_come(scripted_server):
    client = st.Client("t", scripted_server(lambda query: b"not json"), max_retries=0)
    failed = "the last status request failed: the batch status answer is not valid JSON: expected ident"
    with pytest.raises(st.WaitTimeoutError, match=f"^batch b: no status answer within 0.5 s; {failed}"):
        client.wait("b", timeout=0.5)


# -- answers from other services -----------------------------------------------------------


def test_the_timeout_message_says_what_is_known(scripted_server):
    answer, _ = answers({"status": "processing", "files_completed": 4})
    with pytest.raises(st.WaitTimeoutError) as e:
        st.Client("t", scripted_server(answer)).wait("b", poll_interval=0.05, timeout=0.2)
    assert str(e.value) == "batch b still processing after 0.2 s (4 files done, total not known)"


def test_counts_sent_as_floats_are_counts_when_whole(scripted_server):
    answer, _ = answers(batch("processing", total=3.0, completed=2.0, failed=1e0))
    status = st.Client("t", scripted_server(answer)).status("b")
    assert (status.total_files, status.files_completed, status.files_failed) == (3, 2, 1)
    assert all(type(n) is int for n in (status.total_files, status.files_completed, status.files_failed))
    answer, _ = answers(batch("processing", total=3.5))
    with pytest.raises(st.ResponseFormatError, match="3.5 is not a count of files"):
        st.Client("t", scripted_server(answer)).status("b")


def test_an_error_field_beside_the_answer_is_part_of_it(scripted_server):
    failed = batch("failed", failed=3, error="quota exceeded")
    status = st.Client("t", scripted_server(answers(failed)[0])).wait("b", timeout=10)
    assert status.status == "failed" and status.extra["error"] == "quota exceeded"
    record = {"file_id": "f", "filename": "a.wav", "status": "failed", "errors": ["x"], "error": "decode failed"}
    assert st.Client("t", scripted_server(answers(record)[0])).get_file("f") == record
    page = {"batch_id": "b", "page": 1, "total_pages": 1, "total_files": 1, "count": 1, "files": [record], "error": "partial"}
    assert list(st.Client("t", scripted_server(answers(page)[0])).iter_files("b")) == [record]


@pytest.mark.parametrize("body", [{"error": "quota exceeded"}, {"error": "quota exceeded", "batch_id": "b", "detail": "x"}])
def test_an_answer_that_is_only_an_error_is_an_error(scripted_server, body):
    client = st.Client("t", scripted_server(answers(body)[0]))
    with pytest.raises(st.APIError, match="service error \\(HTTP 200\\): quota exceeded"):
        client.status("b")
    with pytest.raises(st.APIError, match="quota exceeded"):
        client.get_file("f")


# -- the poll plan -------------------------------------------------------------------------


@pytest.mark.parametrize("estimate, delay", [(None, 5.0), (2.0, 5.0), (30.0, 30.0), (7200.0, 60.0), (float("inf"), 5.0), (-3.0, 5.0)])
def test_polls_are_never_more_than_a_minute_apart(estimate, delay):
    from soket_transcribe.waiting import MAX_POLL_GAP, _PollPlan, poll_delay

    status = st.BatchStatus.from_dict(batch("processing", estimated_completion_seconds=estimate))
    assert poll_delay(status, 5.0) == delay
    assert _PollPlan("b", 5.0, 3600, False).delay(status) == delay <= MAX_POLL_GAP == 60


def test_hours_estimated_still_poll_within_a_minute(scripted_server, monkeypatch):
    from soket_transcribe import waiting

    class Enough(Exception):
        pass

    slept = []

    def sleep(seconds):  # the pauses wait() asks for, not slept
        slept.append(seconds)
        if len(slept) == 3:
            raise Enough

    monkeypatch.setattr(waiting, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    answer, sent = answers(batch("processing", estimated_completion_seconds=36_000))
    with pytest.raises(Enough):
        st.Client("t", scripted_server(answer)).wait("b", poll_interval=1)
    assert slept == [60.0, 60.0, 60.0] and len(sent) == 3
